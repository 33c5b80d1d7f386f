"""The one step every report starts with: the store's frames under a filter.

The leaderboard, the agreement page and the exports all read the same things
(counted votes, prompts, images, scores, model-level metrics) and apply the same
filters (:class:`Filters`: category, prompt set, prompt tag and held-out sets restrict
prompts, rater kind, rater group and dates restrict votes; with no kind asked for, judges'
votes are left out).
:func:`load_report_frames` does it once, through the store's verbs, so every report
counts the same votes and averages over the same images.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd

from arena.stats.common_set import CommonSet, common_set
from arena.stats.prompt_tags import has_tag, known_tags, tag_counts
from arena.storage.vocabulary import DEFAULT_RATER_KINDS, RATER_KINDS

#: What the held-out filter can keep: only the held-out sets' prompts, or all but them.
HELD_OUT_CHOICES = ("only", "exclude")


class ReportError(ValueError):
    """A filter or option a report cannot use; the message says how to fix it."""


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
        raise ReportError(
            f"date {value!r}: expected an ISO date such as 2025-01-31 or 2025-01-31T12:00."
        ) from None
    if end and len(str(value).strip()) <= 10:  # a bare date: the whole day
        parsed += timedelta(days=1) - timedelta(microseconds=1)
    return parsed.replace(tzinfo=None)


@dataclass(frozen=True)
class Filters:
    """Which votes count. Dates are UTC, ``until`` inclusive (a bare date = whole day).

    ``rater_kind`` None counts the kinds of ``DEFAULT_RATER_KINDS`` (humans and
    simulated raters): a judge's votes count only where ``rater_kind="judge"`` asks for
    them. ``rater_group`` keeps the raters of that group (``expert``, ``crowd``, ...).
    ``held_out`` "only" keeps the prompts of held-out prompt sets, "exclude" the others
    (``arena prompt-sets --held-out SET``); None both. ``tag`` keeps the prompts that
    carry that tag among their comma-separated tags (a benchmark's challenge label or
    skill, as ``arena import-prompts`` stores them; exact, case-sensitive).
    """

    category: str | None = None
    prompt_set: str | None = None
    rater_kind: str | None = None
    since: datetime | date | str | None = None
    until: datetime | date | str | None = None
    rater_group: str | None = None
    held_out: str | None = None
    tag: str | None = None

    def __post_init__(self):
        if self.tag is not None:  # " x" and "x" are one tag (stored tags are trimmed)
            object.__setattr__(self, "tag", str(self.tag).strip() or None)
        if self.rater_kind not in (None, "", *RATER_KINDS):
            raise ReportError(
                f"rater kind {self.rater_kind!r}: expected one of {', '.join(RATER_KINDS)}."
            )
        if self.held_out not in (None, "", *HELD_OUT_CHOICES):
            raise ReportError(
                f"held-out filter {self.held_out!r}: expected one of "
                f"{', '.join(HELD_OUT_CHOICES)} (or none)."
            )
        start, stop = _as_datetime(self.since, False), _as_datetime(self.until, True)
        if start and stop and start > stop:
            raise ReportError(f"date range is empty: since {start} is after until {stop}.")

    def key(self) -> tuple:
        return (
            self.category or None,
            self.prompt_set or None,
            self.rater_kind or None,
            _as_datetime(self.since, False),
            _as_datetime(self.until, True),
            self.rater_group or None,
            self.held_out or None,
            self.tag or None,
        )

    def prompt_key(self) -> tuple:
        """The part of :meth:`key` that restricts prompts (category, prompt set, held-out
        choice, tag): what a report over images rather than votes depends on."""
        return (self.category or None, self.prompt_set or None, self.held_out or None,
                self.tag or None)  # fmt: skip

    def apply(self, votes: pd.DataFrame, prompts: pd.DataFrame | None = None) -> pd.DataFrame:
        """The votes that pass every filter (a view of ``votes``' rows, order kept).

        ``prompts`` (``Store.prompts_frame()``) is read by the held-out and tag filters;
        without it they raise :class:`ReportError`.
        """
        category, prompt_set, rater_kind, start, stop, rater_group, held_out, tag = self.key()
        keep = np.ones(len(votes), dtype=bool)
        if category is not None:
            keep &= (votes["category"] == category).to_numpy()
        if prompt_set is not None:
            keep &= (votes["prompt_set"] == prompt_set).to_numpy()
        if held_out is not None or tag is not None:
            if prompts is None:
                raise ReportError("the held-out and tag filters need the prompts frame.")
            ids = replace(self, category=None, prompt_set=None).prompt_ids(prompts)
            keep &= votes["prompt_id"].isin(list(ids)).to_numpy()
        if rater_kind is not None:
            keep &= (votes["rater_kind"] == rater_kind).to_numpy()
        elif "rater_kind" in votes:  # no kind asked for: no judges
            keep &= votes["rater_kind"].isin(DEFAULT_RATER_KINDS).to_numpy()
        if rater_group is not None:
            groups = (
                votes["rater_group"] if "rater_group" in votes else pd.Series(index=votes.index)
            )
            keep &= (groups == rater_group).fillna(False).to_numpy(dtype=bool)
        if start is not None or stop is not None:
            created = pd.to_datetime(votes["created_at"])
            if start is not None:
                keep &= (created >= start).to_numpy()
            if stop is not None:
                keep &= (created <= stop).to_numpy()
        return votes if keep.all() else votes[keep]

    def for_judges(self) -> tuple[Filters, Filters]:
        """(the people a judge is read against, the judges) under this filter.

        Category, prompt set and dates apply to both. Asked for people (no kind, a human
        kind, a group), the judges are every judge; asked for the judges (``rater_kind``
        judge, with or without a group), the people are every human and simulated rater:
        a judge is always read against people, never against another judge.
        """
        if self.rater_kind == "judge":
            return replace(self, rater_kind=None, rater_group=None), self
        return self, replace(self, rater_kind="judge", rater_group=None)

    def prompt_ids(self, prompts: pd.DataFrame) -> set[int] | None:
        """The prompts (of ``Store.prompts_frame()``, whose ``held_out`` column the
        held-out filter reads) in the category, prompt set, held-out choice and tag; None
        when none is set (every prompt)."""
        if not any(self.prompt_key()):
            return None
        keep = np.ones(len(prompts), dtype=bool)
        if self.category:
            keep &= (prompts["category"] == self.category).to_numpy()
        if self.prompt_set:
            keep &= (prompts["prompt_set"] == self.prompt_set).to_numpy()
        if self.held_out:
            held = prompts["held_out"].astype(bool).to_numpy()
            keep &= held if self.held_out == "only" else ~held
        if self.tag:
            keep &= has_tag(prompts["tags"], self.tag)
        return set(prompts.loc[keep, "prompt_id"].tolist())

    def model_level_slice(self) -> str:
        """The ``model_metrics`` slice the filter's prompts are (``category=<name>`` or
        ``prompt_set=<name>``, as ``arena distribution --by`` stores them); "" when the
        filter restricts no prompts or no single slice matches it (held-out, a tag, or
        category and prompt set together)."""
        if self.held_out or self.tag or (self.category and self.prompt_set):
            return ""
        if self.category:
            return f"category={self.category}"
        if self.prompt_set:
            return f"prompt_set={self.prompt_set}"
        return ""

    def prompt_parts(self) -> list[str]:
        """The prompt filters in words (what a report over images, not votes, follows)."""
        category, prompt_set, held_out, tag = self.prompt_key()
        parts = [
            f"category {category}" if category else "",
            f"prompt set {prompt_set}" if prompt_set else "",
            f"prompt tag {tag}" if tag else "",
            {"only": "held-out prompt sets only", "exclude": "held-out prompt sets left out"}.get(
                held_out or "", ""
            ),
        ]
        return [p for p in parts if p]

    def describe(self) -> str:
        _c, _p, rater_kind, start, stop, rater_group, _h, _t = self.key()
        parts = [
            *self.prompt_parts(),
            f"{rater_kind} raters" if rater_kind else "",
            f"rater group {rater_group}" if rater_group else "",
            f"since {start:%Y-%m-%d %H:%M}" if start else "",
            f"until {stop:%Y-%m-%d %H:%M}" if stop else "",
        ]
        return ", ".join(p for p in parts if p) or "all votes"


#: The tag dropdown lists this many tags at most (those the most prompts carry); any
#: other tag can still be typed (a workspace of booru-tagged prompts has thousands).
MAX_TAG_CHOICES = 300


def filter_options(store) -> dict[str, list[str]]:
    """Values the filters can take (categories, prompt sets, prompt tags) from the
    prompts table, and the rater groups the raters are in. ``tag``: every tag (what the
    CLI checks against); ``tag_choices``: the dropdown's :data:`MAX_TAG_CHOICES`."""
    prompts = store.prompts_frame()
    groups = store.raters_frame()["rater_group"].dropna().unique()
    tags = tag_counts(prompts["tags"])
    return {
        "category": sorted(c for c in prompts["category"].dropna().unique() if c),
        "prompt_set": sorted(prompts["prompt_set"].dropna().unique()),
        "tag": known_tags(tags),
        "tag_choices": known_tags(tags, MAX_TAG_CHOICES),
        "rater_kind": list(RATER_KINDS),
        "rater_group": sorted(str(g) for g in groups if g),
    }


