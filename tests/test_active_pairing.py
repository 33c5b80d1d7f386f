"""The active policy over a real database: counts, fallback, allocation, exclusions."""

import time
import uuid

import numpy as np
import pytest
from PIL import Image

from arena.stats.pairs import aggregate, encode_outcomes, index_items, pair_index
from arena.storage import db
from arena.storage.store import PromptRow
from arena.voting.active_pairing import ActivePolicy, load_pair_counts
from arena.voting.matchmaking import BalancedPolicy, PairStats, make_policy

STRENGTH = {"m0": 2.0, "m1": 0.05, "m2": 0.0, "m3": -2.0}


@pytest.fixture
def arena(store):
    names = list(STRENGTH)
    model_ids = tuple(store.add_model(n, "import") for n in names)
    store.add_prompts([PromptRow(f"p{k}", f"p{k}") for k in range(3)], "s")
    pid = store.prompt_ids()[("s", "p0")]
    images = [
        store.add_image(mid, pid, store.images.put_image(Image.new("RGB", (4, 4), (k * 60, 0, 0))))
        for k, mid in enumerate(model_ids)
    ]
    rng = np.random.default_rng(0)
    raters = [store.rater_id(f"r{k}") for k in range(3)]
    with store.session() as s:
        for _ in range(240):
            a, b = rng.choice(4, 2, replace=False)
            p = 1 / (1 + np.exp(STRENGTH[names[b]] - STRENGTH[names[a]]))
            outcome = "tie" if rng.random() < 0.1 else ("left" if rng.random() < p else "right")
            rater = raters[int(rng.integers(3))]
            battle = db.Battle(
                token=uuid.uuid4().hex,
                prompt_id=pid,
                left_image_id=images[a],
                right_image_id=images[b],
                rater_id=rater,
                policy="test",
            )
            s.add(battle)
            s.flush()
            s.add(db.Vote(battle_id=battle.id, rater_id=rater, outcome=outcome, decision_ms=2000))
    return store, model_ids, names


def _stats(store, model_ids, names, available=None):
    counts = load_pair_counts(store, model_ids).battles
    avail = np.ones((4, 4), bool) if available is None else available
    return PairStats(model_ids, tuple(names), counts, np.zeros((4, 4)), avail)


def test_counts_equal_the_ratings_aggregation_of_the_votes_frame(arena):
    store, model_ids, names = arena
    frame = store.votes_frame()
    _, left, right = index_items(frame["left_model"], frame["right_model"], names)
    expected = aggregate(4, left, right, encode_outcomes(frame["outcome"]))
    got = load_pair_counts(store, model_ids)
    for field in ("wins", "ties", "both_bad"):
        assert np.array_equal(getattr(got, field), getattr(expected, field)), field


def test_below_the_minimum_it_is_balanced(arena):
    store, model_ids, names = arena
    policy = ActivePolicy(store.with_settings(active_min_votes=10_000), background=False)
    stats = _stats(store, model_ids, names)
    assert np.array_equal(policy.probabilities(stats), BalancedPolicy().probabilities(stats))


def test_allocation_favours_the_close_pair_and_skips_unservable_ones(arena):
    store, model_ids, names = arena
    policy = ActivePolicy(store.with_settings(active_min_votes=10), background=False)
    available = np.ones((4, 4), bool)
    available[0, 3] = available[3, 0] = False
    stats = _stats(store, model_ids, names, available)
    probs = policy.probabilities(stats)
    rows, cols = pair_index(4)
    by_pair = dict(zip(zip(rows.tolist(), cols.tolist(), strict=True), probs, strict=True))
    assert probs.sum() == pytest.approx(1.0)
    assert by_pair[(0, 3)] == 0.0
    assert by_pair[(1, 2)] > by_pair[(0, 1)] and by_pair[(1, 2)] > by_pair[(2, 3)]
    assert policy._state.theta[0] > policy._state.theta[1] > policy._state.theta[3]


def test_excluded_raters_do_not_steer_the_allocation(arena):
    store, model_ids, _names = arena
    before = load_pair_counts(store, model_ids).total
    rater = store.votes_frame()["rater_id"].iloc[0]
    store.set_rater_exclusion(int(rater), True, "test")
    assert load_pair_counts(store, model_ids).total < before


def test_background_refresh_serves_balanced_until_ready(arena):
    store, model_ids, names = arena
    policy = make_policy("active", store.with_settings(active_min_votes=10))
    stats = _stats(store, model_ids, names)
    first = policy.probabilities(stats)
    assert first.sum() == pytest.approx(1.0)
    for _ in range(200):
        if policy._state is not None:
            break
        time.sleep(0.01)
    assert policy._state is not None
    assert policy.probabilities(stats).sum() == pytest.approx(1.0)


def test_active_choices_are_reproducible_for_a_seed(arena):
    """Two matchmakers with the same seed over the same votes serve the same battles."""
    from arena.voting.matchmaking import Matchmaker

    store, _model_ids, _names = arena
    store = store.with_settings(active_min_votes=10)

    def battles(seed):
        policy = ActivePolicy(store, background=False)
        mm = Matchmaker(store, policy, np.random.default_rng(seed))
        return [mm.choose(rater_id=1000 + k) for k in range(40)]

    first, again, other = battles(7), battles(7), battles(8)
    assert first == again
    assert first != other
    assert {p.policy for p in first} == {"active"}


def test_counts_for_a_subset_of_models_ignore_the_others(arena):
    """Votes involving a model outside ``model_ids`` are left out, the rest keep their place."""
    store, model_ids, _names = arena
    full = load_pair_counts(store, model_ids)
    keep = [2, 0, 3]  # a different order than the database ids
    subset = load_pair_counts(store, tuple(model_ids[k] for k in keep))
    grid = np.ix_(keep, keep)
    for field in ("wins", "ties", "both_bad"):
        assert np.array_equal(getattr(subset, field), getattr(full, field)[grid]), field
    assert subset.total < full.total
