"""The rating model and its interval, chosen per leaderboard: one function per combination.

:func:`arena.stats.ratings.compute_ratings` hands the identified models' votes to
:func:`fit_models`, which picks

- the model: plain Bradley-Terry (ties split or dropped), Davidson BT (ties modelled,
  :mod:`arena.stats.davidson`) or BT with style covariates (:mod:`arena.stats.contextual`);
- the weighting: every vote alike, or each pair's votes reweighted to count about
  equally (:func:`arena.stats.contextual.pair_weights`, off by default);
- the interval: the percentile bootstrap (resampled battles, refitted) or the
  sandwich ``H⁻¹GH⁻¹`` (closed form, normal).

and returns θ with either bootstrap samples or a covariance. Everything is on the
θ scale; the caller centres or anchors and converts to Elo.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from arena.stats import contextual as ctx
from arena.stats.bradley_terry import RIDGE, bt_fit
from arena.stats.pairs import PairCounts
from arena.stats.resample import bootstrap_bt

#: How ties enter the fit: half a win each way, left out, or modelled (Davidson's ν).
RATING_TIES = ("split", "drop", "davidson")
#: How the interval is computed.
CI_METHODS = ("bootstrap", "sandwich")


@dataclass(frozen=True)
class Fit:
    """One fit of the identified models: θ (n,), and samples (rounds, n) or cov (n, n)."""

    theta: np.ndarray
    #: the plain BT θ of the same counts (ties as asked, no style, no weights): the fit
    #: itself for plain BT, the start and the "uncontrolled" comparison for style control
    plain: np.ndarray | None = None
    samples: np.ndarray | None = None
    covariance: np.ndarray | None = None
    #: style control: feature coefficients (k,), their samples (rounds, k) or covariance
    beta: np.ndarray | None = None
    beta_samples: np.ndarray | None = None
    beta_covariance: np.ndarray | None = None
    #: Davidson: the tie parameter ν, its samples (rounds,) or the standard error of log ν
    nu: float | None = None
    nu_samples: np.ndarray | None = None
    log_nu_se: float | None = None


def check_options(ties: str, ci: str, style: bool, reweight: float | None) -> None:
    """Refuse combinations that are not implemented, naming what is."""
    if ties not in RATING_TIES:
        raise ValueError(f"ties={ties!r}: expected one of {', '.join(RATING_TIES)}.")
    if ci not in CI_METHODS:
        raise ValueError(f"ci={ci!r}: expected one of {', '.join(CI_METHODS)}.")
    if ties == "davidson" and (style or reweight is not None):
        raise ValueError(
            "ties='davidson' models ties in the plain BT model only; use ties 'split' or "
            "'drop' with style control or reweighting."
        )
    if reweight is not None and not reweight >= 1:
        raise ValueError(f"reweight floor {reweight}: expected a number of battles >= 1.")


def outcome_scores(outcome: np.ndarray) -> np.ndarray:
    """Vote codes (0 left, 1 right, 2 tie, 3 both bad) -> the left side's score 1 / 0 / ½."""
    return np.where(outcome == 0, 1.0, np.where(outcome == 1, 0.0, 0.5))


def fit_models(
    counts: PairCounts,
    rng: np.random.Generator,
    rounds: int,
    ties: str = "split",
    ci: str = "bootstrap",
    reweight: float | None = None,
    votes: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    features: np.ndarray | None = None,
    ridge: float = RIDGE,
    penalty: float = ctx.FEATURE_PENALTY,
    workers: int | None = None,
    plain: np.ndarray | None = None,
) -> Fit:
    """θ of the models in ``counts`` and the material for their interval.

    ``votes`` (left, right, outcome codes, model indices into ``counts``) and
    ``features`` (standardised, (votes, k)) are needed for style control only.
    ``rounds`` = 0 with the bootstrap gives no samples (a point estimate). ``plain``:
    ``bt_fit(counts.win_matrix(ties))`` if the caller already has it (not refitted).
    """
    check_options(ties, ci, features is not None, reweight)
    n = counts.n_items
    if ties == "davidson":
        return _davidson(counts, rng, rounds, ci, ridge, workers)
    if plain is None:
        plain = bt_fit(counts.win_matrix(ties), ridge=ridge)
    if features is None and reweight is None:
        theta = plain
        if ci == "sandwich":
            rows = ctx.rows_from_counts(counts, ties)
            fit = ctx.ContextualFit(theta, np.zeros(0), 0)
            return Fit(theta, plain, covariance=ctx.sandwich(rows, n, fit, ridge, penalty))
        if rounds < 1:
            return Fit(theta, plain, samples=theta[None, :])
        samples = bootstrap_bt(counts, rng, rounds, ties, ridge, theta=theta, workers=workers)
        return Fit(theta, plain, samples=samples)
    if features is None:
        rows = ctx.rows_from_counts(counts, ties)
    else:
        left, right, outcome = votes
        keep = outcome < 2 if ties == "drop" else np.ones(left.size, bool)
        rows = ctx.make_rows(left, right, outcome_scores(outcome), features).take(keep)
    if reweight is not None:
        rows = ctx.pair_weights(rows, n, reweight)
    fit = ctx.contextual_fit(rows, n, ridge, penalty, initial=(plain, np.zeros(rows.n_features)))
    if ci == "sandwich":
        cov = ctx.sandwich(rows, n, fit, ridge, penalty)
        return Fit(
            fit.theta, plain, covariance=cov[:n, :n], beta=fit.beta, beta_covariance=cov[n:, n:]
        )
    if rounds < 1:
        return Fit(
            fit.theta, plain, samples=fit.theta[None, :], beta=fit.beta, beta_samples=fit.beta[None]
        )
    theta_s, beta_s = ctx.contextual_bootstrap(
        rows, n, rng, rounds, fit, ridge, penalty, workers=workers
    )
    return Fit(fit.theta, plain, samples=theta_s, beta=fit.beta, beta_samples=beta_s)


def _davidson(counts, rng, rounds, ci, ridge, workers) -> Fit:
    from arena.stats import davidson as dv

    fit = dv.davidson_fit(counts, ridge=ridge)
    n = counts.n_items
    if ci == "sandwich":
        cov = dv.davidson_sandwich(fit, counts, ridge=ridge)
        se = float(np.sqrt(cov[n, n])) if np.isfinite(cov[n, n]) and cov[n, n] >= 0 else np.nan
        return Fit(fit.theta, covariance=cov[:n, :n], nu=fit.nu, log_nu_se=se)
    if rounds < 1:
        return Fit(fit.theta, samples=fit.theta[None, :], nu=fit.nu)
    theta_s, nu_s = dv.davidson_bootstrap(counts, rng, rounds, ridge=ridge, fit=fit)
    return Fit(fit.theta, samples=theta_s, nu=fit.nu, nu_samples=nu_s)
