"""Exports on a real SQLite workspace: round trip, determinism, the report, the CLI,
and the Agreement tab in a real browser."""

from __future__ import annotations

import json
import socket

import numpy as np
import pandas as pd
import pytest

from arena import cli
from arena.reports.export import (
    FORMATS,
    SCORE_COLUMNS,
    VOTE_COLUMNS,
    ExportError,
    export_workspace,
    read_table,
)
from arena.reports.leaderboard import leaderboard_frame
from tests.agreement_data import populate_store, small_arena

ROUNDS = 60


def _populated(store):
    data = small_arena()
    populate_store(store, data)
    return store, data


@pytest.fixture
def workspace(db_store):
    """The arena on each back end (SQLite file; PostgreSQL database)."""
    return _populated(db_store)


@pytest.fixture
def sqlite_workspace(store):
    """The arena in a SQLite workspace (for the CLI and the app, which open it by folder)."""
    return _populated(store)


def test_round_trip_gives_the_same_leaderboard(workspace, tmp_path):
    store, data = workspace
    for fmt in FORMATS:
        out = tmp_path / fmt
        export_workspace(store, out, fmt=fmt, rounds=ROUNDS, seed=7)
        votes = read_table(out / f"votes.{fmt}")
        board = read_table(out / f"leaderboard.{fmt}")
        assert len(votes) == len(data.votes)
        again, _ = leaderboard_frame(
            votes,
            np.random.default_rng(7),
            rounds=ROUNDS,
            min_votes=store.settings.min_votes_ranked,
        )
        merged = board.merge(again, on="model", suffixes=("", "_again"))
        assert len(merged) == 4
        for col in ("rating", "ci_lower", "ci_upper", "elo", "win_rate"):
            np.testing.assert_allclose(merged[col], merged[f"{col}_again"], atol=1e-6, err_msg=col)
        assert (merged["votes"] == merged["votes_again"]).all()


def test_votes_and_scores_tables(workspace, tmp_path):
    store, data = workspace
    export_workspace(store, tmp_path, rounds=ROUNDS)
    votes = read_table(tmp_path / "votes.csv")
    assert list(votes.columns) == VOTE_COLUMNS
    assert votes["vote_id"].tolist() == sorted(votes["vote_id"])  # vote order
    src = data.votes.set_index("vote_id").loc[votes["vote_id"]]
    assert (votes["outcome"].to_numpy() == src["outcome"].to_numpy()).all()
    assert (votes["left_sha256"].to_numpy() == src["left_sha256"].to_numpy()).all()
    winner = np.where(
        src["outcome"] == "left",
        src["left_model"],
        np.where(src["outcome"] == "right", src["right_model"], np.nan),
    )
    pd.testing.assert_series_equal(
        votes["winner_model"], pd.Series(winner, name="winner_model"), check_dtype=False
    )
    prompts = data.prompts.set_index("prompt_id")
    assert (votes["prompt_text"].to_numpy() == prompts.loc[votes["prompt_id"], "text"]).all()
    scores = read_table(tmp_path / "scores.csv")
    assert list(scores.columns) == SCORE_COLUMNS
    assert len(scores) == len(data.images) * 2  # one row per image and metric
    assert not scores.duplicated(["image_id", "metric", "version"]).any()
    # the direction travels with the data: each row carries the direction stored with it
    stored = store.scores_frame().set_index(["image_id", "metric"])["higher_is_better"]
    exported = scores.set_index(["image_id", "metric"])["higher_is_better"]
    assert exported.astype(bool).equals(stored.loc[exported.index].astype(bool))
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["tables"]["votes"]["rows"] == len(data.votes)


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_export_is_deterministic(workspace, tmp_path, fmt):
    store, _ = workspace
    a = export_workspace(store, tmp_path / "a", fmt=fmt, rounds=ROUNDS)
    b = export_workspace(store, tmp_path / "b", fmt=fmt, rounds=ROUNDS)
    assert [p.name for p in a.files] == [p.name for p in b.files]
    for pa, pb in zip(a.files, b.files, strict=True):
        assert pa.read_bytes() == pb.read_bytes(), pa.name
    # Floats are written with a fixed number of significant digits.
    text = (tmp_path / "a" / f"agreement_accuracy.{fmt}").read_text()
    assert "0.5000000000000001" not in text


def test_report_is_self_contained_and_has_the_tables(workspace, tmp_path):
    store, _ = workspace
    export_workspace(store, tmp_path, rounds=ROUNDS)
    page = (tmp_path / "report.html").read_text()
    for text in (
        "Leaderboard",
        "Pairwise accuracy",
        "human ceiling",
        "ties_half",
        "Kendall",
        "spearman",
        "model pair",
        "Krippendorff",
        "left_win_rate",
        "model-00",
        "sharp",
        "vague",
    ):
        assert text in page, text
    assert page.count("data:image/png;base64,") >= 5
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert page.count("<table") >= 8


