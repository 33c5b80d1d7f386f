"""Krippendorff's α over image pairs does not depend on which image of a pair is "first".

Image ids follow import order, an arbitrary label; α symmetrises each pair's coincidences
over both orientations (:func:`arena.stats.agreement.pair_coincidences`). References: the
textbook coincidence-matrix computation written out below, and the ``krippendorff``
package on codings with a random orientation per pair.
"""

from __future__ import annotations

import krippendorff
import numpy as np
import pandas as pd
import pytest

from arena.stats import agreement as ag
from arena.stats import image_pairs
from arena.stats.pairs import encode_outcomes
from arena.stats.rater_quality import leave_one_out_agreement
from tests.agreement_data import synthetic_arena

N_MODELS = 4


def _strength_ordered_arena():
    """4 models far apart (strength sd 2), 40 prompts, ~30 raters per pair, ids by strength.

    The stronger model's image always has the higher id within a prompt (models
    imported weakest first), so in the id-ordered coding "the higher id won" dominates.
    """
    data = synthetic_arena(
        np.random.default_rng(7),
        n_models=N_MODELS,
        n_prompts=40,
        n_votes=8000,
        n_raters=400,
        strength_sd=2.0,
        image_sd=0.5,
        rater_sd=1.0,
        tie_band=0.3,
        metric_noise={"sharp": 0.5},
    )
    # synthetic ids: prompt * N_MODELS + model + 1; renumber by the models' strength rank.
    rank = np.argsort(np.argsort(data.strength))
    ids = data.images["image_id"].to_numpy()
    model = (ids - 1) % N_MODELS
    new = ids - model + rank[model]
    return _relabel(data.votes, data.scores, dict(zip(ids, new, strict=True)))


def _relabel(votes: pd.DataFrame, scores: pd.DataFrame, mapping: dict):
    votes = votes.assign(
        left_image_id=votes["left_image_id"].map(mapping),
        right_image_id=votes["right_image_id"].map(mapping),
    )
    return votes, scores.assign(image_id=scores["image_id"].map(mapping))


def _answers(votes: pd.DataFrame):
    """(unit, answer) of the latest vote per rater and image pair, id-ordered coding."""
    unit, answer = image_pairs.orient(
        votes["left_image_id"].to_numpy(),
        votes["right_image_id"].to_numpy(),
        encode_outcomes(votes["outcome"].to_numpy()),
    )
    keep = image_pairs.latest_per_rater(unit, votes["rater_id"].to_numpy())
    return unit[keep], answer[keep]


def _textbook_symmetrised_alpha(unit, answer) -> float:
    """Krippendorff (2011), nominal: o_ck = Σ_u Σ_{i≠j} [v_i=c][v_j=k] / (m_u - 1), each
    unit counted once as coded and once with the pair's images swapped (weights ½),
    n_c = Σ_k o_ck, α = 1 - (n - 1) Σ_{c≠k} o_ck / Σ_{c≠k} n_c n_k. Plain loops."""
    swap = {0: 1, 1: 0, 2: 2, 3: 3}
    values: dict[int, list[int]] = {}
    for u, v in zip(unit.tolist(), answer.tolist(), strict=True):
        values.setdefault(u, []).append(v)
    o = [[0.0] * 4 for _ in range(4)]
    for vs in values.values():
        m = len(vs)
        if m < 2:
            continue
        for i in range(m):
            for j in range(m):
                if i != j:
                    o[vs[i]][vs[j]] += 0.5 / (m - 1)
                    o[swap[vs[i]]][swap[vs[j]]] += 0.5 / (m - 1)
    n_c = [sum(row) for row in o]
    n = sum(n_c)
    observed = sum(o[c][k] for c in range(4) for k in range(4) if c != k)
    expected = sum(n_c[c] * n_c[k] for c in range(4) for k in range(4) if c != k)
    return 1.0 - (n - 1.0) * observed / expected


@pytest.fixture(scope="module")
def arena():
    return _strength_ordered_arena()


@pytest.fixture(scope="module")
def report(arena):
    votes, scores = arena
    return ag.agreement_report(votes, scores, np.random.default_rng(5), rounds=200)


def _relabellings(votes):
    ids = np.unique(np.r_[votes["left_image_id"], votes["right_image_id"]])
    shuffled = np.random.default_rng(13).permutation(ids)
    return {
        "reversed": dict(zip(ids, ids.max() + 1 - ids, strict=True)),
        "shuffled": dict(zip(ids, shuffled, strict=True)),
    }


