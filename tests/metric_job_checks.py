"""Shared scaffolding for the end-to-end metric job tests: a job SIGKILLed mid-run, the
stored rows, `arena metrics` with and without the weights, and an arena with real pixels
whose scores must reach the leaderboard, the agreement tables and the exports.

Each test module keeps its own assertions on the values; this only drives the job and
reads back what it stored, so the metrics are checked the same way everywhere."""

from __future__ import annotations

import json
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

REPO = Path(__file__).resolve().parents[1]

# The child process: the real job, SIGKILLed by itself right after batch 2 is committed.
KILLED_JOB = """
import json, os, signal, sys
from arena.config import load_settings
from arena.storage.store import Store
from scoring.metrics.runner import build_metrics, run
workspace, weights = sys.argv[1], json.loads(sys.argv[2])
store = Store(load_settings(env={}, workspace=workspace))
metrics = build_metrics(list(weights), weights=weights)
def kill(report):
    if report.index == 2:
        os.kill(os.getpid(), signal.SIGKILL)
run(store, metrics, batch_size=3, num_workers=0, progress=False, on_batch=kill)
"""


def kill_after_two_batches(store, weights: dict[str, str]) -> None:
    """Run the job on `weights` (metric name -> --weights path) in a child process that kills
    itself after its second batch of three is committed."""
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_JOB, str(store.workspace), json.dumps(weights)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]


def fill(store, n: int, prompt: str = "prompt {k}", seed: int = 0) -> list[int]:
    """n random non-square images of two models, one prompt each."""
    rng = np.random.default_rng(seed)
    models = [store.add_model("alpha", "import"), store.add_model("beta", "import")]
    store.add_prompts([PromptRow(prompt.format(k=k), str(k)) for k in range(n)], "set")
    pids = store.prompt_ids("set")
    ids = []
    for k in range(n):
        pixels = rng.integers(0, 256, (24 + 8 * (k % 3), 40 - 4 * (k % 2), 3), dtype=np.uint8)
        stored = store.images.put_image(Image.fromarray(pixels))
        ids.append(store.add_image(models[k % 2], pids[("set", str(k))], stored, seed=k))
    return ids


def stored_rows(store) -> list[tuple[int, str, str, float, dict | None]]:
    """Every score row as (image_id, metric, version, value, details)."""
    columns = (db.Score.image_id, db.Score.metric, db.Score.version, db.Score.value)
    with store.session() as s:
        return list(s.execute(select(*columns, db.Score.details)))


def metrics_listing(settings, weights: Path, monkeypatch, capsys) -> tuple[str, str]:
    """`arena metrics` output with $ARENA_WEIGHTS_DIR at `weights`, then at an empty folder."""
    ws = str(settings.workspace_path)
    monkeypatch.setenv("HF_HOME", str(settings.workspace_path.parent / "hf"))
    outputs = []
    for folder in (weights, weights / "empty"):
        monkeypatch.setenv("ARENA_WEIGHTS_DIR", str(folder))
        assert main(["-w", ws, "metrics"]) == 0
        outputs.append(capsys.readouterr().out)
    return outputs[0], outputs[1]


def repaint(store, seed: int = 5) -> list[int]:
    """Give every image of a populated arena real random pixels; returns the image ids."""
    rng = np.random.default_rng(seed)
    with store.session() as s:
        image_ids = s.scalars(select(db.Image.id)).all()
        for image_id in image_ids:
            pixels = rng.integers(0, 256, (30, 44, 3), dtype=np.uint8)
            sha = store.images.put_image(Image.fromarray(pixels)).sha256
            s.execute(update(db.Image).where(db.Image.id == image_id).values(sha256=sha))
        s.commit()
    return image_ids


def score_argv(store, weights: dict[str, str]) -> list[str]:
    """`arena score` on the CPU with every metric of `weights` given its --weights path."""
    argv = ["-w", str(store.workspace), "score", "--metrics", ",".join(weights), "--device", "cpu"]
    for name, path in weights.items():
        argv += ["--weights", f"{name}={path}"]
    return argv


def check_board_agreement_exports(store, names: list[str], n_images: int, out: Path) -> None:
    """The stored scores of `names` are the leaderboard's per-model means and appear in the
    agreement tables and in every export."""
    from arena.reports.export import export_workspace, read_table
    from arena.reports.leaderboard import LeaderboardService
    from arena.stats.agreement import agreement_report

    scores = store.scores_frame(names)
    assert len(scores) == len(names) * n_images and scores.higher_is_better.all()
    images = store.images_frame()
    means = scores.merge(images, on="image_id").groupby(["metric", "model"])["value"].mean()
    board = LeaderboardService(store.with_settings(bootstrap_rounds=0)).get().frame
    board = board.set_index("model")
    for name in names:
        for model in board.index:
            assert board.loc[model, name] == pytest.approx(means[(name, model)])

    votes, rng = store.votes_frame(), np.random.default_rng(0)
    report = agreement_report(votes, store.scores_frame(), rng, images=images, rounds=20)
    assert set(names) <= set(report.accuracy.metric)
    assert set(names) <= set(report.correlations.metric)

    export_workspace(store, out, rounds=20)
    assert set(names) <= set(read_table(out / "scores.csv").metric)
    assert set(names) <= set(read_table(out / "agreement_accuracy.csv").metric)
    assert set(names) <= set(read_table(out / "leaderboard.csv").columns)
    assert all(name in (out / "report.html").read_text() for name in names)
