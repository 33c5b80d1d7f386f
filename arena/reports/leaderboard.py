"""The leaderboard: votes (and scores) from the store -> one finished data frame.

:func:`leaderboard_frame` is a pure function of data frames (the votes table
of ``Store.votes_frame``, optionally per-model metric means); everything
statistical is in :mod:`arena.stats.ratings`. :class:`LeaderboardService` reads the
store, applies :class:`Filters`, and caches results keyed on a cheap
signature of the database (vote count and newest vote id, excluded raters,
score count and newest score id), so a page load recomputes only when votes,
rater exclusions or scores changed.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
from sqlalchemy import func, select

from arena.stats import ratings as R
from arena.stats.elo import THETA_TO_ELO
from arena.storage import db

RATER_KINDS = ("human", "simulated")

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
)


class LeaderboardError(ValueError):
    """A filter or option the leaderboard cannot use; the message says how to fix it."""


def _as_datetime(value, end: bool) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        day = datetime(value.year, value.month, value.day)
        return day + timedelta(days=1) - timedelta(microseconds=1) if end else day
    try:
        parsed = datetime.fromisoformat(str(value).strip())
    except ValueError:
        raise LeaderboardError(
            f"date {value!r}: expected an ISO date such as 2025-01-31 or 2025-01-31T12:00."
        ) from None
    if end and len(str(value).strip()) <= 10:  # a bare date: the whole day
        parsed += timedelta(days=1) - timedelta(microseconds=1)
    return parsed.replace(tzinfo=None)


@dataclass(frozen=True)
class Filters:
    """Which votes count. Dates are UTC, ``until`` inclusive (a bare date = whole day)."""

    category: str | None = None
    prompt_set: str | None = None
    rater_kind: str | None = None
    since: datetime | date | str | None = None
    until: datetime | date | str | None = None

    def __post_init__(self):
        if self.rater_kind not in (None, "", *RATER_KINDS):
            raise LeaderboardError(
                f"rater kind {self.rater_kind!r}: expected one of {', '.join(RATER_KINDS)}."
            )
        start, stop = _as_datetime(self.since, False), _as_datetime(self.until, True)
        if start and stop and start > stop:
            raise LeaderboardError(f"date range is empty: since {start} is after until {stop}.")

    def key(self) -> tuple:
        return (
            self.category or None,
            self.prompt_set or None,
            self.rater_kind or None,
            _as_datetime(self.since, False),
            _as_datetime(self.until, True),
        )

    def apply(self, votes: pd.DataFrame) -> pd.DataFrame:
        """The votes that pass every filter (a view of ``votes``' rows, order kept)."""
        category, prompt_set, rater_kind, start, stop = self.key()
        keep = np.ones(len(votes), dtype=bool)
        if category is not None:
            keep &= (votes["category"] == category).to_numpy()
        if prompt_set is not None:
            keep &= (votes["prompt_set"] == prompt_set).to_numpy()
        if rater_kind is not None:
            keep &= (votes["rater_kind"] == rater_kind).to_numpy()
        if start is not None or stop is not None:
            created = pd.to_datetime(votes["created_at"])
            if start is not None:
                keep &= (created >= start).to_numpy()
            if stop is not None:
                keep &= (created <= stop).to_numpy()
        return votes if keep.all() else votes[keep]

    def describe(self) -> str:
        category, prompt_set, rater_kind, start, stop = self.key()
        parts = [
            f"category {category}" if category else "",
            f"prompt set {prompt_set}" if prompt_set else "",
            f"{rater_kind} raters" if rater_kind else "",
            f"since {start:%Y-%m-%d %H:%M}" if start else "",
            f"until {stop:%Y-%m-%d %H:%M}" if stop else "",
        ]
        return ", ".join(p for p in parts if p) or "all votes"


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


def metric_means(
    scores: pd.DataFrame,
    images: pd.DataFrame,
    prompt_ids: set[int] | None = None,
) -> pd.DataFrame:
    """Per-model mean of each automatic metric: models as index, metrics as columns.

    ``scores`` is ``Store.scores_frame()``, ``images`` is ``Store.images_frame()``
    (broken images are already left out there). Where a metric has several
    versions, the version with the most scores is used. ``prompt_ids``
    restricts the images to those prompts (the prompt filters of the board).
    """
    if scores.empty or images.empty:
        return pd.DataFrame()
    scores = scores.dropna(subset=["value"])
    per_version = scores.groupby(["metric", "version"]).size().reset_index(name="n")
    best = per_version.sort_values(["metric", "n", "version"]).groupby("metric").tail(1)
    scores = scores.merge(best[["metric", "version"]], on=["metric", "version"])
    merged = scores.merge(images[["image_id", "model", "prompt_id"]], on="image_id")
    if prompt_ids is not None:
        merged = merged[merged["prompt_id"].isin(prompt_ids)]
    if merged.empty:
        return pd.DataFrame()
    table = merged.pivot_table(index="model", columns="metric", values="value", aggfunc="mean")
    table.columns.name = None
    return table


def model_level_columns(model_metrics: pd.DataFrame) -> pd.DataFrame | None:
    """Model-level numbers (KID, FID, CMMD, FD-DINO, diversity, AS) as columns per model.

    ``model_metrics`` is ``Store.model_metrics_frame()``. Columns are named by metric
    (``kid``, ``fid`` ...), with ``@<reference>`` appended when numbers against several
    reference sets exist; KID also gets ``kid_std``. Returns None when there are none.
    """
    if model_metrics is None or model_metrics.empty:
        return None
    frame = model_metrics[model_metrics["model_kind"] != "reference"]
    if frame.empty:
        return None
    several = frame.loc[frame["reference"] != "", "reference"].nunique() > 1
    names = [
        f"{metric}@{ref}" if several and ref else metric
        for metric, ref in zip(frame["metric"], frame["reference"], strict=True)
    ]
    frame = frame.assign(column=names)
    table = frame.pivot_table(index="model", columns="column", values="value", aggfunc="first")
    kid = frame[frame["metric"] == "kid"]
    if not kid.empty:
        stds = kid.pivot_table(index="model", columns="column", values="std", aggfunc="first")
        table = table.join(stds.add_suffix("_std"))
    table.columns.name = None
    return table[sorted(table.columns)]


#: Tag of feature extractors with stand-in (random) weights, as the offline demo uses.
STAND_IN_TAG = "demo-random"


def extractor_label(key: str) -> str:
    """``name@version`` of a feature key, with the stand-in tag when there is one."""
    if not key:
        return ""
    name = key.split("#", 1)[0]
    tag = key.split("+", 1)[1] if "+" in key else ""
    return f"`{name}` [{tag}]" if tag else f"`{name}`"


def model_level_note(model_metrics: pd.DataFrame | None, references: list[str] = ()) -> str:
    """One Markdown paragraph on where the model-level numbers come from.

    Names the reference set(s) and the feature extractors (from each row's
    ``details["features"]``), and says plainly when any number was computed with
    stand-in extractors (tag :data:`STAND_IN_TAG`): such numbers rank the demo models
    but are not FID/KID values of the real networks. With no numbers and a reference
    set present, says how to compute them.
    """
    frame = None
    if model_metrics is not None and not model_metrics.empty:
        frame = model_metrics[model_metrics["model_kind"] != "reference"]
    if frame is None or frame.empty:
        if not references:
            return ""
        return (
            "Model-level numbers (KID, FID, CMMD, FD-DINO, diversity, AS) are not computed "
            f"yet: `arena distribution --reference {references[0]}` (real weights), or in the "
            "offline demo `arena demo --model-metrics` (random-weight stand-ins; needs the ML "
            "extras)."
        )
    keys = sorted({str(d.get("features", "")) for d in frame["details"]} - {""})
    refs = sorted(set(frame["reference"]) - {""})
    metrics = ", ".join(sorted(frame["metric"].unique()))
    text = (
        f"Model-level columns ({metrics}) are over all images of each model"
        + (f", against the reference set {', '.join(refs)}" if refs else "")
        + (
            f"; features: {', '.join(dict.fromkeys(extractor_label(k) for k in keys))}"
            if keys
            else ""
        )
        + "; lower is better except diversity. They ignore the filters."
    )
    if any(k.endswith(f"+{STAND_IN_TAG}") for k in keys):
        text = (
            f"**⚠ Demo numbers: computed with random-weight stand-in extractors "
            f"({STAND_IN_TAG}), not the real Inception/CLIP/DINOv2 weights — they rank the "
            f"demo models but are not comparable with any published FID/KID.** {text}"
        )
    return text


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
) -> tuple[pd.DataFrame, R.Ratings | None]:
    """The finished leaderboard from a votes table (``Store.votes_frame`` columns).

    Ranked models first (by BT rating), then provisional ones (fewer than
    ``min_votes`` votes: rated, not ranked). ``rank`` is the rank upper bound
    among ranked models. ``metrics`` (models x metrics) adds one column per
    metric. Returns the frame and the full :class:`arena.stats.ratings.Ratings`.
    """
    metric_cols = list(metrics.columns) if metrics is not None else []
    if len(votes) == 0:
        return pd.DataFrame(columns=[*COLUMNS, *metric_cols]), None
    try:
        result = R.compute_ratings(
            votes["left_model"],
            votes["right_model"],
            votes["outcome"],
            rng=rng,
            rounds=rounds,
            ties=ties,
            anchor=anchor,
            min_votes=min_votes,
            level=level,
            workers=workers,
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
        }
    )
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


