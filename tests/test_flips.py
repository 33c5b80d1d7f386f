"""How many votes hold the order (arena/stats/flips.py).

The exact counts are checked by hand on two models and against a brute force over every
subset of the individual votes (not cells) on three; the influence route against the
exact one on a seeded batch of small arenas, and every reported removal by a cold
``bt_fit`` refit.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from arena.stats import flips
from arena.stats.bradley_terry import RIDGE, bt_fit
from arena.stats.flips import FRAGILE_VOTES, FlipCount, adjacent_flips, fragile, top_flip
from arena.stats.pairs import PairCounts, aggregate

TOL = 1e-9


def counts_of(wins, ties=None, both_bad=None) -> PairCounts:
    wins = np.asarray(wins, dtype=np.int64)
    zero = np.zeros_like(wins)
    return PairCounts(
        wins,
        zero if ties is None else np.asarray(ties, dtype=np.int64),
        zero if both_bad is None else np.asarray(both_bad, dtype=np.int64),
    )


def random_counts(rng, n, votes, spread=0.5, tie_rate=0.15) -> PairCounts:
    theta = rng.normal(0.0, spread, n)
    left = rng.integers(0, n, votes)
    right = (left + rng.integers(1, n, votes)) % n
    p = 1.0 / (1.0 + np.exp(-(theta[left] - theta[right])))
    tie = rng.random(votes) < tie_rate
    outcome = np.where(tie, 2 + (rng.random(votes) < 0.3), np.where(rng.random(votes) < p, 0, 1))
    return aggregate(n, left, right, outcome)


def remaining(counts: PairCounts, removed: PairCounts) -> PairCounts:
    return PairCounts(
        counts.wins - removed.wins, counts.ties - removed.ties, counts.both_bad - removed.both_bad
    )


def assert_true_flip(counts: PairCounts, ties: str, flip: FlipCount) -> None:
    """The reported removal is within the counts, has ``votes`` votes and flips on a cold fit."""
    left = remaining(counts, flip.removed)
    for a in (left.wins, left.ties, left.both_bad):
        assert a.min() >= 0
    assert flip.removed.total == flip.votes
    theta = bt_fit(left.win_matrix(ties), tol=1e-13)
    assert theta[flip.lower] >= theta[flip.upper] - TOL


# -- by hand ---------------------------------------------------------------------------------
@pytest.mark.parametrize("ridge", [1e-6, RIDGE, 1.0])
@pytest.mark.parametrize("ties", ["split", "drop"])
def test_six_four_needs_two_of_the_leaders_wins_whatever_the_ridge(ridge, ties):
    """6-4: removing two of a's wins gives 4-4, equal θ (symmetry, any ridge); one gives
    5-4, a still ahead. Removing b's wins or ties only widens it or changes nothing."""
    counts = counts_of([[0, 6], [4, 0]], ties=[[0, 3], [3, 0]], both_bad=[[0, 2], [2, 0]])
    in_fit = 15 if ties == "split" else 10
    for budget in (flips.EXACT_BUDGET, 0):
        (flip,) = adjacent_flips(counts, ties, [True, True], exact_budget=budget, ridge=ridge)
        assert (flip.upper, flip.lower, flip.votes) == (0, 1, 2)
        assert flip.method == ("exact" if budget else "influence, verified")
        assert flip.share == pytest.approx(2 / in_fit)
        assert flip.removed.wins.tolist() == [[0, 2], [0, 0]]
        assert flip.removed.ties.sum() == flip.removed.both_bad.sum() == 0
        top = top_flip(counts, ties, [True, True], exact_budget=budget, ridge=ridge)
        assert (top.upper, top.lower, top.votes) == (0, 1, 2)
    # the ridge keeps 5-4 apart and 4-4 level: checked directly
    five_four = bt_fit(np.array([[0, 5], [4, 0.0]]), ridge=ridge)
    assert five_four[0] - five_four[1] > 1e-3


def test_a_huge_margin_is_flipped_only_by_removing_nearly_all_of_it():
    """50-1: only removing a's wins helps; 49 of them make it 1-1. Not "unflippable": once
    both models have no votes left, the ridge alone sets both θ to 0."""
    counts = counts_of([[0, 50], [1, 0]])
    exact = adjacent_flips(counts, "split", [True, True])[0]
    approx = adjacent_flips(counts, "split", [True, True], exact_budget=0)[0]
    assert (exact.votes, exact.method, exact.at_least) == (49, "exact", 49)
    assert (approx.votes, approx.at_least) == (49, 1)
    assert_true_flip(counts, "split", approx)


def test_equal_strengths_need_no_votes_and_few_ranked_models_give_nothing():
    counts = counts_of([[0, 3], [3, 0]])
    (flip,) = adjacent_flips(counts, "split", [True, True])
    assert (flip.votes, flip.method, flip.share) == (0, "exact", 0.0)
    assert adjacent_flips(counts, "split", [True, False]) == []
    assert top_flip(counts, "split", [False, True]) is None


