"""The analyses evaluators used to run by hand, over the report frames of one filter.

The common set (paired comparison), tag accuracy against the number and the position of
prompt tags, per-seed means with their spread, and metric × metric rank correlations.
The statistics are pure functions in :mod:`arena.stats.common_set`,
:mod:`arena.stats.tag_accuracy`, :mod:`arena.stats.seeds` and
:mod:`arena.stats.metric_correlation`; this module feeds them the frames of
:func:`arena.reports.frames.load_report_frames` (the same images the leaderboard's metric
means are over: the common set unless ``paired_metrics`` is off) and caches the result
like the other reports (:class:`AnalysesService`). :func:`analyses_of` is the entry point
for other reports (a candidate-vs-baseline report passes its two ``models``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from arena.reports.frames import Filters, ReportFrames, load_report_frames
from arena.reports.leaderboard import chosen_scores, model_level_columns
from arena.reports.service import CachedReports
from arena.stats import seeds as S
from arena.stats import tag_accuracy as T
from arena.stats.common_set import PER_MODEL_COLUMNS, CommonSet
from arena.stats.metric_correlation import metric_correlations

COMMON_COLUMNS = [*PER_MODEL_COLUMNS, "cells", "common_cells", "paired"]
VALUE_COLUMNS = ["image_id", "model", "prompt_id", "seed", "seed_index", "metric", "value"]


@dataclass
class Analyses:
    """Every analysis of one set of frames.

    ``common``: the common set (its per-model table is ``common_set`` in the exports);
    ``paired``: whether the numbers below are over it. ``tag_hits``: one row per image and
    countable tag; ``tag_by_count`` / ``tag_by_position``: accuracy per model and bin;
    ``seed_means`` / ``seed_spread``: per seed index and over seeds; ``metric_correlation``:
    Spearman ρ between metrics over images and over models. ``info``: what they rest on.
    """

    common: CommonSet
    paired: bool
    tag_hits: pd.DataFrame
    tag_by_count: pd.DataFrame
    tag_by_position: pd.DataFrame
    seed_means: pd.DataFrame
    seed_spread: pd.DataFrame
    metric_correlation: pd.DataFrame
    info: dict = field(default_factory=dict)

    def common_table(self) -> pd.DataFrame:
        """Per compared model: its images, those kept, left out, broken, and missing cells,
        with the set's totals (``cells``, ``common_cells``) and whether it is used."""
        out = self.common.per_model.copy()
        out["cells"] = self.common.cells
        out["common_cells"] = self.common.common
        out["paired"] = self.paired
        return out[COMMON_COLUMNS].reset_index(drop=True)

    def tables(self) -> dict[str, pd.DataFrame]:
        """The exported tables, by name (docs/exports.md)."""
        return {
            "common_set": self.common_table(),
            # plain text columns in the files, as every other table (categories in memory)
            "tag_hits": self.tag_hits.astype({"model": str, "tag": str}),
            "tag_accuracy_by_count": self.tag_by_count,
            "tag_accuracy_by_position": self.tag_by_position,
            "seed_means": self.seed_means,
            "seed_spread": self.seed_spread,
            "metric_correlation": self.metric_correlation,
        }


def image_values(
    scores: pd.DataFrame, images: pd.DataFrame, seed_of: pd.Series | None = None
) -> tuple[pd.DataFrame, dict[str, bool]]:
    """(long frame, directions): one row per image of ``images`` and metric (the version
    every per-model number uses, :func:`chosen_scores`) with ``model``, ``prompt_id``,
    ``seed``, ``seed_index`` (from ``seed_of``, image id → index; -1 without) and the raw
    ``value``; and each metric's ``higher_is_better`` as stored with its scores."""
    if scores is None or scores.empty or images.empty:
        return pd.DataFrame(columns=VALUE_COLUMNS), {}
    chosen = chosen_scores(scores)
    directions = chosen.groupby("metric")["higher_is_better"].first().astype(bool).to_dict()
    cols = ["image_id", "model", "prompt_id", "seed"]
    merged = chosen[["image_id", "metric", "value"]].merge(images[cols], on="image_id")
    index = seed_of.reindex(merged["image_id"]) if seed_of is not None else None
    merged["seed_index"] = -1 if index is None else index.fillna(-1).to_numpy(np.int64)
    return merged[VALUE_COLUMNS], directions


def _oriented(frame: pd.DataFrame, directions: dict[str, bool]) -> pd.DataFrame:
    """Columns negated where lower is better, so that higher is better everywhere."""
    signs = [1.0 if directions.get(c, True) else -1.0 for c in frame.columns]
    return frame.astype(np.float64) * np.asarray(signs)


def model_level_values(model_metrics: pd.DataFrame | None) -> tuple[pd.DataFrame, dict]:
    """(model × model-level number, directions): the leaderboard's model-level columns
    without their ``_std`` columns, and each column's ``higher_is_better``."""
    table = model_level_columns(model_metrics)
    if table is None:
        return pd.DataFrame(), {}
    table = table[[c for c in table.columns if not c.endswith("_std")]]
    stored = model_metrics.groupby("metric")["higher_is_better"].first().astype(bool)
    directions = {c: bool(stored.get(c.split("@", 1)[0], True)) for c in table.columns}
    return table, directions


