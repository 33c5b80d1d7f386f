"""Generation with diffusers: a tiny real Stable Diffusion pipeline, saved and loaded for real.

The pipelines are built once per session from small configs of the real
architectures (UNet2DConditionModel, AutoencoderKL, CLIPTextModel, the CLIP BPE
tokenizer from open_clip's bundled vocabulary), saved with save_pretrained and
loaded through AutoPipelineForText2Image. Nothing is downloaded.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from sqlalchemy import select

from arena.cli import main
from arena.storage import db
from arena.storage.store import PromptRow, Store
from scoring import _compat  # noqa: F401  (before diffusers imports torchvision)
from scoring.generation.checks import broken_reason
from scoring.generation.job import ModelSummary, run_generation
from scoring.generation.plan import Job, call_layout, derive_seed, plan_jobs
from scoring.generation.settings import (
    SCHEDULERS,
    GenerationError,
    GenerationSettings,
    canonical_scheduler,
)

SIZE = 16  # pixels; the tiny VAE has one 2x downsampling, so latents are 8x8
FAST = dict(width=SIZE, height=SIZE, steps=2, cfg=5.0)
PROMPTS = [
    PromptRow("a red fox in the snow", "fox"),
    PromptRow("a lighthouse at dusk, oil painting", "lighthouse"),
    PromptRow("1girl, solo, (masterpiece:1.2), " + "very " * 80 + "long prompt", "long"),
]


# -- unit: seeds, layout, schedulers, broken detection ------------------------------------
def test_derived_seeds_are_stable_31_bit_and_distinct_per_prompt():
    a = derive_seed(0, "set/p1", 0)
    assert a == derive_seed(0, "set/p1", 0)
    assert 0 <= a < 2**31
    assert len({derive_seed(0, "set/p1", i) for i in range(50)}) == 50
    assert derive_seed(1, "set/p1", 0) != a and derive_seed(0, "set/p2", 0) != a
    jobs = plan_jobs([(1, "s/a", "x"), (2, "s/b", "y")], seeds=3, base_seed=7)
    assert [(j.prompt_id, j.seed_index) for j in jobs] == [
        (1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2),
    ]  # fmt: skip
    assert jobs[4].seed == derive_seed(7, "s/b", 1)


def test_call_layout_uses_num_images_per_prompt_when_regular():
    def job(pid, idx):
        return Job(pid, f"s/{pid}", f"text {pid}", idx, idx)

    assert call_layout([job(1, 0), job(1, 1), job(2, 0), job(2, 1)]) == (["text 1", "text 2"], 2)
    # a resumed batch with a partial prompt: one entry per image, same order
    assert call_layout([job(1, 1), job(2, 0), job(2, 1)]) == (["text 1", "text 2", "text 2"], 1)


def test_scheduler_names_are_normalised_and_unknown_ones_listed():
    assert canonical_scheduler("DPM++ 2M Karras") == "dpm++2m_karras"
    assert canonical_scheduler("euler-a") == "euler_a"
    with pytest.raises(GenerationError) as err:
        canonical_scheduler("dpm-fast")
    assert "dpm-fast" in str(err.value) and "dpm++2m" in str(err.value)


def test_settings_hash_covers_pixels_not_speed():
    base = GenerationSettings(**FAST)
    assert base.settings_hash() == GenerationSettings(**FAST).settings_hash()
    assert base.settings_hash() != GenerationSettings(**{**FAST, "steps": 3}).settings_hash()
    assert base.settings_hash() != GenerationSettings(**FAST, negative="lowres").settings_hash()
    with pytest.raises(GenerationError, match="multiples of 8"):
        GenerationSettings(width=500, height=512)


def test_broken_reason_on_raw_float_outputs():
    rng = np.random.default_rng(0)
    good = rng.random((8, 8, 3), dtype=np.float32)
    assert broken_reason(good) is None
    nan = good.copy()
    nan[3, 3, 1] = np.nan
    assert broken_reason(nan) == "nan"
    assert broken_reason(np.zeros((8, 8, 3), np.float32)) == "black"
    red = np.zeros((8, 8, 3), np.float32)
    red[..., 0] = 0.8
    assert broken_reason(red) == "uniform"
    red[0, 0, 0] = 0.0  # one differing pixel is an image, not a solid colour
    assert broken_reason(red) is None


# -- the tiny pipelines --------------------------------------------------------------------
@pytest.fixture(autouse=True)
def one_torch_thread():
    """The tiny models gain nothing from threads; on a busy 2-core machine extra OpenMP
    threads spin-wait for cores other processes hold (10x slower). Restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory):
    from scoring.testing.tiny_diffusers import save_tiny_sd

    return save_tiny_sd(tmp_path_factory.mktemp("tiny-sd") / "pipe")


