"""Every judge table at once: each machine judge as a rater, as a decider, and its two orders.

:func:`judge_report` reads the humans' votes (the report's filter: people and simulated
raters, never a judge) and the judges' votes, and gives four tables (definitions on the
docs' statistics page, "Judges"; the pieces in :mod:`arena.stats.agreement.judges`):

- ``agreement``: per judge, its agreement with the human majority on the pairs with two or
  more decisive human votes, the human ceiling on *those same pairs*, their difference,
  and Krippendorff's α of the humans on the pairs the judge answered, without and with it;
- ``consistency``: how often its two orders of a pair agree, and how often it picks the left;
- ``leaderboard`` and ``correlations``: its own Bradley-Terry board over the battles it
  judged, and Spearman ρ / Kendall τ-b against the humans' board on the same models.

Intervals: the prompt bootstrap of the rest of the report (one :class:`SumTable`, one
resampling for every judge), Wilson for proportions of independent pairs. The human
numbers never see a judge's vote: the judges only read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from arena.stats import image_pairs
from arena.stats.agreement.correlations import BOARD_COLUMNS, RANK_CORRELATION_COLUMNS
from arena.stats.agreement.inputs import VOTE_COLUMNS
from arena.stats.agreement.intervals import (
    SumTable,
    nan_percentile_interval,
    ratio,
    wilson_interval,
    z_value,
)
from arena.stats.agreement.judges import (
    DeciderBoard,
    alpha_contributions,
    decider_board,
    majority_credit,
    order_consistency,
    pair_means,
    rank_correlation,
    win_cells,
)
from arena.stats.agreement.protocols import ceiling_credit
from arena.stats.agreement.reliability import PAIR_VALUES, alpha_from_coincidences, position_bias
from arena.stats.clusters import prompt_clusters
from arena.stats.pairs import RIGHT, encode_outcomes

_CI = ["ci_low", "ci_high", "wilson_low", "wilson_high"]
JUDGE_AGREEMENT_COLUMNS = [
    "judge",
    "judge_model",
    "rater_group",
    "votes",
    "pairs",
    "agreement",
    "n",
    *_CI,
    "judge_ties",
    "ceiling",
    "ceiling_n",
    *[f"ceiling_{c}" for c in _CI],
    "difference",
    "difference_low",
    "difference_high",
    "versus_ceiling",
    "alpha_without",
    "alpha_without_low",
    "alpha_without_high",
    "alpha_with",
    "alpha_with_low",
    "alpha_with_high",
    "alpha_change",
    "alpha_change_low",
    "alpha_change_high",
    "alpha_units",
]
JUDGE_CONSISTENCY_COLUMNS = [
    "judge",
    "pairs_both_orders",
    "consistent",
    "consistency",
    "wilson_low",
    "wilson_high",
    "left_both",
    "right_both",
    "decisive_votes",
    "left_wins",
    "left_win_rate",
    "left_low",
    "left_high",
    "left_p",
]
JUDGE_CORRELATION_COLUMNS = ["judge", *RANK_CORRELATION_COLUMNS, "few_models"]
JUDGE_LEADERBOARD_COLUMNS = [
    "judge",
    *BOARD_COLUMNS,
    "human_rank",
    "human_rating",
]


@dataclass
class JudgeReport:
    """The judge tables (empty, with their columns, when no judge voted)."""

    agreement: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=JUDGE_AGREEMENT_COLUMNS)
    )
    consistency: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=JUDGE_CONSISTENCY_COLUMNS)
    )
    correlations: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=JUDGE_CORRELATION_COLUMNS)
    )
    leaderboard: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=JUDGE_LEADERBOARD_COLUMNS)
    )
    info: dict = field(default_factory=dict)

    def tables(self) -> dict[str, pd.DataFrame]:
        return {
            "judge_agreement": self.agreement,
            "judge_consistency": self.consistency,
            "judge_correlations": self.correlations,
            "judge_leaderboard": self.leaderboard,
        }

    @property
    def empty(self) -> bool:
        return self.agreement.empty


def _checked(votes: pd.DataFrame | None, name: str) -> pd.DataFrame:
    """The frame in time order (the latest vote of a rater on a pair is the one read)."""
    if votes is None:
        return pd.DataFrame(columns=list(VOTE_COLUMNS))
    missing = set(VOTE_COLUMNS) - set(votes.columns)
    if missing:
        raise ValueError(f"{name} frame lacks columns {sorted(missing)}; use store.votes_frame().")
    if "created_at" in votes.columns and len(votes):
        keys = ["created_at", "vote_id"] if "vote_id" in votes.columns else ["created_at"]
        votes = votes.sort_values(keys, kind="stable")
    return votes.reset_index(drop=True)


def _labels(judge_ids: np.ndarray, judges: pd.DataFrame | None) -> list[dict]:
    """Name, model and group of each judge (``judges``: rater_id, judge, judge_model,
    rater_group); a judge the frame does not describe is ``judge <rater id>``."""
    known = {}
    if judges is not None and len(judges):
        for row in judges.to_dict("records"):
            known[int(row["rater_id"])] = row
    out = []
    for rid in judge_ids:
        row = known.get(int(rid), {})
        out.append(
            {
                "judge": str(row.get("judge") or f"judge {int(rid)}"),
                "judge_model": str(row.get("judge_model") or ""),
                "rater_group": row.get("rater_group") or None,
            }
        )
    return out


@dataclass
class _Judge:
    """One judge's columns in the sum table, and what is counted without resampling."""

    label: dict
    votes: int
    pairs: int
    judge_ties: int
    agreement: tuple[slice, slice]  # per-pair credit, pairs
    ceiling: tuple[slice, slice]  # credit, human votes
    alpha_units: int
    alpha_without: list[int]  # one column per coincidence cell
    alpha_with: list[int]
    wins: slice
    model_votes: np.ndarray
    consistency: dict
    position: pd.DataFrame


