"""The leaderboard: votes (and scores) from the store -> one finished data frame.

:func:`leaderboard_frame` is a pure function of data frames (the votes table
of ``Store.votes_frame``, optionally per-model metric means); everything
statistical is in :mod:`arena.stats.ratings`. :class:`LeaderboardService` reads the
store's frames under :class:`arena.reports.frames.Filters`
(:func:`arena.reports.frames.load_report_frames`) and caches results
(:class:`arena.reports.service.CachedReports`), so a page load recomputes only when
votes, rater exclusions or scores changed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from arena.reports.frames import (
    Filters,
    ReportFrames,
    load_report_frames,
)
from arena.reports.methods import (
    BoardOptions,
    LeaderboardError,
    flip_table,
    method_notes,
    style_table,
)
from arena.reports.paired import paired_note
from arena.reports.service import CachedReports
from arena.reports.stand_in import stand_in_warning
from arena.stats import ratings as R
from arena.stats.elo import THETA_TO_ELO

#: Columns of the leaderboard frame, in order (metric columns follow).
COLUMNS = (
    "rank",
    "model",
    "rating",
    "ci_lower",
    "ci_upper",
    "elo",
    "votes",
    "win_rate",
    "both_bad_rate",
    "provisional",
    "identified",
)


#: Columns the board adds for a method option (style control, flip counts).
METHOD_COLUMNS = ("uncontrolled", "votes_to_flip")


def metric_names(frame: pd.DataFrame) -> list[str]:
    """The board's metric columns: everything after the fixed and the method columns."""
    return [c for c in frame.columns[len(COLUMNS) :] if c not in METHOD_COLUMNS]


def parse_anchor(text: str | None) -> tuple[str, float] | None:
    """``"MODEL=RATING"`` -> (model, rating)."""
    if not text:
        return None
    name, sep, value = text.rpartition("=")
    try:
        rating = float(value)
    except ValueError:
        rating = None
    if not sep or not name.strip() or rating is None or not np.isfinite(rating):
        raise LeaderboardError(f"anchor {text!r}: expected MODEL=RATING, e.g. sdxl-base=1000.")
    return name.strip(), rating


def current_versions(scores: pd.DataFrame) -> pd.DataFrame:
    """metric, version: per metric, the version with the most scores (with a value) over
    all images; ties go to the last version by name. Every report averages that one."""
    scores = scores.dropna(subset=["value"])
    per_version = scores.groupby(["metric", "version"]).size().reset_index(name="n")
    best = per_version.sort_values(["metric", "n", "version"]).groupby("metric").tail(1)
    return best[["metric", "version"]]


def chosen_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """The scores with a value, of each metric's version of :func:`current_versions`: the
    one version every per-model number uses."""
    scores = scores.dropna(subset=["value"])
    return scores.merge(current_versions(scores), on=["metric", "version"])


def metric_means(scores: pd.DataFrame, images: pd.DataFrame) -> pd.DataFrame:
    """Per-model mean of each automatic metric: models as index, metrics as columns.

    ``scores`` is ``Store.scores_frame()``; ``images`` are the images to average over
    (``ReportFrames.metric_images``: not broken, of the filter's prompts, on the common set
    unless ``paired_metrics`` is off). Where a metric has several versions, the version
    with the most scores (over all images) is used.
    """
    if scores.empty or images.empty:
        return pd.DataFrame()
    scores = chosen_scores(scores)
    merged = scores.merge(images[["image_id", "model"]], on="image_id")
    if merged.empty:
        return pd.DataFrame()
    table = merged.pivot_table(index="model", columns="metric", values="value", aggfunc="mean")
    table.columns.name = None
    return table


#: Model-level numbers published as mean ± std: their std gets a column of its own.
MEAN_STD_METRICS = ("kid", "is")


def model_level_columns(model_metrics: pd.DataFrame) -> pd.DataFrame | None:
    """Model-level numbers (KID, FID, IS, CMMD, FD-DINO, diversity, DIV-LPIPS, AS) as
    columns per model.

    ``model_metrics`` is ``Store.model_metrics_frame()``. Columns are named by metric
    (``kid``, ``fid`` ...), with ``@<reference>`` appended when numbers against several
    reference sets exist; KID and IS, reported as mean ± std, also get ``kid_std`` and
    ``is_std``. Returns None when there are none.
    """
    if model_metrics is None or model_metrics.empty:
        return None
    frame = model_metrics[model_metrics["model_kind"] != "reference"]
    if frame.empty:
        return None
    if "slice" in frame.columns and frame["slice"].nunique() > 1:
        raise ValueError(
            "model-level rows of several slices; pick one with "
            "arena.reports.frames.model_level_rows."
        )
    several = frame.loc[frame["reference"] != "", "reference"].nunique() > 1
    names = [
        f"{metric}@{ref}" if several and ref else metric
        for metric, ref in zip(frame["metric"], frame["reference"], strict=True)
    ]
    frame = frame.assign(column=names)
    table = frame.pivot_table(index="model", columns="column", values="value", aggfunc="first")
    spread = frame[frame["metric"].isin(MEAN_STD_METRICS)]
    if not spread.empty:
        stds = spread.pivot_table(index="model", columns="column", values="std", aggfunc="first")
        table = table.join(stds.add_suffix("_std"))
    table.columns.name = None
    return table[sorted(table.columns)]