@pytest.fixture(scope="session")
def nan_sd(tmp_path_factory):
    from scoring.testing.tiny_diffusers import save_tiny_sd

    return save_tiny_sd(tmp_path_factory.mktemp("nan-sd") / "pipe", nan=True)


def workspace(tmp_path, name, pipe_dir, prompts=PROMPTS, model="tiny"):
    store = Store.open(tmp_path / name)
    store.add_prompts(prompts, prompt_set="demo")
    store.add_model(model, "diffusers", str(pipe_dir), params={"format": "diffusers"})
    return store


def run(store, models=("tiny",), seeds=2, batch_size=4, **kwargs):
    settings = GenerationSettings(**FAST, scheduler=kwargs.pop("scheduler", "default"))
    return run_generation(
        store, list(models), "demo", settings, seeds=seeds, batch_size=batch_size,
        device="cpu", progress=False, **kwargs,
    )  # fmt: skip


def images_by_key(store) -> dict[tuple[str, int], str]:
    """(external prompt id, seed index) -> pixel sha256."""
    with store.session() as s:
        rows = s.execute(
            select(db.Prompt.external_id, db.Image.params, db.Image.sha256).join(
                db.Prompt, db.Prompt.id == db.Image.prompt_id
            )
        ).all()
    return {(ext, params["seed_index"]): sha for ext, params, sha in rows}


@pytest.mark.slow
def test_generated_images_land_in_the_store_and_the_database(tmp_path, tiny_sd):
    store = workspace(tmp_path, "ws", tiny_sd)
    [summary] = run(store, seeds=2, batch_size=4, scheduler="dpm++2m")
    assert (summary.generated, summary.skipped, summary.broken) == (6, 0, 0)
    assert summary.truncated_prompts == 1 and summary.weighted_prompts == 1
    assert summary.images_per_second > 0
    with store.session() as s:
        images = s.scalars(select(db.Image).order_by(db.Image.id)).all()
    assert len(images) == 6 and len({i.sha256 for i in images}) == 6
    for image in images:
        assert store.images.exists(image.sha256)
        assert (image.width, image.height) == (SIZE, SIZE)
        assert image.broken is None and image.settings_hash
        p = image.params
        assert p["steps"] == 2 and p["scheduler"] == "dpm++2m" and p["dtype"] == "fp32"
        assert p["scheduler_class"] == "DPMSolverMultistepScheduler"
        assert p["pipeline"] == "StableDiffusionPipeline" and p["seed"] == image.seed
        assert p["truncated"] == image.source_name.startswith("generated:demo/long")
        # settings are in the database, never in the image file
        raw = image_file_bytes(store, image.sha256)
        assert b"tiny" not in raw and b"steps" not in raw and b"tEXt" not in raw
    assert len(store.images_frame()) == 6


def image_file_bytes(store, sha):
    return store.images.path_for(sha).read_bytes()


@pytest.mark.slow
def test_same_seed_same_image_across_batch_sizes_and_run_order(tmp_path, tiny_sd):
    a = workspace(tmp_path, "a", tiny_sd)
    run(a, seeds=2, batch_size=1)
    # another workspace: prompts inserted in reverse order (other ids, other run order)
    b = workspace(tmp_path, "b", tiny_sd, prompts=list(reversed(PROMPTS)))
    run(b, seeds=2, batch_size=3)
    first, second = images_by_key(a), images_by_key(b)
    assert len(first) == 6 and first == second
    # a different base seed really gives different images (the comparison can fail)
    c = workspace(tmp_path, "c", tiny_sd)
    settings = GenerationSettings(**FAST, base_seed=1)
    run_generation(c, ["tiny"], "demo", settings, seeds=2, batch_size=3, progress=False)
    assert not set(images_by_key(c).values()) & set(first.values())


