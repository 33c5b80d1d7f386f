"""Figures of the agreement statistics (matplotlib ``Figure``, no pyplot: no GUI
backend, safe in server threads). Used by the Agreement tab and the static report."""

from __future__ import annotations

import base64
import io
import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from arena.stats.agreement import CEILING

PROTOCOL_COLOURS = {"decisive": "#4C72B0", "ties_half": "#55A868", "with_ties": "#C44E52"}


def _message(text: str) -> Figure:
    fig = Figure(figsize=(6, 1.6))
    ax = fig.add_subplot()
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=11, wrap=True)
    return fig


def _errors(frame: pd.DataFrame, value: str, low: str, high: str) -> np.ndarray:
    v, lo, hi = (frame[c].to_numpy(np.float64) for c in (value, low, high))
    return np.nan_to_num(np.vstack([v - lo, hi - v]), nan=0.0).clip(min=0.0)


def accuracy_figure(accuracy: pd.DataFrame) -> Figure:
    """Accuracy per metric and protocol with 95% intervals; the human ceiling as a band."""
    metrics = accuracy[accuracy["metric"] != CEILING]
    if metrics.empty:
        return _message("No metric scores on voted images yet: run `arena score`.")
    names = sorted(metrics["metric"].unique())
    protocols = [p for p in PROTOCOL_COLOURS if p in set(metrics["protocol"])]
    width = 0.8 / max(len(protocols), 1)
    fig = Figure(figsize=(max(6.0, 1.2 * len(names) + 2), 3.8), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(names))
    for k, protocol in enumerate(protocols):
        part = metrics[metrics["protocol"] == protocol].set_index("metric").reindex(names)
        ax.bar(
            x + (k - (len(protocols) - 1) / 2) * width,
            part["accuracy"].to_numpy(np.float64),
            width,
            yerr=_errors(part, "accuracy", "ci_low", "ci_high"),
            capsize=3,
            color=PROTOCOL_COLOURS[protocol],
            label=protocol,
        )
    ceiling = accuracy[accuracy["metric"] == CEILING]
    if len(ceiling) and np.isfinite(ceiling["accuracy"].iloc[0]):
        row = ceiling.iloc[0]
        ax.axhspan(row["ci_low"], row["ci_high"], color="0.85", zorder=0)
        ax.axhline(row["accuracy"], color="0.3", ls="--", lw=1, label="human ceiling")
    ax.axhline(0.5, color="0.5", lw=0.8, ls=":")
    ax.set_xticks(x, names, rotation=20, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("pairwise accuracy")
    ax.legend(fontsize=8, ncols=2, loc="lower right")
    return fig


def scatter_figure(models: pd.DataFrame, metrics: list[str], title_note: str = "") -> Figure:
    """Human BT rating (x) against each metric per model (y), one panel per metric.

    Per-image metrics plot their per-model mean (``<name>_mean`` with its bootstrap
    interval); model-level metrics (KID, FID ...) their value (``<name>_value``, error
    bar ± ``<name>_std`` where there is one, as KID's spread over subsets).
    ``title_note`` is appended to the model-level panels' titles (the demo's
    stand-in label).
    """
    metrics = [
        m for m in metrics if f"{m}_mean" in models.columns or f"{m}_value" in models.columns
    ]
    if models.empty or "human_rating" not in models or not metrics:
        return _message("Needs votes and metric scores.")
    cols = min(3, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.4 * rows), layout="constrained")
    x = models["human_rating"].to_numpy(np.float64)
    xerr = _errors(models, "human_rating", "human_low", "human_high")
    for k, name in enumerate(metrics):
        ax = fig.add_subplot(rows, cols, k + 1)
        if f"{name}_mean" in models.columns:
            y = models[f"{name}_mean"].to_numpy(np.float64)
            yerr = _errors(models, f"{name}_mean", f"{name}_low", f"{name}_high")
            ylabel, title = f"{name} mean", name
        else:
            y = models[f"{name}_value"].to_numpy(np.float64)
            yerr = np.nan_to_num(np.abs(models[f"{name}_std"].to_numpy(np.float64)), nan=0.0)
            ylabel, title = f"{name} (model level)", f"{name} {title_note}".strip()
        ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="o", ms=4, capsize=2, lw=0.8)
        if len(models) <= 16:
            for xi, yi, label in zip(x, y, models["model"], strict=True):
                if np.isfinite(xi) and np.isfinite(yi):
                    ax.annotate(
                        label, (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points"
                    )
        ax.set_xlabel("human rating (BT, Elo scale)")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
    return fig


def slices_figure(
    slices: pd.DataFrame, metric: str | None = None, kind: str = "category"
) -> Figure:
    """Accuracy by slice (horizontal bars with 95% intervals) for one metric and slice kind."""
    part = slices[slices["slice_kind"] == kind]
    if metric is not None:
        part = part[part["metric"] == metric]
    if part.empty:
        return _message(f"No votes to slice by {kind}.")
    names = sorted(part["metric"].unique())
    labels = list(dict.fromkeys(part["slice"]))
    ticks = labels
    if "few_prompts" in part:  # an interval over a few prompts is marked, not trusted
        few = part.groupby("slice")["few_prompts"].any()
        prompts = part.groupby("slice")["prompts"].max()
        ticks = [f"{s} ({prompts[s]} prompts*)" if few[s] else s for s in labels]
    height = 0.8 / len(names)
    fig = Figure(figsize=(7, max(2.2, 0.32 * len(labels) * max(1, len(names) / 2) + 1)))
    fig.set_layout_engine("constrained")
    ax = fig.add_subplot()
    y = np.arange(len(labels))
    for k, name in enumerate(names):
        rows = part[part["metric"] == name].set_index("slice").reindex(labels)
        ax.barh(
            y + (k - (len(names) - 1) / 2) * height,
            rows["accuracy"].to_numpy(np.float64),
            height,
            xerr=_errors(rows, "accuracy", "ci_low", "ci_high"),
            capsize=2,
            label=name,
        )
    ax.axvline(0.5, color="0.5", lw=0.8, ls=":")
    ax.set_yticks(y, ticks, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    star = "; * few prompts: interval not reliable" if ticks != labels else ""
    ax.set_xlabel(f"pairwise accuracy by {kind}{star}")
    if len(names) > 1:
        ax.legend(fontsize=8)
    return fig


def ratings_figure(board: pd.DataFrame) -> Figure:
    """Leaderboard ratings with their 95% intervals (a ``leaderboard_frame``)."""
    if board.empty:
        return _message("No votes yet.")
    board = board.sort_values("rating")
    fig = Figure(figsize=(7, max(2.2, 0.3 * len(board) + 1)), layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(len(board))
    ax.errorbar(
        board["rating"],
        y,
        xerr=_errors(board, "rating", "ci_lower", "ci_upper"),
        fmt="o",
        capsize=3,
    )
    ax.set_yticks(y, board["model"], fontsize=8)
    ax.set_xlabel("Bradley-Terry rating (Elo scale) with 95% interval")
    return fig


def png_base64(fig: Figure) -> str:
    """The figure as a base64 PNG (no metadata that changes between runs)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")
