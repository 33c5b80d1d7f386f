"""Anime aesthetic and CLIP-IQA in the scoring job and everywhere per-image metrics show:
`arena metrics`, a job killed mid-run and run again, the leaderboard columns, the
agreement tables and the exports. Tiny weights in the weights-folder layout."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from arena.cli import main
from arena.storage import db
from scoring.metrics.anime_aesthetic import ANIME_AESTHETIC, AnimeAesthetic
from scoring.metrics.clipiqa import ClipIQA
from scoring.metrics.openai_clip import VITL14_OPENAI
from scoring.testing.tiny_clip import write_tiny_clip
from scoring.testing.tiny_iqa import write_anime_aesthetic_onnx
from tests.metric_job_checks import (
    check_board_agreement_exports,
    fill,
    kill_after_two_batches,
    metrics_listing,
    repaint,
    score_argv,
    stored_rows,
)

NAMES = ["anime-aesthetic", "clipiqa"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """Both metrics' files as $ARENA_WEIGHTS_DIR holds them (<repo_id>/<file>)."""
    root = tmp_path_factory.mktemp("weights")
    write_tiny_clip(root / VITL14_OPENAI.repo_id)
    write_anime_aesthetic_onnx(root / ANIME_AESTHETIC.repo_id / ANIME_AESTHETIC.filename)
    return root


def given(weights: Path) -> dict[str, str]:
    return {
        "anime-aesthetic": str(weights / ANIME_AESTHETIC.repo_id),
        "clipiqa": str(weights / VITL14_OPENAI.repo_id),
    }


def test_arena_metrics_lists_them_found_or_missing(settings, weights, monkeypatch, capsys):
    out, missing = metrics_listing(settings, weights, monkeypatch, capsys)
    assert f"anime-aesthetic  (version {AnimeAesthetic.version}; image only" in out
    assert f"clipiqa  (version {ClipIQA.version}; image only; higher is better)" in out
    found = weights / ANIME_AESTHETIC.repo_id / ANIME_AESTHETIC.filename
    assert f"skytnt/anime-aesthetic / model.onnx  [found: {found}]" in out
    assert "skytnt/anime-aesthetic / model.onnx  [MISSING]" in missing


@pytest.mark.slow
def test_a_killed_job_resumes_without_duplicates_or_losses(store, weights):
    from scoring.metrics.runner import build_metrics, run

    ids = fill(store, n=10)
    paths = given(weights)
    kill_after_two_batches(store, paths)
    assert len(stored_rows(store)) == 2 * 3 * 2  # two committed batches, two metrics

    metrics = build_metrics(NAMES, weights=paths)
    summary = run(store, metrics, batch_size=3, num_workers=0, progress=False)
    assert summary.images_selected == 4
    rows = stored_rows(store)
    assert len(rows) == len({(i, m) for i, m, *_ in rows}) == 2 * len(ids)
    with store.session() as s:
        shas = dict(s.execute(select(db.Image.id, db.Image.sha256)).all())
    images = [store.images.open(shas[i]) for i in ids]
    for metric in metrics:
        want = dict(zip(ids, metric.score(images), strict=True))
        got = {i: v for i, m, _version, v, _d in rows if m == metric.name}
        assert {v for _i, m, v, *_ in rows if m == metric.name} == {metric.version}
        for image_id in ids:
            assert got[image_id] == pytest.approx(want[image_id], abs=1e-6)
    assert run(store, metrics, progress=False).images_selected == 0


@pytest.mark.slow
def test_scores_reach_the_leaderboard_agreement_and_exports(store, weights, tmp_path, capsys):
    """A small arena with votes, real pixels behind its images, `arena score` with both."""
    from tests.agreement_data import populate_store, small_arena

    populate_store(store, small_arena(n_votes=300))
    image_ids = repaint(store)
    assert main([*score_argv(store, given(weights)), "--num-workers", "0", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"anime-aesthetic ({AnimeAesthetic.version}; onnxruntime CPUExecutionProvider)" in out
    check_board_agreement_exports(store, NAMES, len(image_ids), tmp_path / "out")
