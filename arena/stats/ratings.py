"""The leaderboard's numbers from one set of votes: :func:`compute_ratings`.

Plain functions over numpy arrays, choix style; nothing here touches a
database or a UI. The pieces live beside this module, one job each:
:mod:`arena.stats.pairs` (votes as arrays and their per-pair counts),
:mod:`arena.stats.elo` (online Elo and the Elo scale),
:mod:`arena.stats.bradley_terry` (the penalised fit and its information) and
:mod:`arena.stats.resample` (the bootstrap and its exact multinomial sampler).
This module puts them together and adds the per-model and per-pair tables.

Ratings are reported on the Elo scale ``1000 + 400/ln(10) · θ`` (a
400-point gap means 10:1 odds), centred so that the ranked models (those with
at least ``min_votes`` votes and a rating the votes determine; all of the latter if
none is) average 1000, or anchored
so that a named model sits at a given rating (:func:`arena.stats.elo.to_elo`).
Every bootstrap round is centred or anchored the same way before the
percentiles are taken. With ``ties="split"`` (the default) a tie and a both-bad
vote each count as half a win each way; ``ties="drop"`` leaves them out of the
fit. A model outside :func:`arena.stats.bradley_terry.identified` (it never won or
never lost) gets no rating: the others are fitted on their own battles. Random numbers
come from a seeded ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from arena.stats.bradley_terry import RIDGE, bt_fit, identified, predicted_win_rate
from arena.stats.contextual import FEATURE_PENALTY, linear_interval, pair_laplacian
from arena.stats.elo import ELO_INITIAL, THETA_TO_ELO, online_elo, to_elo
from arena.stats.fits import check_options, fit_models
from arena.stats.pairs import OUTCOMES, PairCounts, aggregate
from arena.stats.resample import percentile_interval

#: Votes are turned into indices and counts this many at a time (bounded memory).
VOTE_CHUNK = 1 << 18


def rank_upper_bound(
    lower: np.ndarray, upper: np.ndarray, ranked: np.ndarray | None = None
) -> np.ndarray:
    """1 + the number of (ranked) models whose lower bound is above this upper bound.

    Models outside ``ranked`` (a boolean mask) get NaN and do not push others down.
    """
    lower, upper = np.asarray(lower, float), np.asarray(upper, float)
    ranked = np.ones(lower.shape, bool) if ranked is None else np.asarray(ranked, bool)
    above = (lower[None, :] > upper[:, None]) & ranked[None, :]
    rank = 1.0 + above.sum(axis=1)
    rank[~ranked] = np.nan
    return rank


# -- matrices and per-model numbers ----------------------------------------------------------
def observed_win_rate(counts: PairCounts, ties: str = "split") -> np.ndarray:
    """Share of i's battles against j that i won (ties as half); NaN where none."""
    wins = counts.win_matrix(ties)
    played = wins + wins.T
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(played > 0, wins / np.where(played > 0, played, 1.0), np.nan)


def votes_per_model(counts: PairCounts) -> np.ndarray:
    return counts.battles.sum(axis=1)


def win_rate(counts: PairCounts) -> np.ndarray:
    """Per model: (wins + ½·(ties + both-bad)) / votes; NaN without votes."""
    votes = votes_per_model(counts)
    score = counts.win_matrix("split").sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(votes > 0, score / np.maximum(votes, 1), np.nan)


