"""Every agreement table at once: one pass collects per-prompt sums, one bootstrap resamples them.

Each step adds its statistics' per-prompt sums to one :class:`SumTable` (accuracy per
metric and protocol, the human ceiling and α, slices, the win matrices and metric
means); one resampling then gives every interval. Steps add their columns in a fixed
order, so a seed gives the same report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from arena.stats import image_pairs
from arena.stats.agreement.correlations import model_level_tables, model_level_values
from arena.stats.agreement.inputs import TAG_BINS, Inputs, prepare
from arena.stats.agreement.intervals import (
    SumTable,
    nan_percentile_interval,
    ratio,
    wilson_interval,
    z_value,
)
from arena.stats.agreement.judge_report import JudgeReport
from arena.stats.agreement.protocols import (
    CEILING,
    CEILING_PROTOCOL,
    PROTOCOLS,
    ceiling_credit,
    cross_fitted_thresholds,
    protocol_credit,
)
from arena.stats.agreement.reliability import (
    PAIR_VALUES,
    alpha_from_coincidences,
    pair_coincidences,
    position_bias,
)
from arena.stats.pairs import LEFT, RIGHT, TIE


@dataclass
class AgreementReport:
    """Every agreement table; frames have stable column order and sorted rows."""

    accuracy: pd.DataFrame
    correlations: pd.DataFrame
    models: pd.DataFrame
    leaderboards: pd.DataFrame
    slices: pd.DataFrame
    position_bias: pd.DataFrame
    reliability: pd.DataFrame
    info: dict = field(default_factory=dict)
    #: The judge tables (:func:`~arena.stats.agreement.judge_report.judge_report`): they
    #: read other votes (the judges', against people's), so the caller adds them.
    judges: JudgeReport = field(default_factory=JudgeReport)

    def tables(self) -> dict[str, pd.DataFrame]:
        return {
            "agreement_accuracy": self.accuracy,
            "agreement_correlations": self.correlations,
            "agreement_models": self.models,
            "agreement_leaderboards": self.leaderboards,
            "agreement_slices": self.slices,
            "agreement_position_bias": self.position_bias,
            "agreement_reliability": self.reliability,
            **self.judges.tables(),
        }


# An accuracy with its count and both intervals (prompt bootstrap, Wilson).
_ACCURACY_STATS = ["accuracy", "n", "ci_low", "ci_high", "wilson_low", "wilson_high"]
ACCURACY_COLUMNS = [
    "metric",
    "protocol",
    "description",
    "accuracy",
    "chance",  # what a metric blind to the images expects (chance_accuracy)
    *_ACCURACY_STATS[1:],
    "tie_threshold",
]
#: The slice kinds of ``slices``, in the order pages show them.
SLICE_KINDS = ("category", "tag", "tag count", "model pair")
SLICE_COLUMNS = ["metric", "slice_kind", "slice", *_ACCURACY_STATS, "prompts", "few_prompts"]
#: A slice with fewer prompts is flagged ``few_prompts``: its prompt-bootstrap interval
#: resamples too few clusters to be trusted. Cluster-bootstrap and cluster-robust
#: intervals are known to under-cover with fewer than roughly 20-50 clusters (Cameron,
#: Gelbach & Miller 2008; Cameron & Miller 2015); 20 is the lower end of that range.
MIN_SLICE_PROMPTS = 20
RELIABILITY_COLUMNS = ["alpha", "alpha_low", "alpha_high", "units", "votes", "raters"]


def agreement_report(
    votes: pd.DataFrame,
    scores: pd.DataFrame,
    rng: np.random.Generator,
    images: pd.DataFrame | None = None,
    prompts: pd.DataFrame | None = None,
    rounds: int = 1000,
    level: float = 0.95,
    slice_protocol: str = "ties_half",
    tie_folds: int = 2,
    tag_bins: Sequence[int] = TAG_BINS,
    max_pair_slices: int = 45,
    model_metrics: pd.DataFrame | None = None,
    max_tag_slices: int = 30,
) -> AgreementReport:
    """Every agreement table from the store's frames (see :mod:`arena.stats.agreement`).

    ``images`` (``store.images_frame()``) gives the per-model metric means over
    all scored images (without it: over the images that appear in votes);
    ``prompts`` (``store.prompts_frame()``) gives the prompts' tags: the ``tag count``
    slices (bins of ``tag_bins``) and the ``tag`` slices, where a vote counts under each
    tag of its prompt (``max_tag_slices`` tags with the most votes; a benchmark's
    challenge labels and skills are tags). ``max_pair_slices`` keeps the model pairs
    with the most votes. ``rounds`` bootstrap rounds over prompts, at coverage ``level``;
    the prompts are numbered in the order of their content in ``prompts`` (an image
    without a prompt by its ``sha256`` in ``images``), so that relabelling prompts moves
    nothing (:func:`arena.stats.clusters.prompt_clusters`). ``model_metrics``
    (``Store.model_metrics_frame()``) adds the model-level numbers to ``correlations`` and
    ``models``. Both score frames carry ``higher_is_better``: metrics better low are
    negated before any comparison.
    """
    if slice_protocol not in PROTOCOLS:
        raise ValueError(f"slice_protocol {slice_protocol!r}: expected one of {tuple(PROTOCOLS)}.")
    if tie_folds < 1:
        raise ValueError(f"tie_folds={tie_folds}: need at least 1 fold.")
    z_value(level)
    x = prepare(votes, scores, images, prompts, tag_bins)
    fold_rng, boot_rng, perm_rng = rng.spawn(3)  # the first two as with spawn(2)
    table = SumTable(x.n_clusters)
    accuracy_rows, slice_credits = _accuracy_sums(x, table, fold_rng, tie_folds, slice_protocol)
    pairs = _PairSums.collect(x, table) if len(x.outcome) else None
    slice_rows = _slice_sums(x, table, slice_credits, max_pair_slices, max_tag_slices)
    bt_cols, bt_votes, mean_cols = _model_sums(x, table)
    totals, boot = table.resample(boot_rng, rounds)

    accuracy = _accuracy_table(accuracy_rows, totals, boot, level)
    if pairs is not None:
        accuracy = _with_ceiling(accuracy, pairs, totals, boot, level)
    fixed = model_level_values(model_metrics, x.models)
    leaderboards, models_frame, correlations = model_level_tables(
        x.models, x.metrics, bt_cols, bt_votes, mean_cols, totals, boot, level, fixed, perm_rng
    )
    info = {
        "votes": len(x.outcome),
        "decisive_votes": int((x.outcome <= RIGHT).sum()),
        "prompts": int(np.unique(x.cluster).size) if len(x.outcome) else 0,
        "models": list(x.models),
        "metrics": list(x.metrics),
        "model_metrics": [f.label for f in fixed],
        "model_metric_features": sorted({f.features for f in fixed} - {""}),
        # "" over all each model's images, else the prompt slice (arena distribution --by)
        "model_metrics_slice": _slice_of(model_metrics),
        "rounds": rounds,
        "level": level,
        "slice_protocol": slice_protocol,
        "tie_folds": tie_folds,
        "protocols": dict(PROTOCOLS),
    }
    return AgreementReport(
        accuracy=accuracy,
        correlations=correlations,
        models=models_frame,
        leaderboards=leaderboards,
        slices=_slice_table(slice_rows, totals, boot, level),
        position_bias=position_bias(x.outcome, level),
        reliability=_reliability_table(pairs, boot, level),
        info=info,
    )


# -- (1) accuracy per metric and protocol ------------------------------------------------------
def _accuracy_sums(x: Inputs, table: SumTable, fold_rng, tie_folds: int, slice_protocol: str):
    """Add each (metric, protocol)'s credit and count columns.

    Returns the rows (metric, protocol, credit slice, count slice, fitted thresholds,
    chance level)
    and each metric's per-vote (credit, counted) under ``slice_protocol``.
    Prompts are split at random into ``tie_folds`` folds; the ``with_ties`` threshold
    of a vote is fitted on the other folds (:func:`cross_fitted_thresholds`).
    """
    perm = fold_rng.permutation(x.n_clusters)
    cluster_fold = np.empty(x.n_clusters, dtype=np.int64)
    cluster_fold[perm] = np.arange(x.n_clusters) % tie_folds
    vote_fold = cluster_fold[x.cluster] if len(x.outcome) else np.zeros(0, np.int64)
    rows = []
    slice_credits = {}
    for m, name in enumerate(x.metrics):
        d = x.delta[:, m]
        for protocol in PROTOCOLS:
            threshold, fitted = 0.0, []
            if protocol == "with_ties":
                threshold, fitted = cross_fitted_thresholds(d, x.outcome, vote_fold, tie_folds)
            credit, counted = protocol_credit(d, x.outcome, protocol, threshold)
            cs = table.add(x.cluster, credit)
            ns = table.add(x.cluster, counted.astype(np.float64))
            chance = chance_accuracy(x.outcome[counted], protocol)
            rows.append((name, protocol, cs, ns, fitted, chance))
            if protocol == slice_protocol:
                slice_credits[name] = (credit, counted)
    return rows, slice_credits


def chance_accuracy(outcome: np.ndarray, protocol: str) -> float:
    """What a metric that scores independently of the images expects under ``protocol``.

    It cannot know which side won (the sides are shown at random), so a side it picks
    is right half of the time: 0.5 under (a) and (b) (scores that never tie). Under (c)
    it may also predict a tie, on any share q of the votes it likes (the fitted threshold
    chooses q); it then expects q·π + (1 - q)·(1 - π)/2 with π the share of human ties
    (tie and both-bad) among the counted votes, at best max(π, (1 - π)/2): the better of
    always predicting a tie and always a side.
    """
    if protocol in ("decisive", "ties_half"):
        return 0.5 if len(outcome) else float("nan")
    if not len(outcome):
        return float("nan")
    tie_share = float(np.mean(np.asarray(outcome) > RIGHT))
    return max(tie_share, (1.0 - tie_share) / 2.0)


def _ratio_row(totals, boot, cs: slice, ns: slice, level: float) -> dict:
    num, den = totals[cs][0], totals[ns][0]
    acc = float(ratio(np.array(num), np.array(den)))
    lo, hi = nan_percentile_interval(ratio(boot[:, cs][:, 0], boot[:, ns][:, 0])[:, None], level)
    w_lo, w_hi = wilson_interval(num, den, level)
    return {
        "accuracy": acc,
        "n": int(np.rint(den)),
        "ci_low": float(lo[0]),
        "ci_high": float(hi[0]),
        "wilson_low": float(w_lo),
        "wilson_high": float(w_hi),
    }


def _accuracy_table(rows, totals, boot, level) -> pd.DataFrame:
    out = []
    for name, protocol, cs, ns, fitted, chance in rows:
        row = _ratio_row(totals, boot, cs, ns, level)
        thr = "/".join(f"{t:.6g}" for t in fitted) if protocol == "with_ties" else ""
        out.append(
            {
                "metric": name,
                "protocol": protocol,
                "description": PROTOCOLS[protocol],
                "chance": chance,
                **row,
                "tie_threshold": thr,
            }
        )
    return pd.DataFrame(out, columns=ACCURACY_COLUMNS)


# -- (2) the human ceiling and Krippendorff's α on pairs with several votes --------------------
@dataclass
class _PairSums:
    """Columns of the ceiling and of α's coincidences, with α's point estimate inputs."""

    ceiling: tuple[slice, slice]  # (credit, count)
    alpha_cols: list[int]  # one column per (c, k) coincidence cell
    n_values: int
    coincidences: np.ndarray  # (n_values, n_values) on the data
    units: int
    votes: int
    raters: int

    @classmethod
    def collect(cls, x: Inputs, table: SumTable) -> _PairSums:
        """One vote per (rater, image pair), the latest, as an oriented answer."""
        unit, value = image_pairs.orient(x.left_image, x.right_image, x.outcome)
        keep = image_pairs.latest_per_rater(unit, x.rater)
        unit, value = unit[keep], value[keep]
        credit, counted = ceiling_credit(unit, value)
        ceiling = (
            table.add(x.cluster[keep], credit),
            table.add(x.cluster[keep], counted.astype(np.float64)),
        )
        # Per-pair coincidence contributions (symmetrised over the pair's orientation),
        # summed per cluster: one column per (c, k).
        contrib, pairable = pair_coincidences(unit, value)
        answers = np.bincount(unit, minlength=int(unit.max()) + 1)
        multi = (answers >= 2)[unit]
        unit_cluster = np.zeros(answers.size, dtype=np.int64)
        unit_cluster[unit] = x.cluster[keep]
        u_cluster = unit_cluster[pairable]
        alpha_cols = [
            table.add(u_cluster, contrib[:, c, k]).start
            for c in range(PAIR_VALUES)
            for k in range(PAIR_VALUES)
        ]
        return cls(
            ceiling=ceiling,
            alpha_cols=alpha_cols,
            n_values=PAIR_VALUES,
            coincidences=contrib.sum(axis=0),
            units=int(pairable.size),
            votes=int(multi.sum()),
            raters=int(np.unique(x.rater[keep][multi]).size),
        )


def _with_ceiling(accuracy: pd.DataFrame, pairs: _PairSums, totals, boot, level) -> pd.DataFrame:
    row = {
        "metric": CEILING,
        "protocol": "ceiling",
        "description": CEILING_PROTOCOL,
        "chance": np.nan,  # raters against raters: no metric to guess
        **_ratio_row(totals, boot, *pairs.ceiling, level),
        "tie_threshold": "",
    }
    return pd.concat([accuracy, pd.DataFrame([row])], ignore_index=True)[ACCURACY_COLUMNS]


def _reliability_table(pairs: _PairSums | None, boot, level) -> pd.DataFrame:
    if pairs is None:
        return pd.DataFrame(columns=RELIABILITY_COLUMNS)
    o_boot = boot[:, pairs.alpha_cols].reshape(-1, pairs.n_values, pairs.n_values)
    alpha_samples = np.array([alpha_from_coincidences(o) for o in o_boot])
    a_lo, a_hi = nan_percentile_interval(alpha_samples[:, None], level)
    row = {
        "alpha": alpha_from_coincidences(pairs.coincidences),
        "alpha_low": float(a_lo[0]),
        "alpha_high": float(a_hi[0]),
        "units": pairs.units,
        "votes": pairs.votes,
        "raters": pairs.raters,
    }
    return pd.DataFrame([row], columns=RELIABILITY_COLUMNS)


# -- (3) slices: category, prompt tag, tag-count bin, model pair -------------------------------
def _top(counts: np.ndarray, keep: int) -> np.ndarray:
    """The codes of the ``keep`` largest non-zero counts (ties: lower code), ascending."""
    top = [c for c in np.argsort(-counts, kind="stable") if counts[c] > 0]
    return np.asarray(sorted(top[:keep]), dtype=np.int64)


#: Above this many (slice, prompt) cells the distinct count sorts instead of tabulating.
MAX_PRESENCE_CELLS = 20_000_000


def _distinct(codes: np.ndarray, cluster: np.ndarray, n_labels: int, n_clusters: int):
    """Per slice, the number of distinct clusters among (code, cluster) rows: a presence
    table when small (fast), a sort when slices x prompts would not fit."""
    if n_labels * max(n_clusters, 1) <= MAX_PRESENCE_CELLS:
        seen = np.zeros((n_labels, max(n_clusters, 1)), dtype=bool)
        seen[codes, cluster] = True
        return seen.sum(axis=1)
    cells = np.unique(codes * max(n_clusters, 1) + cluster)
    return np.bincount(cells // max(n_clusters, 1), minlength=n_labels)


def _slice_sums(
    x: Inputs, table: SumTable, slice_credits: dict, max_pair_slices: int, max_tag_slices: int
) -> list:
    """Add per-slice credit and count columns: rows (metric, kind, labels, credit, count),
    per metric in :data:`SLICE_KINDS` order. Every kind but ``tag`` codes each vote; a
    tag's sums are those of the prompts carrying it (votes counted under each tag)."""
    n_models = len(x.models)
    pair_lo = np.minimum(x.left_model, x.right_model)
    pair_hi = np.maximum(x.left_model, x.right_model)
    pair_code = pair_lo * max(n_models, 1) + pair_hi
    pair_counts = np.bincount(pair_code, minlength=n_models * n_models)
    top_pairs = _top(pair_counts, max_pair_slices)
    pair_index = np.full(n_models * n_models, -1, dtype=np.int64)
    pair_index[top_pairs] = np.arange(len(top_pairs))
    pair_slice = pair_index[pair_code] if len(x.outcome) else np.zeros(0, np.int64)
    pair_labels = [f"{x.models[p // n_models]} vs {x.models[p % n_models]}" for p in top_pairs]
    # Tags overlap (a vote counts under each tag of its prompt): summed per prompt cluster.
    votes_of = np.bincount(x.cluster, minlength=x.n_clusters)
    tag_votes = np.bincount(x.tag_code, votes_of[x.tag_cluster], minlength=len(x.tag_names))
    top_tags = _top(tag_votes, max_tag_slices)
    tag_index = np.full(len(x.tag_names), -1, dtype=np.int64)
    tag_index[top_tags] = np.arange(top_tags.size)
    tag_codes = tag_index[x.tag_code]
    tag_labels = [x.tag_names[t] for t in top_tags]

    def vote_row(name, credit, counted, kind, codes, labels):
        ok = codes >= 0
        cs = table.add(x.cluster[ok], credit[ok], codes[ok], len(labels))
        ns = table.add(x.cluster[ok], counted[ok].astype(np.float64), codes[ok], len(labels))
        used = ok & counted  # distinct prompts with a counted vote, per slice
        prompts = _distinct(codes[used], x.cluster[used], len(labels), x.n_clusters)
        return name, kind, labels, cs, ns, prompts

    def tag_row(name, credit, counted):
        ok = tag_codes >= 0
        cluster, codes = x.tag_cluster[ok], tag_codes[ok]
        credit_of = np.bincount(x.cluster, credit, minlength=x.n_clusters)
        count_of = np.bincount(x.cluster, counted.astype(np.float64), minlength=x.n_clusters)
        cs = table.add(cluster, credit_of[cluster], codes, len(tag_labels))
        ns = table.add(cluster, count_of[cluster], codes, len(tag_labels))
        prompts = np.bincount(codes[count_of[cluster] > 0], minlength=len(tag_labels))
        return name, "tag", tag_labels, cs, ns, prompts

    kinds = {  # kind -> (each vote's slice code, labels); tags are summed per prompt
        "category": (x.category, x.categories),
        "tag": (None, tag_labels),
        "tag count": (x.tag_bin, x.tag_labels),
        "model pair": (pair_slice, pair_labels),
    }
    rows = []
    for name, (credit, counted) in slice_credits.items():
        for kind in SLICE_KINDS:  # the pages' order
            codes, labels = kinds[kind]
            if not labels:
                continue
            if kind == "tag":
                rows.append(tag_row(name, credit, counted))
            else:
                rows.append(vote_row(name, credit, counted, kind, codes, labels))
    return rows