@pytest.mark.slow
def test_an_interrupted_run_resumes_with_only_the_rest(tmp_path, tiny_sd):
    store = workspace(tmp_path, "ws", tiny_sd)

    def crash_after_first_batch(index: int, summary: ModelSummary) -> None:
        if index == 0:
            raise KeyboardInterrupt  # as if the process were killed between batches

    with pytest.raises(KeyboardInterrupt):
        run(store, seeds=2, batch_size=4, on_batch=crash_after_first_batch)
    assert len(store.images_frame()) == 4  # the first batch was committed
    [summary] = run(store, seeds=2, batch_size=4)
    assert (summary.skipped, summary.generated) == (4, 2)
    # --max-batches stops early; more seeds later only add the new ones
    [summary] = run(store, seeds=3, batch_size=2, max_batches=1)
    assert (summary.skipped, summary.generated, summary.stopped_early) == (6, 2, True)
    [summary] = run(store, seeds=3, batch_size=2)
    assert (summary.skipped, summary.generated) == (8, 1)
    assert len(store.images_frame()) == 9
    reference = workspace(tmp_path, "ref", tiny_sd)
    run(reference, seeds=3, batch_size=9)
    assert images_by_key(store) == images_by_key(reference)


@pytest.mark.slow
def test_a_nan_model_is_flagged_broken_and_counted(tmp_path, tiny_sd, nan_sd):
    store = workspace(tmp_path, "ws", tiny_sd)
    store.add_model("nanny", "diffusers", str(nan_sd), params={"format": "diffusers"})
    good, bad = run(store, models=("tiny", "nanny"), seeds=2, batch_size=6)
    assert (good.generated, good.broken) == (6, 0)
    assert bad.broken == 6 and bad.broken_kinds == {"nan": 6}
    with store.session() as s:
        flags = s.scalars(
            select(db.Image.broken).join(db.Model).where(db.Model.name == "nanny")
        ).all()
    assert flags and set(flags) == {"nan"}
    # broken images stay out of the pool that battles and metrics read
    assert set(store.images_frame()["model"]) == {"tiny"}
    assert store.status()["broken_images"] == len(flags)


# -- the command line ----------------------------------------------------------------------
def cli(tmp_path, *args):
    return main(["--workspace", str(tmp_path / "cli-ws"), *args])


def test_add_model_with_a_missing_path_is_a_clear_error(tmp_path, capsys):
    missing = tmp_path / "models" / "animefull-latest"
    assert cli(tmp_path, "add-model", "animefull", "--diffusers", str(missing)) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "model_index.json" in err and ".safetensors" in err
    assert "Traceback" not in err
    folder = tmp_path / "not-diffusers"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"x")
    assert cli(tmp_path, "add-model", "m", "--diffusers", str(folder)) == 2
    err = capsys.readouterr().err
    assert "no model_index.json" in err and "--single-file" in err
    assert cli(tmp_path, "add-model", "m", "--single-file", str(tmp_path / "x.ckpt")) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli(tmp_path, "status") == 0
    assert "models 0" in capsys.readouterr().out  # nothing half-registered


def test_single_file_errors_are_clear(tmp_path, capsys):
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"pickle")
    assert cli(tmp_path, "add-model", "m", "--single-file", str(ckpt)) == 2
    assert "convert it to .safetensors" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\xff" * 16)
    assert cli(tmp_path, "add-model", "m", "--single-file", str(corrupt)) == 2
    assert "not a readable .safetensors" in capsys.readouterr().err


