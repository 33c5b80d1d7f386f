"""The Metric contract and the registry (``list_metrics()`` / ``get_metric(name)``).

A metric is a small class over a pure function: ``from_pretrained`` resolves and
loads weights once, ``score(images, prompts)`` scores a batch and returns one
float per image. Semantics are class attributes, as in torchmetrics.
``from_pretrained`` is written once, here: it packs its arguments into a
``LoadRequest`` and calls the metric's ``load(request)``, the one loader a metric writes.

How the batched job (``scoring/metrics/runner.py``) drives a metric -- every hook has a
default, so a metric that only implements ``score`` works unchanged:

1. ``preprocessor()`` -> a picklable callable applied to each decoded RGB image in
   the DataLoader's worker processes (default ``None``: the PIL image is passed on).
   ``preprocess_key`` names the preprocessing; metrics with the same key share the
   work (one call per image). Outputs that are equal-shape tensors are stacked into
   one batch tensor, anything else is collated into a list.
2. ``score_with_details(inputs, prompts) -> (values, details)``: ``values`` is the
   float64 (n,) array, ``details`` is ``None`` or one JSON-able dict (or ``None``)
   per image, stored in ``scores.details`` (e.g. per-tag hits for tag accuracy).
   Default: ``(score_inputs(inputs, prompts), None)``; ``score_inputs`` defaults to
   ``score`` itself, which is right when there is no preprocessor.
3. Shared features (CLIP score and aesthetic both need the OpenAI ViT-L/14 image
   embedding): a metric whose instance has a non-empty ``feature_key`` implements
   ``features(inputs)`` and ``score_features(features, prompts)``; the runner calls
   ``features`` once per batch for each key and hands the result to every metric
   with that key. Such metrics load their encoder through a ``shared`` dict passed to
   ``from_pretrained`` so that one model sits in memory.

``prepare(images)`` applies the preprocessor and the collation in-process, so
``score(images, prompts)`` can be written as ``score_inputs(prepare(images), prompts)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np
from PIL import Image as PILImage

if TYPE_CHECKING:
    from scoring.weights import WeightSources


@dataclass(frozen=True)
class WeightFile:
    """A file a metric needs: where it lives on the hub and what it is called locally."""

    repo_id: str
    filename: str
    # A sub-folder of the hub repo, or "" (the file sits at the repo's top level).
    subfolder: str = ""
    # Set for a whole transformers/diffusers folder: the file that proves the folder is there.
    is_folder: bool = False


@dataclass(frozen=True)
class LoadRequest:
    """The arguments of ``Metric.from_pretrained``, handed whole to a metric's ``load``.

    Options only some metrics use default to None, so the batched job can pass the
    same ones to every metric.
    """

    # Overrides where the files are looked for: a file, or a folder holding them.
    weights: str | Path | None = None
    device: str = "cpu"
    # The compute dtype: a name such as "fp16", a torch dtype, or None (the metric's default).
    dtype: Any = None
    # scoring.weights.WeightSources: the weights folder, downloads allowed; where files
    # are looked for when ``weights`` is not given.
    sources: WeightSources | None = None
    # Loaded models shared between metrics (CLIP score and aesthetic: one ViT-L/14).
    shared: dict[str, Any] | None = None
    # Config overrides for the model builder (tests build tiny architectures this way).
    model_overrides: dict[str, Any] | None = None
    # Aesthetic: the ViT-L/14 checkpoint, when it is not beside the MLP.
    encoder_weights: str | Path | None = None
    # PickScore: the processor folder, when it is not beside the model.
    processor: str | Path | None = None


class Metric(ABC):
    name: ClassVar[str]
    version: ClassVar[str]
    needs_prompt: ClassVar[bool]
    higher_is_better: ClassVar[bool] = True
    # One-line description for `arena metrics`.
    description: ClassVar[str] = ""
    # The files ``from_pretrained`` resolves when no explicit path is given.
    weight_files: ClassVar[tuple[WeightFile, ...]] = ()

    device: str = "cpu"
    # What runs the model when it is not torch on ``device`` (the tagger: the onnxruntime
    # provider really in use); `arena score` prints it beside the metric's name.
    runtime: str = ""
    # True for metrics that compute under the job's fp16/bf16 autocast on CUDA (CLIP-based
    # encoders); False for those that always compute in fp32 (the runner turns autocast off).
    reduced_precision: ClassVar[bool] = False
    # What ``dtype=None`` (``--dtype auto``) means on CUDA for a reduced-precision metric:
    # "fp16", the job's default, or "bf16" for models published in bf16 whose activations
    # can overflow fp16 (the Qwen2-VL metrics); GPUs without bf16 (before compute
    # capability 8.0) get fp16. An explicit dtype is always kept.
    auto_half: ClassVar[str] = "fp16"
    # The precision this instance computes in ("fp32", "fp16", "bf16"); set by
    # ``from_pretrained``. Other than fp32 it is part of the instance's ``version``
    # ("v2.1+fp16"), so fp16 GPU scores and fp32 CPU scores are stored apart.
    precision: str = "fp32"

    @classmethod
    def from_pretrained(
        cls,
        weights: str | Path | None = None,
        device: str = "cpu",
        dtype: Any = None,
        *,
        sources: WeightSources | None = None,
        shared: dict[str, Any] | None = None,
        model_overrides: dict[str, Any] | None = None,
        encoder_weights: str | Path | None = None,
        processor: str | Path | None = None,
    ) -> Self:
        """Load the metric's model(s) once (see ``LoadRequest`` for the arguments).

        The one signature every metric is loaded through; a metric implements ``load``.
        """
        request = LoadRequest(
            weights=weights,
            device=device,
            dtype=auto_dtype(device, dtype, cls.auto_half if cls.reduced_precision else "fp16"),
            sources=sources,
            shared=shared,
            model_overrides=model_overrides,
            encoder_weights=encoder_weights,
            processor=processor,
        )
        metric = cls.load(request)
        metric.precision = precision_name(request.device, request.dtype, cls.reduced_precision)
        if metric.precision != "fp32":  # numbers change: rows of another precision never mix
            metric.version = f"{metric.version}+{metric.precision}"
        return metric

    @classmethod
    @abstractmethod
    def load(cls, request: LoadRequest) -> Self:
        """Build the metric from ``request``; options it has no use for are ignored."""

    def score(
        self, images: Sequence[PILImage.Image], prompts: Sequence[str] | None = None
    ) -> np.ndarray:
        """One float per image (float64, shape (n,)); NaN where an image cannot be scored.

        By default the batched job's path on RGB images: ``prepare`` then ``score_inputs``.
        A metric implements ``score_inputs`` (the batched path) or overrides this."""
        if type(self).score_inputs is Metric.score_inputs:
            raise NotImplementedError(
                f"metric {self.name!r} implements neither score nor score_inputs"
            )
        self.check_prompts(images, prompts)
        if len(images) == 0:
            return np.zeros(0, dtype=np.float64)
        return self.score_inputs(self.prepare(images), prompts)

    # -- hooks of the batched job (see the module docstring); all have defaults ------------
    # Instances that share image features with other metrics set this (e.g. to the
    # identity of their loaded encoder); empty means "scores on its own".
    feature_key: str = ""

    @property
    def preprocess_key(self) -> str:
        """Metrics with equal keys share the worker-side preprocessing of an image."""
        return self.feature_key or self.name

    def preprocessor(self) -> Callable[[PILImage.Image], Any] | None:
        """Picklable per-image callable run in DataLoader workers; None passes the image on."""
        return None

    def prepare(self, images: Sequence[PILImage.Image]) -> Any:
        """The batch ``score_inputs`` expects, built in this process from RGB images."""
        fn = self.preprocessor()
        return collate_inputs([img if fn is None else fn(img) for img in images])

    def score_inputs(self, inputs: Any, prompts: Sequence[str] | None = None) -> np.ndarray:
        """Score a batch of preprocessed inputs; defaults to ``score`` (no preprocessor)."""
        if type(self).score is Metric.score:
            raise NotImplementedError(
                f"metric {self.name!r} implements neither score nor score_inputs"
            )
        return self.score(inputs, prompts)

    def score_with_details(
        self, inputs: Any, prompts: Sequence[str] | None = None
    ) -> tuple[np.ndarray, list[dict | None] | None]:
        """Scores plus optional per-image JSON-able details for ``scores.details``."""
        return self.score_inputs(inputs, prompts), None

    def features(self, inputs: Any) -> Any:
        """Shared per-image features of a batch (only for metrics with a ``feature_key``)."""
        raise NotImplementedError(f"metric {self.name!r} has no shared features")

    def score_features(self, features: Any, prompts: Sequence[str] | None = None) -> np.ndarray:
        """Score from shared features (only for metrics with a ``feature_key``)."""
        raise NotImplementedError(f"metric {self.name!r} has no shared features")

    def check_prompts(self, images: Sequence[Any], prompts: Sequence[str] | None) -> None:
        if self.needs_prompt and (prompts is None or len(prompts) != len(images)):
            got = "none" if prompts is None else len(prompts)
            raise ValueError(
                f"metric {self.name!r} needs one prompt per image: got {len(images)} images "
                f"and {got} prompts."
            )


def auto_dtype(device: str, dtype: Any, half: str, capability: int | None = None) -> Any:
    """``dtype``, or ``half`` ("bf16") where ``dtype`` is None on a CUDA device of compute
    capability 8.0 or newer (``capability``: its major version, default what torch reports).
    None stays None elsewhere, so the job's default (fp16 on CUDA) applies."""
    if dtype is not None or half == "fp16" or not str(device).startswith("cuda"):
        return dtype
    if capability is None:
        import torch

        if not torch.cuda.is_available():
            return dtype
        capability = torch.cuda.get_device_capability(torch.device(device))[0]
    return half if capability >= 8 else dtype


