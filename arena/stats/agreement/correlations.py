"""Rank correlations between the human ratings and each metric, and the per-model leaderboards.

Human Bradley-Terry ratings (ties split, :mod:`arena.stats.bradley_terry`) against each
metric's per-model mean score: Spearman ρ and Kendall τ-b. Each metric also gets its
own leaderboard: the same battles decided by the metric, fitted with the same BT code
(``spearman_bt``). Model-level metrics (FID, KID, ...: one number per model) are fixed,
so their intervals bootstrap only the human side. A model whose rating a board's battles do
not determine (it never won or never lost there) gets no rating on that board
(:func:`identified_board`); ρ and τ compare orders only, and take them from the ridge fit
of all models.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from arena.stats.agreement.intervals import nan_percentile_interval, ratio
from arena.stats.agreement.permutation import permutation_pvalue
from arena.stats.bradley_terry import bt_fit, bt_fit_batch, identified
from arena.stats.elo import to_elo

#: The columns of a rank correlation between two boards: ρ and τ with intervals and
#: permutation p-values (metric, rater-group and judge tables share them).
RANK_CORRELATION_COLUMNS = [
    "n_models",
    "spearman",
    "spearman_low",
    "spearman_high",
    "spearman_p",
    "kendall",
    "kendall_low",
    "kendall_high",
    "kendall_p",
]
CORRELATION_COLUMNS = [
    "metric",
    *RANK_CORRELATION_COLUMNS,
    "spearman_bt",
    "spearman_bt_low",
    "spearman_bt_high",
    "level",
    "few_models",
]
#: Below this many models the bootstrap intervals of ρ and τ are left empty (few_models).
#: The prompt bootstrap holds the models fixed, and ρ over n models moves in steps of
#: 12/(n(n²-1)) (0.2 at 4 models), so its interval collapses onto the point ([0.4, 0.4])
#: and cannot say whether the order could be chance; the permutation p-value does. At 4
#: models no order reaches p < 0.05 (smallest p 1/12), at 5 only a perfect one (1/60); 6
#: is the first where an order with one swapped neighbour does (ρ = 0.94, p = 1/60).
MIN_MODELS_FOR_INTERVAL = 6
_INTERVALS = ("spearman", "kendall", "spearman_bt")
#: A board's columns per model (``identified_board``): the agreement page's, the rater
#: groups' and the judges' leaderboards prefix them with who decided.
BOARD_COLUMNS = [
    "model",
    "rank",
    "rating",
    "rating_low",
    "rating_high",
    "votes",
    "identified",
]
LEADERBOARD_COLUMNS = ["decider", *BOARD_COLUMNS]


def spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman ρ between rows of x and y (R, n) (average ranks for ties); NaN if constant."""
    rx = stats.rankdata(np.atleast_2d(x), axis=1)
    ry = stats.rankdata(np.atleast_2d(y), axis=1)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rx * ry).sum(axis=1) / np.sqrt((rx * rx).sum(axis=1) * (ry * ry).sum(axis=1))


def kendall_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall τ-b between rows of x and y (R, n): Σ s_x s_y / sqrt(Σ s_x² Σ s_y²)
    over pairs i < j, with s = sign of the pair difference (ties give 0)."""
    x, y = np.atleast_2d(x), np.atleast_2d(y)
    i, j = np.triu_indices(x.shape[1], 1)
    sx = np.sign(x[:, i] - x[:, j])
    sy = np.sign(y[:, i] - y[:, j])
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sx * sy).sum(axis=1) / np.sqrt((sx * sx).sum(axis=1) * (sy * sy).sum(axis=1))


def identified_board(wins: np.ndarray, wins_boot: np.ndarray, level: float):
    """One decider's board: (θ, bootstrap θ, rating, low, high, rank, identified), NaN
    (rank None) where the votes do not determine the rating
    (:func:`arena.stats.bradley_terry.identified`).

    The identified models are fitted on their own battles and centred on themselves:
    a model that never wins has its rating set by the ridge alone, and left in, its
    ridge-made rating would move the mean and so every other model's rating.
    """
    n = len(wins)
    ok = identified(wins)
    theta, rating, lo, hi = (np.full(n, np.nan) for _ in range(4))
    samples = np.full((len(wins_boot), n), np.nan)
    rank = [None] * n
    if ok.any():
        theta[ok] = bt_fit(wins[np.ix_(ok, ok)])
        samples[:, ok] = bt_fit_batch(wins_boot[:, ok][:, :, ok], initial=theta[ok])
        rating[ok] = to_elo(theta[ok])
        lo[ok], hi[ok] = nan_percentile_interval(to_elo(samples[:, ok]), level)
        where = np.flatnonzero(ok)
        for r, i in enumerate(where[np.argsort(-rating[ok], kind="stable")]):
            rank[i] = r + 1
    return theta, samples, rating, lo, hi, rank, ok


@dataclass
class ModelLevelValues:
    """One model-level metric against one reference, aligned to the report's models."""

    label: str  # "fid", or "fid@<reference>" when there are several reference sets
    metric: str
    reference: str
    value: np.ndarray  # (models,) NaN where the model has no number
    std: np.ndarray
    features: str  # the extractor key(s) it was computed from
    higher_is_better: bool  # as stored with the numbers (False for FID)

    @property
    def oriented(self) -> np.ndarray:
        """Higher is better (negated when the metric is better low)."""
        return self.value if self.higher_is_better else -self.value