class LeaderboardService:
    """Leaderboards of one store, cached per (database signature, filters, options)."""

    def __init__(self, store, max_entries: int = 32):
        self.store = store
        self.settings = store.settings
        self.max_entries = max_entries
        self._cache: OrderedDict[tuple, LeaderboardResult] = OrderedDict()
        self._lock = threading.Lock()
        self.computations = 0  # how many times a board was actually computed

    def signature(self) -> tuple:
        """Changes whenever votes, rater exclusions or scores change."""
        v, r, sc = db.Vote.__table__, db.Rater.__table__, db.Score.__table__
        with self.store.engine.connect() as conn:
            votes = conn.execute(select(func.count(v.c.id), func.max(v.c.id))).one()
            excluded = conn.execute(
                select(func.count(r.c.id), func.coalesce(func.sum(r.c.id), 0)).where(
                    r.c.excluded.is_(True)
                )
            ).one()
            scores = conn.execute(select(func.count(sc.c.id), func.max(sc.c.id))).one()
            mm = db.ModelMetric.__table__
            model_level = conn.execute(
                select(func.count(mm.c.id), func.max(mm.c.computed_at))
            ).one()
        return (tuple(votes), tuple(excluded), tuple(scores), tuple(model_level))

    def options(self) -> dict[str, list[str]]:
        """Values the filters can take (categories, prompt sets) from the prompts table."""
        prompts = self.store.prompts_frame()
        return {
            "category": sorted(c for c in prompts["category"].dropna().unique() if c),
            "prompt_set": sorted(prompts["prompt_set"].dropna().unique()),
            "rater_kind": list(RATER_KINDS),
        }

    def get(
        self,
        filters: Filters | None = None,
        rounds: int | None = None,
        anchor: tuple[str, float] | None = None,
        ties: str = "split",
    ) -> LeaderboardResult:
        filters = filters or Filters()
        rounds = self.settings.bootstrap_rounds if rounds is None else int(rounds)
        if rounds < 0:
            raise LeaderboardError(f"bootstrap rounds {rounds}: expected 0 or more.")
        signature = self.signature()
        key = (signature, filters.key(), rounds, anchor, ties, self.settings.min_votes_ranked)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            result = self._compute(filters, rounds, anchor, ties, signature)
            self._cache[key] = result
            while len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)
            return result

    def board_of(self, votes: pd.DataFrame, filters: Filters | None = None) -> LeaderboardResult:
        """The board over these votes (rows of ``Store.votes_frame``), uncached; the
        released snapshot of :mod:`arena.reports.public_view` uses it."""
        rounds = self.settings.bootstrap_rounds
        return self._compute(filters or Filters(), rounds, None, "split", (), votes=votes)

    def _compute(self, filters, rounds, anchor, ties, signature, votes=None) -> LeaderboardResult:
        start = time.perf_counter()
        votes = filters.apply(self.store.votes_frame() if votes is None else votes)
        metrics = None
        scores = self.store.scores_frame()
        if not scores.empty:
            prompt_ids = None
            if filters.category or filters.prompt_set:
                prompts = self.store.prompts_frame()
                keep = np.ones(len(prompts), dtype=bool)
                if filters.category:
                    keep &= (prompts["category"] == filters.category).to_numpy()
                if filters.prompt_set:
                    keep &= (prompts["prompt_set"] == filters.prompt_set).to_numpy()
                prompt_ids = set(prompts.loc[keep, "prompt_id"].tolist())
            metrics = metric_means(scores, self.store.images_frame(), prompt_ids)
        model_metrics = self.store.model_metrics_frame()
        model_level = model_level_columns(model_metrics)
        references = sorted(
            set(self.store.model_names(include_reference=True)) - set(self.store.model_names())
        )
        if model_level is not None:
            metrics = model_level if metrics is None else metrics.join(model_level, how="outer")
        frame, ratings = leaderboard_frame(
            votes,
            np.random.default_rng(self.settings.seed),
            rounds=rounds,
            anchor=anchor,
            min_votes=self.settings.min_votes_ranked,
            ties=ties,
            metrics=metrics,
        )
        self.computations += 1
        return LeaderboardResult(
            frame=frame,
            ratings=ratings,
            filters=filters,
            votes_used=len(votes),
            seconds=time.perf_counter() - start,
            signature=signature,
            model_level_note=model_level_note(model_metrics, references),
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
    if len(ratings.samples):
        diffs = (ratings.samples[:, i] - ratings.samples[:, j]) * THETA_TO_ELO
        tail = (1 - ratings.level) / 2 * 100
        lower, upper = (float(x) for x in np.percentile(diffs, [tail, 100 - tail]))
    more = votes_to_separate(ratings.counts.battles.astype(float), ratings.theta, i, j)
    return {
        "difference": difference,
        "lower": lower,
        "upper": upper,
        "votes_between": int(ratings.counts.battles[i, j]),
        "more_votes": more,
    }