def both_bad_rate(counts: PairCounts) -> np.ndarray:
    """Per model: share of its votes where the rater marked both images bad."""
    votes = votes_per_model(counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(votes > 0, counts.both_bad.sum(axis=1) / np.maximum(votes, 1), np.nan)


# -- everything at once ----------------------------------------------------------------------
@dataclass(frozen=True)
class Ratings:
    """The full rating of one set of votes; arrays are indexed like ``names``."""

    names: list[str]
    counts: PairCounts
    theta: np.ndarray  # BT log-strengths of all models (ridge fit, finite), Σθ = 0
    rating: np.ndarray  # BT on the Elo scale (centred or anchored); NaN if not identified
    lower: np.ndarray  # bootstrap interval of ``rating``
    upper: np.ndarray
    samples: np.ndarray  # (rounds, n) bootstrap θ of the identified models, NaN elsewhere
    elo: np.ndarray  # online Elo
    votes: np.ndarray
    win_rate: np.ndarray
    both_bad_rate: np.ndarray
    provisional: np.ndarray  # fewer than min_votes votes: listed, not ranked
    identified: np.ndarray  # the votes determine the rating (bradley_terry.identified)
    rank_ub: np.ndarray  # float, NaN for provisional and not identified models
    observed: np.ndarray  # observed win-rate matrix
    predicted: np.ndarray  # BT-predicted win-rate matrix
    level: float
    ties: str
    anchor: tuple[str, float] | None
    ci: str = "bootstrap"
    reweight: float | None = None
    covariance: np.ndarray | None = None  # sandwich: (n, n) covariance of ``rating`` (Elo²)
    style: Style | None = None  # style control: the features' coefficients
    tie_model: TieModel | None = None  # ties="davidson": ν and the tie rates
    flips: list | None = None  # arena.stats.flips.FlipCount per adjacent ranked pair
    top_flip: object | None = None  # ... and for the top model


@dataclass(frozen=True)
class Style:
    """Style control's coefficients: Elo points per standard deviation of each feature's
    difference between the two sides (positive: more of it wins more often)."""

    names: list[str]
    coefficient: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    sd: np.ndarray  # root mean square of each feature's difference: the unit of its coefficient
    votes: int  # votes with every feature (the others are left out of the fit)
    constant: list[str]  # features with no spread within the models: left out
    uncontrolled: np.ndarray  # the plain BT rating of the same votes, for comparison


@dataclass(frozen=True)
class TieModel:
    """Davidson's tie parameter and the tie rate it predicts over the observed battles."""

    nu: float
    lower: float
    upper: float
    predicted_rate: float
    observed_rate: float

    def as_dict(self) -> dict[str, float]:
        """The fields under the names the JSON output and the export manifest use."""
        return {
            "nu": self.nu,
            "nu_lower": self.lower,
            "nu_upper": self.upper,
            "predicted_tie_rate": self.predicted_rate,
            "observed_tie_rate": self.observed_rate,
        }


def compute_ratings(
    left_names: Sequence[str],
    right_names: Sequence[str],
    outcomes: Sequence[str] | np.ndarray,
    rng: np.random.Generator,
    names: Sequence[str] | None = None,
    rounds: int = 1000,
    ties: str = "split",
    anchor: tuple[str, float] | None = None,
    min_votes: int = 50,
    level: float = 0.95,
    ridge: float = RIDGE,
    workers: int | None = None,
    vote_chunk: int = VOTE_CHUNK,
    ci: str = "bootstrap",
    reweight: float | None = None,
    features: np.ndarray | None = None,
    feature_names: Sequence[str] | None = None,
    penalty: float = FEATURE_PENALTY,
    flips: bool = False,
) -> Ratings:
    """Every leaderboard number from votes given by model name, in time order.

    The votes are read in pieces of ``vote_chunk``: names -> indices, outcome
    codes, pair counts and online Elo are built piece by piece, so the memory
    used beyond the vote table does not grow with the number of votes.
    ``ties``, ``ci``, ``reweight`` and ``features`` choose the model and the interval
    (:mod:`arena.stats.fits`); ``features`` (votes, k) are the raw per-vote feature
    differences (left minus right) for style control, NaN where unknown (those votes
    are left out of the style fit). ``flips`` adds how many votes hold each rank
    (:mod:`arena.stats.flips`).
    """
    import pandas as pd

    check_options(ties, ci, features is not None, reweight)

    def series(x) -> pd.Series:
        if isinstance(x, pd.Series):
            return x
        x = np.asarray(x)
        return pd.Series(x if x.dtype.kind in "iu" else x.astype(object), copy=False)

    left_names, right_names, outcomes = series(left_names), series(right_names), series(outcomes)
    if names is None:
        names = sorted(set(pd.unique(left_names)) | set(pd.unique(right_names)))
    names = list(names)
    if len(set(names)) != len(names):
        raise ValueError("model names must be unique.")
    anchor_index = None
    if anchor is not None:
        if anchor[0] not in names:
            raise ValueError(
                f"anchor model {anchor[0]!r} has no votes here; pick one of: {', '.join(names)}."
            )
        anchor_index = (names.index(anchor[0]), float(anchor[1]))
    if features is not None:
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or features.shape[0] != len(left_names):
            raise ValueError(
                f"features must have one row per vote ({len(left_names)}), got {features.shape}."
            )
        feature_names = list(feature_names or (f"feature {i}" for i in range(features.shape[1])))
    n = len(names)
    lookup = pd.Index(names, dtype=object)
    outcome_lookup = pd.Index(OUTCOMES, dtype=object)
    integer_outcomes = outcomes.dtype.kind in "iu"

    def codes(piece: pd.Series, table: pd.Index, what: str) -> np.ndarray:
        # factorize the piece (fast for Arrow strings), then map its few distinct values
        local, uniques = pd.factorize(piece)
        where = table.get_indexer(pd.Index(np.asarray(uniques, dtype=object), dtype=object))
        if np.any(where < 0) or np.any(local < 0):
            bad = uniques[where < 0][0] if np.any(where < 0) else None
            raise ValueError(f"{what} {bad!r} is unknown; expected one of {list(table)}.")
        return where[local]

    counts = PairCounts(*(np.zeros((n, n), dtype=np.int64) for _ in range(3)))
    elo = np.full(n, ELO_INITIAL)
    kept: list[tuple[np.ndarray, ...]] = []  # the votes as indices, for style control
    for start in range(0, len(left_names), vote_chunk):
        piece = slice(start, start + vote_chunk)
        left = codes(left_names.iloc[piece], lookup, "model")
        right = codes(right_names.iloc[piece], lookup, "model")
        if integer_outcomes:
            outcome = outcomes.iloc[piece].to_numpy()
        else:
            outcome = codes(outcomes.iloc[piece], outcome_lookup, "outcome")
        counts = counts + aggregate(n, left, right, outcome)
        if features is None:
            elo = online_elo(n, left, right, outcome, initial=elo)
        else:  # the votes are kept anyway: Elo runs on a thread beside the style fit
            kept.append((left, right, np.asarray(outcome, np.int64)))
    elo_thread = fit_counts = style_votes = None
    if features is not None:
        from concurrent.futures import ThreadPoolExecutor

        all_votes = tuple(np.concatenate(part) for part in zip(*kept, strict=True))
        # online Elo is a Python loop (it holds the GIL); the fit's numpy work releases it
        elo_thread = ThreadPoolExecutor(max_workers=1)
        elo_future = elo_thread.submit(online_elo, n, *all_votes)
    try:
        if features is not None:
            # The style fit sees only votes with every feature (and, with ties dropped,
            # decisive ones): identification and the plain comparison use those votes.
            use = np.isfinite(features).all(axis=1)
            if ties == "drop":
                use &= all_votes[2] < 2
            style_votes = tuple(v[use] for v in all_votes)
            fit_counts = aggregate(n, *style_votes)
            features = features if use.all() else features[use]
        plain_ties = "split" if ties == "davidson" else ties
        ok = identified((counts if fit_counts is None else fit_counts).win_matrix(plain_ties))
        if anchor_index is not None and not ok[anchor_index[0]]:
            raise ValueError(
                f"anchor model {anchor[0]!r} has no rating the votes determine (it never won "
                "or never lost); anchor on another model."
            )
        votes = votes_per_model(counts)
        provisional = votes < min_votes
        ranked = ~provisional & ok
        # Centre on the ranked models: a provisional model's wide swings, or a ridge-made
        # rating, would otherwise move the mean, and with it every other model's rating.
        reference = ranked if ranked.any() else ok
        board = _Board(n, ok, anchor_index, reference, level)
        samples = np.full((max(rounds, 1) if ci == "bootstrap" else 0, n), np.nan)
        with threadpool_limits(1, user_api="blas"):  # n×n solves: BLAS threads only contend
            theta = bt_fit(counts.win_matrix(plain_ties), ridge=ridge)
            if ok.any():
                sub = board.cut(counts if fit_counts is None else fit_counts)
                inputs = (None, None, None)
                if features is not None:
                    inputs = _style_inputs(style_votes, features, ok, feature_names)
                # the full fit already is the identified models' plain fit when they are all
                plain = theta if ok.all() and fit_counts is None and ties != "davidson" else None
                fit = fit_models(
                    sub, rng, rounds, ties, ci, reweight, inputs[0], inputs[1],
                    ridge=ridge, penalty=penalty, workers=workers, plain=plain,
                )  # fmt: skip
                board.place(fit, samples)
                if inputs[2] is not None:
                    board.style = _style_result(fit, inputs[2], level, board.elo(fit.plain))
                if fit.nu is not None:
                    board.tie_model = _tie_model(fit, sub, level)
    finally:
        if elo_thread is not None:
            elo = elo_future.result()
            elo_thread.shutdown()
    flip_rows = top = None
    if flips:
        from arena.stats.flips import adjacent_flips, top_flip

        flip_rows = adjacent_flips(counts, plain_ties, ranked, ridge=ridge)
        top = top_flip(counts, plain_ties, ranked, ridge=ridge)
    return Ratings(
        names=names,
        counts=counts,
        theta=theta,
        rating=board.rating,
        lower=board.lower,
        upper=board.upper,
        samples=samples,
        elo=elo,
        votes=votes,
        win_rate=win_rate(counts),
        both_bad_rate=both_bad_rate(counts),
        provisional=provisional,
        identified=ok,
        rank_ub=rank_upper_bound(board.lower, board.upper, ranked),
        observed=observed_win_rate(counts, plain_ties),
        predicted=predicted_win_rate(theta),
        level=level,
        ties=ties,
        anchor=anchor,
        ci=ci,
        reweight=reweight,
        covariance=board.covariance,
        style=board.style,
        tie_model=board.tie_model,
        flips=flip_rows,
        top_flip=top,
    )


class _Board:
    """The identified models' fit placed on the Elo scale of the whole board: centred on
    ``reference`` (or anchored), NaN for the models the votes do not rate."""

    def __init__(self, n, ok, anchor_index, reference, level):
        self.n, self.ok, self.anchor, self.reference, self.level = (
            n, ok, anchor_index, reference, level,
        )  # fmt: skip
        self.rating, self.lower, self.upper = (np.full(n, np.nan) for _ in range(3))
        self.covariance = self.style = self.tie_model = None

    def cut(self, counts: PairCounts) -> PairCounts:
        """The identified models' counts (their own battles only: a never-winner's
        ridge-made θ would otherwise pull theirs, through its games and the centring)."""
        cut = np.ix_(self.ok, self.ok)
        return PairCounts(counts.wins[cut], counts.ties[cut], counts.both_bad[cut])

    def elo(self, theta_ok: np.ndarray) -> np.ndarray:
        full = np.zeros(self.n)
        full[self.ok] = theta_ok
        out = to_elo(full, self.anchor, self.reference)
        out[~self.ok] = np.nan
        return out

    def place(self, fit, samples: np.ndarray) -> None:
        ok = self.ok
        self.rating = self.elo(fit.theta)
        if fit.covariance is not None:
            self.covariance = np.full((self.n, self.n), np.nan)
            self.covariance[np.ix_(ok, ok)] = _elo_covariance(
                fit.covariance, ok, self.anchor, self.reference
            )
            self.lower, self.upper = linear_interval(
                self.rating, np.nan_to_num(self.covariance), self.level
            )
            self.lower[~ok] = self.upper[~ok] = np.nan
        else:
            samples[:, ok] = fit.samples
            self.lower, self.upper = percentile_interval(
                to_elo(samples, self.anchor, self.reference), self.level
            )


def _elo_covariance(cov, ok, anchor_index, reference) -> np.ndarray:
    """Covariance of the identified models' Elo ratings from that of their θ: the
    centring (or anchoring) is linear, ``rating = M θ``."""
    m = int(ok.sum())
    where = np.flatnonzero(ok)
    if anchor_index is not None:
        weights = (where == anchor_index[0]).astype(float)
    else:
        weights = np.asarray(reference, bool)[where].astype(float)
        weights /= weights.sum()
    transform = THETA_TO_ELO * (np.eye(m) - np.outer(np.ones(m), weights))
    return transform @ cov @ transform.T


def _style_inputs(votes, features, ok, names):
    """The identified models' votes, re-indexed, and the scaled feature matrix.

    Each left-minus-right difference is divided by its root mean square and **not
    centred**: a difference changes sign when the sides swap, and subtracting its mean
    would add ``-mean·β`` to every vote, a left-side term that lets position bias leak
    into β and from there into any model whose images differ (arena-rank centres; on
    votes with random sides the two agree). Features left out, and named: those that do
    not vary, and those that are a per-model constant (resolution when every model
    renders at one size): such a difference is θ_a - θ_b in disguise, so the fit could
    not tell the feature from the models' own strength.
    """
    left, right, outcome = votes
    if not ok.all():
        both = ok[left] & ok[right]
        left, right, outcome, features = left[both], right[both], outcome[both], features[both]
    if not len(left):
        raise ValueError(
            "no vote between rated models has a value for every style feature "
            f"({', '.join(names)}); score the images (arena score) or choose other features."
        )
    if not ok.all():
        index = np.cumsum(ok) - 1
        left, right = index[left], index[right]
    square = np.einsum("ij,ij->j", features, features)
    rms = np.sqrt(square / len(left))
    confounded = _model_constant(left, right, features, int(ok.sum()), square)
    mean = features.sum(axis=0) / len(left)
    spread = np.sqrt(np.maximum(rms**2 - mean**2, 0.0))  # constant: a pure left-side term
    varies = (rms > 1e-12) & (spread > 1e-6 * rms) & ~confounded
    if not varies.any():
        raise ValueError(
            "no style feature varies within the models in these votes "
            f"({', '.join(names)}); choose other features or turn style control off."
        )
    x = features / rms if varies.all() else features[:, varies] / rms[varies]
    info = {
        "names": [nm for nm, v in zip(names, varies, strict=True) if v],
        "constant": [nm for nm, v in zip(names, varies, strict=True) if not v],
        "sd": rms[varies],
        "votes": len(left),
    }
    return (left, right, outcome), x, info


def _model_constant(left, right, features, m: int, square: np.ndarray) -> np.ndarray:
    """Per feature: is its difference (almost) a difference of per-model constants,
    ``g[a] - g[b]``? Least squares of each column on the pair design D (rows e_a - e_b):
    with ``L = DᵀD`` (the battle counts' Laplacian) and ``r = Dᵀx``, the unexplained sum
    of squares is ``xᵀx - gᵀr`` where ``L g = r``: one pass over the votes per feature.
    ``square`` is each column's xᵀx."""
    code = left * m + right
    laplacian = pair_laplacian(m, np.bincount(code, minlength=m * m).astype(float))
    out = np.zeros(features.shape[1], dtype=bool)
    for f in range(features.shape[1]):
        sums = np.bincount(code, features[:, f], minlength=m * m).reshape(m, m)
        rhs = sums.sum(axis=1) - sums.sum(axis=0)
        g = np.linalg.lstsq(laplacian, rhs, rcond=None)[0]
        out[f] = square[f] > 0 and square[f] - float(g @ rhs) <= 1e-9 * square[f]
    return out


def _style_result(fit, info, level, uncontrolled) -> Style:
    if fit.beta_covariance is not None:
        low, high = linear_interval(fit.beta, fit.beta_covariance, level)
    else:
        low, high = percentile_interval(fit.beta_samples, level)
    return Style(
        names=info["names"],
        coefficient=THETA_TO_ELO * fit.beta,
        lower=THETA_TO_ELO * np.asarray(low),
        upper=THETA_TO_ELO * np.asarray(high),
        sd=info["sd"],
        votes=info["votes"],
        constant=info["constant"],
        uncontrolled=uncontrolled,
    )


def _tie_model(fit, counts: PairCounts, level: float) -> TieModel:
    from arena.stats.davidson import DavidsonFit, tie_rates

    predicted, observed = tie_rates(
        DavidsonFit(fit.theta, fit.nu, float(np.log(fit.nu)) if fit.nu > 0 else -np.inf), counts
    )
    if fit.nu_samples is not None:
        low, high = percentile_interval(np.asarray(fit.nu_samples)[:, None], level)
        low, high = float(low[0]), float(high[0])
    elif fit.log_nu_se is not None and fit.nu > 0:
        # on log ν, where the likelihood is closer to normal: the interval stays positive
        low, high = (
            float(np.exp(v[0]))
            for v in linear_interval(
                np.array([np.log(fit.nu)]), np.array([[fit.log_nu_se**2]]), level
            )
        )
    else:
        low = high = float("nan")
    return TieModel(fit.nu, low, high, float(predicted), float(observed))
