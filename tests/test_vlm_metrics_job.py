"""HPSv3 and VQAScore in the scoring job and everywhere per-image metrics show: `arena
metrics`, a job killed mid-run and run again, the leaderboard columns, the agreement tables
and the exports. Tiny weights (scoring/testing/tiny_vlm.py) in the weights-folder layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from arena.cli import main
from arena.storage import db
from scoring.metrics.hpsv3 import HPSv3
from scoring.metrics.vqascore import VQAScore
from scoring.testing.tiny_vlm import HPSV3_FILE, HPSV3_REPO, QWEN2VL_REPO, write_tiny_vlm_weights
from tests.metric_job_checks import (
    check_board_agreement_exports,
    fill,
    kill_after_two_batches,
    metrics_listing,
    repaint,
    score_argv,
    stored_rows,
)

NAMES = ["hpsv3", "vqascore"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """Both metrics' files as $ARENA_WEIGHTS_DIR holds them (<repo_id>/<file>)."""
    root = tmp_path_factory.mktemp("weights")
    write_tiny_vlm_weights(root)
    return root


def given(weights: Path) -> dict[str, str]:
    """--weights paths: the HPSv3 folder finds the Qwen2-VL folder nested beside it."""
    return {"hpsv3": str(weights), "vqascore": str(weights / QWEN2VL_REPO)}


def test_arena_metrics_lists_them_found_or_missing(settings, weights, monkeypatch, capsys):
    out, missing = metrics_listing(settings, weights, monkeypatch, capsys)
    assert f"hpsv3  (version {HPSv3.version}; needs the prompt; higher is better)" in out
    assert f"vqascore  (version {VQAScore.version}; needs the prompt; higher is better)" in out
    found = weights / HPSV3_REPO / HPSV3_FILE
    assert f"{HPSV3_REPO} / {HPSV3_FILE}  [found: {found}]" in out
    assert f"{QWEN2VL_REPO} / config.json  [found: {weights / QWEN2VL_REPO}]" in out
    assert f"{HPSV3_REPO} / {HPSV3_FILE}  [MISSING]" in missing
    assert f"{QWEN2VL_REPO} / config.json  [MISSING]" in missing


@pytest.mark.slow
def test_a_killed_job_resumes_without_duplicates_or_losses(store, weights):
    from scoring.metrics.runner import build_metrics, run

    ids = fill(store, n=8, prompt="a photo of thing {k}")
    paths = given(weights)
    kill_after_two_batches(store, paths)
    assert len(stored_rows(store)) == 2 * 3 * 2  # two committed batches, two metrics

    metrics = build_metrics(NAMES, weights=paths)
    summary = run(store, metrics, batch_size=3, num_workers=2, progress=False)
    assert summary.images_selected == 2
    rows = stored_rows(store)
    assert len(rows) == len({(i, m) for i, m, *_ in rows}) == 2 * len(ids)
    with store.session() as s:
        shas = dict(s.execute(select(db.Image.id, db.Image.sha256)).all())
        prompts = dict(s.execute(select(db.Image.id, db.Prompt.text).join(db.Prompt)).all())
    images = [store.images.open(shas[i]) for i in ids]
    for metric in metrics:
        values, details = metric.score_with_details(
            metric.prepare(images), [prompts[i] for i in ids]
        )
        want = dict(zip(ids, values, strict=True))
        got = {i: (v, d) for i, m, _version, v, d in rows if m == metric.name}
        assert {version for _i, m, version, *_ in rows if m == metric.name} == {metric.version}
        for n, image_id in enumerate(ids):
            assert got[image_id][0] == pytest.approx(want[image_id], abs=1e-5)
            assert got[image_id][1].keys() == details[n].keys()
    assert run(store, metrics, progress=False).images_selected == 0


@pytest.mark.slow
def test_scores_reach_the_leaderboard_agreement_and_exports(store, weights, tmp_path, capsys):
    """A small arena with votes, real pixels behind its images, `arena score` with both."""
    from tests.agreement_data import populate_store, synthetic_arena

    arena = synthetic_arena(
        np.random.default_rng(3), n_models=3, n_prompts=8, n_votes=150, n_raters=6
    )
    populate_store(store, arena)
    image_ids = repaint(store)
    argv = score_argv(store, given(weights))
    assert main([*argv, "--batch-size", "8", "--num-workers", "0", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "hpsv3 (v3)" in out and "vqascore (1:Qwen/Qwen2-VL-7B-Instruct)" in out
    check_board_agreement_exports(store, NAMES, len(image_ids), tmp_path / "out")