def test_only_ranked_models_are_paired():
    """θ order 0 > 1 > 2 with 1 not ranked: the one adjacent pair is (0, 2)."""
    counts = counts_of([[0, 6, 8], [4, 0, 6], [2, 4, 0]])
    theta = bt_fit(counts.win_matrix("split"))
    assert theta[0] > theta[1] > theta[2]
    (flip,) = adjacent_flips(counts, "split", [True, False, True])
    assert (flip.upper, flip.lower) == (0, 2)
    assert_true_flip(counts, "split", flip)


def test_drop_mode_never_removes_ties_and_counts_decisive_votes_only():
    rng = np.random.default_rng(7)
    counts = random_counts(rng, 4, 40, tie_rate=0.4)
    decisive = counts.wins.sum()
    for flip in adjacent_flips(counts, "drop", np.ones(4, bool)):
        assert flip.removed.ties.sum() == flip.removed.both_bad.sum() == 0
        assert flip.share == pytest.approx(flip.votes / decisive)
        assert_true_flip(counts, "drop", flip)


def test_fragile_means_at_most_ten_votes():
    def flip(votes):
        return FlipCount(0, 1, votes, "exact", 0.0, votes or 0, None)

    assert FRAGILE_VOTES == 10
    assert fragile(flip(10)) and fragile(flip(0))
    assert not fragile(flip(11)) and not fragile(flip(None)) and not fragile(None)


# -- against an independent brute force ------------------------------------------------------
def single_votes(counts: PairCounts) -> list[tuple[int, int, str]]:
    """Every vote on its own: (i, j, "win") i beat j, (i, j, "tie"/"bad") for i < j."""
    n = counts.n_items
    votes = []
    for i, j in itertools.permutations(range(n), 2):
        votes += [(i, j, "win")] * int(counts.wins[i, j])
        if i < j:
            votes += [(i, j, "tie")] * int(counts.ties[i, j])
            votes += [(i, j, "bad")] * int(counts.both_bad[i, j])
    return votes


def brute_force(votes, n, ties, upper, others):
    """Fewest removed votes (all subsets, smallest first) after which a model of ``others``
    (in rank order) reaches ``upper``; and the best-ranked such model at that size."""
    for k in range(len(votes) + 1):
        found = set()
        for gone in itertools.combinations(range(len(votes)), k):
            w = np.zeros((n, n))
            for index in set(range(len(votes))) - set(gone):
                i, j, kind = votes[index]
                if kind == "win":
                    w[i, j] += 1
                elif ties == "split":
                    w[i, j] += 0.5
                    w[j, i] += 0.5
            theta = bt_fit(w, tol=1e-13)
            hit = [c for c in others if theta[c] >= theta[upper] - TOL]
            if hit:
                found.add(others.index(hit[0]))
                if len(others) == 1:
                    break
        if found:
            return k, others[min(found)]
    raise AssertionError("removing every vote always levels the models")


@pytest.mark.parametrize("seed", range(5))
def test_exact_counts_match_a_brute_force_over_vote_subsets(seed):
    rng = np.random.default_rng(seed)
    ties = ("split", "drop")[seed % 2]
    counts = random_counts(rng, 3, int(rng.integers(8, 11)), spread=0.3, tie_rate=0.25)
    ranked = np.ones(3, bool)
    theta = bt_fit(counts.win_matrix(ties))
    order = [int(i) for i in np.argsort(-theta, kind="stable")]
    votes = single_votes(counts)
    for (a, b), flip in zip(
        itertools.pairwise(order), adjacent_flips(counts, ties, ranked), strict=True
    ):
        assert (flip.upper, flip.lower, flip.method) == (a, b, "exact")
        assert flip.votes == brute_force(votes, 3, ties, a, [b])[0]
        assert_true_flip(counts, ties, flip)
    top = top_flip(counts, ties, ranked)
    assert top.method == "exact"
    assert (top.votes, top.lower) == brute_force(votes, 3, ties, order[0], order[1:])
    assert_true_flip(counts, ties, top)


def test_exact_cost_counts_the_bounded_multisets():
    """The budget check counts removals of 1..k−1 votes as an enumeration would."""
    counts = counts_of([[0, 2, 0], [1, 0, 3], [1, 0, 0]], ties=[[0, 0, 1], [0, 0, 0], [1, 0, 0]])
    fit = flips._Fit(counts, "split", None, RIDGE)
    cost = fit.exact_cost(7, 10**9, 1)
    cell_counts = fit.cells.count
    units = [c for c, m in enumerate(cell_counts) for _ in range(m)]
    for k in range(1, 7):
        sizes = range(1, k)
        expected = sum(len(set(itertools.combinations(units, s))) for s in sizes)
        assert cost[k] == expected
    assert fit.exact_cost(7, 5, 2) is None  # 5 cells + 13 pairs > 5