def judge_report(
    votes: pd.DataFrame,
    judge_votes: pd.DataFrame | None,
    rng: np.random.Generator,
    judges: pd.DataFrame | None = None,
    rounds: int = 1000,
    level: float = 0.95,
    prompts: pd.DataFrame | None = None,
) -> JudgeReport:
    """The judge tables from the humans' ``votes`` and the ``judge_votes`` (both shaped as
    ``store.votes_frame()``; each judge is one ``rater_id`` of ``judge_votes``).

    ``judges`` names them (``Store.judges_frame()``). ``rounds`` prompt-bootstrap rounds
    at coverage ``level``; ``rng`` draws them and the permutation p-values. ``prompts``
    (``Store.prompts_frame()``) orders the prompts the bootstrap draws by their content,
    so that relabelling prompts moves nothing (without it: by prompt id).
    """
    z_value(level)
    if rounds < 1:
        raise ValueError(f"rounds={rounds}: need at least 1 bootstrap round.")
    human, judged = _checked(votes, "votes"), _checked(judge_votes, "judge votes")
    if judged.empty:
        return JudgeReport(info={"judges": 0})
    boot_rng, perm_rng = rng.spawn(2)
    nh = len(human)
    both = pd.concat([human[list(VOTE_COLUMNS)], judged[list(VOTE_COLUMNS)]])
    models = sorted({str(m) for m in both["left_model"]} | {str(m) for m in both["right_model"]})
    index = pd.Index(models)
    lm = index.get_indexer(both["left_model"].astype(str)).astype(np.int64)
    rm = index.get_indexer(both["right_model"].astype(str)).astype(np.int64)
    left = both["left_image_id"].to_numpy(np.int64)
    right = both["right_image_id"].to_numpy(np.int64)
    outcome = encode_outcomes(both["outcome"].to_numpy()).astype(np.int64)
    unit, answer = image_pairs.orient(left, right, outcome)
    n_units = int(unit.max()) + 1 if unit.size else 0
    cluster, n_clusters = prompt_clusters(both["prompt_id"].to_numpy(np.int64), prompts)
    unit_cluster = np.zeros(n_units, dtype=np.int64)
    unit_cluster[unit] = cluster  # both images of a pair belong to one prompt
    table = SumTable(n_clusters)
    n = len(models)

    # The humans: one answer per rater and pair (the latest), and their board's battles.
    h_rater, _ = pd.factorize(human["rater_id"].to_numpy())
    h_keep = image_pairs.latest_per_rater(unit[:nh], h_rater)
    hu, ha = unit[:nh][h_keep], answer[:nh][h_keep]
    h_credit, h_counted = ceiling_credit(hu, ha)
    human_wins = _wins(table, cluster[:nh], lm[:nh], rm[:nh], outcome[:nh], n)
    human_model_votes = np.bincount(np.r_[lm[:nh], rm[:nh]], minlength=n)
    human_answers = np.bincount(hu, minlength=n_units)
    human_decisive = np.bincount(hu[ha <= RIGHT], minlength=n_units)

    judge_ids = np.unique(judged["rater_id"].to_numpy(np.int64))
    labels = _labels(judge_ids, judges)
    j_code = np.searchsorted(judge_ids, judged["rater_id"].to_numpy(np.int64))
    lower_left = left[nh:] < right[nh:]
    j_keep = image_pairs.latest_per_rater(unit[nh:], j_code * 2 + lower_left)
    rows = []
    # In the order of their names: a judge's rows (and the permutation draws, above 8
    # models) do not depend on its rater id.
    for k in sorted(range(judge_ids.size), key=lambda k: (labels[k]["judge"], k)):
        mine = np.flatnonzero(j_code == k)
        kept = j_keep[j_code[j_keep] == k]
        ju, ja, jl = unit[nh:][kept], answer[nh:][kept], lower_left[kept]
        credit, counted = majority_credit(ju, ja, hu, ha, n_units)
        pair_units, pair_credit = pair_means(ju, credit, counted, n_units)
        majority_pairs = np.unique(ju[human_decisive[ju] >= 2])  # the ceiling's pairs
        on_pairs = np.zeros(n_units, dtype=bool)
        on_pairs[pair_units] = True
        c_mask = h_counted & on_pairs[hu]
        alpha_units = np.unique(ju[human_answers[ju] >= 2])
        without, with_judge = alpha_contributions(hu, ha, ju, ja, alpha_units)
        a_cluster = unit_cluster[alpha_units]
        cells = range(PAIR_VALUES)
        j_idx = nh + mine
        rows.append(
            _Judge(
                label=labels[k],
                votes=int(mine.size),
                pairs=int(np.unique(ju).size),
                judge_ties=int(majority_pairs.size - pair_units.size),
                agreement=(
                    table.add(unit_cluster[pair_units], pair_credit),
                    table.add(unit_cluster[pair_units], np.ones(pair_units.size)),
                ),
                ceiling=(
                    table.add(unit_cluster[hu[c_mask]], h_credit[c_mask]),
                    table.add(unit_cluster[hu[c_mask]], np.ones(int(c_mask.sum()))),
                ),
                alpha_units=int(alpha_units.size),
                alpha_without=[
                    table.add(a_cluster, without[:, c, d]).start for c in cells for d in cells
                ],
                alpha_with=[
                    table.add(a_cluster, with_judge[:, c, d]).start for c in cells for d in cells
                ],
                wins=_wins(table, cluster[j_idx], lm[j_idx], rm[j_idx], outcome[j_idx], n),
                model_votes=np.bincount(np.r_[lm[j_idx], rm[j_idx]], minlength=n),
                consistency=order_consistency(ju, ja, jl, n_units),
                position=position_bias(outcome[nh:][kept], level),
            )
        )
    totals, boot = table.resample(boot_rng, rounds)
    human_board = _decider(totals, boot, human_wins, human_model_votes, n, level)
    agreement, consistency, correlations, boards = [], [], [], []
    for j in rows:
        agreement.append(_agreement_row(j, totals, boot, level))
        consistency.append(_consistency_row(j, level))
        board = _decider(totals, boot, j.wins, j.model_votes, n, level)
        correlations.append(
            {"judge": j.label["judge"], **rank_correlation(board, human_board, level, perm_rng)}
        )
        boards.append(_board_rows(j, board, human_board, models))
    leaderboard = pd.DataFrame(
        [r for board in boards for r in board], columns=JUDGE_LEADERBOARD_COLUMNS
    )
    for column in ("rank", "human_rank"):
        leaderboard[column] = leaderboard[column].astype("Int64")
    return JudgeReport(
        agreement=pd.DataFrame(agreement, columns=JUDGE_AGREEMENT_COLUMNS),
        consistency=pd.DataFrame(consistency, columns=JUDGE_CONSISTENCY_COLUMNS),
        correlations=pd.DataFrame(correlations, columns=JUDGE_CORRELATION_COLUMNS),
        leaderboard=leaderboard,
        info={"judges": len(rows), "human_votes": nh, "judge_votes": len(judged)},
    )


