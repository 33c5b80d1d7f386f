"""The leaderboard's rating methods on a real SQLite workspace: style control from stored
scores, Davidson ties, sandwich intervals, reweighting and flip counts, through the
service (and its cache) and `arena leaderboard`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from arena import cli
from arena.reports.frames import ReportError
from arena.reports.leaderboard import LeaderboardError, LeaderboardService
from arena.reports.methods import BoardOptions
from arena.storage import db
from tests.test_leaderboard import STRENGTH, _add_votes, arena_store  # noqa: F401

COLOUR = {"alpha": 2.0, "beta": 0.5, "gamma": 0.0, "delta": -1.0, "newbie": 0.0}


def _add_colour(store, noise=0.3, seed=0):
    """A `colorfulness` score per image, higher for the stronger models' images."""
    rng = np.random.default_rng(seed)
    with store.session() as s:
        models = {m.id: m.name for m in s.query(db.Model)}
        for image in s.query(db.Image):
            value = COLOUR[models[image.model_id]] + noise * rng.normal()
            s.add(db.Score(image_id=image.id, metric="colorfulness", version="1", value=value,
                           higher_is_better=True))  # fmt: skip


def _service(store, rounds=100):
    return LeaderboardService(store.with_settings(bootstrap_rounds=rounds))


def test_style_control_from_stored_scores(arena_store):  # noqa: F811
    _add_colour(arena_store)
    service = _service(arena_store)
    plain = service.get(options=BoardOptions(flips=False))
    styled = service.get(options=BoardOptions(style=("colorfulness", "aspect"), flips=False))
    assert service.computations == 2  # the options are part of the cache key
    frame = styled.frame.set_index("model")
    assert np.allclose(frame.loc[plain.frame["model"], "uncontrolled"], plain.frame["rating"])
    table = styled.style
    assert table["feature"].tolist() == ["colorfulness"]  # aspect is constant (8x8 images)
    assert (table["ci_lower"] <= table["elo_per_sd"]).all()
    assert any("aspect did not vary" in note for note in styled.notes)
    assert styled.notes[0].endswith("controlled for colorfulness, aspect.")
    # every image is scored, so the fit used every vote of the rated models
    assert styled.ratings.style.votes == styled.ratings.counts.total
    assert "uncontrolled" not in plain.frame and styled.frame.columns[11] == "uncontrolled"


def test_style_features_that_cannot_be_used_are_named(arena_store):  # noqa: F811
    service = _service(arena_store)
    with pytest.raises(ReportError, match=r"'contrast' has no stored values.*classical"):
        service.get(options=BoardOptions(style=("contrast",)))
    _add_colour(arena_store)
    with pytest.raises(ReportError, match="choose from: colorfulness, resolution, aspect"):
        service.get(options=BoardOptions(style=("saturation",)))
    with pytest.raises(LeaderboardError, match="davidson"):
        BoardOptions(ties="davidson", style=("colorfulness",))


def test_davidson_sandwich_and_reweighting_through_the_service(arena_store):  # noqa: F811
    service = _service(arena_store, rounds=300)
    split = service.get(options=BoardOptions(flips=False)).frame.set_index("model")
    davidson = service.get(options=BoardOptions(ties="davidson", flips=False))
    tie = davidson.ratings.tie_model
    assert 0 < tie.lower < tie.nu < tie.upper
    assert tie.predicted_rate == pytest.approx(tie.observed_rate, abs=1e-6)
    assert any(note.startswith("Davidson tie parameter ν =") for note in davidson.notes)
    frame = davidson.frame.set_index("model")
    ranked = ["alpha", "beta", "gamma", "delta"]
    # same order; Davidson spreads the ratings further (ties no longer pull them together)
    assert frame.loc[ranked, "rating"].is_monotonic_decreasing
    assert np.ptp(frame.loc[ranked, "rating"]) > np.ptp(split.loc[ranked, "rating"])
    sandwich = service.get(options=BoardOptions(ci="sandwich", flips=False)).frame
    sandwich = sandwich.set_index("model").loc[ranked]
    assert np.allclose(sandwich["rating"], split.loc[ranked, "rating"])
    ratio = (sandwich["ci_upper"] - sandwich["ci_lower"]) / (
        split.loc[ranked, "ci_upper"] - split.loc[ranked, "ci_lower"]
    )
    assert ratio.between(0.8, 1.25).all()
    weighted = service.get(options=BoardOptions(reweight=50, flips=False))
    assert "pairs reweighted by 1/max(votes of the pair, 50)" in weighted.notes[0]