# -- the influence route ---------------------------------------------------------------------
def test_influence_counts_are_verified_upper_bounds_and_mostly_exact():
    rng = np.random.default_rng(2024)
    equal = total = 0
    for _ in range(30):
        counts = random_counts(rng, 4, int(rng.integers(15, 35)))
        ranked = np.ones(4, bool)
        exact = [*adjacent_flips(counts, "split", ranked, exact_budget=10**6)]
        exact.append(top_flip(counts, "split", ranked, exact_budget=10**6))
        approx = [*adjacent_flips(counts, "split", ranked, exact_budget=0)]
        approx.append(top_flip(counts, "split", ranked, exact_budget=0))
        for e, a in zip(exact, approx, strict=True):
            assert e.method == "exact"
            assert a.method == "influence, verified" or a.votes <= 1  # 1: nothing smaller
            assert a.votes >= e.votes
            assert a.at_least <= e.votes
            assert_true_flip(counts, "split", a)
            assert_true_flip(counts, "split", e)
            if e.votes >= 2:  # 0 and 1 vote: nothing smaller, both routes agree by design
                total += 1
                equal += a.votes == e.votes
    assert total >= 40
    assert equal >= 0.8 * total, (equal, total)


def test_relabelling_models_does_not_change_the_counts():
    rng = np.random.default_rng(11)
    counts = random_counts(rng, 6, 400, spread=0.4)
    perm = rng.permutation(6)  # model m becomes perm[m]
    inv = np.argsort(perm)
    moved = PairCounts(
        *(np.asarray(a)[np.ix_(inv, inv)] for a in (counts.wins, counts.ties, counts.both_bad))
    )
    ranked = np.array([True, True, False, True, True, True])
    for budget in (flips.EXACT_BUDGET, 0):
        before = adjacent_flips(counts, "split", ranked, exact_budget=budget)
        after = adjacent_flips(moved, "split", ranked[inv], exact_budget=budget)
        assert [(perm[f.upper], perm[f.lower], f.votes) for f in before] == [
            (f.upper, f.lower, f.votes) for f in after
        ]
        t0, t1 = top_flip(counts, "split", ranked), top_flip(moved, "split", ranked[inv])
        assert (perm[t0.upper], perm[t0.lower], t0.votes) == (t1.upper, t1.lower, t1.votes)


def test_a_large_arena_gets_verified_flips_from_the_precomputed_fit():
    """30 models, 60,000 votes: an exact search fits the budget only where one vote flips
    (nothing smaller to check); every removal flips on a cold refit, passing the
    ratings' θ changes nothing, and the closest pair is easier to flip than the widest."""
    rng = np.random.default_rng(3)
    counts = random_counts(rng, 30, 60_000, spread=1.0, tie_rate=0.1)
    ranked = np.ones(30, bool)
    result = adjacent_flips(counts, "split", ranked)
    theta = bt_fit(counts.win_matrix("split"))
    assert [f.votes for f in adjacent_flips(counts, "split", ranked, theta=theta)] == [
        f.votes for f in result
    ]
    for flip in [*result, top_flip(counts, "split", ranked)]:
        assert flip.votes >= 1
        assert flip.method == ("exact" if flip.votes == 1 else "influence, verified")
        assert_true_flip(counts, "split", flip)
    gaps = [theta[f.upper] - theta[f.lower] for f in result]
    assert result[int(np.argmin(gaps))].votes < result[int(np.argmax(gaps))].votes


def test_one_votes_influence_matches_the_refit():
    """The first-order gap change per removed vote, ``(e_a − e_b)ᵀ H⁻¹ ∇f_c``, for every
    cell (wins both ways, merged ties) against refitting without that vote."""
    rng = np.random.default_rng(5)
    counts = random_counts(rng, 5, 5_000, spread=0.8, tie_rate=0.3)
    fit = flips._Fit(counts, "split", None, RIDGE)
    cells, theta = fit.cells, fit.theta
    a, b = (int(i) for i in np.argsort(-theta)[:2])
    e = np.zeros(5)
    e[a], e[b] = 1.0, -1.0
    predicted = flips._influence(cells, theta, np.linalg.solve(fit.hessian, e))
    actual = []
    for c in range(len(cells.count)):
        one = np.zeros(len(cells.count), dtype=np.int64)
        one[c] = 1
        refit = bt_fit(counts.win_matrix("split") - cells.delta(one), tol=1e-13)
        actual.append((refit[a] - refit[b]) - (theta[a] - theta[b]))
    assert cells.tie.sum() == 10 and (~cells.tie).sum() == 20
    np.testing.assert_allclose(predicted, actual, rtol=0.02, atol=1e-7)
