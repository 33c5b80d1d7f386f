"""HPSv3 and VQAScore in the scoring job and everywhere per-image metrics show: `arena
metrics`, a job killed mid-run and run again, the leaderboard columns, the agreement tables
and the exports. Tiny weights (scoring/testing/tiny_vlm.py) in the weights-folder layout."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select, update

from arena.cli import main
from arena.storage import db
from arena.storage.store import PromptRow
from scoring.metrics.hpsv3 import HPSv3
from scoring.metrics.vqascore import VQAScore
from scoring.testing.tiny_vlm import HPSV3_FILE, HPSV3_REPO, QWEN2VL_REPO, write_tiny_vlm_weights

REPO = Path(__file__).resolve().parents[1]
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
    ws = str(settings.workspace_path)
    monkeypatch.setenv("HF_HOME", str(settings.workspace_path.parent / "hf"))
    monkeypatch.setenv("ARENA_WEIGHTS_DIR", str(weights))
    assert main(["-w", ws, "metrics"]) == 0
    out = capsys.readouterr().out
    assert f"hpsv3  (version {HPSv3.version}; needs the prompt; higher is better)" in out
    assert f"vqascore  (version {VQAScore.version}; needs the prompt; higher is better)" in out
    found = weights / HPSV3_REPO / HPSV3_FILE
    assert f"{HPSV3_REPO} / {HPSV3_FILE}  [found: {found}]" in out
    assert f"{QWEN2VL_REPO} / config.json  [found: {weights / QWEN2VL_REPO}]" in out
    monkeypatch.setenv("ARENA_WEIGHTS_DIR", str(weights / "empty"))
    assert main(["-w", ws, "metrics"]) == 0
    out = capsys.readouterr().out
    assert f"{HPSV3_REPO} / {HPSV3_FILE}  [MISSING]" in out
    assert f"{QWEN2VL_REPO} / config.json  [MISSING]" in out


def fill(store, n: int, seed: int = 0) -> list[int]:
    """n random non-square images of two models, one prompt each."""
    rng = np.random.default_rng(seed)
    models = [store.add_model("alpha", "import"), store.add_model("beta", "import")]
    store.add_prompts([PromptRow(f"a photo of thing {k}", str(k)) for k in range(n)], "set")
    pids = store.prompt_ids("set")
    ids = []
    for k in range(n):
        pixels = rng.integers(0, 256, (24 + 8 * (k % 3), 40 - 4 * (k % 2), 3), dtype=np.uint8)
        stored = store.images.put_image(Image.fromarray(pixels))
        ids.append(store.add_image(models[k % 2], pids[("set", str(k))], stored, seed=k))
    return ids


def stored_rows(store) -> list[tuple[int, str, str, float, dict | None]]:
    with store.session() as s:
        return list(
            s.execute(
                select(
                    db.Score.image_id,
                    db.Score.metric,
                    db.Score.version,
                    db.Score.value,
                    db.Score.details,
                )
            )
        )


# The child process: the real job, SIGKILLed by itself right after batch 2 is committed.
KILLED_JOB = """
import os, signal, sys
from arena.config import load_settings
from arena.storage.store import Store
from scoring.metrics.runner import build_metrics, run
workspace, hpsv3, vqascore = sys.argv[1:]
store = Store(load_settings(env={}, workspace=workspace))
metrics = build_metrics(["hpsv3", "vqascore"], weights={"hpsv3": hpsv3, "vqascore": vqascore})
def kill(report):
    if report.index == 2:
        os.kill(os.getpid(), signal.SIGKILL)
run(store, metrics, batch_size=3, num_workers=0, progress=False, on_batch=kill)
"""


@pytest.mark.slow
def test_a_killed_job_resumes_without_duplicates_or_losses(store, weights):
    from scoring.metrics.runner import build_metrics, run

    ids = fill(store, n=8)
    paths = given(weights)
    child = [sys.executable, "-c", KILLED_JOB, str(store.workspace)]
    proc = subprocess.run(
        [*child, paths["hpsv3"], paths["vqascore"]],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
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
    from arena.reports.export import export_workspace, read_table
    from arena.reports.leaderboard import LeaderboardService
    from arena.stats.agreement import agreement_report
    from tests.agreement_data import populate_store, synthetic_arena

    arena = synthetic_arena(
        np.random.default_rng(3), n_models=3, n_prompts=8, n_votes=150, n_raters=6
    )
    populate_store(store, arena)
    rng = np.random.default_rng(5)
    with store.session() as s:
        image_ids = s.scalars(select(db.Image.id)).all()
        for image_id in image_ids:
            pixels = rng.integers(0, 256, (30, 44, 3), dtype=np.uint8)
            sha = store.images.put_image(Image.fromarray(pixels)).sha256
            s.execute(update(db.Image).where(db.Image.id == image_id).values(sha256=sha))
        s.commit()
    argv = ["-w", str(store.workspace), "score", "--metrics", ",".join(NAMES), "--device", "cpu"]
    for name, path in given(weights).items():
        argv += ["--weights", f"{name}={path}"]
    assert main([*argv, "--batch-size", "8", "--num-workers", "0", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "hpsv3 (v3)" in out and "vqascore (1:Qwen/Qwen2-VL-7B-Instruct)" in out

    scores = store.scores_frame(NAMES)
    assert len(scores) == 2 * len(image_ids) and scores.higher_is_better.all()
    images = store.images_frame()
    means = scores.merge(images, on="image_id").groupby(["metric", "model"])["value"].mean()
    board = LeaderboardService(store.with_settings(bootstrap_rounds=0)).get().frame
    board = board.set_index("model")
    for name in NAMES:
        for model in board.index:
            assert board.loc[model, name] == pytest.approx(means[(name, model)])

    votes, rng = store.votes_frame(), np.random.default_rng(0)
    report = agreement_report(votes, store.scores_frame(), rng, images=images, rounds=20)
    assert set(NAMES) <= set(report.accuracy.metric)
    assert set(NAMES) <= set(report.correlations.metric)

    export_workspace(store, tmp_path / "out", rounds=20)
    exported = read_table(tmp_path / "out" / "scores.csv")
    assert set(NAMES) <= set(exported.metric)
    assert set(NAMES) <= set(read_table(tmp_path / "out" / "agreement_accuracy.csv").metric)
    assert set(NAMES) <= set(read_table(tmp_path / "out" / "leaderboard.csv").columns)
    assert all(name in (tmp_path / "out" / "report.html").read_text() for name in NAMES)
