"""The agreement report of one store: which automatic metric agrees with the raters.

Numbers come from :func:`arena.stats.agreement.agreement_report` (pure), computed over
the same frames and filters as the leaderboard
(:func:`arena.reports.frames.load_report_frames`) and cached until votes, rater
exclusions or scores change (:class:`arena.reports.service.CachedReports`). The
Agreement tab reads it from here; no torch anywhere on this path. The comparison of the
rater groups (:func:`arena.stats.agreement.groups.group_comparison`) is cached beside it
(:meth:`AgreementService.groups`): the Admin app's Agreement tab and the exports show it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from arena.reports.frames import Filters, ReportFrames, load_report_frames
from arena.reports.service import CachedReports
from arena.stats.agreement import AgreementReport, agreement_report
from arena.stats.agreement.groups import GroupComparison, group_comparison
from arena.stats.agreement.judge_report import judge_report


def report_of(
    frames: ReportFrames,
    rng: np.random.Generator,
    rounds: int,
    slice_protocol: str = "ties_half",
    judges: pd.DataFrame | None = None,
) -> AgreementReport:
    """The agreement report over these frames: the filter's votes, the scores of the
    filter's images (metric means over the same images as the leaderboard's: the common
    set unless ``paired_metrics`` is off; the votes' deltas use every voted image), and each
    judge's tables: its votes read against the people's (``ReportFrames.judge_votes``,
    ``reference_votes``), named by ``judges`` (``Store.judges_frame()``)."""
    report = agreement_report(
        frames.votes,
        frames.image_scores,
        rng,
        images=frames.images if frames.metric_images is None else frames.metric_images,
        prompts=frames.prompts,
        rounds=rounds,
        slice_protocol=slice_protocol,
        model_metrics=frames.model_metrics,
    )
    judge_votes = frames.judge_votes
    if len(judge_votes):
        # A child drawn after agreement_report's own: the human numbers stay as they were.
        report.judges = judge_report(
            frames.reference_votes,
            judge_votes,
            rng.spawn(1)[0],
            judges,
            rounds,
            prompts=frames.prompts,
        )
    return report


@dataclass
class AgreementResult:
    report: AgreementReport
    filters: Filters
    votes_used: int
    seconds: float


@dataclass
class GroupResult:
    comparison: GroupComparison
    filters: Filters
    votes_used: int
    seconds: float


class AgreementService(CachedReports):
    """Agreement reports of one store, cached per (data signature, filters, protocol)."""

    def __init__(self, store, max_entries: int = 16):
        super().__init__(store, max_entries)
        self.group_computations = 0  # group comparisons computed (``computations``: reports)

    def get(
        self,
        filters: Filters | None = None,
        slice_protocol: str = "ties_half",
        rounds: int | None = None,
        seed: int | None = None,
        frames: ReportFrames | None = None,
    ) -> AgreementResult:
        """The report, cached; ``frames`` (loaded under ``filters``) spare a caller that
        already has them a second load on a miss."""
        filters = frames.filters if frames is not None else filters or Filters()
        rounds = max(1, self.settings.bootstrap_rounds if rounds is None else int(rounds))
        seed = self.settings.seed if seed is None else int(seed)
        key = (filters.key(), slice_protocol, rounds, seed)
        return self.cached(
            key,
            lambda _signature: self._compute(filters, slice_protocol, rounds, seed, frames),
            signature=frames.signature if frames is not None else None,
        )

    def _compute(
        self,
        filters: Filters,
        slice_protocol: str,
        rounds: int,
        seed: int,
        frames: ReportFrames | None = None,
    ) -> AgreementResult:
        start = time.perf_counter()
        if frames is None:
            frames = load_report_frames(self.store, filters)
        judges = self.store.judges_frame()
        report = report_of(frames, np.random.default_rng(seed), rounds, slice_protocol, judges)
        self.computations += 1
        return AgreementResult(report, filters, len(frames.votes), time.perf_counter() - start)

    def groups(
        self,
        filters: Filters | None = None,
        rounds: int | None = None,
        seed: int | None = None,
        frames: ReportFrames | None = None,
    ) -> GroupResult:
        """The rater groups of the filter's votes compared (their boards, rank correlation
        and cross-group agreement), cached like :meth:`get`; bootstrapped with a generator
        seeded by ``seed`` (default: the settings'), so the numbers are reproducible."""
        filters = frames.filters if frames is not None else filters or Filters()
        rounds = max(1, self.settings.bootstrap_rounds if rounds is None else int(rounds))
        seed = self.settings.seed if seed is None else int(seed)

        def compute(_signature) -> GroupResult:
            start = time.perf_counter()
            loaded = frames if frames is not None else load_report_frames(self.store, filters)
            comparison = group_comparison(
                loaded.votes, np.random.default_rng(seed), rounds, prompts=loaded.prompts
            )
            self.group_computations += 1
            return GroupResult(comparison, filters, len(loaded.votes), time.perf_counter() - start)

        return self.cached(
            ("groups", filters.key(), rounds, seed),
            compute,
            signature=frames.signature if frames is not None else None,
        )