def test_failed_export_keeps_the_folder_clean(workspace, tmp_path):
    store, _ = workspace
    with pytest.raises(ExportError, match="format 'xlsx'"):
        export_workspace(store, tmp_path, fmt="xlsx")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ExportError, match="is a file"):
        export_workspace(store, tmp_path / "file")
    with pytest.raises(ExportError, match="bootstrap rounds 0"):
        export_workspace(store, tmp_path / "out", rounds=0)
    assert list((tmp_path / "out").iterdir()) == []  # no half-written files, no staging left


def test_cli_export(sqlite_workspace, tmp_path, capsys):
    store, _ = sqlite_workspace
    ws = str(store.workspace)
    out = tmp_path / "cli"
    code = cli.main(
        ["-w", ws, "export", "--out", str(out), "--format", "json", "--bootstrap", "30"]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "votes.json  (900 rows)" in printed and "report.html" in printed
    assert len(read_table(out / "agreement_accuracy.json")) == 2 * 3 + 1
    (tmp_path / "f").write_text("")
    assert cli.main(["-w", ws, "export", "--out", str(tmp_path / "f")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_empty_workspace_exports(db_store, tmp_path):
    result = export_workspace(db_store, tmp_path, rounds=10)
    assert (tmp_path / "report.html").exists()
    assert result.rows["votes"] == 0
    assert read_table(tmp_path / "agreement_accuracy.csv").empty


@pytest.mark.browser
def test_agreement_tab_renders_in_a_browser(sqlite_workspace, settings, tmp_path):
    """The real app in headless Debian chromium: the accuracy table, ceiling and plots."""
    from playwright.sync_api import expect

    from arena.ui.app import build_app
    from tests.browser import chromium

    store, _ = sqlite_workspace
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = build_app(store.with_settings(bootstrap_rounds=50, reveal_models=True))
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1366, "height": 900})
            page.goto(f"http://127.0.0.1:{port}/")
            page.get_by_role("tab", name="Agreement").click()
            expect(page.get_by_text("votes (all votes)")).to_be_visible(timeout=60_000)
            panel = page.get_by_role("tabpanel")  # the selected tab only
            for text in ("human ceiling", "sharp", "vague", "model-00"):
                shown = panel.get_by_text(text, exact=True).locator("visible=true")
                expect(shown.first).to_be_visible()
            expect(panel.get_by_text("Position bias:")).to_be_visible()
            assert panel.locator("img[src*='data:image'], svg").count() >= 3
            page.screenshot(path=str(tmp_path / "agreement.png"), full_page=True)
    finally:
        app.close()


def test_export_has_the_model_level_metrics_table(workspace, tmp_path):
    """KID/FID ... rows per model x metric, their correlation rows, the leaderboard columns
    and a labelled report section; the stand-in tag travels in ``extractor``."""
    from arena.reports.export import MODEL_METRIC_COLUMNS

    store, data = workspace
    models = sorted(data.images.model.unique())
    real = store.add_model("real", "reference")
    key = "inception@tf.1#0123456789ab+demo-random"
    low = {"higher_is_better": False}
    for k, name in enumerate(models):
        mid = store.model_id(name)
        fid_details = {"features": key, "warning": "FID on 30 images"}
        store.put_model_metric(mid, "fid", "real", 10.0 + k, None, 30, fid_details, **low)
        store.put_model_metric(mid, "kid", "real", 0.01 * k, 0.002, 30, {"features": key}, **low)
    store.put_model_metric(real, "fid", "real", 0.0, None, 30, {"features": key}, **low)
    for fmt in FORMATS:
        out = tmp_path / fmt
        export_workspace(store, out, fmt=fmt, rounds=ROUNDS, seed=7)
        table = read_table(out / f"model_metrics.{fmt}")
        assert list(table.columns) == MODEL_METRIC_COLUMNS
        assert len(table) == 2 * len(models)  # the reference set's own row is not a model
        assert set(table.model) == set(models) and set(table.metric) == {"fid", "kid"}
        fid = table[table.metric == "fid"].set_index("model")
        assert fid.loc[models[2], "value"] == pytest.approx(12.0)
        assert fid.loc[models[0], "reference"] == "real"
        assert fid.loc[models[0], "warning"] == "FID on 30 images"
        assert int(fid.loc[models[0], "n"]) == 30
        assert (table.extractor == key).all()
        assert not table.higher_is_better.astype(bool).any()  # distances: lower is better
        kid = table[table.metric == "kid"].set_index("model")
        assert kid.loc[models[1], "std"] == pytest.approx(0.002)
        corr = read_table(out / f"agreement_correlations.{fmt}").set_index("metric")
        assert corr.loc["fid", "level"] == "model" and corr.loc["sharp", "level"] == "image mean"
        assert corr.loc["fid", "n_models"] == len(models)
        board = read_table(out / f"leaderboard.{fmt}").set_index("model")
        assert board.loc[models[3], "fid"] == pytest.approx(13.0)
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["tables"]["model_metrics"]["rows"] == 2 * len(models)
    page = (tmp_path / "csv" / "report.html").read_text()
    assert "Model-level metrics" in page and "random-weight stand-in" in page
    assert "demo-random" in page
