"""Expert vs crowd: the rater groups of one set of votes, compared with each other.

Three readings (:func:`group_comparison`), each with a prompt-bootstrap interval:

* each group's **leaderboard**: Bradley-Terry (ties split) on the group's own votes, the
  identified-board fit of the agreement page's leaderboards
  (:func:`arena.stats.agreement.correlations.identified_board`);
* the **rank correlation** of each pair of boards: Spearman ρ and Kendall τ-b over the
  models both boards rate, with the permutation p-value across those models;
* **cross-group agreement** on the image pairs both groups voted on decisively: how often
  a vote of group A agrees with the majority of group B's votes on the same pair
  (:func:`majority_credit`), next to A's agreement with itself there (a held-out vote
  against the rest of A: the human ceiling within the group,
  :func:`arena.stats.agreement.protocols.ceiling_credit`).

A bootstrap round draws prompts with replacement and takes all their votes, of every group,
along; every group's board is refitted on that draw, so the interval of ρ carries the noise
of both boards, and the agreements of a round are ratios of the drawn prompts' sums. Votes
of raters in no group form the group :data:`NO_GROUP`. Pure functions over the votes frame
(``Store.votes_frame()``) and numpy arrays; random numbers come from the generator passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from arena.stats import image_pairs
from arena.stats.agreement.correlations import BOARD_COLUMNS as RATING_COLUMNS
from arena.stats.agreement.correlations import (
    MIN_MODELS_FOR_INTERVAL,
    RANK_CORRELATION_COLUMNS,
    identified_board,
    kendall_rows,
    spearman_rows,
)
from arena.stats.agreement.inputs import VOTE_COLUMNS
from arena.stats.agreement.intervals import SumTable, nan_percentile_interval, ratio, z_value
from arena.stats.agreement.permutation import permutation_pvalue
from arena.stats.agreement.protocols import ceiling_credit
from arena.stats.clusters import prompt_clusters
from arena.stats.pairs import RIGHT, encode_outcomes

#: The group of the votes of raters in no group.
NO_GROUP = "(no group)"

SUMMARY_COLUMNS = [
    "group",
    "raters",
    "votes",
    "prompts",
    "models",
    "within",
    "within_low",
    "within_high",
    "within_votes",
]
BOARD_COLUMNS = ["group", *RATING_COLUMNS]
CORRELATION_COLUMNS = ["group_a", "group_b", *RANK_CORRELATION_COLUMNS, "few_models"]
AGREEMENT_COLUMNS = [
    "group_a",
    "group_b",
    "votes_of",
    "majority_of",
    "agreement",
    "ci_low",
    "ci_high",
    "votes",
    "pairs",
    "shared_pairs",
]


@dataclass
class GroupComparison:
    """The group tables; frames have stable column order and sorted rows."""

    summary: pd.DataFrame
    boards: pd.DataFrame
    correlation: pd.DataFrame
    agreement: pd.DataFrame
    info: dict = field(default_factory=dict)

    @property
    def groups(self) -> list[str]:
        return list(self.info.get("groups", []))

    def tables(self) -> dict[str, pd.DataFrame]:
        return {
            "group_summary": self.summary,
            "group_leaderboards": self.boards,
            "group_correlation": self.correlation,
            "group_agreement": self.agreement,
        }


# -- plain pieces ------------------------------------------------------------------------------
def group_labels(groups) -> tuple[np.ndarray, list[str]]:
    """(code per vote, group names): named groups sorted, then :data:`NO_GROUP` for votes
    whose rater is in no group (None, NaN or empty)."""
    values = pd.Series(groups, dtype=object)
    missing = values.isna().to_numpy() | (values.fillna("").astype(str).str.strip() == "")
    labels = values.fillna("").astype(str).to_numpy(dtype=object)
    names = sorted({str(v) for v in labels[~missing]})
    if missing.any():
        names.append(NO_GROUP)
        labels[missing] = NO_GROUP
    codes = pd.Index(names).get_indexer(labels) if len(labels) else np.zeros(0, np.int64)
    return np.asarray(codes, dtype=np.int64), names


def majority_credit(
    unit: np.ndarray, value: np.ndarray, voters: np.ndarray, reference: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Agreement of each decisive vote of ``voters`` with the majority of the decisive
    ``reference`` votes on its unit: (credit 1 agrees, ½ the reference is split evenly,
    0 disagrees; mask of the votes counted: decisive, on a unit where the reference has a
    decisive vote). ``voters`` and ``reference`` are disjoint masks (two groups): a vote is
    never compared with itself. ``value`` 0/1 = which image of the pair won, as
    :func:`arena.stats.image_pairs.orient` gives it; ties and both-bad are ignored.
    """
    unit, value = np.asarray(unit, dtype=np.int64), np.asarray(value)
    voters, reference = np.asarray(voters, dtype=bool), np.asarray(reference, dtype=bool)
    if np.any(voters & reference):
        raise ValueError("majority_credit: voters and reference overlap; pass disjoint masks.")
    decisive = value <= 1
    size = int(unit.max()) + 1 if unit.size else 0
    ref = reference & decisive
    total = np.bincount(unit[ref], minlength=size)
    lower = np.bincount(unit[ref & (value == image_pairs.LOWER)], minlength=size)
    same = np.where(value == image_pairs.LOWER, lower[unit], total[unit] - lower[unit])
    other = total[unit] - same
    credit = np.where(same > other, 1.0, np.where(same == other, 0.5, 0.0))
    counted = voters & decisive & (total[unit] > 0)
    return np.where(counted, credit, 0.0), counted