@pytest.mark.slow
def test_single_file_without_configs_offline_says_how_to_fix(tmp_path, tiny_sd, capsys):
    """A real .safetensors file; offline, without --config, the architecture's configs are
    missing: the error names the file and the two fixes (--config or network)."""
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file

    unet = UNet2DConditionModel.from_pretrained(tiny_sd / "unet")
    ckpt = tmp_path / "tiny.safetensors"
    save_file({f"model.diffusion_model.{k}": v for k, v in unet.state_dict().items()}, ckpt)
    assert cli(tmp_path, "add-model", "single", "--single-file", str(ckpt)) == 0
    capsys.readouterr()
    store = Store.open(tmp_path / "cli-ws")
    store.add_prompts(PROMPTS[:1], prompt_set="demo")
    args = ["generate", "--models", "single", "--prompts", "demo", "--device", "cpu"]
    assert cli(tmp_path, *args, "--seeds", "1", "--size", "16x16", "--steps", "1") == 2
    err = capsys.readouterr().err
    assert str(ckpt) in err and "--config" in err and "ARENA_ALLOW_NETWORK" in err
    assert "Traceback" not in err


@pytest.mark.slow
def test_cli_add_model_and_generate_end_to_end(tmp_path, tiny_sd, capsys):
    assert cli(tmp_path, "add-model", "tiny", "--diffusers", str(tiny_sd)) == 0
    store = Store.open(tmp_path / "cli-ws")
    store.add_prompts(PROMPTS[:2], prompt_set="demo")
    args = ["generate", "--models", "tiny", "--prompts", "demo", "--device", "cpu"]
    args += ["--size", "16x16", "--steps", "2", "--seeds", "2", "--batch-size", "8"]
    assert cli(tmp_path, *args, "--scheduler", "euler_a", "--no-progress") == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("tiny"))
    assert row.split()[1:5] == ["4", "0", "0", "0"]  # generated, skipped, broken, dup
    assert cli(tmp_path, *args, "--scheduler", "euler_a", "--no-progress") == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("tiny"))
    assert row.split()[1:3] == ["0", "4"]  # all skipped on the re-run
    with store.session() as s:
        params = s.scalar(select(db.Image.params).limit(1))
    assert json.loads(json.dumps(params))["scheduler"] == "euler_a"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--scheduler", "dpm-fast"], "known schedulers: " + ", ".join(SCHEDULERS)),
        (["--prompts", "nope"], "unknown prompt set 'nope'; known sets: demo"),
        (["--models", "tiny,ghost"], "unknown model 'ghost'"),
        (["--size", "640"], "expected WIDTHxHEIGHT"),
        (["--device", "cuda"], "CUDA"),
    ],
)
def test_generate_refuses_bad_requests_clearly(tmp_path, tiny_sd, capsys, extra, message):
    import torch

    if extra[:2] == ["--device", "cuda"] and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert cli(tmp_path, "add-model", "tiny", "--diffusers", str(tiny_sd)) == 0
    Store.open(tmp_path / "cli-ws").add_prompts(PROMPTS[:1], prompt_set="demo")
    args = {"--models": "tiny", "--prompts": "demo", "--device": "cpu", "--size": "16x16"}
    for flag, value in zip(extra[::2], extra[1::2], strict=True):
        args[flag] = value
    flat = [x for kv in args.items() for x in kv]
    assert cli(tmp_path, "generate", *flat) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len(Store.open(tmp_path / "cli-ws").images_frame()) == 0


@pytest.mark.slow
def test_a_moved_checkpoint_is_reported_before_anything_loads(tmp_path, tiny_sd, capsys):
    import shutil

    moved = tmp_path / "moved"
    shutil.copytree(tiny_sd, moved)
    assert cli(tmp_path, "add-model", "tiny", "--diffusers", str(moved)) == 0
    shutil.rmtree(moved)
    Store.open(tmp_path / "cli-ws").add_prompts(PROMPTS[:1], prompt_set="demo")
    args = ["generate", "--models", "tiny", "--prompts", "demo", "--device", "cpu"]
    assert cli(tmp_path, *args) == 2
    err = capsys.readouterr().err
    assert "model 'tiny'" in err and str(moved) in err and "model_index.json" in err


def test_the_commands_module_stays_light():
    """`arena add-model` and `arena --help` must not load torch or diffusers."""
    import subprocess
    import sys

    code = (
        "import sys, arena.cli, arena.commands.generate, arena.intake.checkpoints; "
        "arena.cli.build_parser(); "
        "assert not {'torch', 'diffusers'} & set(sys.modules), sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