def extractor_label(key: str) -> str:
    """``name@version`` of a feature key, with the stand-in tag when there is one."""
    if not key:
        return ""
    name = key.split("#", 1)[0]
    tag = key.split("+", 1)[1] if "+" in key else ""
    return f"`{name}` [{tag}]" if tag else f"`{name}`"


def direction_note(frame: pd.DataFrame) -> str:
    """Which numbers are better low, read from the ``higher_is_better`` stored with them."""
    lower = sorted(set(frame.loc[~frame["higher_is_better"].astype(bool), "metric"]))
    higher = sorted(set(frame.loc[frame["higher_is_better"].astype(bool), "metric"]))
    parts = [f"lower is better for {', '.join(lower)}" if lower else ""]
    parts.append(f"higher is better for {', '.join(higher)}" if higher else "")
    return "; ".join(p for p in parts if p)


def model_level_note(
    model_metrics: pd.DataFrame | None, references: list[str] = (), filters=None
) -> str:
    """One Markdown paragraph on where the model-level numbers come from.

    Names the reference set(s) and the feature extractors (from each row's
    ``details["features"]``), and says plainly when any number was computed with
    stand-in extractors (:func:`arena.reports.stand_in.stand_in_warning`). With no
    numbers and a reference set present, says how to compute them. Numbers over one
    prompt slice (``arena distribution --by``, picked by ``filters``) are named as such
    with each model's image count and their warnings (small slices, image sizes that
    differ from the reference set's).
    """
    frame = None
    if model_metrics is not None and not model_metrics.empty:
        frame = model_metrics[model_metrics["model_kind"] != "reference"]
    if frame is None or frame.empty:
        if not references:
            return ""
        return (
            "Model-level numbers (KID, FID, IS, CMMD, FD-DINO, diversity, AS ...) are not computed "
            f"yet: `arena distribution --reference {references[0]}` (real weights), or in the "
            "offline demo `arena demo --model-metrics` (random-weight stand-ins; needs the ML "
            "extras)."
        )
    keys = sorted({str(d.get("features", "")) for d in frame["details"]} - {""})
    refs = sorted(set(frame["reference"]) - {""})
    metrics = ", ".join(sorted(frame["metric"].unique()))
    slices = sorted(set(frame["slice"]) - {""}) if "slice" in frame.columns else []
    wanted = filters.model_level_slice() if filters is not None else ""
    if slices:
        over = f"over each model's images of {_slice_words(slices[0])}"
        tail = (
            f"They follow the {slices[0].split('=', 1)[0].replace('_', ' ')} filter "
            "(`arena distribution --by`); images per model: "
            + ", ".join(f"{m} {n}" for m, n in _slice_images(frame).items())
            + "."
        )
    else:
        over = "over all images of each model"
        tail = "They ignore the filters." + (
            f" Numbers over {_slice_words(wanted)} alone: `arena distribution --by "
            f"{wanted.split('=', 1)[0].replace('_', '-')}`."
            if wanted
            else ""
        )
    text = (
        f"Model-level columns ({metrics}) are {over}"
        + (f", against the reference set {', '.join(refs)}" if refs else "")
        + (
            f"; features: {', '.join(dict.fromkeys(extractor_label(k) for k in keys))}"
            if keys
            else ""
        )
        + f"; {direction_note(frame)}. {tail}"
    )
    guards = _guard_warnings(frame)
    if guards:
        text += " Warnings: " + "; ".join(guards) + "."
    warning = stand_in_warning(keys)
    return f"**{warning}** {text}" if warning else text


def _slice_images(frame: pd.DataFrame) -> dict[str, int]:
    """model -> its images in the slice (``details["slice_images"]``), by model name."""
    out: dict[str, int] = {}
    for model, details in zip(frame["model"], frame["details"], strict=True):
        if "slice_images" in details:
            out[model] = int(details["slice_images"])
    return dict(sorted(out.items()))


def _slice_words(name: str) -> str:
    """``category=portrait`` -> 'category portrait' (for notes)."""
    kind, _, value = name.partition("=")
    return f"{kind.replace('_', ' ')} {value}"


