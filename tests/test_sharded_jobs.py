"""generate, score and distribution under a real ``torchrun --nproc-per-node 2`` (gloo).

Two ranks on SQLite (one file, WAL) and on PostgreSQL store exactly the rows one
process stores: the same images (pixels), scores, cached features and model-level
numbers, bit for bit, with no duplicates; and a launch whose rank is killed mid-way
is completed by running it again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from arena.config import load_settings
from arena.storage import db
from arena.storage.store import PromptRow, Store
from tests import sharded_jobs
from tests.pg_server import fresh_database

REPO = Path(__file__).resolve().parents[1]
PROMPTS = [PromptRow(f"a {thing} at dusk", thing) for thing in ("fox", "boat", "tree", "cat")]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """The tiny pipeline, the tiny extractors and the tiny CLIP, in their real formats."""
    from scoring.testing.tiny_clip import write_tiny_clip
    from scoring.testing.tiny_diffusers import save_tiny_sd
    from scoring.testing.tiny_extractors import write_all

    root = tmp_path_factory.mktemp("assets")
    write_all(root / "weights")
    clip = write_tiny_clip(root / "clip")
    pipe = save_tiny_sd(root / "pipe")
    real = root / "real"
    real.mkdir()
    rng = np.random.default_rng(3)
    for k in range(6):
        pixels = rng.integers(0, 256, (16 + 8 * (k % 2), 16, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(real / f"r{k}.png")
    return {"weights": root / "weights", "clip": clip, "pipe": pipe, "real": real}


def workspace(path: Path, db_url: str, assets) -> Store:
    from arena.cli import main

    store = Store(load_settings(env={}, workspace=str(path), db_url=db_url))
    store.add_prompts(PROMPTS, prompt_set="p")
    head = ["--workspace", str(path)] + (["--db-url", db_url] if db_url else [])
    for name in ("tiny", "tinier"):
        assert main([*head, "add-model", name, "--diffusers", str(assets["pipe"])]) == 0
    reference = ["reference", "add", str(assets["real"]), "--set", "real", "--workers", "1"]
    assert main(head + reference) == 0
    return store


def torchrun(*args: str, env_extra: dict | None = None) -> subprocess.Popen:
    env = environment()
    env.update(env_extra or {})
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc-per-node", "2", *args]
    return subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: a hung launch is killed whole
    )


def output(proc: subprocess.Popen, timeout: float = 240) -> str:
    """The launch's output once it ends; a launch still running after ``timeout`` (a
    barrier that never opens) is killed with its ranks and fails the test."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"the launch hung for {timeout} s:\n{out[-4000:]}")
    return out


def finished(proc: subprocess.Popen, timeout: float = 240) -> str:
    out = output(proc, timeout)
    assert proc.returncode == 0, out[-4000:]
    return out


def stored(store: Store) -> dict[str, dict]:
    """Every row the jobs write, keyed by what does not depend on insertion order."""
    i, p, m = db.Image, db.Prompt, db.Model
    with store.session() as s:
        images = s.execute(
            select(i.id, m.name, i.source_name, p.external_id, i.sha256, i.broken, i.params)
            .join(m, m.id == i.model_id)
            .outerjoin(p, p.id == i.prompt_id)
        ).all()
        key_of = {row[0]: (row[1], row[2]) for row in images}  # (model, source name)
        scores = s.execute(
            select(db.Score.image_id, db.Score.metric, db.Score.version, db.Score.value)
        ).all()
        features = s.execute(
            select(db.Feature.image_id, db.Feature.extractor, db.Feature.vector)
        ).all()
        numbers = s.execute(
            select(
                m.name,
                db.ModelMetric.metric,
                db.ModelMetric.reference,
                db.ModelMetric.value,
                db.ModelMetric.std,
                db.ModelMetric.n,
                db.ModelMetric.details,
            ).join(m, m.id == db.ModelMetric.model_id)
        ).all()
    out = {
        "images": {key_of[row[0]]: row[3:] for row in images},
        "scores": {(*key_of[i], k, v): value for i, k, v, value in scores},
        "features": {(*key_of[i], k): bytes(vec) for i, k, vec in features},
        "numbers": {row[:3]: row[3:] for row in numbers},
    }
    counts = {"images": len(images), "scores": len(scores), "features": len(features)}
    counts["numbers"] = len(numbers)
    assert {k: len(v) for k, v in out.items()} == counts  # no duplicate rows
    return out