def shared_units(unit: np.ndarray, value: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Which units (by index) both masks voted on decisively: the pairs two groups share."""
    unit, decisive = np.asarray(unit, dtype=np.int64), np.asarray(value) <= 1
    size = int(unit.max()) + 1 if unit.size else 0
    in_a = np.bincount(unit[a & decisive], minlength=size) > 0
    in_b = np.bincount(unit[b & decisive], minlength=size) > 0
    return in_a & in_b


def rank_agreement(
    theta_a: np.ndarray,
    theta_b: np.ndarray,
    samples_a: np.ndarray,
    samples_b: np.ndarray,
    level: float,
    rng: np.random.Generator,
) -> dict:
    """Spearman ρ and Kendall τ-b of two boards over the models both rate (finite θ), with
    percentile intervals over the rounds' refits and the permutation p-value; fewer than
    3 common models: NaN; fewer than :data:`MIN_MODELS_FOR_INTERVAL`: no interval
    (``few_models``, as the agreement page's other correlations)."""
    common = np.isfinite(theta_a) & np.isfinite(theta_b)
    n = int(common.sum())
    row: dict = {"n_models": n, "few_models": bool(n < MIN_MODELS_FOR_INTERVAL)}
    for key, fn in (("spearman", spearman_rows), ("kendall", kendall_rows)):
        row[key] = row[f"{key}_low"] = row[f"{key}_high"] = row[f"{key}_p"] = np.nan
        if n < 3:
            continue
        a, b = theta_a[common], theta_b[common]
        row[key] = float(fn(a[None, :], b[None, :])[0])
        row[f"{key}_p"] = permutation_pvalue(fn, a, b, rng)
        if not row["few_models"]:
            draws = fn(samples_a[:, common], samples_b[:, common])
            lo, hi = nan_percentile_interval(draws[:, None], level)
            row[f"{key}_low"], row[f"{key}_high"] = float(lo[0]), float(hi[0])
    return row


def _win_columns(table: SumTable, cluster, lm, rm, outcome, n_models: int) -> slice:
    """Per-prompt win-matrix cells (winner × loser) of these votes; a tie or a both-bad
    vote is half a win each way (the agreement page's boards, ties split)."""
    winner = np.where(outcome == RIGHT, rm, lm)
    loser = np.where(outcome == RIGHT, lm, rm)
    weight = np.where(outcome <= RIGHT, 1.0, 0.5)
    tied = outcome > RIGHT
    cells = np.r_[winner * n_models + loser, (rm * n_models + lm)[tied]]
    return table.add(
        np.r_[cluster, cluster[tied]], np.r_[weight, weight[tied]], cells, n_models * n_models
    )


# -- the comparison ----------------------------------------------------------------------------
@dataclass
class _Votes:
    """The votes as aligned arrays, in time order, one answer per (rater, image pair) marked."""

    models: list[str]
    groups: list[str]
    group: np.ndarray  # (V,) code into groups
    outcome: np.ndarray
    left_model: np.ndarray
    right_model: np.ndarray
    rater: np.ndarray
    cluster: np.ndarray  # prompt index
    n_clusters: int
    unit: np.ndarray  # unordered image pair
    value: np.ndarray  # oriented answer (image_pairs.orient)
    latest: np.ndarray  # bool: the latest vote of its rater on its pair


def _prepare(votes: pd.DataFrame, prompts: pd.DataFrame | None) -> _Votes:
    missing = sorted(set(VOTE_COLUMNS) - set(votes.columns))
    if missing:
        raise ValueError(f"votes frame lacks columns {missing}; use store.votes_frame().")
    if "created_at" in votes.columns and len(votes):  # the latest vote needs time order
        keys = [pd.to_datetime(votes["created_at"]).to_numpy("datetime64[us]").view(np.int64)]
        if "vote_id" in votes.columns:
            keys.insert(0, votes["vote_id"].to_numpy(np.int64))
        votes = votes.iloc[np.lexsort(keys)]
    outcome = encode_outcomes(votes["outcome"].to_numpy()).astype(np.int64)
    left = votes["left_model"].astype(str).to_numpy()
    right = votes["right_model"].astype(str).to_numpy()
    models = sorted(set(left) | set(right))
    index = pd.Index(models)
    lm, rm = index.get_indexer(left), index.get_indexer(right)
    if np.any(lm == rm):
        raise ValueError("a vote compares a model with itself; drop those votes.")
    group, groups = group_labels(
        votes["rater_group"] if "rater_group" in votes.columns else [None] * len(votes)
    )
    cluster, n_clusters = prompt_clusters(votes["prompt_id"].to_numpy(np.int64), prompts)
    rater, _ = pd.factorize(votes["rater_id"].to_numpy())
    rater = rater.astype(np.int64)
    unit, value = image_pairs.orient(
        votes["left_image_id"].to_numpy(np.int64),
        votes["right_image_id"].to_numpy(np.int64),
        outcome,
    )
    latest = np.zeros(len(votes), dtype=bool)
    latest[image_pairs.latest_per_rater(unit, rater)] = True
    return _Votes(
        models=models,
        groups=groups,
        group=group,
        outcome=outcome,
        left_model=lm.astype(np.int64),
        right_model=rm.astype(np.int64),
        rater=rater,
        cluster=cluster,
        n_clusters=n_clusters,
        unit=unit,
        value=value,
        latest=latest,
    )


def _credit_columns(table: SumTable, cluster, unit, credit, counted) -> tuple[slice, slice, int]:
    """Add a credit and a count column (per prompt); also the number of pairs counted."""
    columns = (table.add(cluster, credit), table.add(cluster, counted.astype(np.float64)))
    return (*columns, int(np.unique(unit[counted]).size))


def _within_columns(table: SumTable, x: _Votes, mask: np.ndarray):
    """A group's held-out votes against the rest of the group, on the units of ``mask``."""
    credit, counted = ceiling_credit(x.unit[mask], x.value[mask])
    return _credit_columns(table, x.cluster[mask], x.unit[mask], credit, counted)


def _pair_columns(table: SumTable, x: _Votes, masks: list[np.ndarray], a: int, b: int):
    """Columns of one pair of groups on their shared pairs: (shared pairs, rows of
    (votes_of, majority_of, credit, count, pairs counted))."""
    shared = shared_units(x.unit, x.value, masks[a], masks[b])
    rows = []
    for voters, majority in ((a, b), (b, a), (a, a), (b, b)):
        if voters != majority:
            credit, counted = majority_credit(x.unit, x.value, masks[voters], masks[majority])
            columns = _credit_columns(table, x.cluster, x.unit, credit, counted)
        else:
            columns = _within_columns(table, x, masks[voters] & shared[x.unit])
        rows.append((voters, majority, *columns))
    return int(shared.sum()), rows


def _ratio(totals, boot, cs: slice, ns: slice, level: float) -> dict:
    """An agreement (credit / count) with its percentile interval over the rounds."""
    num, den = totals[cs][0], totals[ns][0]
    lo, hi = nan_percentile_interval(ratio(boot[:, cs][:, 0], boot[:, ns][:, 0])[:, None], level)
    return {
        "agreement": float(ratio(np.array(num), np.array(den))),
        "ci_low": float(lo[0]),
        "ci_high": float(hi[0]),
        "votes": int(np.rint(den)),
    }


def group_comparison(
    votes: pd.DataFrame,
    rng: np.random.Generator,
    rounds: int = 1000,
    level: float = 0.95,
    prompts: pd.DataFrame | None = None,
) -> GroupComparison:
    """The group tables of these votes (``Store.votes_frame()`` under a filter, with its
    ``rater_group`` column; without it every vote is in :data:`NO_GROUP`).

    ``summary``: per group its raters, votes, prompts, models and the agreement of a
    held-out vote with the rest of the group over all its image pairs (``within``).
    ``boards``: per group and model with votes, the BT rating, its interval and rank.
    ``correlation``: per pair of groups, ρ and τ-b of their boards. ``agreement``: per
    pair of groups, on the pairs both voted on decisively (``shared_pairs``), four rows:
    A's votes against B's majority and B's against A's, and each group against the rest
    of itself there. ``rounds`` prompt-bootstrap rounds at coverage ``level``; ``rng``
    draws them first, then the permutation pairings (above 8 models). ``prompts``
    (``Store.prompts_frame()``) orders the prompts the bootstrap draws by their content,
    so that relabelling prompts moves nothing (without it: by prompt id).
    """
    if rounds < 1:
        raise ValueError(f"rounds={rounds}: need at least 1 bootstrap round.")
    z_value(level)
    x = _prepare(votes, prompts)
    n, n_groups = len(x.models), len(x.groups)
    table = SumTable(x.n_clusters)
    in_group = [x.group == g for g in range(n_groups)]
    answers = [x.latest & m for m in in_group]  # one answer per rater and image pair
    wins = [
        _win_columns(table, x.cluster[m], x.left_model[m], x.right_model[m], x.outcome[m], n)
        for m in in_group
    ]
    within = [_within_columns(table, x, m) for m in answers]
    pairs = [
        (a, b, *_pair_columns(table, x, answers, a, b))
        for a in range(n_groups)
        for b in range(a + 1, n_groups)
    ]
    totals, boot = table.resample(rng, rounds)

    summary_rows, board_rows, fits = [], [], []
    for g, name in enumerate(x.groups):
        m = in_group[g]
        w = totals[wins[g]].reshape(n, n)
        w_boot = boot[:, wins[g]].reshape(rounds, n, n)
        theta, samples, rating, lo, hi, rank, ok = identified_board(w, w_boot, level)
        fits.append((theta, samples))
        counts = np.bincount(np.r_[x.left_model[m], x.right_model[m]], minlength=n)
        for i in np.flatnonzero(counts):
            board_rows.append(
                {
                    "group": name,
                    "model": x.models[i],
                    "rank": rank[i],
                    "rating": float(rating[i]),
                    "rating_low": float(lo[i]),
                    "rating_high": float(hi[i]),
                    "votes": int(counts[i]),
                    "identified": bool(ok[i]),
                }
            )
        agree = _ratio(totals, boot, *within[g][:2], level)
        summary_rows.append(
            {
                "group": name,
                "raters": int(np.unique(x.rater[m]).size),
                "votes": int(m.sum()),
                "prompts": int(np.unique(x.cluster[m]).size),
                "models": int(np.count_nonzero(counts)),
                "within": agree["agreement"],
                "within_low": agree["ci_low"],
                "within_high": agree["ci_high"],
                "within_votes": agree["votes"],
            }
        )
    corr_rows, agreement_rows = [], []
    for a, b, shared, rows in pairs:
        pair = {"group_a": x.groups[a], "group_b": x.groups[b]}
        (theta_a, samples_a), (theta_b, samples_b) = fits[a], fits[b]
        corr_rows.append(
            {**pair, **rank_agreement(theta_a, theta_b, samples_a, samples_b, level, rng)}
        )
        for voters, majority, cs, ns, counted_pairs in rows:
            agreement_rows.append(
                {
                    **pair,
                    "votes_of": x.groups[voters],
                    "majority_of": x.groups[majority],
                    **_ratio(totals, boot, cs, ns, level),
                    "pairs": counted_pairs,
                    "shared_pairs": shared,
                }
            )
    boards = pd.DataFrame(board_rows, columns=BOARD_COLUMNS)
    boards["rank"] = boards["rank"].astype("Int64")
    if len(boards):  # groups in summary order, each board by rank (no rating last), model
        order = boards["group"].map({g: k for k, g in enumerate(x.groups)})
        boards = boards.assign(_order=order).sort_values(["_order", "rank", "model"])
        boards = boards.drop(columns="_order").reset_index(drop=True)
    info = {
        "groups": list(x.groups),
        "votes": len(x.outcome),
        "prompts": x.n_clusters,
        "models": list(x.models),
        "rounds": rounds,
        "level": level,
    }
    return GroupComparison(
        summary=pd.DataFrame(summary_rows, columns=SUMMARY_COLUMNS),
        boards=boards,
        correlation=pd.DataFrame(corr_rows, columns=CORRELATION_COLUMNS),
        agreement=pd.DataFrame(agreement_rows, columns=AGREEMENT_COLUMNS),
        info=info,
    )
