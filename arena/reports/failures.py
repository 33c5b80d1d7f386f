"""Failure rates of one store under a filter, cached until flags or images change.

The numbers are :func:`arena.stats.failures.failure_rates` over the images a report
counts (:class:`arena.reports.frames.Filters`: not broken, of the filter's prompts, no
reference sets) and every reviewer's flags on them. They are kept apart from the
leaderboard's cache on purpose: a reviewer saves a verdict every few seconds, and a flag
must not make the next page load refit a million votes. Shown by the Admin app
(Leaderboard, Agreement and Review tabs), the exports and ``report.html``; never by the
raters' app.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from arena.reports.frames import Filters
from arena.reports.service import CachedReports
from arena.stats.failures import (
    ALL_REVIEWS,
    ANY_FAILURE,
    BLIND,
    RATE_COLUMNS,
    SOURCES,
    failure_rates,
    failure_rating_correlation,
)

#: How the two rates are read, under every table that shows them.
RATES_NOTE = (
    "Failure rates from reviewers' flags (Review tab), per model over its images that are "
    "not broken. **Blind sample**: images reviewed in the blind review (a random sample per "
    "model, shown without model names): an estimate of the share of the model's images "
    "that fail. **All reviews**: every image with a verdict, blind or not: reviewers chose "
    "what to open, so it counts what was found and estimates nothing. An image counts once, "
    "as failing a mode when any verdict on it flags that mode. Intervals: Wilson 95%."
)


def scope_images(images: pd.DataFrame, prompts: pd.DataFrame, filters: Filters) -> pd.DataFrame:
    """The images failure rates are over: ``Store.images_frame(include_broken=True)``
    rows of models (not reference sets) that are not broken, of the filter's prompts."""
    keep = images["broken"].isna()
    if "model_kind" in images:
        keep &= images["model_kind"] != "reference"
    prompt_ids = filters.prompt_ids(prompts)
    if prompt_ids is not None:
        keep &= images["prompt_id"].isin(prompt_ids)
    return images.loc[keep, ["image_id", "model"]].reset_index(drop=True)


@dataclass
class FailureResult:
    rates: pd.DataFrame
    filters: Filters
    flags: int  # flag rows on the images in scope

    def any_failure(self, source: str) -> pd.Series:
        """Per model, the rate of any failure from ``source`` (NaN: nothing reviewed)."""
        rows = self.rates[(self.rates["source"] == source) & (self.rates["mode"] == ANY_FAILURE)]
        return rows.set_index("model")["rate"]


class FailureService(CachedReports):
    """Failure rates per filter, cached on the flags and the images (not the votes)."""

    def signature(self) -> tuple:
        # held-out sets: a set marked or unmarked changes what the held-out filter keeps
        return (
            self.store.flags_signature(),
            self.store.images_signature(),
            tuple(self.store.held_out_sets()),
        )

    def get(self, filters: Filters | None = None) -> FailureResult:
        filters = filters or Filters()
        # the prompt filters only: rates are over images, not votes
        return self.cached(("rates", *filters.prompt_key()), lambda _sig: self._compute(filters))

    def _compute(self, filters: Filters) -> FailureResult:
        images = self.store.review_pool()  # not broken, no reference sets
        prompt_ids = filters.prompt_ids(self.store.prompts_frame())
        if prompt_ids is not None:
            images = images[images["prompt_id"].isin(prompt_ids)]
        flags = self.store.image_flags_frame()
        flags = flags[flags["image_id"].isin(images["image_id"])]
        rates = failure_rates(flags, images, self.store.failure_modes)
        self.computations += 1
        return FailureResult(rates, filters, len(flags))


def rates_for(store, frames) -> pd.DataFrame:
    """Failure rates over a report's frames (``ReportFrames``: the export's), uncached."""
    images = scope_images(frames.images_all, frames.prompts, frames.filters)
    flags = store.image_flags_frame()
    return failure_rates(
        flags[flags["image_id"].isin(images["image_id"])], images, store.failure_modes
    )