@dataclass(frozen=True)
class ReportFrames:
    """What a report is computed from, under one :class:`Filters`.

    ``votes``: the counted votes (``Store.votes_frame``) that pass the filters.
    ``prompts``: every prompt. ``images``: the images that are not broken, of the
    filter's prompts. ``scores``: every score as stored (a metric's version is chosen
    over all its scores); :attr:`image_scores` keeps those of ``images``.
    ``images_all``: every image, broken ones included (the exported scores table).
    ``model_metrics``: the model-level numbers that go with the filter, one per model,
    metric and reference set: those over the filter's category or prompt set where
    ``arena distribution --by`` computed them (:meth:`Filters.model_level_slice`), else
    those over all each model's images (their ``slice`` column says which).
    ``model_metrics_all``: every stored model-level row, per-slice ones included (the
    export's table). ``references``: names of the reference image sets. ``signature``:
    the store's data signature read just before loading (what a cached report of these
    frames is keyed on).
    ``every_vote``: the counted votes before the filters (None: ``votes`` is all there
    is); :attr:`reference_votes` and :attr:`judge_votes` are read from it.
    ``model_metrics``: the model-level numbers (not filtered: one per model).
    ``references``: names of the reference image sets. ``signature``: the store's data
    signature read just before loading (what a cached report of these frames is keyed on).
    ``common``: the common set of the filter's images (:mod:`arena.stats.common_set`: the
    (prompt, seed) cells where every model has a non-broken image); ``paired`` (the
    setting ``paired_metrics``): whether the per-model metric means are over it.
    ``metric_images``: the images those means average over (the common set's, or with
    ``paired`` off every image of ``images``).
    """

    filters: Filters
    votes: pd.DataFrame
    prompts: pd.DataFrame
    images: pd.DataFrame
    images_all: pd.DataFrame
    scores: pd.DataFrame
    model_metrics: pd.DataFrame
    references: list[str]
    signature: tuple = ()
    model_metrics_all: pd.DataFrame | None = None
    every_vote: pd.DataFrame | None = None
    common: CommonSet | None = None
    paired: bool = False
    metric_images: pd.DataFrame | None = None

    @property
    def image_scores(self) -> pd.DataFrame:
        return self.scores[self.scores["image_id"].isin(self.images["image_id"])]

    @property
    def reference_votes(self) -> pd.DataFrame:
        """The people's votes a judge is read against (:meth:`Filters.for_judges`): the
        filter's own votes unless it asks for the judges."""
        if self.filters.rater_kind != "judge" or self.every_vote is None:
            return self.votes
        return self.filters.for_judges()[0].apply(self.every_vote, self.prompts)

    @property
    def judge_votes(self) -> pd.DataFrame:
        """The judges' votes under the filter's prompts and dates (:meth:`Filters.for_judges`)."""
        if self.filters.rater_kind == "judge" or self.every_vote is None:
            return self.votes if self.filters.rater_kind == "judge" else self.votes.iloc[:0]
        return self.filters.for_judges()[1].apply(self.every_vote, self.prompts)

    def paired_on(self, models=None) -> tuple[CommonSet, pd.DataFrame]:
        """(common set, metric images) of the filter's images over ``models`` (default:
        every model with a non-broken image): what :func:`load_report_frames` puts in
        ``common`` and ``metric_images``; a report on a few models (a candidate and its
        baseline) pairs them on their own cells. With ``paired`` off the metric images are
        every non-broken image of those models."""
        prompt_ids = self.filters.prompt_ids(self.prompts)
        pool = self.images_all
        if prompt_ids is not None:
            pool = pool[pool["prompt_id"].isin(prompt_ids)]
        common = common_set(pool, models)
        chosen = self.images
        if models is not None:
            chosen = chosen[chosen["model"].isin(common.models)]
        if self.paired:
            chosen = chosen[chosen["image_id"].isin(pool["image_id"].to_numpy()[common.keep])]
        return common, chosen.reset_index(drop=True)