def _slice_table(rows, totals, boot, level) -> pd.DataFrame:
    out = []
    for name, kind, labels, cs, ns, prompts in rows:
        num, den = totals[cs], totals[ns]
        acc = ratio(num, den)
        lo, hi = nan_percentile_interval(ratio(boot[:, cs], boot[:, ns]), level)
        w_lo, w_hi = wilson_interval(num, den, level)
        for g, label in enumerate(labels):
            if den[g] <= 0:
                continue
            out.append(
                {
                    "metric": name,
                    "slice_kind": kind,
                    "slice": label,
                    "accuracy": float(acc[g]),
                    "n": int(np.rint(den[g])),
                    "ci_low": float(lo[g]),
                    "ci_high": float(hi[g]),
                    "wilson_low": float(w_lo[g]),
                    "wilson_high": float(w_hi[g]),
                    "prompts": int(prompts[g]),
                    "few_prompts": bool(prompts[g] < MIN_SLICE_PROMPTS),
                }
            )
    return pd.DataFrame(out, columns=SLICE_COLUMNS)


# -- (4) model level: BT of the human and of each metric, per-model metric means ---------------
def _model_sums(x: Inputs, table: SumTable):
    """Add each decider's win-matrix columns and each metric's per-model (sum, count) columns.

    The deciders are the human, then each metric deciding the same battles (higher
    score wins, equal scores tie); a tie is half a win each way.
    """
    n_models, n_metrics = len(x.models), len(x.metrics)
    nn = n_models * n_models
    decider_outcomes = [x.outcome]
    for m in range(n_metrics):
        d = x.delta[:, m]
        o = np.where(d > 0, LEFT, np.where(d < 0, RIGHT, TIE))
        decider_outcomes.append(np.where(np.isfinite(d), o, -1))
    bt_cols, bt_votes = [], []
    for o in decider_outcomes:
        ok = o >= 0
        cluster, lm, rm, oo = x.cluster[ok], x.left_model[ok], x.right_model[ok], o[ok]
        winner = np.where(oo == RIGHT, rm, lm)
        loser = np.where(oo == RIGHT, lm, rm)
        weight = np.where(oo <= RIGHT, 1.0, 0.5)
        tied = oo > RIGHT  # a tie is half a win each way
        cells = np.r_[winner * n_models + loser, (rm * n_models + lm)[tied]]
        clusters = np.r_[cluster, cluster[tied]]
        weights = np.r_[weight, weight[tied]]
        bt_cols.append(table.add(clusters, weights, cells, nn) if n_models else slice(0, 0))
        bt_votes.append(np.bincount(np.r_[lm, rm], minlength=n_models))
    has_model = x.image_model >= 0
    mean_cols = []
    for m in range(n_metrics):
        v = x.image_values[:, m]
        ok = has_model & np.isfinite(v)
        s = table.add(x.image_cluster[ok], v[ok], x.image_model[ok], max(n_models, 1))
        c = table.add(
            x.image_cluster[ok], np.ones(int(ok.sum())), x.image_model[ok], max(n_models, 1)
        )
        mean_cols.append((s, c))
    return bt_cols, bt_votes, mean_cols


def _slice_of(model_metrics: pd.DataFrame | None) -> str:
    """The prompt slice the model-level rows are over ("" all images; see
    :func:`arena.reports.frames.model_level_rows`)."""
    if model_metrics is None or "slice" not in model_metrics.columns or model_metrics.empty:
        return ""
    return str(model_metrics["slice"].iloc[0])
