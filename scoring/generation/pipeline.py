"""Loading a diffusers text-to-image pipeline: device, dtype, scheduler, single files.

One pipeline is in memory at a time (``release_memory`` after each model). The
safety checker is off: the arena shows raters what the model made. VAE slicing is
always on: a batch decodes one image at a time (an SDXL batch of 8 at 1024x1024 would
otherwise hold every image's decoder activations at once); it changes memory, not
pixels.

**The VAE in fp16.** SD1.x VAEs -- above all the NAI-derived ones anime checkpoints
ship -- overflow in fp16: activations pass 65504, become inf, the next GroupNorm turns
every pixel NaN and the image is black. ``guarded_decode`` wraps the pipeline's own
``vae.decode`` for one call and does two things:

- with ``vae_fp32`` (``--vae-fp32``) the VAE was loaded into fp32 while the UNet runs
  in fp16/bf16; the wrapper casts the latents to fp32, so every image decodes in fp32
  (A1111's ``--no-half-vae``);
- otherwise an image whose reduced-precision decode holds NaN/inf is decoded once more,
  from the same latents, with the VAE upcast to fp32 for that decode (weights round-trip
  fp16 -> fp32 -> fp16 exactly), its output rounded to the batch's dtype like every other
  image's, and the call's ``DecodeRecord`` says which images.

Wrapping ``decode`` rather than decoding ``output_type="latent"`` here keeps the
pipeline's own un-scaling (scaling/shift factor, latents mean/std), SDXL's
``force_upcast`` (diffusers upcasts such a VAE itself, so its decode is already fp32),
watermark and ``image_processor.postprocess`` -- for every pipeline class, with no
second copy per architecture. The retry is per image, not per batch: the other images
keep their own decode, so an image's pixels do not depend on its batch-mates.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from arena.intake.checkpoints import ModelSource
from scoring import _compat  # noqa: F401  (before diffusers imports torchvision)
from scoring.generation.settings import SCHEDULERS, GenerationError, canonical_scheduler


def apply_scheduler(pipe, name: str) -> None:
    """Replace the pipeline's scheduler by ``name``, keeping the checkpoint's noise schedule."""
    import diffusers

    class_name, overrides = SCHEDULERS[canonical_scheduler(name)]
    if class_name:
        cls = getattr(diffusers, class_name)
        pipe.scheduler = cls.from_config(pipe.scheduler.config, **overrides)


# -- loading -------------------------------------------------------------------------------
def resolve_device_dtype(device: str, dtype: str) -> tuple[str, str]:
    """Check the device exists and pick the dtype ("auto": fp16 on CUDA, fp32 on CPU)."""
    import torch

    if device == "mps" and not torch.backends.mps.is_available():
        raise GenerationError("--device mps: the Apple MPS backend is not available here.")
    if dtype == "auto":
        dtype = "fp16" if device.startswith(("cuda", "mps")) else "fp32"
    if dtype not in ("fp32", "fp16", "bf16"):
        raise GenerationError(f"--dtype {dtype}: expected auto, fp32, fp16 or bf16.")
    if dtype == "fp16" and device == "cpu":
        raise GenerationError(
            "--dtype fp16 on --device cpu: half precision is a GPU format and most CPU "
            "kernels lack it. Use --dtype fp32 (or bf16) on the CPU."
        )
    from scoring.devices import check_device

    try:  # a GPU is visible, the index exists and can do bf16: before the weights load
        check_device(device, dtype)
    except ValueError as exc:
        raise GenerationError(str(exc)) from None
    return device, dtype


def _torch_dtype(dtype: str):
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]


def _dtype_kwarg() -> str:
    """diffusers >= 0.36 calls the loading dtype ``dtype``; older versions ``torch_dtype``."""
    import diffusers
    from packaging.version import Version

    return "dtype" if Version(diffusers.__version__) >= Version("0.36") else "torch_dtype"


@contextmanager
def quiet_libraries():
    """Silence diffusers/transformers per-call bars and warnings; the job reports instead."""
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    levels = dlog.get_verbosity(), tlog.get_verbosity()
    bars = dlog.is_progress_bar_enabled(), tlog.is_progress_bar_enabled()
    dlog.set_verbosity_error()
    tlog.set_verbosity_error()
    dlog.disable_progress_bar()
    tlog.disable_progress_bar()
    try:
        yield
    finally:
        dlog.set_verbosity(levels[0])
        tlog.set_verbosity(levels[1])
        if bars[0]:
            dlog.enable_progress_bar()
        if bars[1]:
            tlog.enable_progress_bar()


def _pipeline_components(source: str, local_only: bool) -> dict | None:
    from diffusers import DiffusionPipeline

    try:
        return DiffusionPipeline.load_config(source, local_files_only=local_only)
    except Exception:
        return None


def _checkpoint_shapes(path: str) -> dict:
    """Key -> object with ``.shape`` for a safetensors file, without loading the tensors."""
    from types import SimpleNamespace

    from safetensors import safe_open

    with safe_open(path, framework="pt") as fh:
        return {k: SimpleNamespace(shape=tuple(fh.get_slice(k).get_shape())) for k in fh.keys()}  # noqa: SIM118


SINGLE_FILE_PIPELINES = {
    "v1": "StableDiffusionPipeline",
    "v2": "StableDiffusionPipeline",
    "xl_base": "StableDiffusionXLPipeline",
    "playground-v2-5": "StableDiffusionXLPipeline",
}


def _load_single_file(src: ModelSource, torch_dtype, local_only: bool):
    import diffusers
    from diffusers.loaders.single_file_utils import (
        DIFFUSERS_DEFAULT_PIPELINE_PATHS,
        infer_diffusers_model_type,
    )

    if src.config:
        index = _pipeline_components(src.config, local_only) or {}
        class_name = index.get("_class_name", "StableDiffusionPipeline")
        config = src.config
    else:
        try:
            model_type = infer_diffusers_model_type(_checkpoint_shapes(src.source))
        except Exception as exc:
            raise GenerationError(
                f"{src.source}: cannot tell which architecture this checkpoint is ({exc}); "
                "register it again with --config FOLDER naming a diffusers folder of the same "
                "architecture."
            ) from None
        class_name = SINGLE_FILE_PIPELINES.get(model_type)
        if class_name is None:
            raise GenerationError(
                f"{src.source}: a {model_type!r} checkpoint; single-file text-to-image loading "
                f"supports {', '.join(SINGLE_FILE_PIPELINES)}. Convert it to a diffusers folder."
            )
        config = DIFFUSERS_DEFAULT_PIPELINE_PATHS[model_type]["pretrained_model_name_or_path"]
        from arena.intake.checkpoints import hub_cached

        if local_only and not hub_cached(config):
            raise GenerationError(
                f"{src.source}: a single-file {model_type} checkpoint needs the diffusers "
                f"configs of its architecture ({config} on the hub), which are not in the local "
                "Hugging Face cache and downloads are off. Register it with --config FOLDER (a "
                "local diffusers folder of the same architecture, e.g. the base model) or set "
                "ARENA_ALLOW_NETWORK=1 to fetch the configs (a few kB)."
            )
    cls = getattr(diffusers, class_name)
    kwargs: dict[str, Any] = {}
    if "safety_checker" in (_pipeline_components(config, local_only) or {"safety_checker": 1}):
        kwargs["safety_checker"] = None
    kwargs[_dtype_kwarg()] = torch_dtype
    return cls.from_single_file(src.source, config=config, local_files_only=local_only, **kwargs)


def load_pipeline(
    src: ModelSource,
    device: str,
    dtype: str,
    *,
    allow_network: bool = False,
    scheduler: str = "default",
    attention_slicing: bool = False,
    vae_tiling: bool = False,
    vae_fp32: bool = False,
):
    """Load a text-to-image pipeline, safety checker off, on ``device`` in ``dtype``.

    ``vae_fp32``: the VAE is moved to fp32 after loading (run the pipeline through
    ``guarded_decode``, which casts the latents to it). VAE slicing is always on.
    """
    from diffusers import AutoPipelineForText2Image

    local_only = not allow_network
    torch_dtype = _torch_dtype(dtype)
    try:
        if src.format == "single_file":
            pipe = _load_single_file(src, torch_dtype, local_only)
        else:
            kwargs: dict[str, Any] = {_dtype_kwarg(): torch_dtype}
            if "safety_checker" in (_pipeline_components(src.source, local_only) or {}):
                kwargs["safety_checker"] = None
                kwargs["requires_safety_checker"] = False
            pipe = AutoPipelineForText2Image.from_pretrained(
                src.source, local_files_only=local_only, **kwargs
            )
    except GenerationError:
        raise
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GenerationError(
            f"cannot load the pipeline from {src.source} ({first}). Expected a diffusers "
            "folder with model_index.json and its component folders, a cached hub id, or a "
            ".safetensors checkpoint; check the path, or set ARENA_ALLOW_NETWORK=1 if it must "
            "be downloaded."
        ) from None
    if getattr(pipe, "safety_checker", None) is not None:
        pipe.safety_checker = None
    apply_scheduler(pipe, scheduler)
    pipe = pipe.to(device)
    if attention_slicing:  # replaces torch 2's fused SDPA attention: for memory only
        pipe.enable_attention_slicing()
    vae = getattr(pipe, "vae", None)
    if vae is not None:
        if vae_fp32:
            import torch

            vae.to(torch.float32)
        if hasattr(vae, "enable_slicing"):
            vae.enable_slicing()
        if vae_tiling:
            vae.enable_tiling()
    pipe.set_progress_bar_config(disable=True)
    return pipe


# -- decoding ------------------------------------------------------------------------------
@dataclass
class DecodeRecord:
    """What ``guarded_decode`` saw: per decoded image, in order, whether it was retried."""

    retried: list[bool] = field(default_factory=list)


def _decoded(out):
    """The image tensor of a ``vae.decode`` result (tuple, DecoderOutput or tensor)."""
    if isinstance(out, tuple):
        return out[0]
    return getattr(out, "sample", out)


def _with_decoded(out, sample):
    if isinstance(out, tuple):
        return (sample, *out[1:])
    if hasattr(out, "sample"):
        return type(out)(sample=sample)
    return sample


@contextmanager
def guarded_decode(pipe):
    """Wrap ``pipe.vae.decode`` for one pipeline call (see the module docstring)."""
    import torch

    vae = getattr(pipe, "vae", None)
    record = DecodeRecord()
    if vae is None or not hasattr(vae, "decode"):
        yield record
        return
    own = "decode" in vars(vae)
    original = vae.decode

    def decode(z, *args, **kwargs):
        dtype = vae.dtype
        out = original(z.to(dtype), *args, **kwargs)
        sample = _decoded(out)
        if dtype == torch.float32:
            record.retried += [False] * len(sample)
            return out
        bad = ~torch.isfinite(sample.flatten(1)).all(dim=1)
        record.retried += bad.tolist()
        if not bool(bad.any()):
            return out
        rows = bad.nonzero().flatten()
        with torch.inference_mode(False):  # the weights stay ordinary tensors, not
            vae.to(torch.float32)  # inference ones that later autograd or moves refuse
        try:
            again = _decoded(original(z[rows].to(torch.float32), *args, **kwargs))
        finally:
            with torch.inference_mode(False):
                vae.to(dtype)
        sample = sample.clone()
        sample[rows] = again.to(sample.dtype)  # the batch's dtype: the post-processing of
        return _with_decoded(out, sample)  # the other images must not change with it

    vae.decode = decode
    try:
        yield record
    finally:
        if own:
            vae.decode = original
        else:
            del vae.decode


def release_memory(device: str) -> None:
    """After ``del pipe``: collect it and give the CUDA cache back before the next model."""
    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()
