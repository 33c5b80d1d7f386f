"""A small workspace for the paired, tag, seed and metric-correlation analyses (issue 22).

Three models (A, B, C) × three prompts (p0, p1, p2) × two seeds (10, 20), every number
chosen by hand so the tests can recompute what the reports must show:

* B's image of (p1, seed 20) is broken, and C has no image of (p2, seed 20): the common
  set is the four cells (p0, 10), (p0, 20), (p1, 10), (p2, 10); two cells are left out.
* ``sharpness`` (higher is better) and ``anomaly`` (lower is better) on every non-broken
  image (the broken one has a sharpness too: the scoring job never scores broken images,
  but an older run may have, and it must never count).
* ``tags`` with per-tag details as ``scoring/metrics/tags.py`` stores them.

``build(store, order=..., id_offset=...)`` inserts the images in any order and with any
ids, so the tests can check that nothing depends on them.
"""

from __future__ import annotations

import itertools

import numpy as np

from arena.storage import db
from arena.storage.store import PromptRow

MODELS = ("A", "B", "C")
PROMPTS = ("p0", "p1", "p2")
SEEDS = (10, 20)
BROKEN = ("B", "p1", 20)
MISSING = ("C", "p2", 20)
COMMON = {("p0", 10), ("p0", 20), ("p1", 10), ("p2", 10)}
TEXT = {
    "p0": "1girl, solo, long hair",
    "p1": "masterpiece, 1girl, red hair, blue eyes, smile",
    "p2": "cat",
}

# sharpness per (model, prompt, seed)
SHARPNESS = {
    ("A", "p0", 10): 1.0, ("A", "p0", 20): 2.0, ("A", "p1", 10): 3.0, ("A", "p1", 20): 4.0,
    ("A", "p2", 10): 5.0, ("A", "p2", 20): 6.0,
    ("B", "p0", 10): 2.0, ("B", "p0", 20): 1.0, ("B", "p1", 10): 7.0, ("B", "p1", 20): 100.0,
    ("B", "p2", 10): 4.0, ("B", "p2", 20): 9.0,
    ("C", "p0", 10): 0.5, ("C", "p0", 20): 1.5, ("C", "p1", 10): 2.5, ("C", "p1", 20): 8.0,
    ("C", "p2", 10): 3.0,
}  # fmt: skip
# anomaly (lower is better)
ANOMALY = {key: 10.0 - v + (0.5 if key[0] == "C" else 0.0) for key, v in SHARPNESS.items()}
ANOMALY[("A", "p2", 20)] = 1.0  # not a mirror of sharpness everywhere

# tags: per (model, prompt, seed), the hits of the countable tags of the prompt, in order.
# p0: 1girl (pos 0), solo (1), long_hair (2); p1: 1girl (1), red_hair (2), blue_eyes (3),
# smile (4) (masterpiece at 0 is a quality word); p2: cat (0).
TAG_POSITIONS = {
    "p0": [("1girl", 0), ("solo", 1), ("long_hair", 2)],
    "p1": [("1girl", 1), ("red_hair", 2), ("blue_eyes", 3), ("smile", 4)],
    "p2": [("cat", 0)],
}
N_PROMPT_TAGS = {"p0": 3, "p1": 5, "p2": 1}
HITS = {
    ("A", "p0", 10): [1, 1, 0], ("A", "p0", 20): [1, 1, 1],
    ("A", "p1", 10): [1, 0, 1, 0], ("A", "p1", 20): [1, 1, 1, 1],
    ("A", "p2", 10): [1], ("A", "p2", 20): [0],
    ("B", "p0", 10): [1, 0, 0], ("B", "p0", 20): [0, 1, 0],
    ("B", "p1", 10): [1, 1, 1, 0], ("B", "p1", 20): [1, 1, 1, 1],
    ("B", "p2", 10): [0], ("B", "p2", 20): [1],
    ("C", "p0", 10): [1, 1, 1], ("C", "p0", 20): [1, 0, 1],
    ("C", "p1", 10): [0, 0, 1, 0], ("C", "p1", 20): [1, 1, 0, 0],
    ("C", "p2", 10): [1],
}  # fmt: skip


def cells() -> list[tuple[str, str, int]]:
    """Every (model, prompt, seed) that has an image (the broken one included)."""
    return [key for key in itertools.product(MODELS, PROMPTS, SEEDS) if key != MISSING]


