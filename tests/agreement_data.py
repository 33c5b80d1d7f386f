"""Synthetic arena data with a known hidden truth, as the store's frames (vectorised).

Each image has a hidden quality ``q = strength[model] + N(0, image_sd²)``. A
vote shows two images of one prompt from two different models; the rater sees
``u = q_left - q_right + N(0, rater_sd²)`` and votes tie when ``|u| < tie_band``,
else for the side with the larger value. A metric is a noisy copy of the truth:
``score = q + bias[metric, model] + N(0, noise²)``. Used by tests/test_agreement.py
and benchmarks/agreement.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass
class SyntheticArena:
    votes: pd.DataFrame
    scores: pd.DataFrame
    images: pd.DataFrame
    prompts: pd.DataFrame
    quality: np.ndarray  # hidden quality per image (indexed by image_id - 1)
    strength: np.ndarray  # hidden strength per model


def synthetic_arena(
    rng: np.random.Generator,
    n_models: int = 6,
    n_prompts: int = 200,
    n_votes: int = 5000,
    n_raters: int = 50,
    strength_sd: float = 1.0,
    image_sd: float = 1.0,
    rater_sd: float = 0.0,
    tie_band: float = 0.0,
    metric_noise: dict[str, float] | None = None,
    metric_model_bias: dict[str, float] | None = None,
    categories: tuple[str, ...] = ("anime", "photo", "scene"),
    left_bias: float = 0.0,
) -> SyntheticArena:
    """Frames shaped like ``store.votes_frame()`` etc. (one image per model and prompt).

    ``left_bias`` is added to ``u`` (a rater preference for the left image).
    """
    metric_noise = {"truth_copy": 0.5} if metric_noise is None else metric_noise
    metric_model_bias = metric_model_bias or {}
    models = [f"model-{k:02d}" for k in range(n_models)]
    strength = rng.normal(0.0, strength_sd, n_models)
    n_images = n_models * n_prompts
    image_model = np.tile(np.arange(n_models), n_prompts)
    image_prompt = np.repeat(np.arange(n_prompts), n_models)
    quality = strength[image_model] + rng.normal(0.0, image_sd, n_images)
    image_id = np.arange(1, n_images + 1)
    prompt_id = np.arange(1, n_prompts + 1)

    p = rng.integers(0, n_prompts, n_votes)
    a = rng.integers(0, n_models, n_votes)
    b = (a + rng.integers(1, n_models, n_votes)) % n_models
    left_img = p * n_models + a  # 0-based image index
    right_img = p * n_models + b
    u = quality[left_img] - quality[right_img] + left_bias
    if rater_sd > 0:
        u = u + rng.normal(0.0, rater_sd, n_votes)
    outcome = np.where(np.abs(u) < tie_band, "tie", np.where(u > 0, "left", "right"))
    category = np.asarray(categories, dtype=object)[np.arange(n_prompts) % len(categories)]
    n_tags = 1 + (np.arange(n_prompts) * 7) % 20
    votes = pd.DataFrame(
        {
            "vote_id": np.arange(1, n_votes + 1),
            "battle_id": np.arange(1, n_votes + 1),
            "created_at": pd.Timestamp("2025-01-01")
            + pd.to_timedelta(np.arange(n_votes), unit="s"),
            "outcome": outcome,
            "rater_id": rng.integers(1, n_raters + 1, n_votes),
            "rater_kind": "simulated",
            "prompt_id": prompt_id[p],
            "prompt_set": "synthetic",
            "category": category[p],
            "left_image_id": image_id[left_img],
            "right_image_id": image_id[right_img],
            "left_model": np.asarray(models, dtype=object)[a],
            "right_model": np.asarray(models, dtype=object)[b],
            "left_sha256": [f"{i:064x}" for i in image_id[left_img]],
            "right_sha256": [f"{i:064x}" for i in image_id[right_img]],
        }
    )
    score_frames = []
    for name, noise in metric_noise.items():
        bias = rng.normal(0.0, metric_model_bias.get(name, 0.0), n_models)
        value = quality + bias[image_model] + rng.normal(0.0, noise, n_images)
        score_frames.append(
            pd.DataFrame(
                {
                    "image_id": image_id,
                    "metric": name,
                    "version": "1",
                    "value": value,
                    "higher_is_better": True,
                }
            )
        )
    scores = (
        pd.concat(score_frames, ignore_index=True)
        if score_frames
        else pd.DataFrame(columns=["image_id", "metric", "version", "value", "higher_is_better"])
    )
    images = pd.DataFrame(
        {
            "image_id": image_id,
            "sha256": [f"{i:064x}" for i in image_id],
            "model": np.asarray(models, dtype=object)[image_model],
            "model_kind": "demo",
            "prompt_id": prompt_id[image_prompt],
            "seed": 0,
            "width": 64,
            "height": 64,
            "broken": None,
        }
    )
    prompts = pd.DataFrame(
        {
            "prompt_id": prompt_id,
            "prompt_set": "synthetic",
            "external_id": [str(i) for i in prompt_id],
            "text": [f"prompt {i}" for i in prompt_id],
            "tags": [", ".join(f"tag{t}" for t in range(k)) for k in n_tags],
            "category": category,
        }
    )
    return SyntheticArena(votes, scores, images, prompts, quality, strength)


def small_arena(n_votes: int = 900, metric_noise: dict[str, float] | None = None):
    """The small arena the export and docs tests share: 4 models, 30 prompts, 12 raters."""
    return synthetic_arena(
        np.random.default_rng(3),
        n_models=4,
        n_prompts=30,
        n_votes=n_votes,
        n_raters=12,
        rater_sd=0.6,
        tie_band=0.2,
        metric_noise=metric_noise or {"sharp": 0.4, "vague": 2.0},
    )


def relabel_prompts(prompts: pd.DataFrame, *frames: pd.DataFrame, seed: int = 3):
    """``prompts`` and ``frames`` (each with a ``prompt_id`` column) as if the same prompts
    had been imported in another order: every prompt id moved (reversed and spread out,
    10000 + 7k) and every frame's rows shuffled. A number that moves under this follows a
    label, not the data."""
    moved = {p: 10_000 + 7 * k for k, p in enumerate(prompts["prompt_id"][::-1])}
    rng = np.random.default_rng(seed)
    out = []
    for frame in (prompts, *frames):
        frame = frame.assign(prompt_id=frame["prompt_id"].map(moved))  # NaN stays NaN
        out.append(frame.iloc[rng.permutation(len(frame))].reset_index(drop=True))
    return out


def benchmark_arena(
    n_votes: int = 1_000_000, n_models: int = 8, n_images: int = 160_000, n_metrics: int = 6
) -> SyntheticArena:
    """The benchmarks' big arena (``benchmarks/agreement.py``, ``gallery.py``,
    ``report.py``): one image per model and prompt, 5,000 raters with a spread of their
    own, ~9% ties, metrics of growing noise; seeded, so every benchmark builds the same."""
    return synthetic_arena(
        np.random.default_rng(0),
        n_models=n_models,
        n_prompts=n_images // n_models,
        n_votes=n_votes,
        n_raters=5000,
        rater_sd=0.5,
        tie_band=0.2,
        metric_noise={f"metric{k}": 0.25 * (k + 1) for k in range(n_metrics)},
    )


def populate_store(store, arena: SyntheticArena, chunk: int = 200_000) -> None:
    """Insert a synthetic arena into a real, empty workspace with bulk inserts.

    Other back ends (PostgreSQL) go through :func:`populate_any`.

    Rows go in through the DB-API ``executemany`` (tuples, SQLite's own text
    format for times and JSON), which is what makes a million-vote workspace
    take seconds instead of minutes. Ids are kept: image, prompt, rater and
    vote ids equal the frames' ids.
    """
    if not store.url.startswith("sqlite"):
        populate_any(store, arena)
        return
    now = "2025-01-01 00:00:00.000000"
    votes, images, prompts = arena.votes, arena.images, arena.prompts
    models = sorted(set(images["model"]))
    model_id = {m: k + 1 for k, m in enumerate(models)}
    raters = np.unique(votes["rater_id"].to_numpy())
    created = pd.to_datetime(votes["created_at"]).dt.strftime("%Y-%m-%d %H:%M:%S.%f").tolist()
    kind = str(votes["rater_kind"].iloc[0]) if len(votes) else "human"
    vote_ids = votes["vote_id"].to_numpy(np.int64).tolist()
    inserts = {
        "INSERT INTO models (id, name, kind, source, params, description, active, created_at) "
        "VALUES (?, ?, 'import', '', '{}', '', 1, ?)": [(model_id[m], m, now) for m in models],
        "INSERT INTO prompts (id, prompt_set, external_id, text, tags, category, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)": list(
            zip(
                prompts["prompt_id"].tolist(),
                prompts["prompt_set"].tolist(),
                prompts["external_id"].tolist(),
                prompts["text"].tolist(),
                prompts["tags"].tolist(),
                prompts["category"].tolist(),
                [now] * len(prompts),
                strict=True,
            )
        ),
        "INSERT INTO images (id, sha256, model_id, prompt_id, seed, width, height, "
        "settings_hash, params, broken, source_name, created_at) "
        "VALUES (?, ?, ?, ?, 0, 64, 64, '', '{}', NULL, '', ?)": list(
            zip(
                images["image_id"].tolist(),
                images["sha256"].tolist(),
                images["model"].map(model_id).tolist(),
                images["prompt_id"].tolist(),
                [now] * len(images),
                strict=True,
            )
        ),
        "INSERT INTO raters (id, external_id, kind, login, excluded, excluded_reason, "
        "exclusion_manual, created_at) VALUES (?, ?, ?, NULL, 0, '', 0, ?)": [
            (int(r), f"rater-{r}", kind, now) for r in raters
        ],
        "INSERT INTO battles (id, token, prompt_id, left_image_id, right_image_id, rater_id, "
        "policy, kind, gold_answer, served_at) "
        "VALUES (?, ?, ?, ?, ?, ?, 'uniform', 'normal', NULL, ?)": list(
            zip(
                vote_ids,
                [f"t{v}" for v in vote_ids],
                votes["prompt_id"].tolist(),
                votes["left_image_id"].tolist(),
                votes["right_image_id"].tolist(),
                votes["rater_id"].tolist(),
                created,
                strict=True,
            )
        ),
        "INSERT INTO votes (id, battle_id, rater_id, outcome, decision_ms, flag, created_at) "
        "VALUES (?, ?, ?, ?, 1500, NULL, ?)": list(
            zip(
                vote_ids,
                vote_ids,
                votes["rater_id"].tolist(),
                votes["outcome"].tolist(),
                created,
                strict=True,
            )
        ),
        "INSERT INTO scores (image_id, metric, version, value, higher_is_better, details, "
        "created_at) VALUES (?, ?, ?, ?, ?, NULL, ?)": list(
            zip(
                arena.scores["image_id"].tolist(),
                arena.scores["metric"].tolist(),
                arena.scores["version"].tolist(),
                arena.scores["value"].tolist(),
                [bool(h) for h in arena.scores["higher_is_better"]],
                [now] * len(arena.scores),
                strict=True,
            )
        ),
    }
    raw = store.engine.raw_connection()
    try:
        cursor = raw.cursor()
        for sql, rows in inserts.items():
            for start in range(0, len(rows), chunk):
                cursor.executemany(sql, rows[start : start + chunk])
        raw.commit()
    finally:
        raw.close()


def populate_any(store, arena: SyntheticArena) -> None:
    """The same rows as :func:`populate_store` through SQLAlchemy Core, on any back end.

    Slower (for small arenas in tests): Python values, the dialect's own formats.
    PostgreSQL's id sequences are moved past the inserted ids.
    """
    from datetime import datetime

    from sqlalchemy import insert, text

    from arena.storage import db

    now = datetime(2025, 1, 1)
    votes, images, prompts = arena.votes, arena.images, arena.prompts
    models = sorted(set(images["model"]))
    model_id = {m: k + 1 for k, m in enumerate(models)}
    kind = str(votes["rater_kind"].iloc[0]) if len(votes) else "human"
    created = pd.to_datetime(votes["created_at"]).dt.to_pydatetime().tolist()
    vote_ids = votes["vote_id"].astype(int).tolist()
    rows = {
        db.Model: [
            {"id": model_id[m], "name": m, "kind": "import", "created_at": now} for m in models
        ],
        db.Prompt: [
            {
                "id": int(r.prompt_id),
                "prompt_set": r.prompt_set,
                "external_id": r.external_id,
                "text": r.text,
                "tags": r.tags,
                "category": r.category,
                "created_at": now,
            }
            for r in prompts.itertuples()
        ],
        db.Image: [
            {
                "id": int(r.image_id),
                "sha256": r.sha256,
                "model_id": model_id[r.model],
                "prompt_id": int(r.prompt_id),
                "seed": 0,
                "width": 64,
                "height": 64,
                "params": {},
                "created_at": now,
            }
            for r in images.itertuples()
        ],
        db.Rater: [
            {"id": int(r), "external_id": f"rater-{r}", "kind": kind, "created_at": now}
            for r in np.unique(votes["rater_id"].to_numpy())
        ],
        db.Battle: [
            {
                "id": v,
                "token": f"t{v}",
                "prompt_id": int(p),
                "left_image_id": int(left),
                "right_image_id": int(right),
                "rater_id": int(r),
                "policy": "uniform",
                "kind": "normal",
                "served_at": t,
            }
            for v, p, left, right, r, t in zip(
                vote_ids,
                votes["prompt_id"],
                votes["left_image_id"],
                votes["right_image_id"],
                votes["rater_id"],
                created,
                strict=True,
            )
        ],
        db.Vote: [
            {
                "id": v,
                "battle_id": v,
                "rater_id": int(r),
                "outcome": o,
                "decision_ms": 1500,
                "created_at": t,
            }
            for v, r, o, t in zip(
                vote_ids, votes["rater_id"], votes["outcome"], created, strict=True
            )
        ],
        db.Score: [
            {
                "image_id": int(i),
                "metric": m,
                "version": ver,
                "value": None if pd.isna(x) else float(x),
                "higher_is_better": bool(h),
                "created_at": now,
            }
            for i, m, ver, x, h in zip(
                arena.scores["image_id"],
                arena.scores["metric"],
                arena.scores["version"],
                arena.scores["value"],
                arena.scores["higher_is_better"],
                strict=True,
            )
        ],
    }
    with store.engine.begin() as conn:
        for model, values in rows.items():
            if values:
                conn.execute(insert(model.__table__), values)
        if conn.dialect.name == "postgresql":
            for model in rows:
                table = model.__tablename__
                conn.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT COALESCE(MAX(id), 0) + 1 FROM {table}), false)"
                    )
                )