def test_flip_counts_on_the_board(arena_store):  # noqa: F811
    result = _service(arena_store).get()  # flips are on by default
    frame = result.frame.set_index("model")
    flips = result.flips
    assert flips["position"].tolist() == ["top", "1 vs 2", "2 vs 3", "3 vs 4"]
    assert flips.iloc[1][["upper", "lower"]].tolist() == ["alpha", "beta"]
    assert frame.loc["alpha", "votes_to_flip"] == flips.iloc[1]["votes_to_flip"] > 0
    assert pd.isna(frame.loc["delta", "votes_to_flip"])  # last ranked: nothing below
    assert (flips["share"] < 1).all()


def test_a_rank_decided_by_a_few_votes_is_warned():
    from arena.reports.methods import method_notes
    from arena.stats.ratings import compute_ratings

    # a beats b 6-4 (a handful of votes decides it); c trails far behind both
    votes = [("a", "b", "left")] * 6 + [("a", "b", "right")] * 4
    votes += [("a", "c", "left")] * 40 + [("b", "c", "left")] * 38 + [("b", "c", "right")] * 2
    votes += [("a", "c", "right")] * 2
    left, right, outcome = zip(*votes, strict=True)
    options = BoardOptions()
    ratings = compute_ratings(
        left, right, outcome, np.random.default_rng(0), rounds=50, min_votes=1, flips=True
    )
    notes = method_notes(ratings, options, 50)
    warning = [n for n in notes if n.startswith("Warning: a handful of votes decides")]
    assert warning and "a over b" in warning[0] and "b over c" not in warning[0]
    steady = next(f for f in ratings.flips if ratings.names[f.upper] == "b")
    assert steady.votes > 10


def test_cli_method_flags(arena_store, settings, capsys):  # noqa: F811
    _add_colour(arena_store)
    ws = str(settings.workspace_path)
    args = ["-w", ws, "leaderboard", "--bootstrap", "50", "--format", "json"]
    assert cli.main([*args, "--ties", "davidson", "--ci", "sandwich"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["tie_model"]["nu"] > 0 and "sandwich intervals" in out["notes"][0]
    assert [f["position"] for f in out["flips"]][:2] == ["top", "1 vs 2"]
    assert cli.main([*args, "--style", "colorfulness", "--reweight", "--no-flips"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [s["feature"] for s in out["style"]] == ["colorfulness"] and out["flips"] == []
    assert "uncontrolled" in out["leaderboard"][0]
    assert cli.main(["-w", ws, "leaderboard", "--bootstrap", "20", "--style", "colorfulness"]) == 0
    text = capsys.readouterr().out
    assert "Style coefficients:" in text and "uncontrolled" in text and "Votes to flip:" in text
    assert cli.main(["-w", ws, "leaderboard", "--ties", "davidson", "--style"]) == 2
    assert "ties='davidson' models ties in the plain BT model only" in capsys.readouterr().err


def test_davidson_sandwich_interval_of_nu_stays_positive_with_few_ties():
    from arena.stats.ratings import compute_ratings

    rng = np.random.default_rng(4)
    left = rng.integers(0, 4, 3000)
    right = (left + rng.integers(1, 4, 3000)) % 4
    outcome = np.where(rng.random(3000) < 0.5, "left", "right")
    outcome[:4] = "tie"  # a tie rate of 0.13%: ν near 0, its interval on log ν
    names = np.array(list("abcd"))
    res = compute_ratings(
        names[left], names[right], outcome, np.random.default_rng(0), ties="davidson",
        ci="sandwich", min_votes=1,
    )  # fmt: skip
    tm = res.tie_model
    assert 0 < tm.lower < tm.nu < tm.upper