def load_report_frames(
    store,
    filters: Filters | None = None,
    votes: pd.DataFrame | None = None,
    paired: bool | None = None,
) -> ReportFrames:
    """The frames of :class:`ReportFrames` from ``store`` under ``filters``.

    ``votes`` replaces ``store.votes_frame()`` (the released snapshot of
    :mod:`arena.reports.public_view`); the filters still apply to it. ``paired`` (default:
    the setting ``paired_metrics``) puts the metric means on the common set.
    """
    filters = filters or Filters()
    signature = store.data_signature()
    prompts = store.prompts_frame()
    every_vote = store.votes_frame() if votes is None else votes
    counted = filters.apply(every_vote, prompts)
    images_all = store.images_frame(include_broken=True)
    images = images_all[images_all["broken"].isna()]
    prompt_ids = filters.prompt_ids(prompts)
    if prompt_ids is not None:
        images = images[images["prompt_id"].isin(prompt_ids)]
    references = sorted(set(store.model_names(include_reference=True)) - set(store.model_names()))
    model_metrics = store.model_metrics_frame()
    frames = ReportFrames(
        filters=filters,
        votes=counted,
        prompts=prompts,
        images=images.reset_index(drop=True),
        images_all=images_all,
        scores=store.scores_frame(),
        model_metrics=model_level_rows(model_metrics, filters.model_level_slice()),
        references=references,
        signature=signature,
        model_metrics_all=model_metrics,
        every_vote=every_vote,
        paired=bool(store.settings.paired_metrics) if paired is None else bool(paired),
    )
    common, metric_images = frames.paired_on()
    return replace(frames, common=common, metric_images=metric_images)


def model_level_rows(model_metrics: pd.DataFrame, slice_name: str = "") -> pd.DataFrame:
    """The rows of ``Store.model_metrics_frame()`` over ``slice_name`` when any was
    computed (``arena distribution --by``), else the whole-model rows ("" slice)."""
    if "slice" not in model_metrics.columns:
        return model_metrics
    sliced = model_metrics[model_metrics["slice"] == slice_name] if slice_name else None
    if sliced is not None and len(sliced):
        return sliced.reset_index(drop=True)
    return model_metrics[model_metrics["slice"] == ""].reset_index(drop=True)
