"""The generation job: diffusers checkpoints x a prompt set -> the image pool of a workspace.

Decisions (also in the docs, "Generating images"; the seeds are explained in
``plan``, broken outputs and long prompts in ``checks``):

- **Resume.** An image is identified by (model, prompt, seed, settings hash). The
  hash covers what changes the pixels (``settings``), not what only changes speed
  or memory. Already stored images are skipped; each batch is committed on its own,
  so a killed run loses at most the batches in flight. Raising ``--seeds`` later adds
  only the new seeds.
- **Writing off the critical path.** Batch k is PNG-encoded and committed on one
  background thread (``writer``) while batch k+1 generates; ``on_batch`` runs there,
  after the batch's commit, and its exceptions (or the commit's) stop the job.
- **VAE overflow.** An image whose fp16/bf16 VAE decode came out NaN is decoded again
  in fp32 from the same latents (``pipeline.guarded_decode``), recorded per image as
  ``params.vae_retry = "fp32"`` and counted; ``--vae-fp32`` decodes every image in fp32.
- **One model in memory at a time**: each is loaded (``pipeline``), run over the
  prompt set and released before the next.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from arena.intake.checkpoints import CheckpointError, ModelSource, check_source
from scoring.generation.checks import broken_reason, to_uint8, truncated_prompts, uses_weighting
from scoring.generation.pipeline import (
    guarded_decode,
    load_pipeline,
    quiet_libraries,
    release_memory,
)
from scoring.generation.plan import Job, call_layout, make_batches, plan_jobs
from scoring.generation.settings import GenerationError, GenerationSettings
from scoring.generation.writer import BatchWriter
from scoring.sharding import Ranks, TotalBar, bar_label

WRITER_DEPTH = 1  # batches queued for the writer besides the one it writes


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
    vae_retries: int = 0
    seconds: float = 0.0
    stopped_early: bool = False
    # Batches the pending images make (every rank's, as one process would cut them).
    batches: int = 0

    @property
    def images_per_second(self) -> float:
        return self.generated / self.seconds if self.seconds > 0 else 0.0


@dataclass
class BatchOutput:
    """Float images (n, H, W, 3) in batch order, and which were decoded again in fp32."""

    images: np.ndarray
    vae_retried: list[bool]


def run_batch(pipe, batch: Sequence[Job], settings: GenerationSettings) -> np.ndarray:
    """One pipeline call for ``batch``; returns float images (n, H, W, 3) in batch order."""
    return generate_batch(pipe, batch, settings).images


def generate_batch(pipe, batch: Sequence[Job], settings: GenerationSettings) -> BatchOutput:
    """``run_batch`` with the record of VAE retries (``pipeline.guarded_decode``)."""
    import torch

    prompts, per_prompt = call_layout(batch)
    generators = [torch.Generator("cpu").manual_seed(job.seed) for job in batch]
    with torch.inference_mode(), guarded_decode(pipe) as record:
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
    retried = record.retried
    if len(retried) != len(batch):  # decoded in pieces we cannot map: flag all or none
        retried = [any(retried)] * len(batch)
    return BatchOutput(images, retried)


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
    ranks: Ranks | None = None,
    deal_start: int = 0,
) -> ModelSummary:
    """Generate the missing images of one model (pipeline already loaded); commit per batch.

    Under a launcher (``ranks``) this rank generates every N-th batch of the ones a single
    process would make, counting on from ``deal_start`` (the batches of earlier models).
    """
    from tqdm import tqdm

    ranks = ranks or Ranks()
    summary = ModelSummary(model_name)
    settings_hash = settings.settings_hash()
    jobs = plan_jobs(prompts, seeds, settings.base_seed)
    summary.planned = len(jobs)
    ranks.barrier()  # nothing of an earlier model is still being written
    done = existing_keys(store, model_id, settings_hash)
    pending = [j for j in jobs if (j.prompt_id, j.seed) not in done]
    summary.skipped = len(jobs) - len(pending)
    total = TotalBar(
        ranks,
        len(pending),
        lambda: len(existing_keys(store, model_id, settings_hash)),
        model_name,
        enabled=progress,
    )
    ranks.barrier()  # every rank has listed the same pending images before any writes
    batches = make_batches(pending, batch_size)
    summary.batches = len(batches)
    mine = ranks.deal(batches, start=deal_start)
    texts = [t for _, _, t in prompts]
    truncated = truncated_prompts(pipe, texts)
    summary.truncated_prompts = len(truncated)
    summary.weighted_prompts = sum(uses_weighting(t) for t in set(texts))
    if pending and truncated and ranks.is_main:
        print(
            f"warning: {model_name}: {len(truncated)} of {len(set(texts))} prompts are longer "
            "than the text encoder's 77 tokens and are truncated (recorded per image as "
            "params.truncated).",
            file=sys.stderr,
        )
    if pending and summary.weighted_prompts and ranks.is_main:
        print(
            f"note: {model_name}: {summary.weighted_prompts} prompts contain weighting syntax "
            "like (word:1.2); it is not interpreted, the tokenizer reads it as text.",
            file=sys.stderr,
        )
    extra = dict(run_info or {})
    bar = tqdm(
        total=sum(map(len, mine)),
        unit="img",
        desc=bar_label(ranks, model_name),
        disable=not progress,
        file=sys.stderr,
        position=ranks.local_rank,
    )
    start = time.perf_counter()

    def commit(item: tuple[int, Sequence[Job], BatchOutput]) -> None:
        """On the writer thread: encode, store and commit one batch, then ``on_batch``."""
        index, batch, output = item
        _store_batch(
            store, model_id, settings, settings_hash, batch, output, truncated, extra, summary
        )
        summary.seconds = time.perf_counter() - start
        bar.update(len(batch))
        total.refresh()
        if on_batch is not None:
            on_batch(index, summary)

    writer = BatchWriter(commit, depth=WRITER_DEPTH, name=f"write {model_name}")
    try:
        for index, batch in enumerate(mine):
            if max_batches is not None and index >= max_batches:
                summary.stopped_early = True
                break
            writer.put((index, batch, generate_batch(pipe, batch, settings)))
    except BaseException:
        writer.close(raise_error=False)  # what was generated is still committed
        raise
    else:
        writer.close()
    finally:
        bar.close()
        total.close()
    summary.seconds = time.perf_counter() - start
    return summary


def merge_summaries(parts: Sequence[ModelSummary]) -> ModelSummary:
    """One model's summary over the ranks of a sharded run, as one process reports it."""
    out = replace(parts[0], broken_kinds={}, generated=0, broken=0, duplicates=0)
    out.vae_retries, out.seconds = 0, 0.0
    for part in parts:
        out.generated += part.generated
        out.broken += part.broken
        out.duplicates += part.duplicates
        out.vae_retries += part.vae_retries
        for kind, n in part.broken_kinds.items():
            out.broken_kinds[kind] = out.broken_kinds.get(kind, 0) + n
        out.seconds = max(out.seconds, part.seconds)  # the ranks run side by side
        out.stopped_early = out.stopped_early or part.stopped_early
    return out