def correlation_with(rates: pd.DataFrame, models: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Failure rate vs human rating across models (``models``: the agreement report's
    ``models`` table, ``human_rating`` per model), permutation p-values seeded by ``seed``."""
    if models is None or models.empty or "human_rating" not in models:
        ratings = pd.Series(dtype=float)
    else:
        ratings = models.set_index("model")["human_rating"]
    return failure_rating_correlation(rates, ratings, np.random.default_rng(seed))


# -- display -----------------------------------------------------------------------------------
def _cell(flagged, reviewed, rate, low, high) -> str:
    if not reviewed:
        return "–"
    return f"{100 * rate:.1f}% [{100 * low:.1f}–{100 * high:.1f}] ({int(flagged)}/{int(reviewed)})"


def summary_display(rates: pd.DataFrame) -> pd.DataFrame:
    """One row per model: its images, and any failure from each source (rate [Wilson 95%]
    (flagged/reviewed))."""
    columns = ["Model", "Images", f"Any failure: {BLIND}", f"Any failure: {ALL_REVIEWS}"]
    part = rates[rates["mode"] == ANY_FAILURE] if len(rates) else rates
    if part.empty:
        return pd.DataFrame(columns=columns)
    out = []
    for model, rows in part.groupby("model", sort=True):
        by = rows.set_index("source")
        out.append(
            [model, int(rows["images"].iloc[0])]
            + [
                _cell(*by.loc[s, ["flagged", "reviewed", "rate", "ci_low", "ci_high"]])
                for s in SOURCES
            ]
        )
    return pd.DataFrame(out, columns=columns)


def modes_display(rates: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, mode) flagged at least once: both sources' cells."""
    columns = ["Model", "Mode", BLIND, ALL_REVIEWS]
    part = rates[rates["mode"] != ANY_FAILURE] if len(rates) else rates
    if part.empty:
        return pd.DataFrame(columns=columns)
    flagged = part.groupby("mode")["flagged"].transform("sum") > 0
    out = []
    for (model, mode), rows in part[flagged].groupby(["model", "mode"], sort=False):
        by = rows.set_index("source")
        cells = [
            _cell(*by.loc[s, ["flagged", "reviewed", "rate", "ci_low", "ci_high"]]) for s in SOURCES
        ]
        out.append([model, mode, *cells])
    return pd.DataFrame(out, columns=columns)


def correlation_display(correlation: pd.DataFrame) -> pd.DataFrame:
    columns = ["Source", "Mode", "Models", "Spearman ρ", "Kendall τ"]
    if correlation.empty:
        return pd.DataFrame(columns=columns)

    def cell(value, p) -> str:
        if not np.isfinite(value):
            return "–"
        return f"{value:.2f}" + (f" (p = {p:.2g})" if np.isfinite(p) else "")

    return pd.DataFrame(
        {
            "Source": correlation["source"],
            "Mode": correlation["mode"],
            "Models": correlation["n_models"],
            "Spearman ρ": [
                cell(v, p)
                for v, p in zip(correlation["spearman"], correlation["spearman_p"], strict=True)
            ],
            "Kendall τ": [
                cell(v, p)
                for v, p in zip(correlation["kendall"], correlation["kendall_p"], strict=True)
            ],
        }
    )


def rate_vs_rating_figure(rates: pd.DataFrame, models: pd.DataFrame) -> Figure:
    """Any-failure rate (y, Wilson 95%) against the human rating (x) per model, one panel
    per source."""
    fig = Figure(figsize=(9, 3.4), layout="constrained")
    ratings = (
        models.set_index("model")["human_rating"]
        if models is not None and "human_rating" in models
        else pd.Series(dtype=float)
    )
    for k, source in enumerate(SOURCES):
        ax = fig.add_subplot(1, 2, k + 1)
        rows = rates[(rates["source"] == source) & (rates["mode"] == ANY_FAILURE)]
        rows = rows.assign(rating=rows["model"].map(ratings)).dropna(subset=["rate", "rating"])
        if rows.empty:
            ax.axis("off")
            ax.text(0.5, 0.5, f"{source}: no reviewed images with a rating", ha="center")
            continue
        y = rows["rate"].to_numpy(np.float64)
        yerr = np.vstack([y - rows["ci_low"], rows["ci_high"] - y]).clip(min=0)
        ax.errorbar(rows["rating"], y, yerr=yerr, fmt="o", ms=4, capsize=2, lw=0.8)
        for x, yy, label in zip(rows["rating"], y, rows["model"], strict=True):
            ax.annotate(label, (x, yy), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel("human rating (BT, Elo scale)")
        ax.set_ylabel("any-failure rate")
        ax.set_title(source, fontsize=10)
    return fig


def export_tables(rates: pd.DataFrame, correlation: pd.DataFrame, flags: pd.DataFrame) -> dict:
    """The export's three tables: ``failure_rates``, ``failure_correlation``, ``image_flags``."""
    flags = flags.reset_index(drop=True).copy()
    for column in ("created_at", "updated_at"):  # ISO text, as the votes table's times
        stamp = pd.to_datetime(flags[column]).to_numpy("datetime64[us]")
        flags[column] = np.datetime_as_string(stamp, unit="us").astype(object)
    return {
        "failure_rates": rates[RATE_COLUMNS].reset_index(drop=True),
        "failure_correlation": correlation.reset_index(drop=True),
        "image_flags": flags,
    }
