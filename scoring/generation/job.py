"""The generation job: diffusers checkpoints x a prompt set -> the image pool of a workspace.

Decisions (also in the README, "Generating images"):

- **Seeds.** Image (prompt, seed index) is made from its own ``torch.Generator``
  (on the CPU, so the starting noise does not depend on the device) seeded with
  ``derive_seed(base_seed, "<prompt set>/<prompt id>", seed index)``: a stable
  hash, so the image is the same whatever the batch size, the order of the run,
  or which other prompts share its batch. Every model gets the same seed for the
  same (prompt, seed index), so models start from the same noise.
- **Resume.** An image is identified by (model, prompt, seed, settings hash). The
  hash covers what changes the pixels (size, steps, guidance, scheduler, negative
  prompt, base seed, dtype, long-prompt policy), not what only changes speed or
  memory (device, batch size, attention slicing, VAE tiling). Already stored
  images are skipped; each batch is committed on its own, so a killed run loses
  at most the batch in flight. Raising ``--seeds`` later adds only the new seeds.
- **Broken outputs** are detected on the raw float output (before the conversion
  to 8-bit, so NaNs are visible): ``nan`` (any NaN/inf), ``black`` (every value
  <= 2/255), ``uniform`` (every channel spans <= 2/255 levels). They are stored
  with that flag, which keeps them out of matchmaking and metrics.
- **Long prompts** are truncated to the text encoder's 77 tokens (diffusers'
  own behaviour, which is what the checkpoint's authors measured); the job
  counts the truncated prompts, warns, and records ``truncated`` per image.
  Prompt-weighting syntax such as ``(word:1.2)`` is not interpreted: it reaches
  the tokenizer as literal text. The job counts such prompts and says so.
"""

from __future__ import annotations

import gc
import hashlib
import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from arena.intake.checkpoints import CheckpointError, ModelSource, check_source
from scoring import _compat  # noqa: F401  (before diffusers imports torchvision)

LONG_PROMPT_POLICY = "truncate"
BLACK_MAX = 2  # 8-bit levels
UNIFORM_RANGE = 2  # 8-bit levels per channel
WEIGHTING = re.compile(r"\([^()]*:\s*-?\d+(\.\d+)?\s*\)|\[[^\[\]]+\]|\({2,}")


class GenerationError(ValueError):
    """A generation request that cannot run; the message names the input and the fix."""


# -- schedulers ----------------------------------------------------------------------------
# Friendly name -> (diffusers scheduler class, config overrides). "default" keeps the
# checkpoint's own scheduler. Names follow the A1111/ComfyUI sampler names users know.
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "default": ("", {}),
    "ddim": ("DDIMScheduler", {}),
    "ddpm": ("DDPMScheduler", {}),
    "pndm": ("PNDMScheduler", {}),
    "lms": ("LMSDiscreteScheduler", {}),
    "lms_karras": ("LMSDiscreteScheduler", {"use_karras_sigmas": True}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "dpm2": ("KDPM2DiscreteScheduler", {}),
    "dpm2_a": ("KDPM2AncestralDiscreteScheduler", {}),
    "dpm++2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "dpm++2m_karras": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True},
    ),
    "dpm++2m_sde": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    "dpm++2m_sde_karras": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True},
    ),
    "unipc": ("UniPCMultistepScheduler", {}),
    "lcm": ("LCMScheduler", {}),
}


def canonical_scheduler(name: str) -> str:
    """The table name of a scheduler ("DPM++ 2M Karras" -> "dpm++2m_karras"), or an error."""
    key = re.sub(r"[\s\-]+", "_", name.strip().lower())
    key = key.replace("dpm++_", "dpm++")
    if key not in SCHEDULERS:
        raise GenerationError(
            f"unknown scheduler {name!r}; known schedulers: {', '.join(SCHEDULERS)}."
        )
    return key


def apply_scheduler(pipe, name: str) -> None:
    """Replace the pipeline's scheduler by ``name``, keeping the checkpoint's noise schedule."""
    import diffusers

    class_name, overrides = SCHEDULERS[canonical_scheduler(name)]
    if class_name:
        cls = getattr(diffusers, class_name)
        pipe.scheduler = cls.from_config(pipe.scheduler.config, **overrides)