def analyses_of(
    frames: ReportFrames,
    tag_details: pd.DataFrame | None,
    rng: np.random.Generator,
    rounds: int = 1000,
    models: Sequence[str] | None = None,
) -> Analyses:
    """Every analysis over ``frames`` (the filter's images; the common set unless
    ``frames.paired`` is off), restricted to ``models`` (default: all, paired over all;
    given: paired over those alone). ``tag_details``: ``Store.score_details_frame(["tags"])``
    (None or empty: no tag analyses). ``rng`` seeds the prompt bootstraps (``rounds``) of
    the tag analyses (over prompts in their content order, ``frames.prompts``) and the
    permutation p-values of the metric correlations, each from a stream of its own."""
    if models is None and frames.common is not None and frames.metric_images is not None:
        common, images = frames.common, frames.metric_images
    else:
        common, images = frames.paired_on(models)
    if "model_kind" in images:
        images = images[images["model_kind"] != "reference"]
    tags_rng, hits_rng, corr_rng = rng.spawn(3)
    # seed indexes over every image of the prompts (broken ones too): the same seed gets
    # the same index for every model, whatever is filtered or paired away
    seed_of = pd.Series(S.seed_index(frames.images_all), index=frames.images_all["image_id"])
    values, directions = image_values(frames.scores, images, seed_of)

    hits = pd.DataFrame(columns=T.HIT_COLUMNS)
    tag_version = None
    if tag_details is not None and len(tag_details) and len(frames.scores):
        chosen = chosen_scores(frames.scores)
        versions = chosen.loc[chosen["metric"] == T.TAGS_METRIC, "version"]
        if len(versions):
            tag_version = str(versions.iloc[0])
            mine = tag_details[
                (tag_details["metric"] == T.TAGS_METRIC) & (tag_details["version"] == tag_version)
            ]
            hits = T.tag_hits_table(mine, images)
    by_count = T.accuracy_by_count(hits, tags_rng, rounds, prompts=frames.prompts)
    by_position = T.accuracy_by_position(hits, hits_rng, rounds, prompts=frames.prompts)

    per_seed = S.seed_means(values)
    spread = S.seed_spread(per_seed)

    # over images, every usable image of the compared models: agreement between two
    # metrics is a property of the metrics, not a comparison of models, so nothing is paired
    usable = frames.images[frames.images["model"].isin(common.models)]
    every, _ = image_values(frames.scores, usable)
    wide = every.pivot_table(index="image_id", columns="metric", values="value", aggfunc="first")
    means = values.pivot_table(index="model", columns="metric", values="value", aggfunc="mean")
    model_level, level_directions = model_level_values(frames.model_metrics)
    if len(model_level):
        model_level = model_level[model_level.index.isin(common.models)]
    per_model = _oriented(means, directions)
    if len(model_level):
        per_model = per_model.join(_oriented(model_level, level_directions), how="outer")
    correlation = metric_correlations(_oriented(wide, directions), per_model, corr_rng)
    info = {
        "models": list(common.models),
        "metrics": sorted(directions),
        "model_level": list(model_level.columns) if len(model_level) else [],
        "tag_version": tag_version,
        "tag_images": int(hits["image_id"].nunique()) if len(hits) else 0,
        "seeds": int(per_seed["seed_index"].nunique()) if len(per_seed) else 0,
        "rounds": rounds,
    }
    return Analyses(
        common=common,
        paired=frames.paired,
        tag_hits=hits,
        tag_by_count=by_count,
        tag_by_position=by_position,
        seed_means=per_seed,
        seed_spread=spread,
        metric_correlation=correlation,
        info=info,
    )


@dataclass
class AnalysesResult:
    analyses: Analyses
    filters: Filters
    seconds: float


class AnalysesService(CachedReports):
    """The analyses of one store, cached per (data signature, filters, rounds, seed)."""

    def __init__(self, store, max_entries: int = 8):
        super().__init__(store, max_entries)

    def get(
        self,
        filters: Filters | None = None,
        rounds: int | None = None,
        seed: int | None = None,
        frames: ReportFrames | None = None,
        details: pd.DataFrame | None = None,
    ) -> AnalysesResult:
        """The analyses under ``filters``, computed on a miss from ``frames`` (loaded
        under them) or a fresh load, and ``details`` (``Store.score_details_frame()``, read
        on a miss when not given); bootstrapped with a generator seeded by ``seed``
        (default: the settings'), so the numbers are reproducible."""
        filters = frames.filters if frames is not None else filters or Filters()
        rounds = max(1, self.settings.bootstrap_rounds if rounds is None else int(rounds))
        seed = self.settings.seed if seed is None else int(seed)

        def compute(_signature) -> AnalysesResult:
            start = time.perf_counter()
            loaded = frames if frames is not None else load_report_frames(self.store, filters)
            tags = (
                details if details is not None else self.store.score_details_frame([T.TAGS_METRIC])
            )
            result = analyses_of(loaded, tags, np.random.default_rng(seed), rounds)
            self.computations += 1
            return AnalysesResult(result, filters, time.perf_counter() - start)

        return self.cached(
            ("analyses", filters.key(), rounds, seed),
            compute,
            signature=frames.signature if frames is not None else None,
        )