def _guard_warnings(frame: pd.DataFrame) -> list[str]:
    """The slice and image-size warnings stored with the rows (``details``), each once
    with the models it concerns; the per-metric sample-size warnings stay in the exports."""
    found: dict[str, list[str]] = {}
    for model, details in zip(frame["model"], frame["details"], strict=True):
        for key in ("slice_warning", "size_warning"):
            text = str(details.get(key, "") or "")
            if text and model not in found.setdefault(text, []):
                found[text].append(model)
    return [f"{', '.join(models)}: {text}" for text, models in found.items()]


def metric_columns(frames: ReportFrames) -> pd.DataFrame | None:
    """The board's metric columns: per-model means over the frames' metric images (the
    filter's prompts; the common set unless ``paired_metrics`` is off), then the
    model-level numbers; None when there are neither."""
    images = frames.images if frames.metric_images is None else frames.metric_images
    metrics = metric_means(frames.scores, images) if len(frames.scores) else None
    model_level = model_level_columns(frames.model_metrics)
    if model_level is not None:
        metrics = model_level if metrics is None else metrics.join(model_level, how="outer")
    return metrics


def leaderboard_frame(
    votes: pd.DataFrame,
    rng: np.random.Generator,
    rounds: int = 1000,
    anchor: tuple[str, float] | None = None,
    min_votes: int = 50,
    level: float = 0.95,
    ties: str = "split",
    metrics: pd.DataFrame | None = None,
    workers: int | None = None,
    options: BoardOptions | None = None,
    features: np.ndarray | None = None,
) -> tuple[pd.DataFrame, R.Ratings | None]:
    """The finished leaderboard from a votes table (``Store.votes_frame`` columns).

    Ranked models first (by BT rating), then provisional ones (fewer than
    ``min_votes`` votes: rated, not ranked). ``rank`` is the rank upper bound
    among ranked models. ``metrics`` (models x metrics) adds one column per
    metric. ``options`` (default: plain BT with ``ties``, bootstrap, no flips) chooses
    the model; style control needs ``features`` (:func:`arena.reports.style.vote_features`).
    With style control the board adds ``uncontrolled`` (the plain rating); with flips,
    ``votes_to_flip``: how many removed votes would put the next model above this one.
    Returns the frame and the full :class:`arena.stats.ratings.Ratings`.
    """
    options = options or BoardOptions(ties=ties, flips=False)
    metric_cols = list(metrics.columns) if metrics is not None else []
    extra = (["uncontrolled"] if options.style else []) + (
        ["votes_to_flip"] if options.flips and options.plain_order else []
    )
    if len(votes) == 0:
        return pd.DataFrame(columns=[*COLUMNS, *extra, *metric_cols]), None
    try:
        result = R.compute_ratings(
            votes["left_model"],
            votes["right_model"],
            votes["outcome"],
            rng=rng,
            rounds=rounds,
            ties=options.ties,
            anchor=anchor,
            min_votes=min_votes,
            level=level,
            workers=workers,
            ci=options.ci,
            reweight=options.reweight,
            features=features if options.style else None,
            feature_names=list(options.style) or None,
            flips=options.flips,
        )
    except ValueError as exc:
        raise LeaderboardError(str(exc)) from None
    frame = pd.DataFrame(
        {
            "rank": pd.array(result.rank_ub, dtype="Float64").astype("Int64"),
            "model": result.names,
            "rating": result.rating,
            "ci_lower": result.lower,
            "ci_upper": result.upper,
            "elo": result.elo,
            "votes": result.votes.astype(np.int64),
            "win_rate": result.win_rate,
            "both_bad_rate": result.both_bad_rate,
            "provisional": result.provisional,
            "identified": result.identified,
        }
    )
    if options.style:
        frame["uncontrolled"] = result.style.uncontrolled
    if options.flips and options.plain_order:
        held = pd.array([pd.NA] * len(frame), dtype="Int64")
        for flip in result.flips or []:
            if flip.votes is not None:
                held[flip.upper] = flip.votes
        frame["votes_to_flip"] = held
    if metrics is not None and len(metric_cols):
        frame = frame.join(metrics, on="model")
    frame = frame.sort_values(["provisional", "rating"], ascending=[True, False], kind="stable")
    return frame.reset_index(drop=True), result


@dataclass
class LeaderboardResult:
    frame: pd.DataFrame
    ratings: R.Ratings | None
    filters: Filters
    votes_used: int
    seconds: float
    signature: tuple
    computed_at: datetime = field(default_factory=datetime.now)
    model_level_note: str = ""
    paired_note: str = ""
    options: BoardOptions = field(default_factory=BoardOptions)
    notes: list[str] = field(default_factory=list)

    @property
    def style(self) -> pd.DataFrame:
        return style_table(self.ratings)

    @property
    def flips(self) -> pd.DataFrame:
        return flip_table(self.ratings)


