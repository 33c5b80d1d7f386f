"""Targeted voting: raters and address groups whose votes favour one model.

In the spirit of the anomalous-user test of Chatbot Arena (Chiang et al. 2024,
arXiv 2403.04132, §6), but aimed at the attack that matters for a leaderboard:
votes pushed towards one model. Pure functions over the votes frame
(``Store.votes_frame(include_excluded=True, include_gold=True)``). A *unit* is a
rater, or an address group (every vote whose battle was served to one
``client_group``, over all its rater ids).

1. **Null model.** Bradley-Terry strengths θ (:mod:`arena.stats.bradley_terry`) fitted on the
   decisive votes of normal battles by raters not excluded, *minus the unit's own
   votes* (one refit per unit, batched by :func:`~arena.stats.bradley_terry.bt_fit_batch`), so a
   heavy attacker cannot drag the fit towards itself. Under the null the unit votes
   like everybody else: in a decisive battle of model m against k it picks m with
   probability ``σ(θ_m - θ_k)``, independently of its other votes.
2. **Statistic.** For each model m the unit saw: S = its picks of m in its decisive
   battles with m. Under the null S is Poisson-binomial; the one-sided p-value
   ``P(S >= s)`` is exact (a convolution) up to ``EXACT_MAX`` battles and a Chernoff
   bound above (never smaller than the exact value).
3. **Uncertainty of θ.** The leave-one-out θ is an estimate: the p-value is moved to
   the normal scale, ``z -> z / sqrt(1 + gᵀ Cov(θ) g / Var(S))`` (g: the gradient of
   the expected picks in θ, Cov: the fit's :func:`~arena.stats.bradley_terry.bt_covariance`). It
   matters only when the unit's battles with m are a sizeable share of all of them;
   a model (almost) nobody else voted on gets no flag at all.
4. **Correction.** Per unit, the smallest p over the models it saw, times that number
   (Bonferroni); then Holm over every unit tested (raters and groups together) gives
   ``p_adj``. A unit is flagged when ``p_adj <= alpha``: in one run, the chance that
   any honest unit is flagged is at most ``alpha`` (family-wise). Tested are the
   raters with at least ``min_votes`` decisive votes and the address groups with at
   least ``min_votes`` decisive votes from at least two rater ids.
5. **Groups.** A flagged group flags those of its raters whose own votes from that
   group add to the excess: more picks of the flagged model than the group's null
   expects of them; a rater with ``min_votes`` or more decisive votes from the group
   must also show it alone (one-sided p <= ``MEMBER_LEVEL`` = 0.05, uncorrected). So
   the many brief ids of one attacker are caught together, while an honest rater who
   shares the address keeps its votes unless they, too, lean to that model.

Ties and both-bad votes say nothing about which model is favoured: they are left out
of both the fit and the test (so are gold battles). Like any such test it cannot tell
a bought vote from a sincere, strong taste for one model's style; hence a strict
``alpha``, the evidence on the Admin app, and reversal by an admin.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import brentq
from scipy.special import expit
from scipy.stats import norm

from arena.stats.bradley_terry import bt_covariance, bt_fit, bt_fit_batch, bt_information
from arena.stats.pairs import index_items

#: Up to this many battles the Poisson-binomial tail is exact; above, a Chernoff bound.
EXACT_MAX = 1000
#: p-values are floored here before the θ-uncertainty step (log-free and finite).
P_FLOOR = 1e-300
#: Pseudo-wins each way on every pair the others voted on (no infinite gaps).
PRIOR_WINS = 0.5
#: A rater judged on its own inside a flagged group must reach this one-sided level.
MEMBER_LEVEL = 0.05
_DP_ELEMENTS = 1 << 22  # cells x battles per convolution block
_FIT_ELEMENTS = 1 << 21  # units x models² per leave-one-out block

UNIT_COLUMNS = [
    "unit",  # "rater" or "group"
    "key",  # the rater id or the client_group
    "raters",
    "decisive",
    "models",
    "model",
    "battles",
    "picks",
    "expected",
    "p",  # one-sided p of the unit's most favoured model
    "p_models",  # Bonferroni over the models the unit saw
    "p_adj",  # Holm over every unit tested
    "flagged",
]
EVIDENCE = [
    "targeted_model",
    "targeted_battles",
    "targeted_picks",
    "targeted_expected",
    "targeted_p",
    "targeted_p_adj",
    "targeted_unit",
    "targeted_reason",
]


# -- the null distribution -------------------------------------------------------------------
def poisson_binomial_sf(probs, owner, k, exact_max: int = EXACT_MAX) -> np.ndarray:
    """``P(S_c >= k_c)`` for each cell c, ``S_c`` the sum of Bernoulli(probs[i]) with owner c.

    ``owner`` gives each probability's cell (0..len(k)-1). Exact by convolution for cells
    of at most ``exact_max`` terms (vectorised over cells of similar size, tails summed
    from the top so small values keep their precision); a Chernoff bound
    ``min_t exp(K(t) - t k)`` (>= the exact tail) for larger cells.
    """
    probs = np.asarray(probs, dtype=np.float64)
    owner = np.asarray(owner, dtype=np.int64)
    k = np.asarray(k, dtype=np.int64)
    counts = np.bincount(owner, minlength=len(k))
    order = np.argsort(owner, kind="stable")
    ordered = probs[order]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    out = np.where(k <= 0, 1.0, 0.0)
    todo = np.flatnonzero((k > 0) & (k <= counts))
    small = todo[counts[todo] <= exact_max]
    size_class = np.ceil(np.log2(counts[small])).astype(np.int64)
    for size in np.unique(size_class):
        cells = small[size_class == size]
        length = int(counts[cells].max())
        rows = max(1, _DP_ELEMENTS // (length + 1))
        for start in range(0, len(cells), rows):
            part = cells[start : start + rows]
            out[part] = _exact_tail(ordered, starts[part], counts[part], k[part], length)
    for c in todo[counts[todo] > exact_max]:
        out[c] = _chernoff_tail(ordered[starts[c] : starts[c] + counts[c]], int(k[c]))
    return out


def _exact_tail(ordered, starts, counts, k, length: int) -> np.ndarray:
    pos = np.arange(length)
    mask = pos[None, :] < counts[:, None]
    q = np.zeros((len(starts), length))
    q[mask] = ordered[(starts[:, None] + pos[None, :])[mask]]  # padding: Bernoulli(0)
    pmf = np.zeros((len(starts), length + 1))
    pmf[:, 0] = 1.0
    for j in range(length):
        qj = q[:, j : j + 1]
        head = pmf[:, : j + 2]
        moved = head[:, :-1] * qj
        head *= 1.0 - qj
        head[:, 1:] += moved
    tail = np.cumsum(pmf[:, ::-1], axis=1)[:, ::-1]  # tail[:, x] = P(S >= x)
    return np.minimum(1.0, tail[np.arange(len(starts)), k])


def _chernoff_tail(p: np.ndarray, k: int) -> float:
    p = np.clip(p, 1e-15, 1.0 - 1e-15)
    if k >= len(p):
        return float(np.exp(np.log(p).sum()))  # every one picked: exact
    if k <= p.sum():
        return 1.0
    logit = np.log(p) - np.log1p(-p)

    def excess(t: float) -> float:
        return float(expit(logit + t).sum()) - k

    upper = 1.0
    while excess(upper) < 0:
        upper *= 2.0
    t = brentq(excess, 0.0, upper)
    cumulant = float(np.sum(np.log1p(-p) + np.logaddexp(0.0, logit + t)))
    return float(min(1.0, np.exp(cumulant - t * k)))


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control, any dependence)."""
    p = np.asarray(p, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    steps = (len(p) - np.arange(len(p))) * p[order]
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(steps))
    return adjusted