def precision_name(device: str, dtype: Any, reduced: bool) -> str:
    """The precision a metric computes in on ``device`` for the requested ``dtype``.

    A metric that always computes in fp32 (``reduced`` False) is fp32 whatever is asked;
    otherwise the job's default applies: fp16 on CUDA, fp32 elsewhere.
    """
    if not reduced:
        return "fp32"
    import torch

    from scoring.metrics.openai_clip import parse_dtype

    names = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}
    return names[parse_dtype(device, dtype)]


class PromptCache:
    """Text embeddings of the prompts a metric has seen, encoded once per job.

    A scoring job meets each prompt in many batches (one per model and seed); encoding
    it once instead of per batch saves the text tower's work (CLIP score keeps the same
    cache in its shared encoder). ``embed`` maps a list of prompts to (n, d) rows.
    """

    def __init__(self, embed: Callable[[list[str]], np.ndarray]):
        self.embed = embed
        self.rows: dict[str, np.ndarray] = {}

    def __call__(self, prompts: Sequence[str]) -> np.ndarray:
        new = [p for p in dict.fromkeys(prompts) if p not in self.rows]
        if new:
            self.rows.update(zip(new, self.embed(new), strict=True))
        return np.stack([self.rows[p] for p in prompts])


def collate_inputs(items: list[Any]) -> Any:
    """Stack equal-shape tensors into one batch tensor; anything else stays a list."""
    if items and all(type(x).__name__ == "Tensor" for x in items):
        import torch

        if len({tuple(x.shape) for x in items}) == 1:
            return torch.stack(items)
    return list(items)