def _store_batch(
    store, model_id, settings, settings_hash, batch, output, truncated, extra, summary
) -> None:
    from PIL import Image as PILImage

    with store.session() as s:
        for job, raw, retried in zip(batch, output.images, output.vae_retried, strict=True):
            reason = broken_reason(raw)
            stored = store.images.put_image(PILImage.fromarray(to_uint8(raw), "RGB"))
            more = {"truncated": job.text in truncated}
            if retried:
                more["vae_retry"] = "fp32"
                summary.vae_retries += 1
            params = image_params(settings, job, {**extra, **more})
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
    ranks: Ranks | None = None,
) -> list[ModelSummary]:
    """Every model in turn (one in memory at a time) over the prompt set.

    Under a launcher (``ranks``) the summaries are this rank's; ``merge_summaries``
    adds the ranks' up per model.
    """
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
            ranks=ranks or Ranks(),
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
    ranks,
):
    summaries = []
    dealt = 0  # batches dealt so far: the next model's deal carries on from here
    for entry in models:
        pipe = load_pipeline(
            entry.source,
            device,
            settings.dtype,
            allow_network=allow_network,
            scheduler=settings.scheduler,
            attention_slicing=attention_slicing,
            vae_tiling=vae_tiling,
            vae_fp32=settings.vae_fp32,
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
                    ranks=ranks,
                    deal_start=dealt,
                )
            )
        finally:
            del pipe
            release_memory(device)
        dealt += summaries[-1].batches
        if ranks.any(summaries[-1].stopped_early):  # the ranks stop together
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
        if s.vae_retries:
            notes.append(
                f"{s.model}: {s.vae_retries} images came out NaN from the fp16/bf16 VAE and "
                "were decoded again in fp32 (params.vae_retry); --vae-fp32 decodes all so"
            )
        if s.stopped_early:
            notes.append(f"{s.model}: stopped after --max-batches; run again to continue")
    return "\n".join(lines + notes)
