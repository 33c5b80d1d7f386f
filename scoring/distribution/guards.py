"""Guards on model-level numbers: per-prompt slices with their sample sizes, image sizes.

``arena distribution --by category`` (or ``--by prompt-set``) computes every number over
each prompt category's (or prompt set's) images of a model, against the whole reference
set. A slice is named ``category=<name>`` / ``prompt_set=<name>`` and stored as its own
``model_metrics`` row (``slice``), so it never replaces the whole-model number.

Two things make such numbers easy to misread, and each row says so in its warning:

* **Small slices.** A category holds a fraction of a model's images. Below
  :data:`SLICE_MIN_IMAGES` the number is mostly sampling noise; and FID, FD-DINO and the
  Inception Score are *biased* estimators whose expectation moves with n, so two models
  with different image counts in the same slice differ partly because of n alone
  (Chong & Forsyth 2020), and a slice's FID is not comparable with the whole-model FID.
* **Image sizes.** Every extractor resizes its input (Inception to 299², CLIP to 336²,
  DINOv2 to 224²); when a model's images and the reference set's have other sizes the
  distance also measures the resampling (Parmar et al. 2022, "On aliased resizing and
  surprising subtleties in GAN evaluation"). The sizes of both sets are stored with the row.

Plain functions over the images frame (``Store.images_frame()`` columns, with prompts').
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

#: --by NAME -> the prompts-frame column a slice is read from.
BY = {"category": "category", "prompt-set": "prompt_set"}
#: Below this many images in a slice its numbers are mostly sampling noise (warned).
SLICE_MIN_IMAGES = 50
#: Estimators whose expectation moves with the number of images (compare at equal n only).
N_BIASED = ("fid", "fd-dino", "is")
#: How many distinct image sizes of each set a row keeps in ``details["image_sizes"]``.
SIZES_KEPT = 5


class SliceError(ValueError):
    """A --by that cannot be computed; the message says why and how to fix it."""


def with_slices(pool: pd.DataFrame, prompts: pd.DataFrame, by: str | None) -> pd.DataFrame:
    """``pool`` with a ``slice`` column: "" for every image when ``by`` is None, else
    ``<column>=<value>`` of the image's prompt ("" for an image without a prompt or with
    an empty value: it belongs to no slice). Row order is kept."""
    if by is None:
        return pool.assign(slice="")
    if by not in BY:
        raise SliceError(f"--by {by!r}: expected one of {', '.join(BY)}.")
    column = BY[by]
    value = dict(zip(prompts["prompt_id"], prompts[column], strict=True))
    names = [
        f"{column}={value[p]}" if p == p and p is not None and value.get(p) else ""
        for p in pool["prompt_id"]
    ]
    out = pool.assign(slice=names)
    if not (out["slice"] != "").any():
        raise SliceError(
            f"no image of the compared models has a prompt {by.replace('-', ' ')}: give the "
            "prompts one (the category column of `arena import-prompts`), or use --by "
            "prompt-set."
        )
    return out


def units(rows: pd.DataFrame, by: str | None):
    """(slice, rows) to compute a model's numbers over: ("", all its rows) without
    ``by``, else each slice of its images, in name order (rows keep their order)."""
    if by is None:
        yield "", rows
        return
    for name in sorted(set(rows["slice"]) - {""}):
        yield name, rows[rows["slice"] == name]


def slice_counts(pool: pd.DataFrame) -> dict[str, dict[str, int]]:
    """slice -> {model: images in it} (the sample sizes the warnings compare)."""
    if "slice" not in pool.columns:
        return {}
    sliced = pool[pool["slice"] != ""]
    counts: dict[str, dict[str, int]] = {}
    for (name, model), n in sliced.groupby(["slice", "model"], sort=True).size().items():
        counts.setdefault(name, {})[model] = int(n)
    return counts


def slice_warning(metric: str, model: str, counts: dict[str, int]) -> str:
    """The sample-size warning of ``model``'s number over one slice ("" if none):
    too few images, and (for an n-biased estimator) other models with other counts."""
    n = counts[model]
    parts = []
    if n < SLICE_MIN_IMAGES:
        parts.append(
            f"only {n} image(s) in this slice (fewer than {SLICE_MIN_IMAGES}): mostly "
            "sampling noise"
        )
    low, high = min(counts.values()), max(counts.values())
    if metric in N_BIASED and low != high:
        parts.append(
            f"{metric.upper()} is biased by the number of images and the models have "
            f"{low}-{high} in this slice: part of their difference is the sample size"
        )
    return "; ".join(parts)


@dataclass(frozen=True)
class SizeCheck:
    """Whether a model's image sizes differ from the reference set's, and both sizes."""

    warning: str = ""
    sizes: dict = field(default_factory=dict)


def _size_counts(rows: pd.DataFrame) -> Counter:
    w = rows["width"].to_numpy(np.int64)
    h = rows["height"].to_numpy(np.int64)
    return Counter(f"{a}x{b}" for a, b in zip(w, h, strict=True))


def _shown(counts: Counter) -> str:
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    text = ", ".join(f"{size} ({n})" for size, n in top[:3])
    return text + (f" and {len(top) - 3} more size(s)" if len(top) > 3 else "")


def size_check(rows: pd.DataFrame, ref_rows: pd.DataFrame) -> SizeCheck:
    """A warning when the sets of (width, height) of ``rows`` and of the reference set
    differ; ``sizes`` keeps the most common sizes of each (with counts) and how many
    distinct sizes each has."""
    mine, ref = _size_counts(rows), _size_counts(ref_rows)

    def kept(counts: Counter) -> dict:
        top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:SIZES_KEPT]
        return {"most_common": dict(top), "distinct": len(counts)}

    if set(mine) == set(ref):
        return SizeCheck()
    warning = (
        f"image sizes differ from the reference set's (model {_shown(mine)}; reference "
        f"{_shown(ref)}): the extractor resizes both, so the number also measures the "
        "resizing; generate at the reference's size or resize the reference set"
    )
    return SizeCheck(warning, {"model": kept(mine), "reference": kept(ref)})
