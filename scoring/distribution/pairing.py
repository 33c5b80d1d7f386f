"""`arena distribution` on the common set: every model over the same (prompt, seed) cells.

FID, KID, CMMD and the diversities of a model with a broken image are computed over one
image fewer than its rivals', and over other prompts: a hard prompt that one model lost to
a broken image moves it against the others. By default (setting ``paired_metrics``, flag
``--all-images`` to turn it off) each model's images are restricted to the cells where
every compared model has a non-broken image (:mod:`arena.stats.common_set`), and every
stored row records the set in ``details["common_set"]``.
"""

from __future__ import annotations

import pandas as pd

from arena.stats.common_set import common_set


class PairingError(ValueError):
    """The compared models have no cell in common; the message says what to do."""


def paired_pool(
    images: pd.DataFrame, models: list[str], paired: bool = True
) -> tuple[pd.DataFrame, dict[str, dict]]:
    """(the images to compute on, model -> its ``common_set`` record).

    ``images``: ``Store.images_frame(include_broken=True)``; ``models``: the models this
    run computes (they are the compared ones). The pool holds their non-broken images: all
    of them with ``paired`` False, else those of the common cells. A record says whether
    the run was paired, over which models, how many cells there were, how many were common
    and left out, and how many of the model's own non-broken images were left out.
    """
    generated = images[(images["model_kind"] != "reference") & images["model"].isin(models)]
    common = common_set(generated, models)
    usable = generated["broken"].isna().to_numpy()
    pool = generated[common.keep] if paired else generated[usable]
    if paired and pool.empty:
        raise PairingError(
            f"no (prompt, seed) cell where every compared model ({', '.join(common.models)}) "
            "has a non-broken image, so the paired comparison has nothing to compare; compare "
            "fewer models (--models), or use every image of each model (--all-images, or "
            "ARENA_PAIRED_METRICS=0)."
        )
    left_out = dict(zip(common.per_model["model"], common.per_model["left_out"], strict=True))
    records = {
        model: {
            "paired": bool(paired),
            "models": list(common.models),
            "cells": int(common.cells),
            "common": int(common.common),
            "left_out": int(common.left_out),
            "images_left_out": int(left_out.get(model, 0)) if paired else 0,
        }
        for model in common.models
    }
    return pool, records
