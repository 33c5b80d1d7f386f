"""Human vs metric agreement: pairwise accuracy, the human ceiling, rank correlations.

Pure functions over the frames of :mod:`arena.storage.store` (``votes_frame``,
``scores_frame``, ``images_frame``, ``prompts_frame``) and over numpy arrays;
no database, no UI. Random numbers come from a seeded ``numpy.random.Generator``
passed in.

**Pairwise accuracy.** For a vote between images L and R and a metric with
scores s(L), s(R), let Δ = s(L) - s(R) (higher is better; metrics named in
``lower_is_better`` are negated). Three protocols are reported side by side:

``decisive``  (a) over decisive human votes (left or right), the metric is right
              when it scores the chosen image strictly higher; a metric tie
              (Δ = 0) counts as wrong. The ImageReward paper's protocol.
``ties_half`` (b) as (a), but a metric tie counts half: the expected score of
              breaking the tie by a coin. The Pick-a-Pic paper's protocol; a
              constant metric sits at exactly 50%.
``with_ties`` (c) over all votes; tie and both-bad are *human ties*. The metric
              predicts a tie when |Δ| ≤ t, else the side with the higher score,
              and is right when the prediction equals the human outcome. The
              tie threshold t is *cross-fitted*: prompts are split at random
              (seeded) into ``tie_folds`` folds; for each fold, t is the value
              maximising accuracy on the votes of the other folds (the smallest
              such |Δ|, searched exactly over every observed |Δ|), and is applied
              to the votes of this fold. Every vote is therefore scored with a
              threshold fitted without it (no optimism from fitting t on the
              data it is judged on, unlike tie calibration on the test set).

**Intervals.** Each accuracy comes with a 95% Wilson score interval (votes
treated as independent) and a bootstrap interval over *prompts* — the default
shown, since votes on one prompt share its difficulty. The bootstrap draws the
prompts with replacement (1,000 rounds) and takes along all their votes and
images; every statistic is a ratio of per-prompt sums, so one
``(rounds × prompts)`` weight matrix times one ``(prompts × statistics)`` sum
matrix gives every statistic of every round at once (:func:`cluster_bootstrap`).
Thresholds of (c) are held fixed across rounds.

**Human ceiling.** On image pairs voted (decisively) by two or more raters:
for each vote, does it agree with the majority of the *other* raters' votes on
the same pair (a tied majority counts half)? One vote per rater and pair (the
latest) is kept. Metrics are read against this, not against 100%.

**Model level.** Human Bradley-Terry ratings (ties split, :mod:`arena.stats.ratings`)
against each metric's per-model mean score (over all scored images of the
model): Spearman ρ and Kendall τ-b. Each metric also gets its own leaderboard:
the same battles decided by the metric (higher score wins, equal scores tie),
fitted with the same BT code. Intervals come from the same prompt bootstrap,
which resamples votes and images together.

**Model-level metrics.** Numbers that exist only per model (KID, FID, CMMD,
FD-DINO, diversity, AS against a reference set: ``Store.model_metrics_frame()``,
passed as ``model_metrics``) join the same table: Spearman ρ and Kendall τ-b
between the human ratings and the metric, oriented by
:data:`MODEL_LEVEL_HIGHER_IS_BETTER` (a lower FID for a higher human rating counts
as agreement, ρ > 0). The metric is fixed per model, so its intervals bootstrap
only the human side (the same prompt-bootstrap rounds of the human BT fit);
``spearman_bt`` does not apply. Rows carry ``level`` = ``model``; per-image means
carry ``image mean``.

**Slices, position bias, reliability.** Accuracy (protocol ``ties_half`` by
default) by prompt category, by number of prompt tags (comma-separated, binned)
and by model pair; the left-win rate among decisive votes with an exact
binomial test against 1/2; Krippendorff's α (nominal; outcomes oriented to the
canonical image order of the pair) on pairs with several votes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from arena.stats import ratings as rt

PROTOCOLS: dict[str, str] = {
    "decisive": "(a) decisive votes, metric ties wrong (ImageReward)",
    "ties_half": "(b) decisive votes, metric ties half (Pick-a-Pic)",
    "with_ties": "(c) with human ties, cross-fitted tie threshold",
}
CEILING = "human ceiling"
CEILING_PROTOCOL = "leave-one-out majority of other raters"
#: Lower edges of the tag-count bins: 0, 1-3, 4-7, 8-15, 16+.
TAG_BINS: tuple[int, ...] = (0, 1, 4, 8, 16)
LEFT, RIGHT, TIE, BOTH_BAD = rt.LEFT, rt.RIGHT, rt.TIE, rt.BOTH_BAD
#: Per-image metrics whose ``higher_is_better`` is False (the scoring registry's, kept
#: here because the registry imports torch and the web side must not): the Agreement
#: tab and the exports negate them, so that a higher score always means "better".
PER_IMAGE_LOWER_IS_BETTER: tuple[str, ...] = ("anomaly",)
#: Orientation of the model-level metrics (``scoring.distribution.run.METRICS``):
#: distances to the reference set are better low; within-prompt diversity high.
MODEL_LEVEL_HIGHER_IS_BETTER: dict[str, bool] = {
    "kid": False,
    "fid": False,
    "cmmd": False,
    "fd-dino": False,
    "diversity": True,
    "as": False,
}


# -- intervals ---------------------------------------------------------------------------------
def _z(level: float) -> float:
    if not 0 < level < 1:
        raise ValueError(f"level={level}: expected a coverage in (0, 1), e.g. 0.95.")
    return float(stats.norm.ppf(0.5 + level / 2))


def wilson_interval(successes, n, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a proportion ``successes / n`` (arrays broadcast).

    ``successes`` may be fractional (half credits). NaN where ``n == 0``.
    """
    x = np.asarray(successes, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    z = _z(level)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = x / n
        denom = 1.0 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z / denom * np.sqrt(np.maximum(p * (1 - p), 0.0) / n + z * z / (4 * n * n))
    lo = np.where(n > 0, np.clip(centre - half, 0.0, 1.0), np.nan)
    hi = np.where(n > 0, np.clip(centre + half, 0.0, 1.0), np.nan)
    return lo, hi


def _percentiles(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval per column, ignoring NaN rounds (e.g. a slice drawn empty)."""
    tail = 50.0 * (1.0 - level)
    samples = np.asarray(samples, dtype=np.float64)
    if samples.shape[0] == 0:
        nan = np.full(samples.shape[1:], np.nan)
        return nan, nan
    finite = np.isfinite(samples)
    out = np.full((2, *samples.shape[1:]), np.nan)
    ok = finite.any(axis=0)
    if ok.any():
        with np.errstate(invalid="ignore"):
            out[:, ok] = np.nanpercentile(samples[:, ok], [tail, 100.0 - tail], axis=0)
    return out[0], out[1]


# -- cluster bootstrap -------------------------------------------------------------------------
def cluster_weights(rng: np.random.Generator, n_clusters: int, rounds: int) -> np.ndarray:
    """(rounds, n_clusters) multiplicities of drawing n_clusters clusters with replacement."""
    idx = rng.integers(0, n_clusters, size=(rounds, n_clusters), dtype=np.int32)
    out = np.empty((rounds, n_clusters), dtype=np.float32)
    for r in range(rounds):  # one small bincount per row stays in cache (a flat one does not)
        out[r] = np.bincount(idx[r], minlength=n_clusters)
    return out


def cluster_bootstrap(
    sums: np.ndarray, rng: np.random.Generator, rounds: int = 1000, chunk: int | None = None
) -> np.ndarray:
    """Resampled column totals of a per-cluster sum matrix: (rounds, K).

    ``sums[p, k]`` is statistic k summed over the items of cluster p. A round
    draws the clusters with replacement and adds up their sums: ``w @ sums``
    with ``w`` the draw multiplicities. Done in chunks of rounds, as float32
    matrix products (the sums are counts and half counts, exact in float32 up
    to 2^24, or real-valued sums whose relative rounding of ~1e-7 is far below
    bootstrap noise).
    """
    sums = np.asarray(sums)
    n_clusters, k = sums.shape
    if rounds < 1:
        raise ValueError(f"rounds={rounds}: need at least 1 bootstrap round.")
    out = np.zeros((rounds, k))
    if n_clusters == 0 or k == 0:
        return out
    s32 = np.ascontiguousarray(sums, dtype=np.float32)
    if chunk is None:  # ~16 MB of weights per chunk
        chunk = int(max(1, min(rounds, 4_000_000 // n_clusters)))
    for start in range(0, rounds, chunk):
        size = min(chunk, rounds - start)
        out[start : start + size] = cluster_weights(rng, n_clusters, size) @ s32
    return out


class _SumTable:
    """Collects per-cluster sums of many statistics, to be resampled together.

    Columns that are all zero, or identical to an earlier column (the same
    counts for several metrics), are resampled once: the matrix product is
    the cost of the whole bootstrap.
    """

    def __init__(self, n_clusters: int):
        self.n_clusters = n_clusters
        self.columns: list[np.ndarray] = []  # distinct non-zero columns (float32)
        self.where: list[int] = []  # logical column -> distinct column, -1 for zeros
        self.totals: list[float] = []
        self._seen: dict[bytes, int] = {}  # digest of a column -> its distinct column

    def add(self, cluster: np.ndarray, weights: np.ndarray | None = None, groups=None, n_groups=1):
        """Sum ``weights`` (default 1) per cluster, or per (cluster, group): a slice of columns."""
        key = cluster if groups is None else cluster * n_groups + groups
        size = self.n_clusters * n_groups
        m = np.bincount(key, weights=weights, minlength=size).reshape(self.n_clusters, n_groups)
        start = len(self.where)
        for g in range(n_groups):
            column = np.ascontiguousarray(m[:, g], dtype=np.float32)
            self.totals.append(float(m[:, g].sum()))
            if not column.any():
                self.where.append(-1)
                continue
            digest = hashlib.blake2b(column, digest_size=16).digest()
            known = self._seen.get(digest)
            if known is None or not np.array_equal(self.columns[known], column):
                known = len(self.columns)
                self._seen.setdefault(digest, known)
                self.columns.append(column)
            self.where.append(known)
        return slice(start, start + n_groups)

    def resample(self, rng: np.random.Generator, rounds: int) -> tuple[np.ndarray, np.ndarray]:
        """(totals (K,), resampled totals (rounds, K))."""
        totals = np.asarray(self.totals, dtype=np.float64)
        distinct = (
            cluster_bootstrap(np.stack(self.columns, axis=1), rng, rounds)
            if self.columns
            else np.zeros((rounds, 0))
        )
        padded = np.concatenate([distinct, np.zeros((rounds, 1))], axis=1)
        return totals, padded[:, np.asarray(self.where, dtype=np.int64)]


# -- protocols ---------------------------------------------------------------------------------
def protocol_credit(
    delta: np.ndarray, outcome: np.ndarray, protocol: str, threshold: float | np.ndarray = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Per-vote credit (0, 0.5 or 1) and which votes count, for one protocol.

    ``delta`` = score(left) - score(right) (NaN where a score is missing);
    ``outcome`` = vote codes (0 left, 1 right, 2 tie, 3 both bad). ``threshold``
    (scalar or per vote) is the tie threshold of ``with_ties``.
    """
    delta = np.asarray(delta, dtype=np.float64)
    outcome = np.asarray(outcome)
    scored = np.isfinite(delta)
    human = np.where(outcome == LEFT, 1, np.where(outcome == RIGHT, -1, 0))
    if protocol in ("decisive", "ties_half"):
        counted = scored & (outcome <= RIGHT)
        agree = np.sign(delta) == human
        credit = agree.astype(np.float64)
        if protocol == "ties_half":
            credit = credit + 0.5 * (delta == 0)
    elif protocol == "with_ties":
        counted = scored
        predicted = np.where(np.abs(delta) <= threshold, 0, np.sign(delta))
        credit = (predicted == human).astype(np.float64)
    else:
        raise ValueError(f"protocol {protocol!r}: expected one of {tuple(PROTOCOLS)}.")
    return np.where(counted, credit, 0.0), counted


def fit_tie_threshold(delta: np.ndarray, outcome: np.ndarray) -> float:
    """The tie threshold t maximising the ``with_ties`` accuracy on these votes.

    Predicting a tie for |Δ| ≤ t, accuracy as a function of t only changes at
    observed |Δ| values, so all of them (and t = 0) are tried exactly in
    O(n log n): ties predicted for the k smallest |Δ| earn the human ties among
    them plus the decisive votes beyond them whose sign matches. Among equally
    good thresholds the smallest is returned.
    """
    return _fit_sorted(*_sorted_for_fit(delta, outcome)[:3])


def _sorted_for_fit(delta, outcome) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Scored votes by increasing |Δ|: (|Δ|, human tie?, metric right if it decides?, order).

    The order among equal |Δ| does not matter: thresholds are only tried at the
    ends of runs of equal values.
    """
    delta = np.asarray(delta, dtype=np.float64)
    outcome = np.asarray(outcome)
    a = np.abs(delta)
    order = np.argsort(a)
    order = order[: int(np.isfinite(a).sum())]  # NaN sorts last
    d, o = delta[order], outcome[order]
    is_tie = o > RIGHT
    right = ((o == LEFT) & (d > 0)) | ((o == RIGHT) & (d < 0))
    return a[order], is_tie, right, order


def _fit_sorted(a: np.ndarray, is_tie: np.ndarray, right: np.ndarray) -> float:
    if a.size == 0:
        return 0.0
    tie_cum = np.r_[0, np.cumsum(is_tie)]  # human ties among the k smallest |Δ|
    right_cum = np.r_[0, np.cumsum(right)]
    # Candidate cuts: after every run of equal |Δ| (k = run end); k = 0 unless zeros exist.
    ends = np.flatnonzero(np.r_[a[1:] != a[:-1], True]) + 1
    cuts = ends if a[0] == 0 else np.r_[0, ends]
    score = tie_cum[cuts] + (right_cum[-1] - right_cum[cuts])
    best = cuts[int(np.argmax(score))]
    return float(a[best - 1]) if best > 0 else 0.0


def cross_fitted_thresholds(
    delta: np.ndarray, outcome: np.ndarray, fold: np.ndarray, n_folds: int
) -> tuple[np.ndarray, list[float]]:
    """Per-vote tie threshold fitted on the votes of the other folds, and each fold's threshold.

    With one fold the threshold is fitted on all votes (in-sample, optimistic).
    The votes are sorted once; each fit takes the other folds' subsequence.
    """
    fold = np.asarray(fold)
    a_sorted, is_tie, right, order = _sorted_for_fit(delta, outcome)
    fold_sorted = fold[order]
    per_vote = np.zeros(len(delta))
    fitted = []
    for f in range(n_folds):
        use = fold_sorted != f if n_folds > 1 else np.ones(a_sorted.size, dtype=bool)
        t = _fit_sorted(a_sorted[use], is_tie[use], right[use])
        per_vote[fold == f] = t
        fitted.append(t)
    return per_vote, fitted


# -- reliability -------------------------------------------------------------------------------
def krippendorff_alpha_nominal(units, values) -> float:
    """Krippendorff's α for nominal data, from long-format (unit, value) pairs.

    Each pair is one coder's value for one unit (missing values are simply
    absent). Units with fewer than two values are not pairable and are left
    out. Coincidences ``o_ck = Σ_u n_uc n_uk / (m_u - 1)`` (c ≠ k; for c = k
    ``n_uc (n_uc - 1)``), ``n_c = Σ_k o_ck``, ``n = Σ n_c`` and
    ``α = 1 - (n - 1) Σ_{c≠k} o_ck / Σ_{c≠k} n_c n_k`` (Krippendorff 2011,
    "Computing Krippendorff's Alpha-Reliability"). NaN without variation.
    """
    return _alpha_from_coincidences(_coincidences(units, values)[0])


def _coincidences(units, values) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-unit coincidence contributions: (O (C, C), unit codes, counts (U, C), 1/(m-1))."""
    unit_codes, _ = pd.factorize(np.asarray(units), sort=False)
    value_codes, _ = pd.factorize(np.asarray(values), sort=True)
    n_units = int(unit_codes.max()) + 1 if unit_codes.size else 0
    n_values = int(value_codes.max()) + 1 if value_codes.size else 0
    counts = np.bincount(
        unit_codes * max(n_values, 1) + value_codes, minlength=n_units * n_values
    ).reshape(n_units, n_values)
    m = counts.sum(axis=1)
    inv = np.where(m >= 2, 1.0 / np.maximum(m - 1, 1), 0.0)
    weighted = counts * inv[:, None]
    o = weighted.T @ counts - np.diag(weighted.sum(axis=0))
    return o, unit_codes, counts, inv


def _alpha_from_coincidences(o: np.ndarray) -> float:
    o = np.asarray(o, dtype=np.float64)
    n_c = o.sum(axis=1)
    n = n_c.sum()
    expected = n * n - np.sum(n_c**2)
    if n <= 1 or expected <= 0:
        return float("nan")
    return float(1.0 - (n - 1.0) * (n - np.trace(o)) / expected)


# -- rank correlations -------------------------------------------------------------------------
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


# -- inputs ------------------------------------------------------------------------------------
def count_tags(tags: Iterable[str | None]) -> np.ndarray:
    """Number of comma-separated, non-empty tags in each tag string."""
    return np.fromiter(
        (sum(1 for t in str(s).split(",") if t.strip()) if s else 0 for s in tags), dtype=np.int64
    )


def tag_bin_labels(edges: Sequence[int] = TAG_BINS) -> list[str]:
    labels = []
    for lo, hi in zip(edges, [*edges[1:], None], strict=True):
        if hi is None:
            labels.append(f"{lo}+")
        elif hi - lo == 1:
            labels.append(f"{lo}")
        else:
            labels.append(f"{lo}-{hi - 1}")
    return labels


def metric_matrix(
    scores: pd.DataFrame, lower_is_better: Iterable[str] = ()
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(metric labels, sorted image ids, values (images, metrics)) from a scores frame.

    A metric scored under several versions becomes one column per version,
    labelled ``metric@version``. Metrics in ``lower_is_better`` are negated.
    """
    needed = {"image_id", "metric", "version", "value"}
    missing = needed - set(scores.columns)
    if missing:
        raise ValueError(f"scores frame lacks columns {sorted(missing)}; use store.scores_frame().")
    if scores.empty:
        return [], np.zeros(0, np.int64), np.zeros((0, 0))
    m_codes, m_names = pd.factorize(scores["metric"].astype(str))
    v_codes, v_names = pd.factorize(scores["version"].astype(str))
    pair_keys, pair_codes = np.unique(
        m_codes.astype(np.int64) * len(v_names) + v_codes, return_inverse=True
    )
    pairs = [(str(m_names[k // len(v_names)]), str(v_names[k % len(v_names)])) for k in pair_keys]
    n_versions = pd.Series([m for m, _ in pairs]).value_counts()
    pair_label = [m if n_versions[m] == 1 else f"{m}@{v}" for m, v in pairs]
    labels = sorted(pair_label)
    col = pd.Index(labels).get_indexer(pair_label)[pair_codes.ravel()]
    image_ids, row = np.unique(scores["image_id"].to_numpy(np.int64), return_inverse=True)
    values = np.full((image_ids.size, len(labels)), np.nan)
    values[row, col] = scores["value"].to_numpy(np.float64)
    flip = {str(m) for m in lower_is_better}
    for c, name in enumerate(labels):
        if name.split("@")[0] in flip:
            values[:, c] = -values[:, c]
    return labels, image_ids, values


def _lookup(sorted_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Row of each id in sorted_ids, -1 where absent."""
    if sorted_ids.size == 0:
        return np.full(len(ids), -1, dtype=np.int64)
    ids = np.asarray(ids, dtype=np.int64)
    top = int(sorted_ids[-1])
    if sorted_ids[0] >= 0 and top < 8 * sorted_ids.size + 1_000_000:  # dense ids: a table
        table = np.full(top + 2, -1, dtype=np.int64)
        table[sorted_ids] = np.arange(sorted_ids.size)
        return table[np.clip(ids, -1, top + 1)]
    pos = np.searchsorted(sorted_ids, ids)
    pos = np.minimum(pos, sorted_ids.size - 1)
    return np.where(sorted_ids[pos] == ids, pos, -1)


@dataclass
class _Inputs:
    """The frames as aligned arrays (internal)."""

    metrics: list[str]
    models: list[str]
    outcome: np.ndarray  # (V,) int codes
    left_model: np.ndarray  # (V,) model index
    right_model: np.ndarray
    left_image: np.ndarray  # (V,) image ids
    right_image: np.ndarray
    rater: np.ndarray  # (V,) codes
    cluster: np.ndarray  # (V,) prompt cluster index
    category: np.ndarray  # (V,) codes into categories
    categories: list[str]
    tag_bin: np.ndarray  # (V,) codes into tag_labels, -1 unknown
    tag_labels: list[str]
    delta: np.ndarray  # (V, M) score(left) - score(right)
    image_model: np.ndarray  # (I,) model index of scored images (-1 unknown)
    image_cluster: np.ndarray  # (I,)
    image_values: np.ndarray  # (I, M)
    n_clusters: int


def _prepare(
    votes: pd.DataFrame,
    scores: pd.DataFrame,
    images: pd.DataFrame | None,
    prompts: pd.DataFrame | None,
    tag_bins: Sequence[int],
    lower_is_better: Iterable[str],
) -> _Inputs:
    needed = {
        "outcome",
        "rater_id",
        "prompt_id",
        "left_image_id",
        "right_image_id",
        "left_model",
        "right_model",
    }
    missing = needed - set(votes.columns)
    if missing:
        raise ValueError(f"votes frame lacks columns {sorted(missing)}; use store.votes_frame().")
    outcome = rt.encode_outcomes(votes["outcome"].to_numpy())
    l_codes, l_names = pd.factorize(votes["left_model"])
    r_codes, r_names = pd.factorize(votes["right_model"])
    models = sorted({str(m) for m in l_names} | {str(m) for m in r_names})
    index = pd.Index(models)
    lm = index.get_indexer([str(m) for m in l_names])[l_codes].astype(np.int64)
    rm = index.get_indexer([str(m) for m in r_names])[r_codes].astype(np.int64)
    if np.any(lm == rm):
        raise ValueError("a vote compares a model with itself; drop those votes.")
    labels, score_ids, values = metric_matrix(scores, lower_is_better)
    li = votes["left_image_id"].to_numpy(np.int64)
    ri = votes["right_image_id"].to_numpy(np.int64)
    lrow, rrow = _lookup(score_ids, li), _lookup(score_ids, ri)
    padded = np.vstack([values, np.full((1, len(labels)), np.nan)]) if labels else values
    if labels:
        delta = padded[lrow] - padded[rrow]  # row -1 is the NaN padding row
    else:
        delta = np.zeros((len(votes), 0))

    # Clusters: prompts of votes and of images; images without a prompt are their own cluster.
    vote_prompt = votes["prompt_id"].to_numpy(np.int64)
    if images is not None and len(images):
        img = images[images["image_id"].isin(score_ids)]
        img_prompt = img["prompt_id"].to_numpy(np.float64)
        img_ids = img["image_id"].to_numpy(np.int64)
        img_key = np.where(np.isnan(img_prompt), -img_ids - 1, np.nan_to_num(img_prompt)).astype(
            np.int64
        )
        model_lookup = {m: k for k, m in enumerate(models)}
        image_model = img["model"].map(model_lookup).fillna(-1).to_numpy(np.int64)
        image_values = values[_lookup(score_ids, img_ids)] if labels else np.zeros((len(img), 0))
    else:  # fall back to the images that appear in the votes
        img_ids_all = np.r_[li, ri]
        img_ids, first = np.unique(img_ids_all, return_index=True)
        img_key = np.r_[vote_prompt, vote_prompt][first]
        image_model = np.r_[lm, rm][first]
        rows = _lookup(score_ids, img_ids)
        image_values = padded[rows] if labels else np.zeros((img_ids.size, 0))
    keys, codes = np.unique(np.r_[vote_prompt, img_key], return_inverse=True)
    cluster, image_cluster = codes[: len(vote_prompt)], codes[len(vote_prompt) :]

    cat = votes["category"] if "category" in votes.columns else pd.Series([""] * len(votes))
    cat_codes, categories = pd.factorize(cat.fillna("").astype(str), sort=True)
    categories = [c if c else "(none)" for c in categories]

    tag_labels = tag_bin_labels(tag_bins)
    tag_bin = np.full(len(votes), -1, dtype=np.int64)
    if prompts is not None and len(prompts) and "tags" in prompts.columns:
        pids = prompts["prompt_id"].to_numpy(np.int64)
        order = np.argsort(pids)
        n_tags = count_tags(prompts["tags"].tolist())[order]
        pos = _lookup(pids[order], vote_prompt)
        known = pos >= 0
        tag_bin[known] = np.searchsorted(np.asarray(tag_bins), n_tags[pos[known]], side="right") - 1
    rater, _ = pd.factorize(votes["rater_id"].to_numpy())
    return _Inputs(
        metrics=labels,
        models=models,
        outcome=outcome.astype(np.int64),
        left_model=lm,
        right_model=rm,
        left_image=li,
        right_image=ri,
        rater=rater.astype(np.int64),
        cluster=cluster.astype(np.int64),
        category=cat_codes.astype(np.int64),
        categories=list(categories),
        tag_bin=tag_bin,
        tag_labels=tag_labels,
        delta=delta,
        image_model=image_model,
        image_cluster=image_cluster.astype(np.int64),
        image_values=image_values,
        n_clusters=int(keys.size),
    )


# -- pair-level units (ceiling, α) -------------------------------------------------------------
def _pair_votes(x: _Inputs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One vote per (rater, image pair), the latest: (vote indices, unit ids, oriented value).

    Units are unordered image pairs; the value is 0 if the pair's lower image id
    won, 1 if the higher won, 2 tie, 3 both bad (left/right shown is forgotten).
    """
    lo = np.minimum(x.left_image, x.right_image)
    hi = np.maximum(x.left_image, x.right_image)
    span = int(hi.max()) + 1 if hi.size else 1
    _, unit = np.unique(lo * span + hi, return_inverse=True)
    unit = unit.ravel().astype(np.int64)
    n = unit.size
    key = unit * (int(x.rater.max()) + 1 if n else 1) + x.rater
    # The latest vote of each (rater, unit): frames are in time order.
    rev = np.arange(n - 1, -1, -1)
    _, first_rev = np.unique(key[rev], return_index=True)
    keep = np.sort(rev[first_rev])
    lower_left = x.left_image[keep] == lo[keep]
    o = x.outcome[keep]
    value = np.where(
        o == LEFT,
        np.where(lower_left, 0, 1),
        np.where(o == RIGHT, np.where(lower_left, 1, 0), o),
    )
    return keep, unit[keep], value


def ceiling_credit(unit: np.ndarray, value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Leave-one-out agreement of each decisive vote with the other votes on its unit.

    ``value`` 0/1 = which image of the pair won (non-decisive values are ignored).
    Returns (credit per vote: 1 agrees with the others' majority, 0.5 the others
    are split evenly, 0 disagrees; mask of votes on units with ≥ 2 decisive votes).
    """
    unit, value = np.asarray(unit), np.asarray(value)
    decisive = value <= 1
    u, v = unit[decisive], value[decisive]
    total = np.bincount(u, minlength=int(unit.max()) + 1 if unit.size else 0)
    first = np.bincount(u, weights=(v == 0).astype(np.float64), minlength=total.size)
    same = np.where(v == 0, first[u], total[u] - first[u]) - 1
    other = total[u] - 1 - same
    credit_dec = np.where(same > other, 1.0, np.where(same == other, 0.5, 0.0))
    counted_dec = total[u] >= 2
    credit = np.zeros(unit.size)
    counted = np.zeros(unit.size, dtype=bool)
    credit[decisive] = np.where(counted_dec, credit_dec, 0.0)
    counted[decisive] = counted_dec
    return credit, counted


# -- the report --------------------------------------------------------------------------------
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

    def tables(self) -> dict[str, pd.DataFrame]:
        return {
            "agreement_accuracy": self.accuracy,
            "agreement_correlations": self.correlations,
            "agreement_models": self.models,
            "agreement_leaderboards": self.leaderboards,
            "agreement_slices": self.slices,
            "agreement_position_bias": self.position_bias,
            "agreement_reliability": self.reliability,
        }


ACCURACY_COLUMNS = [
    "metric",
    "protocol",
    "description",
    "accuracy",
    "n",
    "ci_low",
    "ci_high",
    "wilson_low",
    "wilson_high",
    "tie_threshold",
]
CORRELATION_COLUMNS = [
    "metric",
    "n_models",
    "spearman",
    "spearman_low",
    "spearman_high",
    "kendall",
    "kendall_low",
    "kendall_high",
    "spearman_bt",
    "spearman_bt_low",
    "spearman_bt_high",
    "level",
]
SLICE_COLUMNS = [
    "metric",
    "slice_kind",
    "slice",
    "accuracy",
    "n",
    "ci_low",
    "ci_high",
    "wilson_low",
    "wilson_high",
]
LEADERBOARD_COLUMNS = ["decider", "model", "rank", "rating", "rating_low", "rating_high", "votes"]
POSITION_COLUMNS = [
    "decisive_votes",
    "left_wins",
    "left_win_rate",
    "ci_low",
    "ci_high",
    "p_value",
]
RELIABILITY_COLUMNS = ["alpha", "alpha_low", "alpha_high", "units", "votes", "raters"]


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


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
    lower_is_better: Iterable[str] = (),
    model_metrics: pd.DataFrame | None = None,
) -> AgreementReport:
    """Every agreement table from the store's frames (see the module docstring).

    ``images`` (``store.images_frame()``) gives the per-model metric means over
    all scored images (without it: over the images that appear in votes);
    ``prompts`` (``store.prompts_frame()``) gives tag counts. ``max_pair_slices``
    keeps the model pairs with the most votes. ``rounds`` bootstrap rounds over
    prompts, at coverage ``level``. ``model_metrics`` (``Store.model_metrics_frame()``)
    adds the model-level numbers to ``correlations`` and ``models``.
    """
    if slice_protocol not in PROTOCOLS:
        raise ValueError(f"slice_protocol {slice_protocol!r}: expected one of {tuple(PROTOCOLS)}.")
    if tie_folds < 1:
        raise ValueError(f"tie_folds={tie_folds}: need at least 1 fold.")
    _z(level)
    x = _prepare(votes, scores, images, prompts, tag_bins, lower_is_better)
    fold_rng, boot_rng = rng.spawn(2)
    table = _SumTable(x.n_clusters)
    n_votes, n_metrics, n_models = len(x.outcome), len(x.metrics), len(x.models)

    # (1) accuracy per metric and protocol.
    perm = fold_rng.permutation(x.n_clusters)
    cluster_fold = np.empty(x.n_clusters, dtype=np.int64)
    cluster_fold[perm] = np.arange(x.n_clusters) % tie_folds
    vote_fold = cluster_fold[x.cluster] if n_votes else np.zeros(0, np.int64)
    acc_rows = []  # (metric, protocol, credit slice, count slice, threshold)
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
            acc_rows.append((name, protocol, cs, ns, fitted))
            if protocol == slice_protocol:
                slice_credits[name] = (credit, counted)

    # (2) the human ceiling and Krippendorff's α on pairs with several votes.
    if n_votes:
        keep, unit, value = _pair_votes(x)
        ceil_credit, ceil_counted = ceiling_credit(unit, value)
        ceil_cs = table.add(x.cluster[keep], ceil_credit)
        ceil_ns = table.add(x.cluster[keep], ceil_counted.astype(np.float64))
        o_full, unit_codes, counts, inv = _coincidences(unit, value)
        multi = (counts.sum(axis=1) >= 2)[unit_codes]
        n_values = counts.shape[1]
        unit_cluster = np.zeros(counts.shape[0], dtype=np.int64)
        unit_cluster[unit_codes] = x.cluster[keep]
        # Per-unit coincidence contributions, summed per cluster: one column per (c, k).
        pairable = counts.sum(axis=1) >= 2
        c_units = counts[pairable].astype(np.float64)
        w_units = c_units * inv[pairable, None]
        u_cluster = unit_cluster[pairable]
        alpha_cols = []
        for c in range(n_values):
            for k in range(n_values):
                contrib = w_units[:, c] * (c_units[:, k] - (c == k))
                alpha_cols.append(table.add(u_cluster, contrib).start)
        alpha_units = int(pairable.sum())
        alpha_votes = int(multi.sum())
        alpha_raters = int(np.unique(x.rater[keep][multi]).size)
    else:
        o_full = np.zeros((0, 0))
        n_values = 0

    # (3) slices: category, tag-count bin, model pair.
    pair_lo = np.minimum(x.left_model, x.right_model)
    pair_hi = np.maximum(x.left_model, x.right_model)
    pair_code = pair_lo * max(n_models, 1) + pair_hi
    pair_counts = np.bincount(pair_code, minlength=n_models * n_models)
    top_pairs = [p for p in np.argsort(-pair_counts, kind="stable") if pair_counts[p] > 0]
    top_pairs = sorted(top_pairs[:max_pair_slices])
    pair_index = np.full(n_models * n_models, -1, dtype=np.int64)
    pair_index[top_pairs] = np.arange(len(top_pairs))
    pair_slice = pair_index[pair_code] if n_votes else np.zeros(0, np.int64)
    pair_labels = [f"{x.models[p // n_models]} vs {x.models[p % n_models]}" for p in top_pairs]
    slice_kinds = [
        ("category", x.category, x.categories),
        ("tags", x.tag_bin, x.tag_labels),
        ("model pair", pair_slice, pair_labels),
    ]
    slice_rows = []  # (metric, kind, labels, credit slice, count slice)
    for name, (credit, counted) in slice_credits.items():
        for kind, codes, labels in slice_kinds:
            if not labels:
                continue
            ok = codes >= 0
            cs = table.add(x.cluster[ok], credit[ok], codes[ok], len(labels))
            ns = table.add(x.cluster[ok], counted[ok].astype(np.float64), codes[ok], len(labels))
            slice_rows.append((name, kind, labels, cs, ns))

    # (4) model level: BT of the human and of each metric, per-model metric means.
    nn = n_models * n_models
    deciders = ["human", *x.metrics]
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

    # (5) resample everything at once.
    totals, boot = table.resample(boot_rng, rounds)

    accuracy = _accuracy_table(acc_rows, totals, boot, level)
    if n_votes:
        ceiling = _ratio_row(totals, boot, ceil_cs, ceil_ns, level)
        accuracy = pd.concat(
            [
                accuracy,
                pd.DataFrame(
                    [
                        {
                            "metric": CEILING,
                            "protocol": "ceiling",
                            "description": CEILING_PROTOCOL,
                            **ceiling,
                            "tie_threshold": "",
                        }
                    ]
                ),
            ],
            ignore_index=True,
        )[ACCURACY_COLUMNS]
    slices = _slice_table(slice_rows, totals, boot, level)
    fixed = model_level_values(model_metrics, x.models)
    leaderboards, models_frame, correlations = _model_level(
        x, deciders, bt_cols, bt_votes, mean_cols, totals, boot, level, fixed
    )
    position = position_bias(x.outcome, level)
    if n_votes:
        o_boot = boot[:, alpha_cols].reshape(-1, n_values, n_values)
        alpha_samples = np.array([_alpha_from_coincidences(o) for o in o_boot])
        a_lo, a_hi = _percentiles(alpha_samples[:, None], level)
        reliability = pd.DataFrame(
            [
                {
                    "alpha": _alpha_from_coincidences(o_full),
                    "alpha_low": float(a_lo[0]),
                    "alpha_high": float(a_hi[0]),
                    "units": alpha_units,
                    "votes": alpha_votes,
                    "raters": alpha_raters,
                }
            ],
            columns=RELIABILITY_COLUMNS,
        )
    else:
        reliability = pd.DataFrame(columns=RELIABILITY_COLUMNS)
    info = {
        "votes": n_votes,
        "decisive_votes": int((x.outcome <= RIGHT).sum()),
        "prompts": int(np.unique(x.cluster).size) if n_votes else 0,
        "models": list(x.models),
        "metrics": list(x.metrics),
        "model_metrics": [f.label for f in fixed],
        "model_metric_features": sorted({f.features for f in fixed} - {""}),
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
        slices=slices,
        position_bias=position,
        reliability=reliability,
        info=info,
    )


def _ratio_row(totals, boot, cs: slice, ns: slice, level: float) -> dict:
    num, den = totals[cs][0], totals[ns][0]
    acc = float(_ratio(np.array(num), np.array(den)))
    lo, hi = _percentiles(_ratio(boot[:, cs][:, 0], boot[:, ns][:, 0])[:, None], level)
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
    for name, protocol, cs, ns, fitted in rows:
        row = _ratio_row(totals, boot, cs, ns, level)
        thr = "/".join(f"{t:.6g}" for t in fitted) if protocol == "with_ties" else ""
        out.append(
            {
                "metric": name,
                "protocol": protocol,
                "description": PROTOCOLS[protocol],
                **row,
                "tie_threshold": thr,
            }
        )
    return pd.DataFrame(out, columns=ACCURACY_COLUMNS)


def _slice_table(rows, totals, boot, level) -> pd.DataFrame:
    out = []
    for name, kind, labels, cs, ns in rows:
        num, den = totals[cs], totals[ns]
        acc = _ratio(num, den)
        lo, hi = _percentiles(_ratio(boot[:, cs], boot[:, ns]), level)
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
                }
            )
    return pd.DataFrame(out, columns=SLICE_COLUMNS)


