"""The batched scoring job: selection, resume after interruption, corrupt images, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select, update

from arena.cli import main
from arena.storage import db
from arena.storage.store import PromptRow
from scoring.metrics.clip_score import ClipScore
from scoring.metrics.runner import Row, build_metrics, run, write_rows
from scoring.testing.tiny_clip import write_tiny_aesthetic, write_tiny_clip

REPO = Path(__file__).resolve().parents[1]


def fill(store, n=10, seed=0, prompt_every=1) -> list[int]:
    """n random images over two models; image k has prompt k unless k % prompt_every."""
    rng = np.random.default_rng(seed)
    models = [store.add_model("alpha", "import"), store.add_model("beta", "import")]
    store.add_prompts([PromptRow(f"a photo of object {k}", str(k)) for k in range(n)], "set")
    pids = store.prompt_ids("set")
    ids = []
    for k in range(n):
        h, w = (24 + 4 * (k % 3), 32)
        stored = store.images.put_image(
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        )
        pid = pids[("set", str(k))] if k % prompt_every == 0 else None
        ids.append(store.add_image(models[k % 2], pid, stored, seed=k))
    return ids


def score_rows(store) -> list[tuple[int, str, str, float | None]]:
    with store.session() as s:
        return list(
            s.execute(
                select(db.Score.image_id, db.Score.metric, db.Score.version, db.Score.value)
            ).all()
        )


def expected_classical(store, image_ids):
    metrics = build_metrics(["classical"])
    with store.session() as s:
        shas = dict(s.execute(select(db.Image.id, db.Image.sha256)).all())
    out = {}
    for m in metrics:
        values = m.score([store.images.open(shas[i]) for i in image_ids])
        out.update({(i, m.name): v for i, v in zip(image_ids, values, strict=True)})
    return out


class Interrupt(Exception):
    pass


def test_interrupted_job_resumes_without_duplicates_or_losses(store):
    ids = fill(store, n=10)
    metrics = build_metrics(["classical"])
    seen = []

    def stop_after_two(report):
        seen.append(report)
        if report.index == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        run(store, metrics, batch_size=3, progress=False, on_batch=stop_after_two)
    rows = score_rows(store)
    assert len(rows) == 6 * 3  # two committed batches of three images, three metrics
    assert [r.images for r in seen] == [3, 3]

    summary = run(store, metrics, batch_size=3, progress=False)
    assert summary.images_selected == 4 and summary.rows_written["sharpness"] == 4
    rows = score_rows(store)
    assert len(rows) == 30
    assert len({(i, m) for i, m, _v, _val in rows}) == 30  # no duplicates
    expected = expected_classical(store, ids)
    for image_id, metric, version, value in rows:
        assert version == "1"
        assert value == pytest.approx(expected[(image_id, metric)], rel=1e-12)
    # A third run has nothing to do.
    assert run(store, metrics, batch_size=3, progress=False).images_selected == 0


def test_image_ids_limit_the_job_to_those_images(store):
    """``image_ids`` (what `arena distribution` passes for the Anomaly Score) schedules
    only those images; None schedules all; a later unrestricted run does the rest."""
    ids = fill(store, n=6)
    metrics = build_metrics(["classical"])
    summary = run(store, metrics, batch_size=4, progress=False, image_ids={ids[1], ids[4]})
    assert summary.images_selected == 2
    assert {i for i, *_ in score_rows(store)} == {ids[1], ids[4]}
    assert run(store, metrics, progress=False, image_ids=[]).images_selected == 0
    assert run(store, metrics, progress=False).images_selected == 4
    assert {i for i, *_ in score_rows(store)} == set(ids)


def test_corrupt_image_is_reported_and_skipped(store):
    ids = fill(store, n=6)
    with store.session() as s:
        sha = s.scalar(select(db.Image.sha256).where(db.Image.id == ids[2]))
    store.images.path_for(sha).write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    metrics = build_metrics(["classical"])
    summary = run(store, metrics, batch_size=4, num_workers=2, progress=False)
    assert [f[0] for f in summary.failed] == [ids[2]]
    assert summary.rows_written == {"sharpness": 5, "colorfulness": 5, "contrast": 5}
    assert "could not be decoded" in summary.format() and sha[:12] in summary.format()
    assert ids[2] not in {r[0] for r in score_rows(store)}
    # Not written, so it is tried (and reported) again; the rest is not redone.
    again = run(store, metrics, batch_size=4, progress=False)
    assert again.images_selected == 1 and [f[0] for f in again.failed] == [ids[2]]


def test_broken_images_and_missing_prompts(store, tmp_path):
    ids = fill(store, n=6, prompt_every=2)  # odd images have no prompt
    with store.session() as s:
        s.execute(update(db.Image).where(db.Image.id == ids[0]).values(broken="black"))
    folder = tmp_path / "w"
    write_tiny_clip(folder)
    metrics = build_metrics(["clip", "contrast"], weights={"clip": str(folder)})
    summary = run(store, metrics, batch_size=4, progress=False)
    rows = score_rows(store)
    scored = {(i, m) for i, m, _v, _val in rows}
    assert {i for i, m in scored if m == "contrast"} == set(ids[1:])
    assert {i for i, m in scored if m == "clip"} == {ids[2], ids[4]}
    assert summary.no_prompt == {"clip": 3, "contrast": 0}  # images 1, 3, 5


def test_workers_give_the_same_scores_as_in_process(store, tmp_path):
    fill(store, n=7)
    folder = tmp_path / "w"
    write_tiny_clip(folder)
    write_tiny_aesthetic(folder)
    weights = {"clip": str(folder), "aesthetic": str(folder)}
    metrics = build_metrics(["clip", "aesthetic", "sharpness"], weights=weights)
    run(store, metrics, batch_size=3, num_workers=2, progress=False)
    with_workers = {(i, m): v for i, m, _v, v in score_rows(store)}
    with store.session() as s:
        s.execute(db.Score.__table__.delete())
    run(store, metrics, batch_size=5, num_workers=0, progress=False)
    in_process = {(i, m): v for i, m, _v, v in score_rows(store)}
    assert with_workers.keys() == in_process.keys() and len(in_process) == 21
    for key, value in in_process.items():
        # float32 scores of batches of 3 and of 5: BLAS may round the two shapes apart by an
        # ulp or two (seen: 7.5760099 vs 7.5760114), so the bound is relative, not 1e-6.
        assert with_workers[key] == pytest.approx(value, rel=1e-6, abs=1e-6)


def test_shared_encoder_runs_once_per_batch_and_matches_direct_scores(store, tmp_path):
    ids = fill(store, n=7)
    folder = tmp_path / "w"
    write_tiny_clip(folder)
    write_tiny_aesthetic(folder)
    weights = {"clip": str(folder), "aesthetic": str(folder)}
    clip, aesthetic = build_metrics(["clip", "aesthetic"], weights=weights)
    assert clip.encoder is aesthetic.encoder
    calls = []
    handle = clip.encoder.model.visual.register_forward_hook(
        lambda _m, inp, _out: calls.append(inp[0].shape[0])
    )
    try:
        summary = run(store, [clip, aesthetic], batch_size=3, progress=False)
    finally:
        handle.remove()
    assert summary.batches == 3 and calls == [3, 3, 1]  # one image-tower pass per batch
    with store.session() as s:
        rows = s.execute(select(db.Image.id, db.Image.sha256, db.Prompt.text).join(db.Prompt)).all()
    rows = sorted(rows)
    imgs = [store.images.open(sha) for _i, sha, _t in rows]
    direct_clip = ClipScore.from_pretrained(folder).score(imgs, [t for _i, _s, t in rows])
    direct_aes = aesthetic.score(imgs)
    stored = {(i, m): v for i, m, _v, v in score_rows(store)}
    for k, (image_id, _sha, _t) in enumerate(rows):
        assert image_id in ids
        assert stored[(image_id, "clip")] == pytest.approx(direct_clip[k], abs=1e-5)
        assert stored[(image_id, "aesthetic")] == pytest.approx(direct_aes[k], abs=1e-5)


def test_write_rows_details_json_nan_and_conflicts(store):
    ids = fill(store, n=2)
    rows = [
        Row(ids[0], "tags", "t1", 0.5, {"hits": {"cat": True, "hat": False}}, True),
        Row(ids[1], "tags", "t1", None, None, True),
    ]
    assert write_rows(store, rows) == 2
    assert write_rows(store, rows) == 2  # the same rows again are ignored, not duplicated
    with store.session() as s:
        got = {r.image_id: r for r in s.scalars(select(db.Score))}
        n_null = s.scalar(select(func.count()).where(db.Score.details.is_(None)))
    assert len(got) == 2
    assert got[ids[0]].details == {"hits": {"cat": True, "hat": False}}
    assert got[ids[1]].value is None and n_null == 1  # SQL NULL, not the JSON text "null"


def test_each_metric_is_stored_with_its_registry_direction(db_store):
    """The writer records every registered metric's higher_is_better beside its scores,
    and scores_frame gives it back (anomaly is the one better low)."""
    from scoring.metrics.base import get_metric, list_metrics
    from scoring.metrics.runner import WorkItem, _rows

    ids = fill(db_store, n=1)
    item = WorkItem(ids[0], "", "", "a prompt", ())
    rows = [r for name in list_metrics() for r in _rows(get_metric(name), [item], [0.5], None)]
    write_rows(db_store, rows)
    stored = db_store.scores_frame().set_index("metric")["higher_is_better"]
    expected = {name: get_metric(name).higher_is_better for name in list_metrics()}
    assert stored.to_dict() == expected
    assert expected["anomaly"] is False and expected["clip"] is True


def test_cli_score_classical_and_metrics(settings, capsys):
    from arena.storage.store import Store

    store = Store(settings)
    fill(store, n=5)
    store.close()
    ws = str(settings.workspace_path)
    assert main(["-w", ws, "score", "--metrics", "classical", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "scored 5 of 5" in out and "contrast" in out
    assert main(["-w", ws, "score", "--metrics", "classical", "--num-workers", "0"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    store = Store(settings)
    assert len(score_rows(store)) == 15
    store.close()
    assert main(["-w", ws, "metrics"]) == 0
    out = capsys.readouterr().out
    for name in ("clip", "aesthetic", "sharpness", "group classical"):
        assert name in out
    assert "sac+logos+ava1-l14-linearMSE.pth" in out and "looked for in" in out
    assert main(["-w", ws, "score", "--metrics", "clip,nonsense"]) == 2
    assert "unknown metric 'nonsense'" in capsys.readouterr().err
    assert main(["-w", ws, "score", "--metrics", "classical", "--weights", "clip"]) == 2
    assert "expected NAME=PATH" in capsys.readouterr().err
    assert main(["-w", ws, "score", "--metrics", "classical", "--dtype", "fp16"]) == 2
    assert "needs a CUDA device" in capsys.readouterr().err


def test_cli_scores_clip_and_aesthetic_from_weights_folder(settings, capsys, tmp_path):
    from arena.storage.store import Store

    store = Store(settings)
    fill(store, n=4)
    store.close()
    folder = tmp_path / "weights"
    write_tiny_clip(folder)
    mlp = write_tiny_aesthetic(tmp_path / "mlp")
    argv = ["-w", str(settings.workspace_path), "score", "--metrics", "clip,aesthetic"]
    argv += ["--weights", f"clip={folder}", "--weights", f"aesthetic={mlp}", "--no-progress"]
    assert main(argv) == 0
    assert "clip                  4 new" in capsys.readouterr().out
    store = Store(settings)
    assert sorted({m for _i, m, _v, _val in score_rows(store)}) == ["aesthetic", "clip"]
    store.close()


def test_cli_missing_weights_message_without_traceback(settings, tmp_path):
    from arena.storage.store import Store

    Store(settings).close()
    env = dict(os.environ)
    env.update(
        ARENA_WEIGHTS_DIR=str(tmp_path / "wdir"),
        HF_HOME=str(tmp_path / "hf"),
        HF_HUB_OFFLINE="1",
        ARENA_ALLOW_NETWORK="0",
    )
    argv = [sys.executable, "-m", "arena.cli", "-w", str(settings.workspace_path), "score"]
    proc = subprocess.run(
        [*argv, "--metrics", "aesthetic", "--no-progress"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr
    assert "Traceback" not in err
    assert "sac+logos+ava1-l14-linearMSE.pth" in err
    assert "camenduru/improved-aesthetic-predictor" in err
    assert str(tmp_path / "wdir") in err and "Hugging Face cache" in err
    assert "--weights aesthetic=" in err and "ARENA_ALLOW_NETWORK=1" in err


def test_job_and_conflict_handling_on_both_back_ends(db_store):
    """SQLite and PostgreSQL: insert-or-ignore and resume behave the same."""
    ids = fill(db_store, n=5)
    metrics = build_metrics(["contrast"])

    def stop(report):
        raise Interrupt

    with pytest.raises(Interrupt):
        run(db_store, metrics, batch_size=2, progress=False, on_batch=stop)
    assert len(score_rows(db_store)) == 2
    run(db_store, metrics, batch_size=2, progress=False)
    rows = score_rows(db_store)
    assert sorted(r[0] for r in rows) == sorted(ids)
    assert write_rows(db_store, [Row(ids[0], "contrast", "1", 0.0, {"a": 1}, True)]) == 1
    assert len(score_rows(db_store)) == 5  # the existing row wins; nothing duplicated


def test_the_weights_folder_is_an_argument_from_the_settings_never_the_environment(
    settings, capsys, tmp_path, monkeypatch
):
    """scoring reads no environment: the weights_dir setting reaches it as WeightSources,
    from `arena score` (which resolves ARENA_WEIGHTS_DIR through arena.config)."""
    from arena.config import load_settings
    from arena.storage.store import Store
    from scoring.weights import MissingWeightsError, WeightSources

    folder = tmp_path / "weights"
    write_tiny_clip(folder)  # <dir>/open_clip_pytorch_model.bin
    monkeypatch.setenv("ARENA_WEIGHTS_DIR", str(folder))
    monkeypatch.setenv("ARENA_ALLOW_NETWORK", "0")
    with pytest.raises(MissingWeightsError):
        build_metrics(["clip"])  # no sources: the variable is not looked at
    sources = WeightSources.of(load_settings(env={"ARENA_WEIGHTS_DIR": str(folder)}))
    assert sources == WeightSources(folder, allow_network=False)
    assert build_metrics(["clip"], sources=sources)[0].name == "clip"
    store = Store(settings)
    fill(store, n=4)
    store.close()
    before = dict(os.environ)
    argv = ["-w", str(settings.workspace_path), "score", "--metrics", "clip", "--no-progress"]
    assert main(argv) == 0
    assert "clip                  4 new" in capsys.readouterr().out
    assert dict(os.environ) == before  # nothing written back for scoring to read


def test_pin_memory_reaches_the_batch_tensors():
    """The DataLoader's pin thread (``pin_memory=True`` on CUDA) calls ``pin_memory()`` on a
    custom batch type and cannot see inside a dataclass: the batch must pin its own
    tensors, or the ``non_blocking`` copies to the GPU are synchronous. Pinning needs an
    accelerator, so the tensors here record the call instead."""
    import torch
    from torch.utils.data._utils.pin_memory import pin_memory

    from scoring.metrics.runner import Batch

    class Recorded(torch.Tensor):
        def pin_memory(self, *args, **kwargs):
            out = self.as_subclass(Recorded)
            out.pinned = True
            return out

    pixels = torch.zeros(2, 3).as_subclass(Recorded)
    batch = Batch(
        items=["a", "b"], failed=[], inputs={"clip": ([0, 1], pixels), "tags": ([0], ["x"])}
    )
    pinned = pin_memory(batch)
    assert isinstance(pinned, Batch) and pinned.items == ["a", "b"]
    assert getattr(pinned.inputs["clip"][1], "pinned", False)
    assert pinned.inputs["clip"][0] == [0, 1] and pinned.inputs["tags"] == ([0], ["x"])


def test_the_work_is_ordered_by_content_not_by_image_id(tmp_path):
    """Batches are made in pixel-hash order: the same images imported in the opposite order
    (other ids) give the same batches, so batch-dependent rounding cannot follow the ids."""
    from arena.config import load_settings
    from arena.storage.store import Store
    from scoring.metrics.runner import select_work

    rng = np.random.default_rng(7)
    pixels = [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(6)]
    orders = []
    for name, sequence in (("a", range(6)), ("b", reversed(range(6)))):
        store = Store(load_settings(env={}, workspace=str(tmp_path / name)))
        model = store.add_model("m", "import")
        store.add_prompts([PromptRow(f"prompt {k}", str(k)) for k in range(6)], "s")
        pids = store.prompt_ids("s")
        for k in sequence:
            stored = store.images.put_image(Image.fromarray(pixels[k]))
            store.add_image(model, pids[("s", str(k))], stored, seed=0)
        items, _ = select_work(store, build_metrics(["sharpness"]))
        orders.append([(item.prompt, item.path.rsplit("/", 1)[-1]) for item in items])
        store.close()
    assert orders[0] == orders[1] and len(orders[0]) == 6
    assert [sha for _p, sha in orders[0]] == sorted(sha for _p, sha in orders[0])
