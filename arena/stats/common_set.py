"""The common set: the (prompt, seed) cells where every compared model has a usable image.

A model whose image of one cell is broken (black, NaN, truncated) is scored on one image
fewer; left at that, its mean is over other prompts than its rivals', and a prompt that is
hard for everyone moves the models apart by who happens to have it. Restricting every
model to the cells where *all* compared models have a non-broken image makes the metric
means (and the distribution metrics) a paired comparison: a model's broken image also
removes its counterparts. Pure: a frame in, arrays and frames out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

#: Columns of :attr:`CommonSet.per_model`.
PER_MODEL_COLUMNS = ["model", "images", "kept", "left_out", "broken", "missing_cells"]


@dataclass(frozen=True)
class CommonSet:
    """The common set of some images.

    ``models``: the compared models (sorted). ``keep``: per row of the images given, True
    for a non-broken image of a compared model in a common cell. ``cells``: the (prompt,
    seed) cells where any compared model has an image (broken or not); ``common``: those
    where every compared model has a non-broken one; ``left_out`` = cells − common.
    ``per_model``: per compared model, its non-broken ``images``, the ``kept`` ones, the
    ``left_out`` ones (non-broken, dropped because another model's image of the cell is
    broken or missing), its ``broken`` images and ``missing_cells`` (cells where it has
    no image at all).
    """

    models: list[str]
    keep: np.ndarray
    cells: int
    common: int
    per_model: pd.DataFrame

    @property
    def left_out(self) -> int:
        return self.cells - self.common

    def describe(self) -> str:
        """One sentence: how many cells the paired numbers rest on."""
        if not self.models:
            return "no images to pair"
        text = (
            f"{self.common} of {self.cells} (prompt, seed) cells where all "
            f"{len(self.models)} models have a non-broken image"
        )
        if self.left_out:
            reasons = [
                f"{r.model}: {r.broken} broken, {r.missing_cells} missing"
                for r in self.per_model.itertuples()
                if r.broken or r.missing_cells
            ]
            text += f"; {self.left_out} left out ({'; '.join(reasons)})"
        return text


def _is_broken(images: pd.DataFrame) -> np.ndarray:
    if "broken" not in images:
        return np.zeros(len(images), dtype=bool)
    broken = images["broken"]
    return (broken.notna() & (broken.astype(str) != "")).to_numpy(dtype=bool)


def common_set(images: pd.DataFrame, models: Sequence[str] | None = None) -> CommonSet:
    """The common set of ``images`` over ``models``.

    ``images`` needs ``model``, ``prompt_id`` and ``seed`` (``Store.images_frame(
    include_broken=True)``); ``broken`` (empty or NaN: fine) is optional, and rows whose
    ``model_kind`` is ``reference`` are never compared. A missing prompt or seed is a value
    of its own (all images without a seed of one prompt share a cell). ``models`` (default:
    every model with a non-broken image) are the models compared; a named model without a
    usable image leaves nothing in common. Ids and row order do not matter.
    """
    missing = {"model", "prompt_id", "seed"} - set(images.columns)
    if missing:
        raise ValueError(
            f"images frame lacks columns {sorted(missing)}; pass "
            "Store.images_frame(include_broken=True)."
        )
    broken = _is_broken(images)
    eligible = np.ones(len(images), dtype=bool)
    if "model_kind" in images:
        eligible &= (images["model_kind"] != "reference").to_numpy(dtype=bool)
    names = images["model"].astype(str).to_numpy()
    if models is None:
        models = sorted(set(names[eligible & ~broken]))
    else:
        models = sorted({str(m) for m in models})
    compared = eligible & np.isin(names, models)
    empty = pd.DataFrame(columns=PER_MODEL_COLUMNS)
    if not models or not compared.any():
        keep = np.zeros(len(images), dtype=bool)
        return CommonSet(list(models), keep, 0, 0, empty)
    rows = np.flatnonzero(compared)
    part = images.iloc[rows]
    prompt = pd.factorize(part["prompt_id"], use_na_sentinel=False)[0]
    seed = pd.factorize(part["seed"], use_na_sentinel=False)[0]
    cell = pd.factorize(prompt.astype(np.int64) * (seed.max() + 1) + seed)[0]
    model = pd.Index(models).get_indexer(names[rows])
    n_cells, n_models = int(cell.max()) + 1, len(models)
    ok = ~broken[rows]
    usable = np.zeros((n_cells, n_models), dtype=bool)
    usable[cell[ok], model[ok]] = True
    present = np.zeros((n_cells, n_models), dtype=bool)
    present[cell, model] = True
    common_cells = usable.all(axis=1)
    keep = np.zeros(len(images), dtype=bool)
    keep[rows] = ok & common_cells[cell]
    n_images = np.bincount(model[ok], minlength=n_models)
    kept = np.bincount(model[keep[rows]], minlength=n_models)
    per_model = pd.DataFrame(
        {
            "model": models,
            "images": n_images,
            "kept": kept,
            "left_out": n_images - kept,
            "broken": np.bincount(model[~ok], minlength=n_models),
            "missing_cells": (~present).sum(axis=0),
        }
    )
    return CommonSet(list(models), keep, n_cells, int(common_cells.sum()), per_model)