@dataclass
class ModelLevelValues:
    """One model-level metric against one reference, aligned to the report's models."""

    label: str  # "fid", or "fid@<reference>" when there are several reference sets
    metric: str
    reference: str
    value: np.ndarray  # (models,) NaN where the model has no number
    std: np.ndarray
    features: str  # the extractor key(s) it was computed from

    @property
    def oriented(self) -> np.ndarray:
        """Higher is better (negated when the metric is better low)."""
        return self.value if MODEL_LEVEL_HIGHER_IS_BETTER.get(self.metric, False) else -self.value


def model_level_values(
    model_metrics: pd.DataFrame | None, models: Sequence[str]
) -> list[ModelLevelValues]:
    """The stored model-level numbers of ``models`` (reference sets' own rows dropped)."""
    if model_metrics is None or model_metrics.empty:
        return []
    frame = model_metrics[
        (model_metrics["model_kind"] != "reference") & model_metrics["value"].notna()
    ]
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
        out.append(ModelLevelValues(label, str(metric), str(ref), value, std, ",".join(keys)))
    return out


def _fixed_correlation_row(f: ModelLevelValues, h_theta, h_samples, level) -> dict:
    """ρ and τ of a fixed per-model metric with the human ratings; the bootstrap varies
    only the human side."""
    ok = np.isfinite(f.value)
    row = {"metric": f.label, "n_models": int(ok.sum()), "level": "model"}
    for key in ("spearman_bt", "spearman_bt_low", "spearman_bt_high"):
        row[key] = np.nan
    for key, fn in (("spearman", spearman_rows), ("kendall", kendall_rows)):
        if ok.sum() < 3:
            row[key] = row[f"{key}_low"] = row[f"{key}_high"] = np.nan
            continue
        metric = f.oriented[ok]
        row[key] = float(fn(metric[None, :], h_theta[ok][None, :])[0])
        samples = h_samples[:, ok]
        lo, hi = _percentiles(fn(np.broadcast_to(metric, samples.shape), samples)[:, None], level)
        row[f"{key}_low"], row[f"{key}_high"] = float(lo[0]), float(hi[0])
    return row