# -- settings and seeds --------------------------------------------------------------------
@dataclass(frozen=True)
class GenerationSettings:
    """What changes the pixels; ``settings_hash`` identifies images made with it."""

    width: int = 512
    height: int = 512
    steps: int = 28
    cfg: float = 7.0
    scheduler: str = "default"
    negative: str = ""
    base_seed: int = 0
    dtype: str = "fp32"
    long_prompts: str = LONG_PROMPT_POLICY

    def __post_init__(self):
        object.__setattr__(self, "scheduler", canonical_scheduler(self.scheduler))
        if self.width <= 0 or self.height <= 0 or self.width % 8 or self.height % 8:
            raise GenerationError(
                f"image size {self.width}x{self.height}: width and height must be positive "
                "multiples of 8 (the VAE works on 8x8 blocks), e.g. --size 640x640."
            )
        if self.steps < 1:
            raise GenerationError(f"--steps {self.steps}: needs at least 1 denoising step.")
        if self.dtype not in ("fp32", "fp16", "bf16"):
            raise GenerationError(f"dtype {self.dtype!r}: expected fp32, fp16 or bf16.")

    def settings_hash(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:32]


def derive_seed(base_seed: int, prompt_key: str, seed_index: int, salt: int = 0) -> int:
    """A stable 31-bit seed for (base seed, prompt, seed index); fits every SQL INTEGER."""
    text = f"{base_seed}\x1f{prompt_key}\x1f{seed_index}\x1f{salt}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") & 0x7FFF_FFFF


@dataclass(frozen=True)
class Job:
    prompt_id: int
    prompt_key: str
    text: str
    seed_index: int
    seed: int


def plan_jobs(prompts: Sequence[tuple[int, str, str]], seeds: int, base_seed: int) -> list[Job]:
    """Jobs for (prompt_id, prompt_key, text) x seed indices, prompt-major.

    Two seed indices of one prompt never share a seed (a hash collision is
    re-drawn with a salt), so (prompt, seed) identifies an image.
    """
    jobs = []
    for prompt_id, key, text in prompts:
        used: set[int] = set()
        for index in range(seeds):
            salt, seed = 0, derive_seed(base_seed, key, index)
            while seed in used:
                salt += 1
                seed = derive_seed(base_seed, key, index, salt)
            used.add(seed)
            jobs.append(Job(prompt_id, key, text, index, seed))
    return jobs


def make_batches(jobs: Sequence[Job], batch_size: int) -> list[list[Job]]:
    if batch_size < 1:
        raise GenerationError(f"--batch-size {batch_size}: must be at least 1.")
    return [list(jobs[i : i + batch_size]) for i in range(0, len(jobs), batch_size)]


def call_layout(batch: Sequence[Job]) -> tuple[list[str], int]:
    """(prompt list, num_images_per_prompt) for one pipeline call.

    When every prompt in the batch needs the same number of images (the usual
    case), each prompt is encoded once and ``num_images_per_prompt`` repeats it;
    otherwise (a resumed run with a partial prompt) every job is its own entry.
    Either way the order of images is the order of ``batch``.
    """
    counts: dict[int, int] = {}
    texts: dict[int, str] = {}
    for job in batch:
        counts[job.prompt_id] = counts.get(job.prompt_id, 0) + 1
        texts[job.prompt_id] = job.text
    per = set(counts.values())
    contiguous = [j.prompt_id for j in batch] == [pid for pid in counts for _ in range(counts[pid])]
    if len(per) == 1 and contiguous:
        return [texts[pid] for pid in counts], per.pop()
    return [job.text for job in batch], 1


