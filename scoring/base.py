"""The Metric contract and the registry (``list_metrics()`` / ``get_metric(name)``).

A metric is a small class over a pure function: ``from_pretrained`` resolves and
loads weights once, ``score(images, prompts)`` scores a batch and returns one
float per image. Semantics are class attributes, as in torchmetrics.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image as PILImage


@dataclass(frozen=True)
class WeightFile:
    """A file a metric needs: where it lives on the hub and what it is called locally."""

    repo_id: str
    filename: str
    # A sub-folder of the hub repo, or "" (the file sits at the repo's top level).
    subfolder: str = ""
    # Set for a whole transformers/diffusers folder: the file that proves the folder is there.
    is_folder: bool = False


class Metric(ABC):
    name: ClassVar[str]
    version: ClassVar[str]
    needs_prompt: ClassVar[bool]
    higher_is_better: ClassVar[bool] = True
    # One-line description for `arena metrics`.
    description: ClassVar[str] = ""
    # The files ``from_pretrained`` resolves when no explicit path is given.
    weight_files: ClassVar[tuple[WeightFile, ...]] = ()
    # Metrics with several named outputs (classical) list them; others score one number.
    outputs: ClassVar[tuple[str, ...]] = ()

    device: str = "cpu"

    @classmethod
    @abstractmethod
    def from_pretrained(
        cls, weights: str | Path | None = None, device: str = "cpu", dtype: Any = None
    ) -> Metric:
        """Load the metric's model(s) once; ``weights`` overrides where files are looked for."""

    @abstractmethod
    def score(
        self, images: Sequence[PILImage.Image], prompts: Sequence[str] | None = None
    ) -> np.ndarray:
        """One float per image (float64, shape (n,)); NaN where an image cannot be scored."""

    def check_prompts(self, images: Sequence[Any], prompts: Sequence[str] | None) -> None:
        if self.needs_prompt and (prompts is None or len(prompts) != len(images)):
            got = "none" if prompts is None else len(prompts)
            raise ValueError(
                f"metric {self.name!r} needs one prompt per image: got {len(images)} images "
                f"and {got} prompts."
            )


_REGISTRY: dict[str, type[Metric]] = {}


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
    "scoring.hpsv2",
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
