"""Matchmaking on a real SQLite workspace: uniform is uniform, balanced evens out, never a
self-pair, a reference model or a broken image, never the same image pair twice to a rater."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sqlalchemy import select

from arena.stats.pairs import pair_index
from arena.storage import db
from arena.voting.battles import record_vote, serve_battle
from arena.voting.matchmaking import (
    BalancedPolicy,
    Matchmaker,
    NoPairAvailable,
    UniformPolicy,
    make_policy,
)
from tests.arena_fixtures import build_fixture

FOUR = ("zephyrquokka-v3", "marmalade-basilisk-xl", "tundrafinch-turbo", "cobalt-wombat-2")


def model_pair(fx, pairing) -> tuple[str, str]:
    return fx.images[pairing.left_image_id][0], fx.images[pairing.right_image_id][0]


def test_uniform_pairs_sides_and_prompts_are_uniform(store):
    fx = build_fixture(store, FOUR, n_prompts=5, seeds=2)
    mm = Matchmaker(store, UniformPolicy(), np.random.default_rng(1))
    draws = [mm.choose(rater_id=1) for _ in range(3000)]
    pairs = [tuple(sorted(model_pair(fx, d))) for d in draws]
    assert all(a != b for a, b in pairs)
    names, counts = np.unique(np.array([f"{a}|{b}" for a, b in pairs]), return_counts=True)
    assert len(names) == 6
    assert stats.chisquare(counts).pvalue > 1e-3, counts
    # Left/right is a fair coin per model: the alphabetically first model is left half the time.
    first_left = sum(model_pair(fx, d)[0] == min(model_pair(fx, d)) for d in draws)
    assert stats.binomtest(first_left, len(draws)).pvalue > 1e-3
    # Prompts are uniform within the pairs.
    _, prompt_counts = np.unique([d.prompt_id for d in draws], return_counts=True)
    assert stats.chisquare(prompt_counts).pvalue > 1e-3
    assert {d.policy for d in draws} == {"uniform"}


def test_uniform_test_can_fail_on_a_skewed_policy(store):
    """The chi-square check above has power: a policy skewed to one pair is caught."""
    fx = build_fixture(store, FOUR, n_prompts=3, seeds=1)

    class Skewed(UniformPolicy):
        def probabilities(self, stats_):
            p = super().probabilities(stats_)
            p[0] *= 1.3
            return p / p.sum()

    mm = Matchmaker(store, Skewed(), np.random.default_rng(2))
    pairs = [tuple(sorted(model_pair(fx, mm.choose(1)))) for _ in range(3000)]
    _, counts = np.unique(np.array([f"{a}|{b}" for a, b in pairs]), return_counts=True)
    assert stats.chisquare(counts).pvalue < 1e-3


def test_never_self_pairs_reference_or_broken(store):
    fx = build_fixture(store, FOUR, n_prompts=4, seeds=3)
    for policy in (UniformPolicy(), BalancedPolicy()):
        mm = Matchmaker(store, policy, np.random.default_rng(3))
        for _ in range(500):
            d = mm.choose(rater_id=7)
            assert d.left_image_id in fx.images and d.right_image_id in fx.images
            a, b = model_pair(fx, d)
            assert a != b
            assert fx.images[d.left_image_id][1] == fx.images[d.right_image_id][1] == d.prompt_id
            assert not {d.left_image_id, d.right_image_id} & (fx.broken | fx.reference_images)


def test_balanced_evens_out_counts(store):
    fx = build_fixture(store, FOUR, n_prompts=4, seeds=2)
    mm = Matchmaker(store, BalancedPolicy(), np.random.default_rng(4))
    counts: dict[tuple[str, str], int] = {}
    for k in range(60):
        d = mm.choose(rater_id=k)  # fresh raters: only the balance matters here
        token = f"t{k}"
        mm.note_served(k, token, d)
        mm.note_vote(token, d.left_image_id, d.right_image_id)
        pair = tuple(sorted(model_pair(fx, d)))
        counts[pair] = counts.get(pair, 0) + 1
        assert max(counts.values()) - min(counts.get(p, 0) for p in counts) <= 1
    assert sorted(counts.values()) == [10] * 6


def test_balanced_counts_pending_battles(store):
    """Concurrent raters: served-but-unvoted battles count, so no pair is served twice first."""
    fx = build_fixture(store, FOUR, n_prompts=4, seeds=2)
    mm = Matchmaker(store, BalancedPolicy(), np.random.default_rng(5))
    seen = []
    for k in range(6):
        d = mm.choose(rater_id=k)
        mm.note_served(k, f"t{k}", d)
        seen.append(tuple(sorted(model_pair(fx, d))))
    assert len(set(seen)) == 6


def test_balanced_starts_from_stored_votes(store):
    fx = build_fixture(store, FOUR[:3], n_prompts=3, seeds=2)
    uniform = Matchmaker(store, UniformPolicy(), np.random.default_rng(6))
    # Store 12 real votes, all on the first two models' pair.
    names = sorted(fx.model_ids)
    target = {names[0], names[1]}
    stored = 0
    while stored < 12:
        view = serve_battle(store, "rater-aaaaaaaa", uniform)
        with store.session() as s:
            from arena.storage import db

            b = s.query(db.Battle).filter_by(token=view.token).one()
            pair = {fx.images[b.left_image_id][0], fx.images[b.right_image_id][0]}
        if pair == target:
            record_vote(store, view.token, "rater-aaaaaaaa", "left", 2000)
            stored += 1
    balanced = Matchmaker(store, BalancedPolicy(), np.random.default_rng(7))
    votes = balanced.stats().votes
    assert votes.sum() == 24 and votes.max() == 12
    for k in range(20):
        assert set(model_pair(fx, balanced.choose(rater_id=100 + k))) != target


def test_no_repeated_image_pair_per_rater_until_exhausted(store):
    fx = build_fixture(store, FOUR[:3], n_prompts=2, seeds=2)
    mm = Matchmaker(store, UniformPolicy(), np.random.default_rng(8))
    shown = []
    while True:
        try:
            view = serve_battle(store, "rater-bbbbbbbb", mm)
        except Exception as exc:  # BattleError(no_battle) once every pair is seen
            assert getattr(exc, "reason", None) == "no_battle"
            break
        with store.session() as s:
            battle = s.scalar(select(db.Battle).where(db.Battle.token == view.token))
            shown.append(frozenset((battle.left_image_id, battle.right_image_id)))
    # 3 model pairs x 2 prompts x 2 x 2 images = 24 distinct image pairs, each shown once.
    assert len(shown) == 24 == len(set(shown))
    # Another rater still gets battles; a new matchmaker (restart) remembers from the database.
    serve_battle(store, "rater-cccccccc", mm)
    restarted = Matchmaker(store, UniformPolicy(), np.random.default_rng(9))
    rater = store.rater_id("rater-bbbbbbbb")
    with pytest.raises(NoPairAvailable):
        restarted.choose(rater)
    assert len(fx.images) == 3 * 2 * 2


def test_missing_prompts_only_shared_prompts_are_used(store):
    names = FOUR
    # cobalt-wombat-2 lacks prompts 0-2; tundrafinch-turbo has only prompt 0.
    fx = build_fixture(
        store,
        names,
        n_prompts=4,
        seeds=1,
        missing={"cobalt-wombat-2": {0, 1, 2}, "tundrafinch-turbo": {1, 2, 3}},
    )
    mm = Matchmaker(store, UniformPolicy(), np.random.default_rng(10))
    stats_ = mm.stats()
    pos = {name: k for k, name in enumerate(stats_.model_names)}
    # tundrafinch (prompt 0 only) and cobalt (prompt 3 only) share nothing.
    assert not stats_.available[pos["tundrafinch-turbo"], pos["cobalt-wombat-2"]]
    assert stats_.available.sum() == 2 * 5
    seen_pairs = set()
    for _ in range(400):
        d = mm.choose(rater_id=1)
        a, b = model_pair(fx, d)
        seen_pairs.add(frozenset((a, b)))
        prompt_index = fx.prompt_ids.index(d.prompt_id)
        if "cobalt-wombat-2" in (a, b):
            assert prompt_index == 3
        if "tundrafinch-turbo" in (a, b):
            assert prompt_index == 0
    assert len(seen_pairs) == 5


def test_too_few_models_is_a_clear_error(store):
    build_fixture(store, FOUR[:1], n_prompts=2, seeds=1)
    mm = Matchmaker(store, UniformPolicy(), np.random.default_rng(0))
    with pytest.raises(NoPairAvailable, match="at least two models"):
        mm.choose(1)


def test_index_refreshes_when_images_change(store):
    fx = build_fixture(store, FOUR[:2], n_prompts=2, seeds=1)
    mm = Matchmaker(store, UniformPolicy(), np.random.default_rng(0), refresh_seconds=0)
    assert mm.stats().available.shape == (2, 2)
    extra = build_fixture(
        store, ("violet-pangolin-9",), n_prompts=2, seeds=1, seed=5, with_reference=False
    )
    assert mm.stats().available.shape == (3, 3)
    # Marking an image broken removes it from the index.
    from arena.storage import db

    victim = next(iter(extra.images))
    with store.session() as s:
        s.get(db.Image, victim).broken = "nan"
    for _ in range(200):
        d = mm.choose(1)
        assert victim not in (d.left_image_id, d.right_image_id)
    assert fx.model_ids


def test_seeded_matchmaker_is_reproducible(store):
    build_fixture(store, FOUR, n_prompts=3, seeds=2)
    runs = []
    for _ in range(2):
        mm = Matchmaker(store, UniformPolicy(), np.random.default_rng(42))
        runs.append([mm.choose(1) for _ in range(50)])
    assert runs[0] == runs[1]


def test_policy_registry():
    assert make_policy("uniform").name == "uniform"
    assert make_policy("balanced").name == "balanced"
    with pytest.raises(ValueError, match="matchmaking policy 'nope'"):
        make_policy("nope")
    rows, cols = pair_index(4)
    assert list(zip(rows, cols, strict=True))[:3] == [(0, 1), (0, 2), (0, 3)]