def model_level_values(
    model_metrics: pd.DataFrame | None, models: Sequence[str]
) -> list[ModelLevelValues]:
    """The stored model-level numbers of ``models`` (reference sets' own rows dropped),
    each oriented by the ``higher_is_better`` stored with it."""
    if model_metrics is None or model_metrics.empty:
        return []
    if "higher_is_better" not in model_metrics.columns:
        raise ValueError(
            "model-level metrics frame lacks column 'higher_is_better'; "
            "use store.model_metrics_frame()."
        )
    frame = model_metrics[
        (model_metrics["model_kind"] != "reference") & model_metrics["value"].notna()
    ]
    if "slice" in frame.columns and frame["slice"].nunique() > 1:
        raise ValueError(
            "model-level rows of several prompt slices; pass one slice's rows "
            "(arena.reports.frames.model_level_rows)."
        )
    several = frame.loc[frame["reference"] != "", "reference"].nunique() > 1
    index = pd.Index([str(m) for m in models])
    out = []
    for (metric, ref), part in frame.groupby(["metric", "reference"], sort=True):
        rows = index.get_indexer(part["model"].astype(str))
        ok = rows >= 0
        value = np.full(len(index), np.nan)
        std = np.full(len(index), np.nan)
        value[rows[ok]] = part["value"].to_numpy(np.float64)[ok]
        std[rows[ok]] = pd.to_numeric(part["std"], errors="coerce").to_numpy(np.float64)[ok]
        keys = sorted({str(d.get("features", "")) for d in part["details"]} - {""})
        label = f"{metric}@{ref}" if several and ref else str(metric)
        directions = set(part["higher_is_better"].astype(bool))
        if len(directions) != 1:
            raise ValueError(f"model-level metric {label!r} is stored with both directions.")
        out.append(
            ModelLevelValues(
                label, str(metric), str(ref), value, std, ",".join(keys), directions.pop()
            )
        )
    return out


def few_models_row(row: dict) -> dict:
    """Flag a row with fewer than :data:`MIN_MODELS_FOR_INTERVAL` models and empty its
    bootstrap intervals (the point estimates and permutation p-values stay)."""
    row["few_models"] = bool(row["n_models"] < MIN_MODELS_FOR_INTERVAL)
    if row["few_models"]:
        for key in _INTERVALS:
            row[f"{key}_low"] = row[f"{key}_high"] = np.nan
    return row


def fixed_correlation_row(
    f: ModelLevelValues, h_theta, h_samples, level, rng: np.random.Generator
) -> dict:
    """ρ and τ of a fixed per-model metric with the human ratings; the bootstrap varies
    only the human side."""
    ok = np.isfinite(f.value)
    row = {"metric": f.label, "n_models": int(ok.sum()), "level": "model"}
    for key in ("spearman_bt", "spearman_bt_low", "spearman_bt_high"):
        row[key] = np.nan
    for key, fn in (("spearman", spearman_rows), ("kendall", kendall_rows)):
        if ok.sum() < 3:
            row[key] = row[f"{key}_low"] = row[f"{key}_high"] = row[f"{key}_p"] = np.nan
            continue
        metric = f.oriented[ok]
        row[key] = float(fn(metric[None, :], h_theta[ok][None, :])[0])
        row[f"{key}_p"] = permutation_pvalue(fn, metric, h_theta[ok], rng)
        samples = h_samples[:, ok]
        lo, hi = nan_percentile_interval(
            fn(np.broadcast_to(metric, samples.shape), samples)[:, None], level
        )
        row[f"{key}_low"], row[f"{key}_high"] = float(lo[0]), float(hi[0])
    return few_models_row(row)


