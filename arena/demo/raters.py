"""Simulated raters for the offline demo: votes drawn from the models' hidden strengths.

Simulated raters (kind ``simulated``) vote by a Davidson (Bradley-Terry with
ties) model on the hidden strengths: P(a wins) = pi_a / D, P(no decision) =
nu * sqrt(pi_a * pi_b) / D with pi = exp(strength); a no-decision is
"both_bad" with probability sigmoid(-(s_a + s_b)) and a "tie" otherwise. A
Bradley-Terry fit that counts ties as half a win each way recovers the order
of DEMO_TRUE_STRENGTH. Everything is deterministic from the seed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from arena.demo.models import DEMO_TRUE_STRENGTH
from arena.stats.pairs import OUTCOMES
from arena.storage.rater_verbs import VotedBattle
from arena.storage.store import Store, StoreError


def outcome_probabilities(s_a: float, s_b: float, tie_strength: float = 0.3) -> np.ndarray:
    """P(left, right, tie, both_bad) for strengths (s_a left, s_b right); Davidson ties."""
    pa, pb = np.exp(s_a), np.exp(s_b)
    nodecision = tie_strength * np.sqrt(pa * pb)
    total = pa + pb + nodecision
    both_bad = 1.0 / (1.0 + np.exp(s_a + s_b))
    return np.array(
        [pa / total, pb / total, nodecision * (1 - both_bad) / total, nodecision * both_bad / total]
    )


def simulate_votes(
    store: Store,
    n: int,
    seed: int = 0,
    strengths: dict[str, float] | None = None,
    n_raters: int = 20,
    tie_strength: float = 0.3,
) -> int:
    """Add ``n`` battles with votes by simulated raters; returns the number of votes written.

    Each battle: two distinct models drawn uniformly from those with a known
    strength, a prompt both have images for, one image of each, random sides;
    the outcome follows :func:`outcome_probabilities`. Written in bulk, in
    one transaction, with policy "simulated" and raters "sim-00", "sim-01", ...
    """
    if n <= 0:
        return 0
    strengths = DEMO_TRUE_STRENGTH if strengths is None else strengths
    rng = np.random.default_rng([seed, 7])
    images = store.images_frame()
    images = images[images.model.isin(list(strengths)) & (images.model_kind != "reference")]
    names = sorted(images.model.unique())
    if len(names) < 2:
        raise StoreError(
            "simulated votes need at least two demo models with images; run `arena demo` on "
            "an empty workspace first."
        )
    # image ids per (model, prompt); only prompts that several models have
    groups = images.groupby(["model", "prompt_id"]).image_id.apply(np.array).to_dict()
    pair_prompts = {}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            common = sorted({p for m, p in groups if m == a} & {p for m, p in groups if m == b})
            if common:
                pair_prompts[(a, b)] = np.array(common)
    pairs = list(pair_prompts)
    if not pairs:
        raise StoreError("no two demo models share a prompt; nothing to simulate.")
    with store.session() as s:
        rater_ids = [
            store.rater_id(f"sim-{k:02d}", kind="simulated", session=s) for k in range(n_raters)
        ]
    last = store.last_vote_at()
    now = datetime.now(UTC).replace(tzinfo=None)  # naive UTC, as the database keeps times
    start = max(now - timedelta(seconds=2 * n), (last or now) + timedelta(seconds=1))
    pair_idx = rng.integers(len(pairs), size=n)
    swap = rng.random(n) < 0.5
    raters = rng.choice(rater_ids, size=n)
    decision_ms = np.clip(rng.lognormal(np.log(3500), 0.5, size=n), 800, 60_000).astype(int)
    u = rng.random(n)
    rows = []
    for k in range(n):
        a, b = pairs[pair_idx[k]]
        if swap[k]:
            a, b = b, a
        prompt = int(rng.choice(pair_prompts[tuple(sorted((a, b)))]))
        left = int(rng.choice(groups[(a, prompt)]))
        right = int(rng.choice(groups[(b, prompt)]))
        probs = np.cumsum(outcome_probabilities(strengths[a], strengths[b], tie_strength))
        outcome = OUTCOMES[int(np.searchsorted(probs, u[k] * probs[-1], side="right"))]
        voted = start + timedelta(seconds=2 * k)
        rows.append(
            VotedBattle(
                prompt_id=prompt,
                left_image_id=left,
                right_image_id=right,
                rater_id=int(raters[k]),
                outcome=outcome,
                decision_ms=int(decision_ms[k]),
                served_at=voted - timedelta(milliseconds=int(decision_ms[k])),
                voted_at=voted,
                policy="simulated",
            )
        )
    return store.add_voted_battles(rows)
