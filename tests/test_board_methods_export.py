"""`arena export` with the leaderboard's rating-method flags, on a workspace of real
images scored with the classical metrics: the style coefficients and the votes that hold
each rank are tables of their own in every format, the manifest records the method and
its notes, and report.html shows them."""

from __future__ import annotations

import html
import json
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from arena import cli
from arena.reports.export import FORMATS, ExportError, export_workspace, read_table
from arena.reports.leaderboard import LeaderboardService
from arena.reports.methods import BoardOptions
from arena.storage.rater_verbs import VotedBattle
from tests.arena_fixtures import build_fixture

STYLE = ("colorfulness", "contrast")
STYLE_COLUMNS = ["feature", "elo_per_sd", "ci_lower", "ci_upper", "sd"]
FLIP_COLUMNS = ["position", "upper", "lower", "votes_to_flip", "share", "method"]
T0 = datetime(2025, 4, 1, 9, 0, 0)


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """Three models x 8 prompts x 2 seeds of real 32 px pictures, scored by `arena score
    --metrics classical`; then 900 votes in which the more colourful image wins more often
    (on top of a strength per model), with some ties."""
    from arena.config import load_settings
    from arena.storage.store import Store

    settings = load_settings(
        env={}, workspace=str(tmp_path_factory.mktemp("methods") / "ws"), bootstrap_rounds=20
    )
    store = Store(settings)
    fixture = build_fixture(store, n_prompts=8, seeds=2, size=32, with_reference=False)
    ws = str(settings.workspace_path)
    assert cli.main(["-w", ws, "score", "--metrics", "classical", "--no-progress"]) == 0
    scores = store.scores_frame()
    colour = scores[scores.metric == "colorfulness"].set_index("image_id")["value"]
    spread = colour.std()
    strength = {name: k * 0.4 for k, name in enumerate(sorted(fixture.model_ids))}
    by_prompt: dict[int, list[int]] = {}
    for image_id, (_model, prompt_id) in sorted(fixture.images.items()):
        by_prompt.setdefault(prompt_id, []).append(image_id)
    rng = np.random.default_rng(11)
    rater = store.rater_id("simulated-rater", kind="simulated")
    rows = []
    prompts = sorted(by_prompt)
    while len(rows) < 900:
        pid = prompts[rng.integers(len(prompts))]
        left, right = rng.choice(by_prompt[pid], 2, replace=False)
        ml, mr = fixture.images[left][0], fixture.images[right][0]
        if ml == mr:
            continue
        u = strength[ml] - strength[mr] + 1.5 * (colour[left] - colour[right]) / spread
        u += rng.logistic()
        outcome = "tie" if abs(u) < 0.3 else "left" if u > 0 else "right"
        at = T0 + timedelta(seconds=len(rows))
        rows.append(VotedBattle(pid, int(left), int(right), rater, outcome, 2000, at, at))
    store.add_voted_battles(rows)
    yield store
    store.close()


def test_cli_export_with_sandwich_and_style_writes_the_method_tables(scored, tmp_path):
    ws = str(scored.settings.workspace_path)
    out = tmp_path / "export"
    flags = ["--ci", "sandwich", "--style", ",".join(STYLE)]
    assert cli.main(["-w", ws, "export", "--out", str(out), "--bootstrap", "20", *flags]) == 0
    options = BoardOptions(ci="sandwich", style=STYLE)
    result = LeaderboardService.of(scored).get(rounds=20, options=options)
    board = read_table(out / "leaderboard.csv")
    # style control reorders the board: flip counts (plain order) stay in their own table
    assert "uncontrolled" in board.columns and "votes_to_flip" not in board.columns
    np.testing.assert_allclose(board["rating"], result.frame["rating"], rtol=1e-9)
    np.testing.assert_allclose(board["uncontrolled"], result.frame["uncontrolled"], rtol=1e-9)
    style = read_table(out / "leaderboard_style.csv")
    assert list(style.columns) == STYLE_COLUMNS and style["feature"].tolist() == list(STYLE)
    np.testing.assert_allclose(style["elo_per_sd"], result.style["elo_per_sd"], rtol=1e-9)
    colour = style.set_index("feature").loc["colorfulness"]
    assert colour["ci_lower"] > 0  # the votes favour colour: the fit finds it
    flips = read_table(out / "leaderboard_flips.csv")
    assert list(flips.columns) == FLIP_COLUMNS and flips["position"].iloc[0] == "top"
    assert flips["votes_to_flip"].tolist() == result.flips["votes_to_flip"].tolist()

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["leaderboard"] == {
        "ties": "split",
        "ci": "sandwich",
        "style": list(STYLE),
        "reweight": None,
        "flips": True,
        "notes": result.notes,
    }
    summary = manifest["summary"]
    assert summary["intervals"] == "sandwich" and summary["style control"] == ", ".join(STYLE)
    assert summary["reweight floor"] == "off" and summary["ties"] == "split"
    for name in ("leaderboard_style", "leaderboard_flips"):
        assert manifest["tables"][name]["columns"] == (
            STYLE_COLUMNS if name.endswith("style") else FLIP_COLUMNS
        )

    page = (out / "report.html").read_text()
    assert "95% sandwich intervals (closed form)" in result.notes[0]
    for note in result.notes:
        assert html.escape(note) in page
    assert "Style coefficients" in page and "Votes that hold each rank" in page
    assert "<td>colorfulness</td>" in page and "<td>1 vs 2</td>" in page
    assert "Counted on the plain Bradley-Terry order" in page  # style control is on
    assert "&lt;NA&gt;" not in page  # the last model's votes_to_flip is missing: "–"
    assert "<script" not in page