def _wins(table: SumTable, cluster, lm, rm, outcome, n: int) -> slice:
    """Add a decider's win-matrix columns (n² cells, summed per prompt)."""
    if n == 0:
        return slice(0, 0)
    index, cells, weight = win_cells(lm, rm, outcome, n)
    return table.add(cluster[index], weight, cells, n * n)


# -- tables ------------------------------------------------------------------------------------
def _interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    lo, hi = nan_percentile_interval(np.asarray(samples, dtype=np.float64)[:, None], level)
    return float(lo[0]), float(hi[0])


def _proportion(totals, boot, cols: tuple[slice, slice], level: float):
    """(point, bootstrap draws, row of accuracy/n/intervals) of a ratio of two columns."""
    num, den = totals[cols[0]][0], totals[cols[1]][0]
    point = float(ratio(np.array(num), np.array(den)))
    draws = ratio(boot[:, cols[0]][:, 0], boot[:, cols[1]][:, 0])
    lo, hi = _interval(draws, level)
    w_lo, w_hi = wilson_interval(num, den, level)
    return point, draws, int(np.rint(den)), lo, hi, float(w_lo), float(w_hi)


def _alpha(totals, boot, cols: list[int]) -> tuple[float, np.ndarray]:
    point = alpha_from_coincidences(totals[cols].reshape(PAIR_VALUES, PAIR_VALUES))
    o_boot = boot[:, cols].reshape(-1, PAIR_VALUES, PAIR_VALUES)
    return point, np.array([alpha_from_coincidences(o) for o in o_boot])