def tag_details(key) -> dict:
    prompt = key[1]
    hits = HITS[key]
    return {
        "threshold": 0.35,
        "provider": "CPUExecutionProvider",
        "n_prompt_tags": N_PROMPT_TAGS[prompt],
        "n_countable": len(hits),
        "n_found": int(sum(hits)),
        "tags": [
            {"tag": tag, "position": pos, "probability": 0.9 if h else 0.1, "hit": bool(h)}
            for (tag, pos), h in zip(TAG_POSITIONS[prompt], hits, strict=True)
        ],
    }


def build(
    store,
    order: list[int] | None = None,
    id_offset: int = 0,
    names=None,
    prompts_reversed: bool = False,
) -> dict:
    """Insert the workspace; ``order`` permutes the insertion order of the images,
    ``id_offset`` shifts their ids, ``names`` renames the models, ``prompts_reversed``
    inserts the prompts last first (other prompt ids). Returns key -> image id."""
    names = dict(zip(MODELS, names or MODELS, strict=True))
    inserted = PROMPTS[::-1] if prompts_reversed else PROMPTS
    store.add_prompts(
        [PromptRow(TEXT[p], p, TEXT[p], "anime") for p in inserted], prompt_set="fixture"
    )
    pids = store.prompt_ids("fixture")
    prompt_id = {p: pids[("fixture", p)] for p in PROMPTS}
    model_id = {m: store.add_model(names[m], "import") for m in MODELS}
    keys = cells()
    order = list(range(len(keys))) if order is None else order
    ids = {}
    with store.session() as s:
        for k, at in enumerate(order):
            key = keys[at]
            model, prompt, seed = key
            image_id = id_offset + 1 + k * 3
            s.add(
                db.Image(
                    id=image_id,
                    sha256=f"{model}{prompt}{seed}".ljust(64, "0"),
                    model_id=model_id[model],
                    prompt_id=prompt_id[prompt],
                    seed=seed,
                    width=8,
                    height=8,
                    broken="black" if key == BROKEN else None,
                )
            )
            ids[key] = image_id
        for key, image_id in ids.items():
            s.add(
                db.Score(
                    image_id=image_id, metric="sharpness", version="1",
                    value=SHARPNESS[key], higher_is_better=True,
                )
            )  # fmt: skip
            s.add(
                db.Score(
                    image_id=image_id, metric="anomaly", version="1",
                    value=ANOMALY[key], higher_is_better=False,
                )
            )  # fmt: skip
            details = tag_details(key)
            s.add(
                db.Score(
                    image_id=image_id,
                    metric="tags",
                    version="wd14-moat-v2.t0.35.p1",
                    value=float(np.mean(HITS[key])),
                    higher_is_better=True,
                    details=details,
                )
            )
    return ids


def mean_over(table: dict, model: str, keys) -> float:
    return float(np.mean([table[(model, p, s)] for p, s in keys]))


def add_votes(store, ids: dict, rounds: int = 3) -> int:
    """Votes on every pair of models at every cell both have a non-broken image of: the
    model with the higher sharpness wins (so the board has every model rated). ``rounds``
    votes per (pair, cell), each by its own simulated rater."""
    from datetime import datetime, timedelta

    from arena.storage.rater_verbs import VotedBattle

    pids = store.prompt_ids("fixture")
    t0 = datetime(2025, 1, 1)
    rows = []
    usable = {k: v for k, v in ids.items() if k != BROKEN}
    raters = [store.rater_id(f"sim-{r}", kind="simulated") for r in range(rounds)]
    for (a, b), prompt, seed in itertools.product(
        itertools.combinations(MODELS, 2), PROMPTS, SEEDS
    ):
        left, right = (a, prompt, seed), (b, prompt, seed)
        if left not in usable or right not in usable:
            continue
        outcome = "left" if SHARPNESS[left] > SHARPNESS[right] else "right"
        for r, rater in enumerate(raters):
            at = t0 + timedelta(minutes=len(rows))
            rows.append(
                VotedBattle(
                    pids[("fixture", prompt)], usable[left], usable[right], rater,
                    outcome if r < rounds - 1 or rounds == 1 else "tie", 2000, at,
                    at + timedelta(seconds=2),
                )
            )  # fmt: skip
    return store.add_voted_battles(rows)
