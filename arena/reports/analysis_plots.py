"""Figures of the evaluator's analyses (:mod:`arena.reports.analyses`): tag accuracy by the
number and the position of prompt tags, and the metric × metric correlation heatmap.
matplotlib ``Figure`` objects, no pyplot (as :mod:`arena.reports.plots`); the Agreement
tab shows them and ``report.html`` inlines them."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from arena.reports.plots import _errors, _message
from arena.stats.metric_correlation import correlation_matrix

TAG_KINDS = {
    "count": ("number of tags in the prompt", "mean tag accuracy of the images"),
    "position": ("position of the tag in the prompt (0 = first)", "share of the tags found"),
}


def tag_accuracy_figure(table: pd.DataFrame, kind: str = "count") -> Figure:
    """Accuracy per bin (x) for each model (one line, 95% prompt-bootstrap bars), from a
    ``tag_accuracy_by_count`` or ``tag_accuracy_by_position`` table; the ``all`` bin is left
    out (it is the model's overall figure, in the table)."""
    if kind not in TAG_KINDS:
        raise ValueError(f"kind {kind!r}: expected one of {', '.join(TAG_KINDS)}.")
    part = table[table["bin"] != "all"] if len(table) else table
    if part.empty:
        return _message(
            "No per-tag details yet: score the images with the tags metric "
            "(`arena score --metrics tags`)."
        )
    labels = list(dict.fromkeys(part["bin"]))  # in bin order, as the table lists them
    models = sorted(part["model"].unique())
    fig = Figure(figsize=(max(6.0, 0.6 * len(labels) + 3), 3.8), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(labels))
    width = 0.6 / max(len(models), 1)
    for k, model in enumerate(models):
        rows = part[part["model"] == model].set_index("bin").reindex(labels)
        ax.errorbar(
            x + (k - (len(models) - 1) / 2) * width,
            rows["accuracy"].to_numpy(np.float64),
            yerr=_errors(rows, "accuracy", "ci_low", "ci_high"),
            fmt="o-",
            ms=4,
            capsize=2,
            lw=1,
            label=model,
        )
    xlabel, ylabel = TAG_KINDS[kind]
    ax.set_xticks(x, labels)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8, ncols=min(4, len(models)))
    return fig


def correlation_figure(table: pd.DataFrame, level: str = "image") -> Figure:
    """Heatmap of Spearman ρ between the metrics at one ``level`` (``image`` or ``model``),
    each cell annotated; from a ``metric_correlation`` table (values oriented: > 0 means
    the two metrics agree on what is better)."""
    matrix = correlation_matrix(table, level) if len(table) else pd.DataFrame()
    if matrix.shape[0] < 2:
        return _message(f"Fewer than two metrics with values over {level}s.")
    names = list(matrix.index)
    size = max(3.5, 0.55 * len(names) + 2)
    fig = Figure(figsize=(size + 1, size), layout="constrained")
    ax = fig.add_subplot()
    values = matrix.to_numpy(np.float64)
    image = ax.imshow(values, vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    if len(names) <= 16:
        for i in range(len(names)):
            for j in range(len(names)):
                v = values[i, j]
                text = "–" if not np.isfinite(v) else f"{v:.2f}".replace("-0.00", "0.00")
                colour = "white" if np.isfinite(v) and abs(v) > 0.6 else "black"
                ax.text(j, i, text, ha="center", va="center", fontsize=7, color=colour)
    ax.set_title(f"Spearman ρ over {level}s", fontsize=10)
    fig.colorbar(image, ax=ax, shrink=0.8)
    return fig