# -- the tests -------------------------------------------------------------------------------
def _decisive_votes(votes: pd.DataFrame) -> pd.DataFrame | None:
    needed = {"rater_id", "outcome", "left_model", "right_model"}
    if not needed <= set(votes.columns):
        return None
    frame = votes
    if "battle_kind" in frame:
        frame = frame[(frame["battle_kind"] == "normal").to_numpy()]
    outcome = frame["outcome"].to_numpy().astype(object)
    return frame[(outcome == "left") | (outcome == "right")]


def unit_tests(votes: pd.DataFrame, min_votes: int = 10, alpha: float = 1e-3) -> pd.DataFrame:
    """One row per unit tested (``UNIT_COLUMNS``): its most favoured model and the p-values."""
    return _run(votes, min_votes, alpha)[0]


def _run(votes: pd.DataFrame, min_votes: int, alpha: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The units' tests, and the members of flagged groups (rater_id, key, picks, expected)."""
    frame = _decisive_votes(votes)
    empty = pd.DataFrame(columns=UNIT_COLUMNS)
    no_members = pd.DataFrame(columns=["rater_id", "key", "picks", "expected"])
    if frame is None or frame.empty:
        return empty, no_members
    names, left, right = index_items(frame["left_model"], frame["right_model"])
    n = len(names)
    left_won = frame["outcome"].to_numpy().astype(object) == "left"
    winner, loser = np.where(left_won, left, right), np.where(left_won, right, left)
    rater_ids, rater = np.unique(frame["rater_id"].to_numpy(), return_inverse=True)
    counted = ~frame["rater_excluded"].to_numpy(dtype=bool) if "rater_excluded" in frame else None
    counted = np.ones(len(frame), bool) if counted is None else counted

    # Units and which votes belong to them (a vote: its rater's unit and its group's).
    unit_kind, unit_key, unit_raters, member_vote, member_unit = [], [], [], [], []
    per_rater = np.bincount(rater, minlength=len(rater_ids))
    for r in np.flatnonzero(per_rater >= min_votes):
        unit_kind.append("rater")
        unit_key.append(rater_ids[r])
        unit_raters.append(1)
    tested_rater = np.full(len(rater_ids), -1)
    tested_rater[per_rater >= min_votes] = np.arange(len(unit_kind))
    member_vote.append(np.flatnonzero(tested_rater[rater] >= 0))
    member_unit.append(tested_rater[rater][member_vote[0]])
    if "client_group" in frame:
        groups = frame["client_group"]
        known = groups.notna().to_numpy()
        keys, group = np.unique(groups[known].astype(str).to_numpy(), return_inverse=True)
        size = np.bincount(group, minlength=len(keys))
        distinct = np.bincount(
            np.unique(np.stack([group, rater[known]]), axis=1)[0], minlength=len(keys)
        )
        tested = np.flatnonzero((size >= min_votes) & (distinct >= 2))
        index = np.full(len(keys), -1)
        index[tested] = len(unit_kind) + np.arange(len(tested))
        unit_kind += ["group"] * len(tested)
        unit_key += list(keys[tested])
        unit_raters += list(distinct[tested])
        where = np.flatnonzero(known)
        inside = index[group] >= 0
        member_vote.append(where[inside])
        member_unit.append(index[group][inside])
    if not unit_kind:
        return empty, no_members
    member_vote, member_unit = np.concatenate(member_vote), np.concatenate(member_unit)
    order = np.argsort(member_unit, kind="stable")
    member_vote, member_unit = member_vote[order], member_unit[order]

    wins = np.bincount(winner[counted] * n + loser[counted], minlength=n * n)
    wins = wins.reshape(n, n).astype(np.float64)
    # Every unit's fit starts from (and steps with the curvature of) the fit of all votes.
    prior = PRIOR_WINS * ((wins + wins.T) > 0)
    theta_all = bt_fit(wins + prior)
    hessian = bt_information(theta_all, wins + wins.T + 2 * prior)

    units = len(unit_kind)
    best = np.zeros((units, 5))  # model, battles, picks, expected, p
    seen = np.zeros(units, dtype=np.int64)
    group_theta: dict[int, np.ndarray] = {}
    block = max(1, min(512, _FIT_ELEMENTS // (n * n)))
    for first in range(0, units, block):
        b = min(block, units - first)
        lo, hi = np.searchsorted(member_unit, [first, first + b])
        v, u = member_vote[lo:hi], member_unit[lo:hi] - first
        own = np.bincount(
            (u * n + winner[v]) * n + loser[v], weights=counted[v], minlength=b * n * n
        )
        rest = wins[None] - own.reshape(b, n, n)
        rest += PRIOR_WINS * ((rest + rest.transpose(0, 2, 1)) > 0)
        with np.errstate(all="ignore"):  # a round that diverges is refitted by bt_fit
            theta = bt_fit_batch(rest, initial=theta_all, hessian=hessian)
        cov = bt_covariance(theta, rest + rest.transpose(0, 2, 1))
        stats = _cell_stats(theta, cov, u, winner[v], loser[v], n)
        best[first : first + b], seen[first : first + b] = stats
        for j in range(b):
            if unit_kind[first + j] == "group":
                group_theta[first + j] = theta[j]

    p_models = np.minimum(1.0, best[:, 4] * np.maximum(seen, 1))
    p_adj = holm(p_models)
    result = pd.DataFrame(
        {
            "unit": unit_kind,
            "key": unit_key,
            "raters": unit_raters,
            "decisive": np.bincount(member_unit, minlength=units),
            "models": seen,
            "model": np.asarray(names, dtype=object)[best[:, 0].astype(np.int64)],
            "battles": best[:, 1].astype(np.int64),
            "picks": best[:, 2].astype(np.int64),
            "expected": best[:, 3],
            "p": best[:, 4],
            "p_models": p_models,
            "p_adj": p_adj,
            "flagged": p_adj <= alpha,
        }
    )
    members = [
        _group_members(
            unit_key[g],
            member_vote[member_unit == g],
            int(best[g, 0]),
            group_theta[g],
            winner,
            loser,
            rater,
            rater_ids,
            min_votes,
        )
        for g in np.flatnonzero(
            result["flagged"].to_numpy() & (result["unit"] == "group").to_numpy()
        )
    ]
    return result, pd.concat(members, ignore_index=True) if members else no_members


def _group_members(key, votes, m, theta, winner, loser, rater, rater_ids, min_votes):
    """The raters of flagged group ``key`` (``votes``: its votes) whose own add to its excess.

    Picks of ``m`` above what the group's null expects of them; a rater with at least
    ``min_votes`` decisive votes from the group must moreover show the excess on its
    own (one-sided p <= ``MEMBER_LEVEL``), so that an honest rater who shares the
    address keeps its votes unless they, too, lean to ``m``.
    """
    who, at = np.unique(rater[votes], return_inverse=True)
    decisive = np.bincount(at, minlength=len(who))
    with_m = (winner[votes] == m) | (loser[votes] == m)
    at, picked = at[with_m], winner[votes][with_m] == m
    other = np.where(picked, loser[votes][with_m], winner[votes][with_m])
    prob = expit(theta[m] - theta[other])
    picks = np.bincount(at, weights=picked, minlength=len(who)).astype(np.int64)
    expected = np.bincount(at, weights=prob, minlength=len(who))
    own_p = poisson_binomial_sf(prob, at, picks)
    keep = (picks > expected) & ((decisive < min_votes) | (own_p <= MEMBER_LEVEL))
    return pd.DataFrame(
        {
            "rater_id": rater_ids[who[keep]],
            "key": key,
            "picks": picks[keep],
            "expected": expected[keep],
        }
    )


def _cell_stats(theta, cov, unit, winner, loser, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per unit of a block: (model, battles, picks, expected, p) of its smallest p, models seen.

    Each vote is a pick of its winner and a non-pick of its loser; cell = (unit, model).
    """
    b = theta.shape[0]
    model = np.concatenate([winner, loser])
    other = np.concatenate([loser, winner])
    units = np.concatenate([unit, unit])
    pick = np.concatenate([np.ones(len(winner)), np.zeros(len(winner))])
    prob = expit(theta[units, model] - theta[units, other])
    var = prob * (1.0 - prob)
    cell = units * n + model
    battles = np.bincount(cell, minlength=b * n)
    picks = np.bincount(cell, weights=pick, minlength=b * n)
    expected = np.bincount(cell, weights=prob, minlength=b * n)
    variance = np.bincount(cell, weights=var, minlength=b * n)
    # g: gradient of the expected picks of each cell in θ (+ for the model, - for opponents)
    g = np.bincount(cell * n + model, weights=var, minlength=b * n * n)
    g -= np.bincount(cell * n + other, weights=var, minlength=b * n * n)
    g = g.reshape(b, n, n)
    spread = np.einsum("bmi,bij,bmj->bm", g, cov, g).ravel()
    p = np.ones(b * n)
    test = np.flatnonzero((battles > 0) & (picks > expected))
    if len(test):
        slot = np.full(b * n, -1)
        slot[test] = np.arange(len(test))
        keep = slot[cell] >= 0
        exact = poisson_binomial_sf(prob[keep], slot[cell][keep], picks[test].astype(np.int64))
        z = norm.isf(np.maximum(exact, P_FLOOR))
        inflate = 1.0 + spread[test] / np.maximum(variance[test], 1e-12)
        p[test] = np.where(z > 0, norm.sf(z / np.sqrt(inflate)), exact)
    p = p.reshape(b, n)
    excess = (picks - expected).reshape(b, n)
    # smallest p; among equal p the larger excess (order-free: no dependence on labels)
    choice = np.lexsort((-excess, p), axis=1)[:, 0]
    rows = np.arange(b)
    flat = rows * n + choice
    stats = np.stack([choice, battles[flat], picks[flat], expected[flat], p[rows, choice]], axis=1)
    return stats, (battles.reshape(b, n) > 0).sum(axis=1)


def targeted_report(votes: pd.DataFrame, alpha: float = 1e-3, min_votes: int = 10) -> pd.DataFrame:
    """Per rater concerned: rater_id and ``EVIDENCE`` (``targeted_reason`` '' unless flagged).

    A rater's evidence is its own flagged test, else the flagged group test (smallest
    ``p_adj``) its votes contributed to, else its own (unflagged) test when it had one.
    """
    units, members = _run(votes, min_votes, alpha)
    if units.empty:
        return _no_evidence()
    rows: dict[object, dict] = {}
    for row in units[units["unit"] == "rater"].itertuples(index=False):
        rows[row.key] = _evidence(row, "rater", _reason(row, "") if row.flagged else "")
    groups = {row.key: row for row in units[units["unit"] == "group"].itertuples(index=False)}
    for member in members.sort_values("key").itertuples(index=False):
        group = groups[member.key]
        current = rows.get(member.rater_id)
        if current and current["targeted_reason"] and current["targeted_p_adj"] <= group.p_adj:
            continue
        label = f"address group {str(member.key)[:8]} ({group.raters} raters)"
        detail = f"; this rater {member.picks} picks vs {member.expected:.1f} expected"
        rows[member.rater_id] = _evidence(group, label, _reason(group, label) + detail)
    if not rows:
        return _no_evidence()
    report = pd.DataFrame.from_dict(rows, orient="index")
    report.index.name = "rater_id"
    return report.reset_index()[["rater_id", *EVIDENCE]]


def _no_evidence() -> pd.DataFrame:
    frame = pd.DataFrame(columns=["rater_id", *EVIDENCE])
    return frame.astype({"rater_id": np.int64, "targeted_reason": str})


def _evidence(row, unit: str, reason: str) -> dict:
    return {
        "targeted_model": row.model,
        "targeted_battles": int(row.battles),
        "targeted_picks": int(row.picks),
        "targeted_expected": float(row.expected),
        "targeted_p": float(row.p),
        "targeted_p_adj": float(row.p_adj),
        "targeted_unit": unit,
        "targeted_reason": reason,
    }


def _reason(row, where: str) -> str:
    source = f" from {where}" if where else ""
    return (
        f"targeted{source}: favours {row.model} ({int(row.picks)} picks in {int(row.battles)} "
        f"battles vs {row.expected:.1f} expected, p={row.p_adj:.1g} corrected)"
    )