def _agreement_row(j: _Judge, totals, boot, level: float) -> dict:
    acc, acc_draws, n, lo, hi, w_lo, w_hi = _proportion(totals, boot, j.agreement, level)
    ceil, ceil_draws, c_n, c_lo, c_hi, cw_lo, cw_hi = _proportion(totals, boot, j.ceiling, level)
    diff_lo, diff_hi = _interval(acc_draws - ceil_draws, level)
    versus = ""
    if np.isfinite(diff_lo) and np.isfinite(diff_hi):
        versus = "below" if diff_hi < 0 else "above" if diff_lo > 0 else "within"
    a_without, without_draws = _alpha(totals, boot, j.alpha_without)
    a_with, with_draws = _alpha(totals, boot, j.alpha_with)
    return {
        **j.label,
        "votes": j.votes,
        "pairs": j.pairs,
        "agreement": acc,
        "n": n,
        "ci_low": lo,
        "ci_high": hi,
        "wilson_low": w_lo,
        "wilson_high": w_hi,
        "judge_ties": j.judge_ties,
        "ceiling": ceil,
        "ceiling_n": c_n,
        "ceiling_ci_low": c_lo,
        "ceiling_ci_high": c_hi,
        "ceiling_wilson_low": cw_lo,
        "ceiling_wilson_high": cw_hi,
        "difference": acc - ceil,
        "difference_low": diff_lo,
        "difference_high": diff_hi,
        "versus_ceiling": versus,
        "alpha_without": a_without,
        "alpha_without_low": _interval(without_draws, level)[0],
        "alpha_without_high": _interval(without_draws, level)[1],
        "alpha_with": a_with,
        "alpha_with_low": _interval(with_draws, level)[0],
        "alpha_with_high": _interval(with_draws, level)[1],
        "alpha_change": a_with - a_without,
        "alpha_change_low": _interval(with_draws - without_draws, level)[0],
        "alpha_change_high": _interval(with_draws - without_draws, level)[1],
        "alpha_units": j.alpha_units,
    }


def _consistency_row(j: _Judge, level: float) -> dict:
    c = j.consistency
    lo, hi = wilson_interval(c["consistent"], c["pairs"], level)
    row = {
        "judge": j.label["judge"],
        "pairs_both_orders": c["pairs"],
        "consistent": c["consistent"],
        "consistency": c["consistent"] / c["pairs"] if c["pairs"] else np.nan,
        "wilson_low": float(lo),
        "wilson_high": float(hi),
        "left_both": c["left_both"],
        "right_both": c["right_both"],
    }
    if len(j.position):
        p = j.position.iloc[0]
        row.update(
            decisive_votes=int(p.decisive_votes),
            left_wins=int(p.left_wins),
            left_win_rate=float(p.left_win_rate),
            left_low=float(p.ci_low),
            left_high=float(p.ci_high),
            left_p=float(p.p_value),
        )
    else:
        row.update(decisive_votes=0, left_wins=0)
    return row


def _decider(totals, boot, cols: slice, votes: np.ndarray, n: int, level: float) -> DeciderBoard:
    """A decider's board from its resampled win-matrix columns."""
    rounds = boot.shape[0]
    if n == 0:
        return decider_board(np.zeros((0, 0)), np.zeros((rounds, 0, 0)), votes, level)
    wins = totals[cols].reshape(n, n)
    return decider_board(wins, boot[:, cols].reshape(rounds, n, n), votes, level)


def _board_rows(
    j: _Judge, board: DeciderBoard, human: DeciderBoard, models: list[str]
) -> list[dict]:
    rows = []
    for i in np.flatnonzero(board.present):
        rows.append(
            {
                "judge": j.label["judge"],
                "model": models[i],
                "rank": board.rank[i],
                "rating": float(board.rating[i]),
                "rating_low": float(board.low[i]),
                "rating_high": float(board.high[i]),
                "votes": int(board.votes[i]),
                "identified": bool(board.identified[i]),
                "human_rank": human.rank[i],
                "human_rating": float(human.rating[i]),
            }
        )
    rows.sort(key=lambda r: (r["rank"] is None, r["rank"] or 0, r["model"]))
    return rows