def model_level_tables(
    models: Sequence[str],
    metrics: Sequence[str],
    bt_cols: Sequence[slice],
    bt_votes: Sequence[np.ndarray],
    mean_cols: Sequence[tuple[slice, slice]],
    totals: np.ndarray,
    boot: np.ndarray,
    level: float,
    fixed: Sequence[ModelLevelValues] = (),
    rng: np.random.Generator | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(leaderboards, models, correlations) from the resampled sums of the report.

    ``bt_cols`` are the win-matrix columns of each decider (the human first, then each
    metric), ``mean_cols`` the (sum, count) columns of each metric's per-model mean.
    ``rng`` draws the pairings of the permutation p-values above 8 models.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    n = len(models)
    deciders = ["human", *metrics]
    rounds = boot.shape[0]
    board_rows, elo = [], {}
    theta_boot = {}
    for name, cols, votes in zip(deciders, bt_cols, bt_votes, strict=True):
        if n == 0:
            break
        wins = totals[cols].reshape(n, n)
        wins_boot = boot[:, cols].reshape(rounds, n, n)
        theta, samples, rating, lo, hi, rank, ok = identified_board(wins, wins_boot, level)
        if not ok.all():  # ρ and τ compare orders: the ridge fit of all models orders them
            theta = bt_fit(wins)
            samples = bt_fit_batch(wins_boot, initial=theta)
        theta_boot[name] = (theta, samples)
        elo[name] = (rating, lo, hi)
        for i, model in enumerate(models):
            board_rows.append(
                {
                    "decider": name,
                    "model": model,
                    "rank": rank[i],
                    "rating": float(rating[i]),
                    "rating_low": float(lo[i]),
                    "rating_high": float(hi[i]),
                    "votes": int(votes[i]),
                    "identified": bool(ok[i]),
                }
            )
    leaderboards = pd.DataFrame(board_rows, columns=LEADERBOARD_COLUMNS)
    leaderboards["rank"] = leaderboards["rank"].astype("Int64")
    if len(leaderboards):
        leaderboards = leaderboards.sort_values(["decider", "rank", "model"], kind="stable")
        leaderboards = leaderboards.reset_index(drop=True)

    model_rows = {"model": list(models)}
    corr_rows = []
    if n:
        h_rating, h_lo, h_hi = elo["human"]
        model_rows.update(
            {
                "human_rating": h_rating,
                "human_low": h_lo,
                "human_high": h_hi,
                "votes": bt_votes[0],
            }
        )
        h_theta, h_samples = theta_boot["human"]
    for m, name in enumerate(metrics):
        s, c = mean_cols[m]
        mean = ratio(totals[s], totals[c])[:n]
        mean_b = ratio(boot[:, s], boot[:, c])[:, :n]
        m_lo, m_hi = nan_percentile_interval(mean_b, level)
        model_rows[f"{name}_mean"] = mean
        model_rows[f"{name}_low"] = m_lo
        model_rows[f"{name}_high"] = m_hi
        if not n:
            continue
        ok = np.isfinite(mean)
        row = {"metric": name, "n_models": int(ok.sum()), "level": "image mean"}
        metric_theta, metric_samples = theta_boot[name]
        pairs = [
            ("spearman", spearman_rows, mean, mean_b, h_theta, h_samples),
            ("kendall", kendall_rows, mean, mean_b, h_theta, h_samples),
            ("spearman_bt", spearman_rows, metric_theta, metric_samples, h_theta, h_samples),
        ]
        for key, fn, point, samples, human, human_samples in pairs:
            use = ok if key != "spearman_bt" else np.ones(n, bool)
            if use.sum() < 3:
                row[key] = row[f"{key}_low"] = row[f"{key}_high"] = np.nan
                if key != "spearman_bt":
                    row[f"{key}_p"] = np.nan
                continue
            row[key] = float(fn(point[use][None, :], human[use][None, :])[0])
            if key != "spearman_bt":
                row[f"{key}_p"] = permutation_pvalue(fn, point[use], human[use], rng)
            draws = fn(samples[:, use], human_samples[:, use])
            lo, hi = nan_percentile_interval(draws[:, None], level)
            row[f"{key}_low"], row[f"{key}_high"] = float(lo[0]), float(hi[0])
        corr_rows.append(few_models_row(row))
    for f in fixed:
        model_rows[f"{f.label}_value"] = f.value
        model_rows[f"{f.label}_std"] = f.std
        if n:
            corr_rows.append(fixed_correlation_row(f, h_theta, h_samples, level, rng))
    models_frame = pd.DataFrame(model_rows)
    correlations = pd.DataFrame(corr_rows, columns=CORRELATION_COLUMNS)
    return leaderboards, models_frame, correlations