_REGISTRY: dict[str, type[Metric]] = {}

# Names that stand for several metrics on the command line (`--metrics classical`).
METRIC_GROUPS: dict[str, tuple[str, ...]] = {
    "classical": ("sharpness", "colorfulness", "contrast"),
}


def register_metric(cls: type[Metric]) -> type[Metric]:
    """Class decorator: make a metric available to ``get_metric``."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"metric name {cls.name!r} is registered twice")
    _REGISTRY[cls.name] = cls
    return cls


# Modules whose import registers their metrics; imported lazily so that the
# registry can be listed without loading every model library.
# Add a line here when a metric module is written.
METRIC_MODULES: list[str] = [
    "scoring.metrics.hpsv2",
    "scoring.metrics.pickscore",
    "scoring.metrics.imagereward",
    "scoring.metrics.hpsv3",
    "scoring.metrics.vqascore",
    "scoring.metrics.tags",
    "scoring.metrics.classical",
    "scoring.metrics.clip_score",
    "scoring.metrics.aesthetic",
    "scoring.metrics.anomaly",
    "scoring.metrics.anime_aesthetic",
    "scoring.metrics.clipiqa",
]


def _load_all() -> None:
    import importlib

    for module in METRIC_MODULES:
        importlib.import_module(module)


def list_metrics() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def get_metric(name: str) -> type[Metric]:
    _load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(
            f"unknown metric {name!r}; available metrics: {', '.join(sorted(_REGISTRY))}"
        ) from None


def expand_metric_names(names: Sequence[str]) -> list[str]:
    """Metric names with groups expanded, duplicates dropped, order kept; unknown names fail."""
    known = set(list_metrics())
    out: list[str] = []
    for raw in names:
        name = raw.strip()
        if not name:
            continue
        members = METRIC_GROUPS.get(name, (name,))
        for member in members:
            if member not in known:
                groups = ", ".join(f"{g} ({'+'.join(m)})" for g, m in METRIC_GROUPS.items())
                raise KeyError(
                    f"unknown metric {member!r}; available metrics: {', '.join(sorted(known))}; "
                    f"groups: {groups}"
                )
            if member not in out:
                out.append(member)
    return out