@pytest.mark.parametrize("how", ["reversed", "shuffled"])
def test_pair_statistics_unchanged_when_image_ids_are_relabelled(arena, report, how):
    """α (point and prompt-bootstrap interval), the human ceiling, every accuracy and slice,
    and the raters' leave-one-out agreement: identical under any consistent relabelling."""
    votes, scores = arena
    mapping = _relabellings(votes)[how]
    votes2, scores2 = _relabel(votes, scores, mapping)
    again = ag.agreement_report(votes2, scores2, np.random.default_rng(5), rounds=200)
    rel, rel2 = report.reliability.iloc[0], again.reliability.iloc[0]
    for col in ("alpha", "alpha_low", "alpha_high"):
        assert rel2[col] == pytest.approx(rel[col], abs=1e-12)
    assert (rel2[["units", "votes", "raters"]] == rel[["units", "votes", "raters"]]).all()
    pd.testing.assert_frame_equal(again.accuracy, report.accuracy, rtol=0, atol=1e-12)
    pd.testing.assert_frame_equal(again.slices, report.slices, rtol=0, atol=1e-12)
    # The pure function too, on the relabelled answers.
    assert ag.krippendorff_alpha_pairs(*_answers(votes2)) == pytest.approx(rel.alpha, abs=1e-12)
    loo = leave_one_out_agreement(votes.assign(battle_kind="normal"))
    loo2 = leave_one_out_agreement(votes2.assign(battle_kind="normal"))
    assert len(loo) > 100
    pd.testing.assert_frame_equal(loo2, loo, rtol=0, atol=1e-12)


def test_alpha_equals_the_textbook_symmetrised_formula(arena, report):
    unit, answer = _answers(arena[0])
    expect = _textbook_symmetrised_alpha(unit, answer)
    assert ag.krippendorff_alpha_pairs(unit, answer) == pytest.approx(expect, abs=1e-12)
    assert report.reliability.alpha.iloc[0] == pytest.approx(expect, abs=1e-12)


def test_alpha_matches_krippendorff_package_on_random_orientations(arena, report):
    """The package on codings with each pair's orientation drawn at random (20 seeds).

    Swapping a pair permutes its values, so the observed disagreement D_o is the same in
    every coding; only the pooled frequencies move. With n_0, n_1 the pooled "first won"
    / "second won" counts, D_e(random) = D_e(sym) - x, x = (n_0 - n_1)² / 2, so each
    random α lies below ours by exactly (1 - α)·x / (D_e(sym) - x) ≥ 0 (checked against
    the package to 1e-9 per seed). Over random orientations E[x] = V / 2,
    V = Σ_u (a_u - b_u)² (a_u, b_u: the unit's two decisive counts), and (n_0 - n_1)² / V
    is ≈ χ²₁, so the 20-seed mean of x exceeds 4·E[x] = 2V with probability ≈
    P(χ²₂₀ > 80) ≈ 1e-9. Since x ≪ D_e (V / D_e ≈ 0.004 here) the gap is linear in x to
    within a few per cent, hence the tolerance (1 - α)·2V / (D_e - 2V) on the mean gap
    (0.0042 here; the mean gap is 0.0008), 60 times smaller than the id-ordered coding's
    distance (asserted too).
    """
    unit, answer = _answers(arena[0])
    alpha = report.reliability.alpha.iloc[0]
    counts = np.zeros((unit.max() + 1, 4))
    np.add.at(counts, (unit, answer), 1.0)
    counts = counts[counts.sum(axis=1) >= 2]
    n = counts.sum()
    n_sym = counts.sum(axis=0)
    n_sym[:2] = n_sym[:2].sum() / 2
    d_e = n * n - np.sum(n_sym**2)
    v = np.sum((counts[:, 0] - counts[:, 1]) ** 2)
    gaps = []
    for seed in range(20):
        flip = np.random.default_rng(seed).random(len(counts)) < 0.5
        coded = counts.copy()
        coded[flip, 0], coded[flip, 1] = counts[flip, 1], counts[flip, 0]
        package = krippendorff.alpha(value_counts=coded, level_of_measurement="nominal")
        x = (coded[:, 0].sum() - coded[:, 1].sum()) ** 2 / 2
        assert alpha - package == pytest.approx((1 - alpha) * x / (d_e - x), abs=1e-9)
        gaps.append(alpha - package)
    tol = (1 - alpha) * 2 * v / (d_e - 2 * v)
    assert 0 <= np.mean(gaps) <= tol
    # The id-ordered coding (the old α) is far outside that noise.
    old = ag.krippendorff_alpha_nominal(unit, answer)
    assert alpha - old > 20 * tol


def test_old_id_ordered_coding_was_not_invariant(arena, report):
    """Models imported in strength order: coded by image id, "the higher id won" dominates
    and α collapses; coded by the reversed ids it is the same. Shuffled ids give another
    value. The symmetrised α is the same for all three and clearly positive."""
    votes, scores = arena
    old = {"strength order": ag.krippendorff_alpha_nominal(*_answers(votes))}
    for how, mapping in _relabellings(votes).items():
        old[how] = ag.krippendorff_alpha_nominal(*_answers(_relabel(votes, scores, mapping)[0]))
    alpha = report.reliability.alpha.iloc[0]
    # Here α = 0.458; the id-ordered coding gave 0.195 (strength order and its reverse)
    # and 0.458 (shuffled ids, which happen to balance the two directions).
    assert alpha > 0.4
    assert alpha - old["strength order"] > 0.2
    assert old["reversed"] == pytest.approx(old["strength order"], abs=1e-12)
    assert old["shuffled"] - old["strength order"] > 0.2
    assert abs(old["shuffled"] - alpha) < abs(old["strength order"] - alpha)