def _model_level(x: _Inputs, deciders, bt_cols, bt_votes, mean_cols, totals, boot, level, fixed=()):
    n = len(x.models)
    rounds = boot.shape[0]
    board_rows, elo = [], {}
    theta_boot = {}
    for name, cols, votes in zip(deciders, bt_cols, bt_votes, strict=True):
        if n == 0:
            break
        wins = totals[cols].reshape(n, n)
        theta = rt.bt_fit(wins)
        samples = rt.bt_fit_batch(boot[:, cols].reshape(rounds, n, n), initial=theta)
        theta_boot[name] = (theta, samples)
        rating = rt.to_elo(theta)
        lo, hi = _percentiles(rt.to_elo(samples), level)
        elo[name] = (rating, lo, hi)
        order = np.argsort(-rating, kind="stable")
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(1, n + 1)
        for i, model in enumerate(x.models):
            board_rows.append(
                {
                    "decider": name,
                    "model": model,
                    "rank": int(rank[i]),
                    "rating": float(rating[i]),
                    "rating_low": float(lo[i]),
                    "rating_high": float(hi[i]),
                    "votes": int(votes[i]),
                }
            )
    leaderboards = pd.DataFrame(board_rows, columns=LEADERBOARD_COLUMNS)
    if len(leaderboards):
        leaderboards = leaderboards.sort_values(["decider", "rank", "model"], kind="stable")
        leaderboards = leaderboards.reset_index(drop=True)

    model_rows = {"model": list(x.models)}
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
    for m, name in enumerate(x.metrics):
        s, c = mean_cols[m]
        mean = _ratio(totals[s], totals[c])[:n]
        mean_b = _ratio(boot[:, s], boot[:, c])[:, :n]
        m_lo, m_hi = _percentiles(mean_b, level)
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
                continue
            row[key] = float(fn(point[use][None, :], human[use][None, :])[0])
            lo, hi = _percentiles(fn(samples[:, use], human_samples[:, use])[:, None], level)
            row[f"{key}_low"], row[f"{key}_high"] = float(lo[0]), float(hi[0])
        corr_rows.append(row)
    for f in fixed:
        model_rows[f"{f.label}_value"] = f.value
        model_rows[f"{f.label}_std"] = f.std
        if n:
            corr_rows.append(_fixed_correlation_row(f, h_theta, h_samples, level))
    models_frame = pd.DataFrame(model_rows)
    correlations = pd.DataFrame(corr_rows, columns=CORRELATION_COLUMNS)
    return leaderboards, models_frame, correlations


def position_bias(outcome: np.ndarray, level: float = 0.95) -> pd.DataFrame:
    """Left-win rate among decisive votes, exact binomial test against 1/2 and its
    Clopper-Pearson interval (``scipy.stats.binomtest``)."""
    outcome = np.asarray(outcome)
    n = int((outcome <= RIGHT).sum())
    k = int((outcome == LEFT).sum())
    if n == 0:
        return pd.DataFrame(columns=POSITION_COLUMNS)
    test = stats.binomtest(k, n, 0.5)
    ci = test.proportion_ci(confidence_level=level)
    return pd.DataFrame(
        [
            {
                "decisive_votes": n,
                "left_wins": k,
                "left_win_rate": k / n,
                "ci_low": float(ci.low),
                "ci_high": float(ci.high),
                "p_value": float(test.pvalue),
            }
        ],
        columns=POSITION_COLUMNS,
    )