def environment() -> dict[str, str]:
    """One thread per process, as torchrun sets it: CPU kernels reduce in another order
    with another thread count, so the single-process reference runs with the same."""
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))


def reference_run(tmp_path: Path, db_url: str, assets) -> dict[str, dict]:
    store = workspace(tmp_path / "single", db_url, assets)
    args = [str(store.workspace), str(assets["weights"]), str(assets["clip"]), db_url]
    script = [sys.executable, str(REPO / "tests" / "sharded_jobs.py"), *args]
    done = subprocess.run(script, env=environment(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-4000:]
    rows = stored(store)
    store.close()
    return rows, done.stdout


def summary_lines(out: str) -> list[str]:
    """The totals of the three summaries, without the timings: the generation table's
    rows up to img/s, the "scored N of M" counts and per-metric new rows, the numbers."""
    keep = []
    for line in out.splitlines():
        if line.startswith(("tiny ", "tinier ")):
            keep.append(" ".join(line.split()[:6]) if "real" not in line else line)
        elif line.startswith("scored "):
            keep.append(line.split(" in ")[0])
        elif line.startswith("  ") and "new score(s)" in line:
            keep.append(line)
    return keep


@pytest.mark.slow
def test_two_ranks_store_what_one_process_stores(tmp_path, db_url, assets):
    single, single_out = reference_run(tmp_path, db_url, assets)
    other_url = fresh_database(db_url.rsplit("/", 1)[0] + "/postgres") if db_url else ""
    store = workspace(tmp_path / "ranks", other_url, assets)
    script = [str(REPO / "tests" / "sharded_jobs.py"), str(store.workspace)]
    script += [str(assets["weights"]), str(assets["clip"]), other_url]
    out = finished(torchrun(*script))
    sharded = stored(store)
    assert len(single["images"]) == 2 * len(PROMPTS) * 2 + 6  # generated + reference
    assert {key: len(rows) for key, rows in sharded.items()} == {
        key: len(rows) for key, rows in single.items()
    }
    for key in single:
        assert sharded[key] == single[key], key  # pixels, scores, vectors, numbers: exact
    assert out.count("scored ") == 1  # one summary (rank 0's), the two ranks' total
    assert summary_lines(out) == summary_lines(single_out)  # the same totals as one process
    assert len(summary_lines(out)) == 2 + 1 + 4 + 2 * 4  # all three summaries were read
    store.close()


def worker_pids(parent: int) -> list[int]:
    """The processes torchrun started (its children), from /proc."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent:
                pids.append(int(entry.name))
    return sorted(pids)


def image_count(store: Store) -> int:
    with store.session() as s:
        return int(s.scalar(select(func.count(db.Image.id))) or 0)


@pytest.mark.slow
def test_a_killed_rank_is_completed_by_running_again(tmp_path, db_url, assets):
    store = workspace(tmp_path / "ws", db_url, assets)
    head = ["-m", "arena", "--workspace", str(store.workspace)]
    head += ["--db-url", db_url] if db_url else []
    job = [*sharded_jobs.GENERATE, "--device", "cpu", "--no-progress"]
    job[job.index("--batch-size") + 1] = "1"
    job[job.index("--seeds") + 1] = "4"
    total = 2 * len(PROMPTS) * 4
    proc = torchrun(*head, *job)
    deadline = time.monotonic() + 120
    while image_count(store) < 6 + 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    workers = worker_pids(proc.pid)
    assert len(workers) == 2 and proc.poll() is None, "the launch ended before the kill"
    os.kill(workers[1], signal.SIGKILL)
    out = output(proc, timeout=120)  # the launcher stops the other rank and fails
    assert proc.returncode != 0, out[-2000:]
    partial = image_count(store) - 6
    assert 3 <= partial < total
    finished(torchrun(*head, *job))  # the same command again
    rows = stored(store)["images"]  # no duplicates
    assert len(rows) == total + 6 and image_count(store) == total + 6  # + the reference set
    planned = {(model, f"generated:p/{row.external_id}#{k}") for row in PROMPTS for k in range(4)
               for model in ("tiny", "tinier")}  # fmt: skip
    assert {key for key in rows if key[0] != "real"} == planned
    # (that the two ranks' pixels are one process's is the test above)
    store.close()
