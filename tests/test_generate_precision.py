"""Generation on a GPU, checked on the CPU: the VAE in reduced precision, VAE slicing, and
PNG encoding and commits off the pipeline's critical path (issue 19).

fp16 overflow is emulated honestly: the tiny VAE's decoder input convolution is scaled
by 1e6 (the GroupNorms after it make the image independent of that scale in fp32, as a
real VAE's large activations are harmless in fp32), and every decoder activation that is
not computed in fp32 is rounded through float16, so values past 65504 become inf as they
do on a GPU. bf16 on the CPU has fp32's range: without the rounding nothing overflows.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from sqlalchemy import select

from arena.intake.checkpoints import ModelSource
from arena.storage import db
from arena.storage.store import PromptRow, Store
from scoring import _compat  # noqa: F401  (before diffusers imports torchvision)
from scoring.generation import job as job_module
from scoring.generation.checks import broken_reason, to_uint8
from scoring.generation.job import format_summary, generate_batch, generate_model, run_generation
from scoring.generation.pipeline import load_pipeline, quiet_libraries
from scoring.generation.plan import plan_jobs
from scoring.generation.settings import GenerationSettings
from scoring.generation.writer import BatchWriter

SIZE = 16
FAST = dict(width=SIZE, height=SIZE, steps=2, cfg=5.0)
PROMPTS = [PromptRow("a red fox in the snow", "fox"), PromptRow("a lighthouse", "lighthouse")]


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Extra OpenMP threads spin-wait on a busy 2-core machine; restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- the settings hash ---------------------------------------------------------------------
def test_vae_fp32_enters_the_hash_only_when_on():
    """The hashes below are those of the settings before ``vae_fp32`` existed: workspaces
    made then must resume."""
    assert GenerationSettings().settings_hash() == "afa9d7f3dd28aacf21d703c762adfcdc"
    bf16 = GenerationSettings(**FAST, dtype="bf16")
    assert bf16.settings_hash() == "ebaac4d1dfc46d676fe4973f438a666a"
    on = GenerationSettings(**FAST, dtype="bf16", vae_fp32=True)
    assert on.settings_hash() != bf16.settings_hash()
    # an fp32 run decodes in fp32 already: the flag changes nothing, nor the hash
    fp32 = GenerationSettings(**FAST, vae_fp32=True)
    assert not fp32.vae_fp32
    assert fp32.settings_hash() == GenerationSettings(**FAST).settings_hash()


# -- the tiny pipelines --------------------------------------------------------------------
def emulate_fp16_range(module) -> None:
    """Round every leaf activation of ``module`` through float16 unless it is fp32."""

    def hook(_mod, _args, out):
        if isinstance(out, torch.Tensor) and out.dtype != torch.float32:
            return out.to(torch.float16).to(out.dtype)
        return None

    for m in module.modules():
        if not list(m.children()):
            m.register_forward_hook(hook)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    from scoring.testing.tiny_diffusers import save_tiny_sd

    return save_tiny_sd(tmp_path_factory.mktemp("tiny-sd-precision") / "pipe")


@pytest.fixture(scope="session")
def overflow_dir(tmp_path_factory):
    """A tiny pipeline whose VAE decoder has activations ~1e6: fine in fp32, inf in fp16."""
    from scoring.testing.tiny_diffusers import build_tiny_sd

    pipe = build_tiny_sd()
    with torch.no_grad():
        pipe.vae.decoder.conv_in.weight.mul_(1e6)
        pipe.vae.decoder.conv_in.bias.mul_(1e6)
    folder = tmp_path_factory.mktemp("overflow-sd") / "pipe"
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def load(folder, dtype="fp32", fp16_range=False, **kwargs):
    with quiet_libraries():
        pipe = load_pipeline(ModelSource(str(folder), "diffusers"), "cpu", dtype, **kwargs)
    if fp16_range:
        emulate_fp16_range(pipe.vae.decoder)
    return pipe


def decoder_dtypes(pipe) -> list[torch.dtype]:
    """The dtype of every decoder forward from now on (slicing: one per image)."""
    seen: list[torch.dtype] = []
    pipe.vae.decoder.register_forward_pre_hook(
        lambda mod, args: seen.append(mod.conv_in.weight.dtype)
    )
    return seen


JOBS = plan_jobs([(1, "s/fox", "a red fox"), (2, "s/house", "a lighthouse")], 2, 0)[:3]


def test_the_emulated_overflow_gives_nan_images_in_plain_diffusers(overflow_dir):
    """The premise: the same latents decode to images in fp32 and to NaN in 'fp16'."""
    reference = load(overflow_dir, "fp32", fp16_range=True)
    images = generate_batch(reference, JOBS, GenerationSettings(**FAST)).images
    assert [broken_reason(im) for im in images] == [None] * 3
    pipe = load(overflow_dir, "bf16", fp16_range=True)
    gens = [torch.Generator().manual_seed(j.seed) for j in JOBS]
    with torch.inference_mode():
        out = pipe(
            prompt=[j.text for j in JOBS], num_inference_steps=2, guidance_scale=5.0,
            width=SIZE, height=SIZE, generator=gens, output_type="np",
        ).images  # fmt: skip
    assert [broken_reason(im) for im in out] == ["nan"] * 3


def test_a_nan_decode_is_retried_once_in_fp32_from_the_same_latents(overflow_dir):
    settings = GenerationSettings(**FAST, dtype="bf16")
    pipe = load(overflow_dir, "bf16", fp16_range=True)
    seen = decoder_dtypes(pipe)
    result = generate_batch(pipe, JOBS, settings)
    assert [broken_reason(im) for im in result.images] == [None] * 3
    assert result.vae_retried == [True] * 3
    # one reduced-precision decode per image (slicing), then one fp32 decode of each
    assert seen == [torch.bfloat16] * 3 + [torch.float32] * 3
    assert pipe.vae.dtype == torch.bfloat16 and "decode" not in vars(pipe.vae)
    assert not any(p.is_inference() for p in pipe.vae.parameters())
    # a VAE kept in fp32 from the start gives the same images, up to the retry's rounding
    # to the batch's dtype (bf16: 2**-8 in [0.5, 1)): the latents were the same
    fp32_vae = load(overflow_dir, "bf16", fp16_range=True, vae_fp32=True)
    reference = generate_batch(fp32_vae, JOBS, settings).images
    np.testing.assert_allclose(result.images, reference, rtol=0, atol=2**-8)
    assert np.abs(result.images - reference).mean() < 1e-3


def test_only_the_images_that_overflowed_are_decoded_again(tiny_dir):
    """The second image's reduced-precision decode is NaN: only it is decoded again, the
    others keep their own pixels (they do not depend on their batch-mates)."""
    settings = GenerationSettings(**FAST, dtype="bf16")
    clean = generate_batch(load(tiny_dir, "bf16"), JOBS, settings)
    pipe = load(tiny_dir, "bf16")
    calls = []

    def nan_on_second_reduced_decode(mod, args, out):
        calls.append(out.dtype)
        if out.dtype != torch.float32 and len(calls) == 2:
            return torch.full_like(out, float("nan"))
        return None

    pipe.vae.decoder.register_forward_hook(nan_on_second_reduced_decode)
    result = generate_batch(pipe, JOBS, settings)
    assert result.vae_retried == [False, True, False]
    assert calls == [torch.bfloat16] * 3 + [torch.float32]
    assert clean.vae_retried == [False] * 3
    np.testing.assert_array_equal(result.images[[0, 2]], clean.images[[0, 2]])
    assert broken_reason(result.images[1]) is None
    assert not np.array_equal(result.images[1], clean.images[1])  # fp32, not bf16, pixels


def test_vae_fp32_decodes_every_image_in_fp32_with_a_reduced_precision_unet(overflow_dir):
    pipe = load(overflow_dir, "bf16", fp16_range=True, vae_fp32=True)
    assert pipe.vae.dtype == torch.float32 and pipe.unet.dtype == torch.bfloat16
    seen = decoder_dtypes(pipe)
    result = generate_batch(pipe, JOBS, GenerationSettings(**FAST, dtype="bf16", vae_fp32=True))
    assert [broken_reason(im) for im in result.images] == [None] * 3
    assert result.vae_retried == [False] * 3 and seen == [torch.float32] * 3


def test_vae_slicing_is_on_and_keeps_the_pixels(tiny_dir):
    pipe = load(tiny_dir)
    assert pipe.vae.use_slicing
    seen = decoder_dtypes(pipe)
    settings = GenerationSettings(**FAST)
    sliced = generate_batch(pipe, JOBS, settings).images
    assert len(seen) == 3  # one decoder pass per image
    pipe.vae.disable_slicing()
    whole = generate_batch(pipe, JOBS, settings).images
    assert len(seen) == 4
    # the same pixels; the floats differ in the last bits (CPU kernels depend on the batch)
    np.testing.assert_array_equal(to_uint8(sliced), to_uint8(whole))
    np.testing.assert_allclose(sliced, whole, rtol=0, atol=1e-5)


# -- the job: records, summary, command line -----------------------------------------------
def workspace(tmp_path, folder, name="ws"):
    store = Store.open(tmp_path / name)
    store.add_prompts(PROMPTS, prompt_set="demo")
    store.add_model("tiny", "diffusers", str(folder), params={"format": "diffusers"})
    return store


@pytest.mark.slow
def test_the_job_records_vae_retries_per_image_and_in_the_summary(
    tmp_path, overflow_dir, monkeypatch
):
    def load_with_fp16_range(*args, **kwargs):
        pipe = load_pipeline(*args, **kwargs)
        emulate_fp16_range(pipe.vae.decoder)
        return pipe

    monkeypatch.setattr(job_module, "load_pipeline", load_with_fp16_range)
    store = workspace(tmp_path, overflow_dir)
    settings = GenerationSettings(**FAST, dtype="bf16")
    [summary] = run_generation(
        store, ["tiny"], "demo", settings, seeds=2, batch_size=3, progress=False
    )
    assert (summary.generated, summary.broken, summary.vae_retries) == (4, 0, 4)
    assert "4 images came out NaN" in format_summary([summary])
    with store.session() as s:
        params = s.scalars(select(db.Image.params)).all()
    assert [p["vae_retry"] for p in params] == ["fp32"] * 4
    assert all(p["vae_fp32"] is False for p in params)
    # --vae-fp32: other settings (hash), no retries, nothing broken
    on = GenerationSettings(**FAST, dtype="bf16", vae_fp32=True)
    [summary] = run_generation(store, ["tiny"], "demo", on, seeds=2, batch_size=3, progress=False)
    assert (summary.generated, summary.skipped, summary.vae_retries) == (4, 0, 0)
    assert "came out NaN" not in format_summary([summary])
    with store.session() as s:
        rows = s.execute(select(db.Image.settings_hash, db.Image.params)).all()
    fp32_rows = [p for h, p in rows if h == on.settings_hash()]
    assert len(fp32_rows) == 4 and all("vae_retry" not in p and p["vae_fp32"] for p in fp32_rows)


@pytest.mark.slow
def test_cli_vae_fp32_reaches_the_settings(tmp_path, tiny_dir, capsys):
    from arena.cli import main

    ws = tmp_path / "cli-ws"
    assert main(["--workspace", str(ws), "add-model", "tiny", "--diffusers", str(tiny_dir)]) == 0
    Store.open(ws).add_prompts(PROMPTS[:1], prompt_set="demo")
    args = ["--workspace", str(ws), "generate", "--models", "tiny", "--prompts", "demo"]
    args += ["--device", "cpu", "--dtype", "bf16", "--size", "16x16", "--steps", "1"]
    assert main([*args, "--seeds", "1", "--vae-fp32", "--no-progress"]) == 0
    with Store.open(ws).session() as s:
        image = s.scalars(select(db.Image)).one()
    assert image.params["vae_fp32"] is True and image.params["dtype"] == "bf16"
    expected = GenerationSettings(16, 16, steps=1, dtype="bf16", vae_fp32=True)
    assert image.settings_hash == expected.settings_hash()


# -- writing off the critical path ---------------------------------------------------------
class FakePipe:
    """Returns seeded random images at once and notes when each call starts."""

    def __init__(self):
        self.started = [threading.Event() for _ in range(16)]
        self.calls = 0

    def __call__(self, prompt, num_images_per_prompt, generator, width, height, **_):
        self.started[self.calls].set()
        self.calls += 1
        images = [
            np.random.default_rng(g.initial_seed()).random((height, width, 3)) for g in generator
        ]
        return type("Out", (), {"images": np.stack(images).astype(np.float32)})()


def fake_job(tmp_path, pipe, batches=3, batch_size=2, **kwargs):
    store = Store.open(tmp_path / "ws")
    store.add_prompts([PromptRow(f"prompt {i}", f"p{i}") for i in range(batches)], prompt_set="d")
    model_id = store.add_model("fake", "diffusers", "fake")
    from scoring.generation.job import load_prompts

    prompts = load_prompts(store, "d")
    settings = GenerationSettings(**FAST)

    def run():
        return generate_model(
            store, model_id, "fake", prompts, settings, pipe,
            seeds=batch_size, batch_size=batch_size, progress=False, **kwargs,
        )  # fmt: skip

    return store, run


def test_a_batch_is_written_while_the_next_one_generates(tmp_path, monkeypatch):
    """Writing batch 0 waits until the pipeline has started batch 1: a job that wrote
    before generating the next batch would wait out the timeout and fail."""
    pipe = FakePipe()
    committed = []
    store, run = fake_job(tmp_path, pipe, on_batch=lambda i, s: committed.append((i, s.generated)))
    put_image = store.images.put_image
    overlapped = []

    def slow_put(img, *args, **kwargs):
        if not overlapped:
            overlapped.append(pipe.started[1].wait(timeout=10))
        return put_image(img, *args, **kwargs)

    monkeypatch.setattr(store.images, "put_image", slow_put)
    summary = run()
    assert overlapped == [True]
    assert committed == [(0, 2), (1, 4), (2, 6)]  # on_batch after each commit, in order
    assert summary.generated == 6 and len(store.images_frame()) == 6


def test_an_error_in_the_writer_stops_the_job_on_the_main_thread(tmp_path, monkeypatch):
    pipe = FakePipe()
    store, run = fake_job(tmp_path, pipe, batches=6)
    put_image = store.images.put_image
    count = [0]

    def failing_put(img, *args, **kwargs):
        count[0] += 1
        if count[0] == 3:  # the first image of batch 1
            raise OSError("disk full")
        return put_image(img, *args, **kwargs)

    monkeypatch.setattr(store.images, "put_image", failing_put)
    with pytest.raises(OSError, match="disk full"):
        run()
    assert len(store.images_frame()) == 2  # batch 0 committed, batch 1 rolled back
    assert pipe.calls < 6  # the job stopped instead of generating everything


def test_batch_writer_raises_its_error_on_put_and_close():
    written = []

    def write(item):
        if item == 1:
            raise ValueError("bad item 1")
        time.sleep(0.01)
        written.append(item)

    writer = BatchWriter(write)
    with pytest.raises(ValueError, match="bad item 1"):
        for item in range(100):
            writer.put(item)
    with pytest.raises(ValueError, match="bad item 1"):
        writer.close()
    assert written == [0]  # nothing after the error is written
    ok = BatchWriter(written.append, depth=2)
    for item in range(5):
        ok.put(item)
    ok.close()
    assert written == [0, 0, 1, 2, 3, 4]