def test_the_method_tables_in_every_format(scored, tmp_path):
    options = BoardOptions(ci="sandwich", style=STYLE)
    first = None
    for fmt in FORMATS:
        result = export_workspace(
            scored, tmp_path / fmt, fmt=fmt, rounds=20, seed=3, options=options, report=False
        )
        names = {p.name for p in result.files}
        assert {f"leaderboard_style.{fmt}", f"leaderboard_flips.{fmt}"} <= names
        style = read_table(tmp_path / fmt / f"leaderboard_style.{fmt}")
        flips = read_table(tmp_path / fmt / f"leaderboard_flips.{fmt}")
        assert list(style.columns) == STYLE_COLUMNS and list(flips.columns) == FLIP_COLUMNS
        if first is None:
            first = style, flips
            continue
        pd.testing.assert_frame_equal(style, first[0], check_dtype=False)
        pd.testing.assert_frame_equal(flips, first[1], check_dtype=False)


def test_default_export_writes_the_flip_counts_only(scored, tmp_path):
    result = export_workspace(scored, tmp_path / "plain", rounds=20, seed=3)
    names = {p.name for p in result.files}
    assert "leaderboard_flips.csv" in names and "leaderboard_style.csv" not in names
    board = read_table(tmp_path / "plain" / "leaderboard.csv")
    assert "uncontrolled" not in board.columns and "votes_to_flip" in board.columns
    flips = read_table(tmp_path / "plain" / "leaderboard_flips.csv")
    ranked = board[~board["provisional"].astype(bool)]
    assert len(flips) == len(ranked)  # the top model, and each of the n - 1 neighbours
    manifest = json.loads((tmp_path / "plain" / "manifest.json").read_text())
    assert manifest["leaderboard"]["ci"] == "bootstrap" and manifest["leaderboard"]["style"] == []
    assert manifest["summary"]["style control"] == "off"
    page = (tmp_path / "plain" / "report.html").read_text()
    assert "Votes that hold each rank" in page and "Style coefficients" not in page
    assert "95% bootstrap intervals (20 rounds)" in page
    assert "Counted on the plain Bradley-Terry order" not in page  # it is the plain fit

    bare = export_workspace(
        scored, tmp_path / "bare", rounds=20, seed=3, options=BoardOptions(flips=False)
    )
    assert not any(p.name.startswith("leaderboard_flips") for p in bare.files)
    assert "votes_to_flip" not in read_table(tmp_path / "bare" / "leaderboard.csv").columns
    assert "Votes that hold each rank" not in (tmp_path / "bare" / "report.html").read_text()


def test_davidson_export_records_the_tie_model(scored, tmp_path):
    ws = str(scored.settings.workspace_path)
    out = tmp_path / "davidson"
    args = ["-w", ws, "export", "--out", str(out), "--bootstrap", "20", "--ties", "davidson"]
    assert cli.main([*args, "--format", "json", "--no-flips"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    tie = manifest["leaderboard"]["tie_model"]
    assert manifest["leaderboard"]["ties"] == "davidson" and tie["nu"] > 0
    assert tie["nu_lower"] <= tie["nu"] <= tie["nu_upper"]
    assert 0 < tie["observed_tie_rate"] < 0.5
    page = (out / "report.html").read_text()
    assert "Davidson tie parameter ν = " in page and f"{tie['nu']:.3f}" in page
    assert not (out / "leaderboard_flips.json").exists()


def test_refused_options_are_explained_and_write_nothing(scored, tmp_path, capsys):
    ws = str(scored.settings.workspace_path)
    out = tmp_path / "refused"
    base = ["-w", ws, "export", "--out", str(out)]
    assert cli.main([*base, "--style", "nosuch"]) == 2
    assert "style feature 'nosuch' has no stored values" in capsys.readouterr().err
    assert cli.main([*base, "--ties", "davidson", "--style", "contrast"]) == 2
    assert "ties='davidson' models ties in the plain" in capsys.readouterr().err
    assert list(out.iterdir()) == []  # no file, no staging folder left
    with pytest.raises(ExportError, match="leaderboard: style feature 'nosuch'"):
        export_workspace(scored, out, options=BoardOptions(style=("nosuch",)))