class LeaderboardService(CachedReports):
    """Leaderboards of one store, cached per (data signature, filters, options)."""

    def get(
        self,
        filters: Filters | None = None,
        rounds: int | None = None,
        anchor: tuple[str, float] | None = None,
        seed: int | None = None,
        frames: ReportFrames | None = None,
        options: BoardOptions | None = None,
    ) -> LeaderboardResult:
        """The board, cached; ``frames`` (loaded under ``filters``) spare a caller that
        already has them a second load on a miss."""
        filters = frames.filters if frames is not None else filters or Filters()
        rounds = self.settings.bootstrap_rounds if rounds is None else int(rounds)
        seed = self.settings.seed if seed is None else int(seed)
        options = options or BoardOptions()
        if rounds < 0:
            raise LeaderboardError(f"bootstrap rounds {rounds}: expected 0 or more.")
        key = (filters.key(), rounds, anchor, options.key(), seed, self.settings.min_votes_ranked)
        return self.cached(
            key,
            lambda sig: self._compute(
                filters, rounds, anchor, options, sig, seed=seed, frames=frames
            ),
            signature=frames.signature if frames is not None else None,
        )

    def board_of(self, votes: pd.DataFrame, filters: Filters | None = None) -> LeaderboardResult:
        """The board over these votes (rows of ``Store.votes_frame``), uncached; the
        released snapshot of :mod:`arena.reports.public_view` uses it."""
        rounds = self.settings.bootstrap_rounds
        return self._compute(filters or Filters(), rounds, None, BoardOptions(), (), votes=votes)

    def _compute(
        self, filters, rounds, anchor, options, signature, votes=None, seed=None, frames=None
    ) -> LeaderboardResult:
        from arena.reports.style import image_features, vote_features

        start = time.perf_counter()
        if frames is None:
            frames = load_report_frames(self.store, filters, votes)
        features = None
        if options.style and len(frames.votes):
            features = vote_features(frames.votes, image_features(frames, options.style))
        frame, ratings = leaderboard_frame(
            frames.votes,
            np.random.default_rng(self.settings.seed if seed is None else seed),
            rounds=rounds,
            anchor=anchor,
            min_votes=self.settings.min_votes_ranked,
            metrics=metric_columns(frames),
            options=options,
            features=features,
        )
        self.computations += 1
        return LeaderboardResult(
            frame=frame,
            ratings=ratings,
            filters=filters,
            votes_used=len(frames.votes),
            seconds=time.perf_counter() - start,
            signature=signature,
            model_level_note=model_level_note(
                frames.model_metrics, frames.references, frames.filters
            ),
            paired_note=paired_note(frames),
            options=options,
            notes=method_notes(ratings, options, rounds),
        )


def separation(ratings: R.Ratings, a: str, b: str) -> dict:
    """How far apart two models are, and how many more direct votes would separate them.

    Returns the rating difference (Elo points, a - b) with its bootstrap interval at
    ``ratings.level`` and ``more_votes``: further votes on this pair until the 95%
    interval of the difference excludes 0, if the current difference holds
    (``arena.stats.active.votes_to_separate``; 0 when already separated, inf for a dead heat).
    """
    from arena.stats.active import votes_to_separate

    for name in (a, b):
        if name not in ratings.names:
            raise LeaderboardError(
                f"model {name!r} has no votes under these filters; pick one of "
                f"{', '.join(ratings.names)}."
            )
    if a == b:
        raise LeaderboardError("pick two different models to compare.")
    i, j = ratings.names.index(a), ratings.names.index(b)
    difference = float(ratings.rating[i] - ratings.rating[j])
    lower = upper = float("nan")
    if ratings.covariance is not None and np.isfinite(ratings.covariance[i, j]):
        from arena.stats.contextual import linear_interval

        cov = ratings.covariance
        variance = cov[i, i] + cov[j, j] - 2 * cov[i, j]
        low, high = linear_interval(np.array([difference]), np.array([[variance]]), ratings.level)
        lower, upper = float(low[0]), float(high[0])
    elif len(ratings.samples):
        diffs = (ratings.samples[:, i] - ratings.samples[:, j]) * THETA_TO_ELO
        tail = (1 - ratings.level) / 2 * 100
        lower, upper = (float(x) for x in np.percentile(diffs, [tail, 100 - tail]))
    # the board's own fit (style-controlled, reweighted or Davidson) where it rates a model
    fitted = (ratings.rating - 1000.0) / THETA_TO_ELO
    theta = np.where(np.isfinite(fitted), fitted, ratings.theta)
    more = votes_to_separate(ratings.counts.battles.astype(float), theta, i, j)
    return {
        "difference": difference,
        "lower": lower,
        "upper": upper,
        "votes_between": int(ratings.counts.battles[i, j]),
        "more_votes": more,
    }
