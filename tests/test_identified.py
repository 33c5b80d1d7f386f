"""Ratings the votes do not determine: a model that never wins (or never loses).

Its maximum-likelihood rating is at -inf (+inf); the finite number the ridge gives it
is an artefact. It must be flagged, left without a rating, and kept out of the fit and
the centring of the others, so that their ratings do not move with the ridge.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from arena.reports.leaderboard import leaderboard_frame
from arena.stats import agreement as ag
from arena.stats import ratings as rt
from arena.stats.bradley_terry import identified
from tests.agreement_data import synthetic_arena


def test_identified_is_the_largest_set_linked_both_ways_by_wins():
    w = np.array([[0, 3, 2, 5], [1, 0, 2, 4], [2, 1, 0, 3], [0, 0, 0, 0.0]])
    assert identified(w).tolist() == [True, True, True, False]  # 3 never wins
    assert identified(w.T).tolist() == [True, True, True, False]  # 3 never loses
    w[3, 0] = 0.5  # half a win (a tie counted half each way) is enough
    assert identified(w).all()
    # Model 3's only win is over model 4, which never wins: 3 is not linked back either.
    chain = np.zeros((5, 5))
    chain[0, 1] = chain[1, 2] = chain[2, 0] = 2  # 0 -> 1 -> 2 -> 0
    chain[0, 3] = chain[3, 4] = chain[1, 4] = 3
    assert identified(chain).tolist() == [True, True, True, False, False]
    # Two groups, the first always beating the second: only the gap is unknown, the larger
    # group is kept, and a single model is never "identified" on its own.
    two = np.zeros((5, 5))
    two[0, 1] = two[1, 0] = two[1, 2] = two[2, 0] = 1  # 0,1,2 linked both ways
    two[3, 4] = two[4, 3] = 1
    two[:3, 3:] = 5
    assert identified(two).tolist() == [True, True, True, False, False]
    assert not identified(np.array([[0, 4], [0, 0.0]])).any()
    assert identified(np.zeros((0, 0))).shape == (0,)


def _votes_with_a_never_winner(seed: int = 0, n: int = 4000):
    """Four models with BT strengths, and 'blurry', which loses every battle."""
    rng = np.random.default_rng(seed)
    strength = np.array([0.5, 0.0, -0.3, 0.8])
    a = rng.integers(0, 5, n)
    b = (a + rng.integers(1, 5, n)) % 5
    names = np.array(["m0", "m1", "m2", "m3", "blurry"])
    sa, sb = strength[np.minimum(a, 3)], strength[np.minimum(b, 3)]
    p_left = np.where(a == 4, 0.0, np.where(b == 4, 1.0, 1 / (1 + np.exp(sb - sa))))
    outcome = np.where(rng.random(n) < p_left, "left", "right")
    return pd.DataFrame({"left_model": names[a], "right_model": names[b], "outcome": outcome})


def test_a_never_winner_is_flagged_and_the_others_do_not_move_with_the_ridge():
    votes = _votes_with_a_never_winner()

    def rate(frame, ridge):
        r = rt.compute_ratings(
            frame.left_model,
            frame.right_model,
            frame.outcome,
            np.random.default_rng(1),
            rounds=50,
            ridge=ridge,
        )
        return pd.Series(r.rating, index=r.names), r

    others = ["m0", "m1", "m2", "m3"]
    base, r = rate(votes, 1e-3)
    blurry = r.names.index("blurry")
    assert not r.identified[blurry] and r.identified.sum() == 4
    assert np.isnan([r.rating[blurry], r.lower[blurry], r.upper[blurry], r.rank_ub[blurry]]).all()
    # The others are rated on their own battles: exactly the board without 'blurry'.
    alone, _ = rate(votes[(votes.left_model != "blurry") & (votes.right_model != "blurry")], 1e-3)
    assert base[others].to_numpy() == pytest.approx(alone[others].to_numpy(), abs=1e-6)
    # Ten times more or less ridge: the others move by the ridge's own shrinkage
    # (~5e-4 Elo here), not by ~90 Elo as when the never-winner's ridge-made θ was fitted
    # and centred with them.
    for ridge in (1e-2, 1e-4):
        moved, _ = rate(votes, ridge)
        assert np.abs(moved[others] - base[others]).max() < 0.01
        assert np.isnan(moved["blurry"])
    assert base[others].mean() == pytest.approx(1000.0, abs=1e-9)


def test_the_human_leaderboard_flags_a_never_winner_and_refuses_it_as_anchor():
    votes = _votes_with_a_never_winner()
    frame, _ = leaderboard_frame(votes, np.random.default_rng(0), rounds=30)
    row = frame.set_index("model").loc["blurry"]
    assert not row.identified and pd.isna(row["rank"]) and np.isnan(row.rating)
    assert frame["identified"].sum() == 4 and frame.iloc[-1].model == "blurry"
    with pytest.raises(ValueError, match="never won"):
        rt.compute_ratings(
            votes.left_model,
            votes.right_model,
            votes.outcome,
            np.random.default_rng(0),
            rounds=0,
            anchor=("blurry", 1000.0),
        )


def test_a_metric_board_where_a_model_never_wins():
    data = synthetic_arena(
        np.random.default_rng(4),
        n_models=5,
        n_prompts=80,
        n_votes=3000,
        metric_noise={"m": 0.8},
    )
    scores = data.scores.copy()
    loser = data.images.loc[data.images.model == "model-03", "image_id"]
    scores.loc[scores.image_id.isin(loser), "value"] = -1e6  # the metric never prefers it
    report = ag.agreement_report(data.votes, scores, np.random.default_rng(0), rounds=20)
    board = report.leaderboards[report.leaderboards.decider == "m"].set_index("model")
    assert not board.at["model-03", "identified"]
    assert pd.isna(board.at["model-03", "rank"]) and np.isnan(board.at["model-03", "rating"])
    assert board.identified.sum() == 4
    assert sorted(board["rank"].dropna().astype(int)) == [1, 2, 3, 4]
    # The same as rating the metric-decided battles of the other four models alone.
    votes = data.votes
    value = scores.set_index("image_id")["value"]
    delta = value.loc[votes.left_image_id].to_numpy() - value.loc[votes.right_image_id].to_numpy()
    decided = np.where(delta > 0, "left", np.where(delta < 0, "right", "tie"))
    keep = ((votes.left_model != "model-03") & (votes.right_model != "model-03")).to_numpy()
    alone = rt.compute_ratings(
        votes.left_model[keep],
        votes.right_model[keep],
        decided[keep],
        np.random.default_rng(0),
        rounds=0,
    )
    for name, rating in zip(alone.names, alone.rating, strict=True):
        assert board.at[name, "rating"] == pytest.approx(rating, abs=1e-6)
