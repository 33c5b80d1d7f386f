"""The analyses of issue 22 (items 3 to 6) where people read them: the export's tables,
manifest and report.html, the scores table's details, the Admin app's Agreement tab (and
not the raters'), `arena leaderboard`'s note, and `arena distribution` on the common set."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from arena.cli import main
from arena.reports import analyses as A
from arena.reports.analyses import AnalysesService
from arena.reports.export import export_workspace, read_table
from arena.stats import seeds as S
from arena.stats import tag_accuracy as T
from arena.stats.common_set import PER_MODEL_COLUMNS
from arena.stats.metric_correlation import COLUMNS as CORRELATION_COLUMNS
from tests import analyses_data as D
from tests.admin_only import assert_admin_only

TABLES = {
    "common_set": A.COMMON_COLUMNS,
    "tag_hits": T.HIT_COLUMNS,
    "tag_accuracy_by_count": T.BIN_COLUMNS,
    "tag_accuracy_by_position": T.BIN_COLUMNS,
    "seed_means": S.PER_SEED_COLUMNS,
    "seed_spread": S.SPREAD_COLUMNS,
    "metric_correlation": CORRELATION_COLUMNS,
}


@pytest.fixture
def voted(store):
    ids = D.build(store)
    D.add_votes(store, ids)
    return store.with_settings(bootstrap_rounds=30, min_votes_ranked=1), ids


def test_the_export_writes_the_analyses(voted, tmp_path):
    store, _ = voted
    export_workspace(store, tmp_path / "a", rounds=30, seed=3)
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    direct = AnalysesService(store).get(rounds=30, seed=3).analyses.tables()
    for name, columns in TABLES.items():
        table = read_table(tmp_path / "a" / f"{name}.csv")
        assert list(table.columns) == columns and manifest["tables"][name]["columns"] == columns
        assert len(table) == len(direct[name]) == manifest["tables"][name]["rows"]
        numeric = [c for c in columns if pd.api.types.is_float_dtype(direct[name][c])]
        np.testing.assert_allclose(table[numeric], direct[name][numeric], rtol=1e-9)
    common = read_table(tmp_path / "a" / "common_set.csv").set_index("model")
    assert common.loc["B", PER_MODEL_COLUMNS[1:]].tolist() == [5, 4, 1, 1, 0]
    assert set(common.cells) == {6} and set(common.common_cells) == {4} and common.paired.all()
    summary = manifest["summary"]
    assert summary["paired metrics"] == "on" and summary["common set"].startswith("4 of 6")
    assert len(read_table(tmp_path / "a" / "tag_hits.csv")) == 3 * 11
    # the same seed: the same bytes
    export_workspace(store, tmp_path / "b", rounds=30, seed=3)
    for name in ("tag_accuracy_by_count", "tag_accuracy_by_position", "metric_correlation"):
        first = (tmp_path / "a" / f"{name}.csv").read_bytes()
        assert first == (tmp_path / "b" / f"{name}.csv").read_bytes()
    page = (tmp_path / "a" / "report.html").read_text()
    for heading in (
        "Paired comparison: the common set",
        "Tag accuracy by number and position of tags",
        "Seeds and spread",
        "Metric × metric agreement",
    ):
        assert f"<h2>{heading}</h2>" in page
    assert "Fewer than 3 seeds" in page  # two seeds: the warning
    assert "Metric means are paired: over the common set, 4 of 6" in page  # the board's note
    assert "tag_hits.csv" in page


@pytest.mark.parametrize("fmt", ["csv", "parquet", "json"])
def test_the_scores_table_carries_the_details(voted, tmp_path, fmt):
    store, ids = voted
    export_workspace(store, tmp_path, fmt=fmt, rounds=5, report=False)
    scores = read_table(tmp_path / f"scores.{fmt}")
    assert "details" in scores.columns
    tags = scores[scores.metric == "tags"]
    assert len(tags) == len(ids) and tags.details.notna().all()
    by_id = {v: k for k, v in ids.items()}
    for image_id, text in zip(tags.image_id, tags.details, strict=True):
        assert json.loads(text) == D.tag_details(by_id[int(image_id)])
    others = scores[scores.metric != "tags"].details
    assert others.isna().all() or (others.fillna("") == "").all()


def test_the_admin_agreement_tab_shows_the_analyses_and_the_raters_app_does_not(voted):
    import gradio as gr

    from arena.ui import agreement_tab, analyses_section
    from arena.ui.filter_row import UNFILTERED

    store, _ = voted
    with gr.Blocks():
        update, _inputs, outputs = agreement_tab.render(store, groups=True, analyses=True)
    shown = update(*UNFILTERED, "ties_half", "category")
    assert len(shown) == len(outputs) == 8 + 4 + 5 + 10  # page, judges, groups, analyses
    note, common, count_plot, by_count, pos_plot, by_position, seeds, _, _, corr = shown[-10:]
    assert "**paired**: over 4 of 6 (prompt, seed) cells" in note and "⚠" in note
    assert common.set_index("Model").at["C", "Missing cells"] == 1
    assert by_count.columns.tolist() == ["Model", "tags 1", "tags 2-3", "tags 4-5", "all"]
    assert by_count.set_index("Model").at["A", "tags 4-5"].startswith("0.50 [0.50, 0.50]")
    assert by_position.set_index("Model").at["C", "all"].startswith("0.64")  # 7 of 11 tags
    assert seeds.set_index("Model").at["A", "sharpness"] == "2.500 ± 0.707 (2 seeds) ⚠"
    assert {"image", "model"} == set(corr["Level"])
    assert count_plot is not None and pos_plot is not None
    bad = analyses_section.analyses_outputs(AnalysesService(store), since="yesterday")
    assert "Cannot compute the analyses" in bad[0] and "ISO date" in bad[0]

    label = "Tag accuracy by position of the tag"
    assert_admin_only(store, label)


def test_arena_leaderboard_says_which_cells_the_metrics_are_over(voted, capsys):
    store, _ = voted
    argv = ["--workspace", str(store.workspace), "leaderboard", "--bootstrap", "10"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "Metric means are paired: over the common set, 4 of 6" in out
    assert main([*argv, "--format", "json"]) == 0
    assert "2 left out" in json.loads(capsys.readouterr().out)["paired"]


def test_a_report_on_two_models_pairs_them_on_their_own_cells(voted):
    """What the candidate-vs-baseline report calls: analyses_of(..., models=[a, b])."""
    from arena.reports.frames import load_report_frames

    store, _ = voted
    frames = load_report_frames(store)
    details = store.score_details_frame(["tags"])
    two = A.analyses_of(frames, details, np.random.default_rng(0), 20, models=["A", "C"])
    assert two.common.models == ["A", "C"] and (two.common.cells, two.common.common) == (6, 5)
    spread = two.seed_spread.set_index(["model", "metric"])
    assert set(two.seed_spread.model) == {"A", "C"}
    # A's sharpness: seed 10 over p0, p1, p2 (1, 3, 5); seed 20 over p0, p1 (2, 4)
    assert spread.at[("A", "sharpness"), "mean"] == pytest.approx((3.0 + 3.0) / 2)
    counts = two.tag_by_count.set_index(["model", "bin"])
    assert counts.at[("A", "all"), "images"] == 5


def test_arena_distribution_is_paired_by_default(store, tmp_path, monkeypatch):
    """FD-DINO on the common set: B's broken image removes A's and C's images of the same
    cell; the stored row says so, and --all-images computes on every usable image."""
    from PIL import Image

    from arena.intake.reference import add_reference_folder
    from arena.storage.store import PromptRow
    from scoring.distribution import stats as dist
    from scoring.distribution.feature_cache import cached_features
    from scoring.distribution.features import DinoExtractor
    from scoring.testing.tiny_extractors import write_all

    weights = tmp_path / "weights"
    write_all(weights)
    monkeypatch.setenv("ARENA_WEIGHTS_DIR", str(weights))
    rng = np.random.default_rng(0)

    def picture(tint):
        pixels = rng.integers(0, 256, (40, 40, 3)) * 0.5 + tint
        return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))

    store.add_prompts([PromptRow(f"prompt {k}", f"p{k}") for k in range(3)], "set")
    pids = store.prompt_ids("set")
    broken = None
    for model, tint in (("A", 0.0), ("B", 60.0)):
        mid = store.add_model(model, "import")
        for k in range(3):
            for seed in (0, 1):
                bad = model == "B" and (k, seed) == (2, 1)
                iid = store.add_image(
                    mid,
                    pids[("set", f"p{k}")],
                    store.images.put_image(picture(tint)),
                    seed=seed,
                    broken="black" if bad else None,
                )
                broken = iid if bad else broken
    real = tmp_path / "real"
    real.mkdir()
    for k in range(8):  # more than any model: n is the model's images
        picture(20.0).save(real / f"r{k}.png")
    add_reference_folder(store, real, "real")
    argv = ["--workspace", str(store.workspace), "distribution", "--metrics", "fd-dino"]
    argv += ["--reference", "real", "--device", "cpu", "--num-workers", "0", "--no-progress"]
    assert main(argv) == 0
    frame = store.model_metrics_frame().set_index("model")
    assert frame.at["A", "n"] == 5  # A's image of (p2, 1) left out with B's broken one
    record = frame.at["A", "details"]["common_set"]
    assert record == {
        "paired": True,
        "models": ["A", "B"],
        "cells": 6,
        "common": 5,
        "left_out": 1,
        "images_left_out": 1,
    }
    images = store.images_frame()
    kept = images[
        (images.model == "A") & ~((images.prompt_id == pids[("set", "p2")]) & (images.seed == 1))
    ]
    dino = DinoExtractor.load(weights / "facebook" / "dinov2-large")
    x = cached_features(store, dino, kept.image_id.tolist())
    y = cached_features(store, dino, images[images.model == "real"].image_id.tolist())
    assert frame.at["A", "value"] == pytest.approx(dist.fid_from_features(x, y, "FD-DINO").value)
    assert main([*argv, "--all-images"]) == 0
    loose = store.model_metrics_frame().set_index("model")
    assert loose.at["A", "n"] == 6 and loose.at["B", "n"] == 5
    assert loose.at["A", "details"]["common_set"]["paired"] is False


@pytest.mark.browser
def test_the_admin_agreement_tab_draws_the_analyses(voted, tmp_path):
    """The Admin app in headless chromium: the Agreement tab's analyses appear."""
    from playwright.sync_api import expect

    from tests.arena_app import running_app
    from tests.browser import chromium

    store, _ = voted
    secret = "analyses-section-secret"
    store = store.with_settings(admin_secret=secret, bootstrap_rounds=20)
    with running_app(store) as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1366, "height": 900})
        page.goto(url + "admin/")
        page.fill("input[type=text]", "admin")
        page.fill("input[type=password]", secret)
        page.keyboard.press("Enter")
        page.get_by_role("tab", name="Agreement").click()
        panel = page.get_by_role("tabpanel")
        expect(panel.get_by_text("4 of 6 (prompt, seed) cells", exact=False)).to_be_visible(
            timeout=60_000
        )
        for text in ("2.500 ± 0.707 (2 seeds) ⚠", "tags 4-5", "Missing cells"):
            shown = panel.get_by_text(text, exact=True).locator("visible=true")
            expect(shown.first).to_be_visible()
        page.screenshot(path=str(tmp_path / "analyses.png"), full_page=True)
        page.close()