# -- broken outputs ------------------------------------------------------------------------
def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float HxWx3 in [0, 1] -> uint8, as diffusers' numpy_to_pil does (NaN -> 0)."""
    clean = np.nan_to_num(np.asarray(image, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    return (np.clip(clean, 0.0, 1.0) * 255).round().astype(np.uint8)


def broken_reason(image: np.ndarray) -> str | None:
    """ "nan", "black", "uniform" or None for one raw float HxWx3 output in [0, 1]."""
    if not np.isfinite(image).all():
        return "nan"
    q = to_uint8(image)
    if int(q.max()) <= BLACK_MAX:
        return "black"
    flat = q.reshape(-1, q.shape[-1]).astype(np.int16)
    if int((flat.max(axis=0) - flat.min(axis=0)).max()) <= UNIFORM_RANGE:
        return "uniform"
    return None


# -- prompts -------------------------------------------------------------------------------
def token_count(tokenizer, text: str) -> int:
    """Tokens of ``text`` including the start/end tokens, without truncation."""
    return len(tokenizer(text, truncation=False, add_special_tokens=True)["input_ids"])


def truncated_prompts(pipe, texts: Sequence[str]) -> set[str]:
    """The texts longer than the text encoder's context (77 tokens for CLIP)."""
    tokenizer = getattr(pipe, "tokenizer", None) or getattr(pipe, "tokenizer_2", None)
    if tokenizer is None:
        return set()
    limit = int(getattr(tokenizer, "model_max_length", 77) or 77)
    if limit > 100_000:  # tokenizers without a limit report a huge sentinel
        return set()
    return {t for t in set(texts) if token_count(tokenizer, t) > limit}


def uses_weighting(text: str) -> bool:
    return bool(WEIGHTING.search(text))


# -- loading -------------------------------------------------------------------------------
def resolve_device_dtype(device: str, dtype: str) -> tuple[str, str]:
    """Check the device exists and pick the dtype ("auto": fp16 on CUDA, fp32 on CPU)."""
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise GenerationError(
            f"--device {device}: no CUDA GPU is visible to torch {torch.__version__} "
            "(a CPU build, or no driver). Use --device cpu, or install a CUDA build of torch."
        )
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
):
    """Load a text-to-image pipeline, safety checker off, on ``device`` in ``dtype``."""
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
    if attention_slicing:
        pipe.enable_attention_slicing()
    if vae_tiling and hasattr(pipe, "vae"):
        pipe.vae.enable_tiling()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def release_memory(device: str) -> None:
    """After ``del pipe``: collect it and give the CUDA cache back before the next model."""
    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


# -- the job -------------------------------------------------------------------------------
@dataclass
class ModelSummary:
    model: str
    planned: int = 0
    generated: int = 0
    skipped: int = 0
    broken: int = 0
    broken_kinds: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    truncated_prompts: int = 0
    weighted_prompts: int = 0
    seconds: float = 0.0
    stopped_early: bool = False

    @property
    def images_per_second(self) -> float:
        return self.generated / self.seconds if self.seconds > 0 else 0.0


def run_batch(pipe, batch: Sequence[Job], settings: GenerationSettings) -> np.ndarray:
    """One pipeline call for ``batch``; returns float images (n, H, W, 3) in batch order."""
    import torch

    prompts, per_prompt = call_layout(batch)
    generators = [torch.Generator("cpu").manual_seed(job.seed) for job in batch]
    with torch.inference_mode():
        out = pipe(
            prompt=prompts,
            negative_prompt=[settings.negative] * len(prompts) if settings.negative else None,
            num_images_per_prompt=per_prompt,
            num_inference_steps=settings.steps,
            guidance_scale=settings.cfg,
            width=settings.width,
            height=settings.height,
            generator=generators,
            output_type="np",
        )
    images = np.asarray(out.images, dtype=np.float32)
    if images.shape[0] != len(batch):
        raise RuntimeError(f"pipeline returned {images.shape[0]} images for {len(batch)} jobs")
    return images


def existing_keys(store, model_id: int, settings_hash: str) -> set[tuple[int, int]]:
    """(prompt_id, seed) of the images already stored for this model and settings."""
    from sqlalchemy import select

    from arena.storage import db

    with store.session() as s:
        rows = s.execute(
            select(db.Image.prompt_id, db.Image.seed).where(
                db.Image.model_id == model_id, db.Image.settings_hash == settings_hash
            )
        ).all()
    return {(p, seed) for p, seed in rows}


def image_params(settings: GenerationSettings, job: Job, extra: dict) -> dict:
    params = asdict(settings)
    params.update(seed=job.seed, seed_index=job.seed_index, **extra)
    return params


def generate_model(
    store,
    model_id: int,
    model_name: str,
    prompts: Sequence[tuple[int, str, str]],
    settings: GenerationSettings,
    pipe,
    *,
    seeds: int,
    batch_size: int,
    run_info: dict | None = None,
    max_batches: int | None = None,
    on_batch: Callable[[int, ModelSummary], None] | None = None,
    progress: bool = True,
) -> ModelSummary:
    """Generate the missing images of one model (pipeline already loaded); commit per batch."""
    from tqdm import tqdm

    summary = ModelSummary(model_name)
    settings_hash = settings.settings_hash()
    jobs = plan_jobs(prompts, seeds, settings.base_seed)
    summary.planned = len(jobs)
    done = existing_keys(store, model_id, settings_hash)
    pending = [j for j in jobs if (j.prompt_id, j.seed) not in done]
    summary.skipped = len(jobs) - len(pending)
    texts = [t for _, _, t in prompts]
    truncated = truncated_prompts(pipe, texts)
    summary.truncated_prompts = len(truncated)
    summary.weighted_prompts = sum(uses_weighting(t) for t in set(texts))
    if pending and truncated:
        print(
            f"warning: {model_name}: {len(truncated)} of {len(set(texts))} prompts are longer "
            "than the text encoder's 77 tokens and are truncated (recorded per image as "
            "params.truncated).",
            file=sys.stderr,
        )
    if pending and summary.weighted_prompts:
        print(
            f"note: {model_name}: {summary.weighted_prompts} prompts contain weighting syntax "
            "like (word:1.2); it is not interpreted, the tokenizer reads it as text.",
            file=sys.stderr,
        )
    extra = dict(run_info or {})
    bar = tqdm(
        total=len(pending), unit="img", desc=model_name, disable=not progress, file=sys.stderr
    )
    try:
        for index, batch in enumerate(make_batches(pending, batch_size)):
            if max_batches is not None and index >= max_batches:
                summary.stopped_early = True
                break
            start = time.perf_counter()
            images = run_batch(pipe, batch, settings)
            _store_batch(
                store, model_id, settings, settings_hash, batch, images, truncated, extra, summary
            )
            summary.seconds += time.perf_counter() - start
            bar.update(len(batch))
            if on_batch is not None:
                on_batch(index, summary)
    finally:
        bar.close()
    return summary


def _store_batch(
    store, model_id, settings, settings_hash, batch, images, truncated, extra, summary
) -> None:
    from PIL import Image as PILImage

    with store.session() as s:
        for job, raw in zip(batch, images, strict=True):
            reason = broken_reason(raw)
            stored = store.images.put_image(PILImage.fromarray(to_uint8(raw), "RGB"))
            params = image_params(settings, job, {**extra, "truncated": job.text in truncated})
            image_id = store.add_image(
                model_id,
                job.prompt_id,
                stored,
                seed=job.seed,
                params=params,
                settings_hash=settings_hash,
                broken=reason,
                source_name=f"generated:{job.prompt_key}#{job.seed_index}",
                session=s,
            )
            if reason is not None:
                summary.broken += 1
                summary.broken_kinds[reason] = summary.broken_kinds.get(reason, 0) + 1
            if image_id is None:
                summary.duplicates += 1
            else:
                summary.generated += 1


# -- the command's driver ------------------------------------------------------------------
@dataclass(frozen=True)
class ModelEntry:
    id: int
    name: str
    source: ModelSource


def resolve_models(store, names: Sequence[str], allow_network: bool) -> list[ModelEntry]:
    """Look every model up and re-check its checkpoint before any is loaded."""
    from sqlalchemy import select

    from arena.storage import db

    if not names:
        raise GenerationError("--models is empty; give model names, e.g. --models a,b.")
    entries = []
    with store.session() as s:
        rows = {m.name: m for m in s.scalars(select(db.Model).where(db.Model.name.in_(names)))}
    for name in names:
        model = rows.get(name)
        if model is None:
            known = [n for n in store.model_names()]
            raise GenerationError(
                f"unknown model {name!r}; known models: {', '.join(known) or 'none'}. "
                "Register a checkpoint with `arena add-model NAME --diffusers PATH`."
            )
        if model.kind != "diffusers":
            raise GenerationError(
                f"model {name!r} is a {model.kind} model (images imported or made by the demo), "
                "not a diffusers checkpoint; `arena generate` needs a model registered with "
                "`arena add-model`."
            )
        params = model.params or {}
        try:
            src = check_source(
                model.source,
                params.get("format", "diffusers"),
                params.get("config"),
                allow_network,
            )
        except CheckpointError as exc:
            raise GenerationError(f"model {name!r}: {exc}") from None
        entries.append(ModelEntry(model.id, name, src))
    return entries


def load_prompts(store, prompt_set: str) -> list[tuple[int, str, str]]:
    """(prompt_id, "<set>/<external id>", text) of a prompt set, in id order."""
    frame = store.prompts_frame()
    rows = frame[frame["prompt_set"] == prompt_set]
    if rows.empty:
        sets = sorted(frame["prompt_set"].unique())
        raise GenerationError(
            f"unknown prompt set {prompt_set!r}; known sets: {', '.join(sets) or 'none'}. "
            "Import prompts with `arena import-prompts FILE --set NAME`."
        )
    return [
        (int(r.prompt_id), f"{prompt_set}/{r.external_id}", str(r.text))
        for r in rows.itertuples(index=False)
    ]


def run_generation(
    store,
    model_names: Sequence[str],
    prompt_set: str,
    settings: GenerationSettings,
    *,
    seeds: int,
    batch_size: int,
    device: str = "cpu",
    allow_network: bool = False,
    attention_slicing: bool = False,
    vae_tiling: bool = False,
    max_batches: int | None = None,
    on_batch: Callable[[int, ModelSummary], None] | None = None,
    progress: bool = True,
) -> list[ModelSummary]:
    """Every model in turn (one in memory at a time) over the prompt set."""
    if seeds < 1:
        raise GenerationError(f"--seeds {seeds}: needs at least 1 seed per prompt.")
    make_batches([], batch_size)
    prompts = load_prompts(store, prompt_set)
    models = resolve_models(store, list(model_names), allow_network)
    with quiet_libraries():
        return _run_models(
            store,
            models,
            prompts,
            settings,
            seeds=seeds,
            batch_size=batch_size,
            device=device,
            allow_network=allow_network,
            attention_slicing=attention_slicing,
            vae_tiling=vae_tiling,
            max_batches=max_batches,
            on_batch=on_batch,
            progress=progress,
        )


def _run_models(
    store,
    models,
    prompts,
    settings,
    *,
    seeds,
    batch_size,
    device,
    allow_network,
    attention_slicing,
    vae_tiling,
    max_batches,
    on_batch,
    progress,
):
    summaries = []
    for entry in models:
        pipe = load_pipeline(
            entry.source,
            device,
            settings.dtype,
            allow_network=allow_network,
            scheduler=settings.scheduler,
            attention_slicing=attention_slicing,
            vae_tiling=vae_tiling,
        )
        info = {
            "device": device,
            "batch_size": batch_size,
            "pipeline": type(pipe).__name__,
            "scheduler_class": type(pipe.scheduler).__name__,
        }
        try:
            summaries.append(
                generate_model(
                    store,
                    entry.id,
                    entry.name,
                    prompts,
                    settings,
                    pipe,
                    seeds=seeds,
                    batch_size=batch_size,
                    run_info=info,
                    max_batches=max_batches,
                    on_batch=on_batch,
                    progress=progress,
                )
            )
        finally:
            del pipe
            release_memory(device)
        if summaries[-1].stopped_early:
            break
    return summaries


def format_summary(summaries: Sequence[ModelSummary]) -> str:
    head = (
        f"{'model':<28} {'generated':>9} {'skipped':>8} {'broken':>7} {'dup':>5} "
        f"{'truncated':>9} {'img/s':>8}"
    )
    lines = [head, "-" * len(head)]
    for s in summaries:
        lines.append(
            f"{s.model:<28} {s.generated:>9} {s.skipped:>8} {s.broken:>7} {s.duplicates:>5} "
            f"{s.truncated_prompts:>9} {s.images_per_second:>8.2f}"
        )
    notes = []
    for s in summaries:
        if s.broken:
            kinds = ", ".join(f"{k} {n}" for k, n in sorted(s.broken_kinds.items()))
            notes.append(f"{s.model}: {s.broken} broken ({kinds}); flagged, kept out of battles")
        if s.duplicates:
            notes.append(
                f"{s.model}: {s.duplicates} outputs had exactly the pixels of an image the "
                "model already has; not recorded again"
            )
        if s.stopped_early:
            notes.append(f"{s.model}: stopped after --max-batches; run again to continue")
    return "\n".join(lines + notes)
