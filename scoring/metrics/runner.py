"""The batched scoring job over a workspace (`arena score`).

1. Select the images that lack a score row for (metric name, metric version), per
   metric; broken images are left out, nothing else is. An image without a prompt is
   not scheduled for metrics that need one (counted in the summary).
2. A torch DataLoader decodes each stored PNG and runs every needed metric
   preprocessor in worker processes (``num_workers``; 0 runs them in this process).
   An image that fails to decode or preprocess is reported and skipped; it is not
   written, so the next run tries it again.
3. Each batch is scored on the device, each metric in its own precision
   (``precision_context``: fp16/bf16 autocast on CUDA for the CLIP-based metrics, which
   then store a version such as ``v2.1+fp16``; autocast off for the rest): metrics that
   share image features (CLIP score and aesthetic: one ViT-L/14 pass) get them from one
   ``features`` call; text embeddings are cached per prompt by the encoder.
4. The batch's rows (value, and ``details`` when a metric returns them) are committed
   in one transaction before the next batch starts, with "insert or ignore" on the
   (image, metric, version) key, so a killed job resumes where it stopped without
   duplicates or losses, and two jobs running at once do not collide.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import and_, select

from arena.storage import db
from scoring.metrics.base import Metric, collate_inputs, expand_metric_names, get_metric
from scoring.sharding import Ranks, TotalBar, bar_label
from scoring.weights import WeightSources

IMAGE_KEY = "__image__"  # preprocess key of metrics without a preprocessor (PIL image)


# -- metrics -------------------------------------------------------------------------
def build_metrics(
    names: Sequence[str],
    device: str = "cpu",
    dtype: Any = None,
    weights: dict[str, str] | None = None,
    sources: WeightSources | None = None,
) -> list[Metric]:
    """Instantiate metrics by name (groups such as ``classical`` expanded).

    ``weights`` maps a metric name to an explicit weight path; ``sources`` is where
    weights are looked for otherwise (the weights folder, downloads allowed; the
    command builds it from the workspace's settings). Every metric gets the same
    options and uses those it needs: one ``shared`` dict lets metrics share loaded
    encoders, and ``encoder_weights`` (used by aesthetic) is the path given for ``clip``,
    the metric whose weights are its encoder.
    """
    weights = dict(weights or {})
    selected = expand_metric_names(names)
    unknown = sorted(set(weights) - set(selected))
    if unknown:
        raise KeyError(
            f"--weights names {', '.join(unknown)}, which is not among the selected metrics "
            f"({', '.join(selected)}); use NAME=PATH with a selected metric name."
        )
    shared: dict[str, Any] = {}
    return [
        get_metric(name).from_pretrained(
            weights.get(name),
            device=device,
            dtype=dtype,
            sources=sources,
            shared=shared,
            encoder_weights=weights.get("clip"),
        )
        for name in selected
    ]


# -- selection -----------------------------------------------------------------------
@dataclass(frozen=True)
class WorkItem:
    image_id: int
    sha256: str
    path: str
    prompt: str | None
    metrics: tuple[str, ...]  # names of the metrics this image still lacks


def select_work(
    store, metrics: Sequence[Metric], *, image_ids: Collection[int] | None = None
) -> tuple[list[WorkItem], dict[str, int]]:
    """Images lacking a score per metric (not broken); and per-metric counts skipped for
    lack of a prompt. ``image_ids`` restricts the work to those images (None: all).

    The work is ordered by content (pixel hash, then prompt), not by image id: a batch's
    composition changes a score in its last bits (CPU kernels block by batch size), so
    ordering by id would make the stored numbers depend on import order -- and on which
    rank wrote an image first in a sharded generation."""
    i, p = db.Image, db.Prompt
    wanted = None if image_ids is None else {int(n) for n in image_ids}
    with store.session() as s:
        rows = s.execute(
            select(i.id, i.sha256, p.text)
            .outerjoin(p, p.id == i.prompt_id)
            .where(i.broken.is_(None))
            .order_by(i.sha256, p.text, i.id)
        ).all()
    if wanted is not None:
        rows = [row for row in rows if row[0] in wanted]
    with store.session() as s:
        done: dict[str, set[int]] = {}
        for m in metrics:
            done[m.name] = set(
                s.scalars(
                    select(db.Score.image_id).where(
                        and_(db.Score.metric == m.name, db.Score.version == m.version)
                    )
                )
            )
    no_prompt = {m.name: 0 for m in metrics}
    items = []
    for image_id, sha, prompt in rows:
        needed = []
        for m in metrics:
            if image_id in done[m.name]:
                continue
            if m.needs_prompt and not prompt:
                no_prompt[m.name] += 1
                continue
            needed.append(m.name)
        if needed:
            path = str(store.images.path_for(sha))
            items.append(WorkItem(image_id, sha, path, prompt, tuple(needed)))
    return items, no_prompt


# -- decoding in workers -------------------------------------------------------------
def preprocess_key(metric: Metric) -> str:
    return IMAGE_KEY if metric.preprocessor() is None else metric.preprocess_key


class ImageDataset:
    """Map-style dataset: decode an item's image and run the preprocessors it needs."""

    def __init__(self, items: Sequence[WorkItem], metrics: Sequence[Metric]):
        self.items = list(items)
        self.key_of = {m.name: preprocess_key(m) for m in metrics}
        self.fns: dict[str, Callable | None] = {}
        for m in metrics:
            self.fns.setdefault(self.key_of[m.name], m.preprocessor())

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.items[index]
        out: dict[str, Any] = {"item": item, "error": None, "inputs": {}}
        try:
            with PILImage.open(item.path) as img:
                rgb = img.convert("RGB")
            for key in {self.key_of[name] for name in item.metrics}:
                fn = self.fns[key]
                out["inputs"][key] = rgb if fn is None else fn(rgb)
        except Exception as exc:  # any decoder/preprocessor failure: report and skip
            out["inputs"] = {}
            out["error"] = f"{type(exc).__name__}: {exc}"
        return out


@dataclass
class Batch:
    items: list[WorkItem]
    failed: list[tuple[WorkItem, str]]
    # key -> (positions in ``items`` having this input, collated inputs)
    inputs: dict[str, tuple[list[int], Any]]

    def pin_memory(self, device: Any = None) -> Batch:
        """The batch with its tensors in page-locked memory. The DataLoader's pin thread
        calls this on custom batch types (it cannot see inside a dataclass): without it
        ``pin_memory=True`` pins nothing and the ``non_blocking`` copies to the GPU are
        synchronous."""
        import torch

        def pin(value: Any) -> Any:
            return value.pin_memory() if isinstance(value, torch.Tensor) else value

        inputs = {key: (rows, pin(value)) for key, (rows, value) in self.inputs.items()}
        return Batch(self.items, self.failed, inputs)


def collate(samples: list[dict[str, Any]]) -> Batch:
    good = [s for s in samples if s["error"] is None]
    failed = [(s["item"], s["error"]) for s in samples if s["error"] is not None]
    keys = sorted({k for s in good for k in s["inputs"]})
    inputs = {}
    for key in keys:
        positions = [n for n, s in enumerate(good) if key in s["inputs"]]
        inputs[key] = (positions, collate_inputs([good[n]["inputs"][key] for n in positions]))
    return Batch([s["item"] for s in good], failed, inputs)


def take(inputs: Any, rows: list[int]) -> Any:
    """Rows of a collated batch (a tensor or a list)."""
    if isinstance(inputs, list):
        return [inputs[r] for r in rows]
    import torch

    return inputs[torch.as_tensor(rows, dtype=torch.long, device=inputs.device)]


# -- scoring one batch ---------------------------------------------------------------
@dataclass
class Row:
    image_id: int
    metric: str
    version: str
    value: float | None
    details: dict | None
    higher_is_better: bool  # the metric's direction, stored beside the score


def _check(metric: Metric, values: Any, n: int) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.shape != (n,):
        raise RuntimeError(
            f"metric {metric.name!r} returned {values.shape[0]} values for {n} images"
        )
    return values


def _rows(metric, items, values, details) -> list[Row]:
    details = details if details is not None else [None] * len(items)
    return [
        Row(
            it.image_id,
            metric.name,
            metric.version,
            None if math.isnan(v) else float(v),
            d,
            metric.higher_is_better,
        )
        for it, v, d in zip(items, values, details, strict=True)
    ]


def precision_context(metric: Metric):
    """Autocast to the metric's own precision (``Metric.precision``, recorded in its version).

    A metric that computes in fp32 runs with autocast and TF32 off, so no job-wide
    setting can make its layers half precision and its GPU rows, which share the CPU's
    version, match the CPU's to fp32 rounding (PyTorch's default TF32 convolutions would
    move them by ~1e-3); a reduced-precision one runs under fp16/bf16 autocast.
    """
    from contextlib import ExitStack

    import torch

    from scoring.devices import full_fp32

    device_type = str(getattr(metric, "device", "cpu")).split(":")[0]
    if metric.precision == "fp32":
        stack = ExitStack()
        stack.enter_context(torch.autocast(device_type, enabled=False))
        stack.enter_context(full_fp32())
        return stack
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[metric.precision]
    return torch.autocast(device_type, dtype=dtype)


def score_batch(batch: Batch, metrics: Sequence[Metric]) -> list[Row]:
    """Every (image, metric) row of a batch; shared features computed once per key."""
    rows: list[Row] = []
    features: dict[str, tuple[list[int], Any]] = {}
    for metric in metrics:
        key = preprocess_key(metric)
        if key not in batch.inputs:
            continue
        positions, inputs = batch.inputs[key]
        local = [j for j, pos in enumerate(positions) if metric.name in batch.items[pos].metrics]
        if not local:
            continue
        items = [batch.items[positions[j]] for j in local]
        prompts = [it.prompt for it in items] if metric.needs_prompt else None
        with precision_context(metric):
            if metric.feature_key:
                if metric.feature_key not in features:
                    features[metric.feature_key] = (positions, metric.features(inputs))
                feats = features[metric.feature_key][1]
                sub = feats if len(local) == len(positions) else take(feats, local)
                values, details = metric.score_features(sub, prompts), None
            else:
                sub = inputs if len(local) == len(positions) else take(inputs, local)
                values, details = metric.score_with_details(sub, prompts)
        rows += _rows(metric, items, _check(metric, values, len(items)), details)
    return rows


def write_rows(store, rows: Sequence[Row]) -> int:
    """Insert rows in one transaction, ignoring any (image, metric, version) already there."""
    if not rows:
        return 0
    dialect = store.engine.dialect.name
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:  # pragma: no cover - other back ends: plain insert (the unique key still guards)
        from sqlalchemy import insert
    statement = insert(db.Score)
    if dialect in ("sqlite", "postgresql"):
        statement = statement.on_conflict_do_nothing(
            index_elements=["image_id", "metric", "version"]
        )
    now = db.utcnow()
    plain, detailed = [], []
    for r in rows:
        value = {"image_id": r.image_id, "metric": r.metric, "version": r.version}
        value.update(value=r.value, higher_is_better=bool(r.higher_is_better), created_at=now)
        if r.details is None:  # left out, so the column is SQL NULL (not JSON "null")
            plain.append(value)
        else:
            detailed.append({**value, "details": r.details})
    with store.session() as s:
        for group in (plain, detailed):
            if group:
                s.execute(statement, group)
    return len(rows)


# -- the job -------------------------------------------------------------------------
@dataclass
class BatchReport:
    index: int  # 1-based batch number
    images: int
    rows: int
    failed: list[tuple[int, str]]


@dataclass
class RunSummary:
    metrics: list[str]
    images_selected: int = 0
    rows_written: dict[str, int] = field(default_factory=dict)
    failed: list[tuple[int, str, str]] = field(default_factory=list)  # (image id, sha, error)
    no_prompt: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        done = self.images_selected - len(self.failed)
        return done / self.seconds if self.seconds > 0 else 0.0

    def format(self) -> str:
        lines = [
            f"scored {self.images_selected - len(self.failed)} of {self.images_selected} "
            f"image(s) needing work in {self.seconds:.1f} s "
            f"({self.images_per_second:.1f} images/s, {self.batches} batch(es))"
        ]
        for name in self.metrics:
            line = f"  {name:<14} {self.rows_written.get(name, 0):>8} new score(s)"
            if self.no_prompt.get(name):
                line += f", {self.no_prompt[name]} image(s) skipped: no prompt"
            lines.append(line)
        if self.failed:
            lines.append(f"{len(self.failed)} image(s) could not be decoded and were skipped:")
            lines += [f"  image {i} ({sha[:12]}): {err}" for i, sha, err in self.failed[:20]]
            if len(self.failed) > 20:
                lines.append(f"  ... and {len(self.failed) - 20} more")
        return "\n".join(lines)


def run(
    store,
    metrics: Sequence[Metric],
    batch_size: int = 32,
    num_workers: int = 0,
    device: str = "cpu",
    progress: bool = True,
    on_batch: Callable[[BatchReport], None] | None = None,
    *,
    image_ids: Collection[int] | None = None,
    ranks: Ranks | None = None,
) -> RunSummary:
    """Score every image that lacks a score for one of ``metrics``; commit per batch.

    ``on_batch`` is called after each batch is committed (progress hooks, tests that
    interrupt a job); an exception it raises stops the job with that batch saved.
    ``image_ids`` limits the job to those images (None: every image of the workspace).
    Under a launcher (``ranks``, ``scoring.sharding``) the pending images are cut into
    the batches a single process would make and this rank scores every N-th batch; the
    summary is this rank's (``merge_summaries`` adds the ranks up).
    """
    import torch
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be 0 or more, got {num_workers}")
    ranks = ranks or Ranks()
    ranks.barrier()  # nothing of an earlier stage is still being written
    items, no_prompt = select_work(store, metrics, image_ids=image_ids)
    total = TotalBar(
        ranks,
        sum(len(it.metrics) for it in items),
        lambda: _count_rows(store, metrics),
        "scores",
        enabled=progress,
    )
    ranks.barrier()  # every rank has listed the same pending work before any writes
    items = [it for part in ranks.deal(_cut(items, batch_size)) for it in part]
    summary = RunSummary(
        metrics=[m.name for m in metrics],
        images_selected=len(items),
        rows_written={m.name: 0 for m in metrics},
        no_prompt=no_prompt,
    )
    if not items:
        total.close()
        return summary
    loader = DataLoader(
        ImageDataset(items, metrics),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate,
        pin_memory=str(device).startswith("cuda"),
    )
    start = time.perf_counter()
    bar = tqdm(
        total=len(items),
        unit="img",
        desc=bar_label(ranks, "scoring"),
        disable=not progress,
        smoothing=0.1,
        position=ranks.local_rank,
    )
    try:
        for index, batch in enumerate(loader, start=1):
            with torch.inference_mode():
                rows = score_batch(batch, metrics)
            write_rows(store, rows)
            for row in rows:
                summary.rows_written[row.metric] += 1
            failed = [(it.image_id, err) for it, err in batch.failed]
            summary.failed += [(it.image_id, it.sha256, err) for it, err in batch.failed]
            for it, err in batch.failed:
                bar.write(f"skipped image {it.image_id} ({it.sha256[:12]}): {err}")
            summary.batches = index
            summary.seconds = time.perf_counter() - start
            bar.update(len(batch.items) + len(batch.failed))
            total.refresh()
            if on_batch is not None:
                on_batch(BatchReport(index, len(batch.items), len(rows), failed))
    finally:
        bar.close()
        total.close()
        summary.seconds = time.perf_counter() - start
    return summary


def _cut(items: Sequence[WorkItem], size: int) -> list[list[WorkItem]]:
    """The batches a single process's DataLoader makes of ``items``."""
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def _count_rows(store, metrics: Sequence[Metric]) -> int:
    """Score rows stored for these metrics' versions (the all-ranks progress bar)."""
    from sqlalchemy import func, or_

    wanted = or_(*(and_(db.Score.metric == m.name, db.Score.version == m.version) for m in metrics))
    with store.session() as s:
        return int(s.scalar(select(func.count(db.Score.id)).where(wanted)) or 0)


def merge_summaries(parts: Sequence[RunSummary]) -> RunSummary:
    """One summary for the ranks of a sharded run, equal to a single process's."""
    first = parts[0]
    out = RunSummary(metrics=list(first.metrics), no_prompt=dict(first.no_prompt))
    for part in parts:
        out.images_selected += part.images_selected
        for name, n in part.rows_written.items():
            out.rows_written[name] = out.rows_written.get(name, 0) + n
        out.failed += part.failed
        out.batches += part.batches
        out.seconds = max(out.seconds, part.seconds)
    out.failed.sort()
    return out
