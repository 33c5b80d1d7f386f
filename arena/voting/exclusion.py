"""The rater-exclusion policy: flagged raters leave the leaderboard, reversibly.

``refresh_exclusions`` recomputes ``arena.stats.rater_quality.rater_report`` over every
vote (gold battles included; the targeted-voting test of ``arena.stats.targeted`` with
``targeted_alpha`` and ``targeted_min_votes``) and marks each flagged rater
``excluded`` with the reasons; a rater whose exclusion an admin set or lifted by hand
(``exclusion_manual``) is never changed by the automatic policy. Excluded
raters' votes stay in the database (nothing is deleted); ``Store.votes_frame``
leaves them out of the leaderboard unless asked.

Judges (rater kind ``judge``) are left out of the quality signals: a machine judge with
thousands of votes must not become the "majority of the others" a human is measured
against, nor the yardstick of the targeted-voting test, and the policy never flags one
(an admin may still exclude it by hand). Their votes are counted in the table.
"""

from __future__ import annotations

import logging
import threading

import pandas as pd

from arena.config import Settings
from arena.stats.rater_quality import QualityThresholds, rater_report
from arena.storage.store import Store
from arena.storage.vocabulary import DEFAULT_RATER_KINDS

log = logging.getLogger(__name__)


def thresholds_from(settings: Settings) -> QualityThresholds:
    return QualityThresholds(
        max_fast_fraction=settings.max_flagged_fraction,
        targeted_alpha=settings.targeted_alpha,
        targeted_min_votes=settings.targeted_min_votes,
    )


def quality_report(store: Store) -> pd.DataFrame:
    """rater_report over every vote but the judges', joined with each rater's external
    id, kind, group and status; a judge's row has its vote count and no signals."""
    every = store.votes_frame(include_excluded=True, include_gold=True)
    votes = every[every["rater_kind"].isin(DEFAULT_RATER_KINDS)] if len(every) else every
    settings = store.settings
    if votes.empty:
        report = pd.DataFrame(columns=["rater_id", "votes", "flag_reasons"])
    else:
        report = rater_report(votes, settings.min_decision_ms, thresholds_from(settings))
    raters = store.raters_frame()
    out = raters.merge(report, on="rater_id", how="left").fillna({"votes": 0, "flag_reasons": ""})
    judges = (out["kind"] == "judge").to_numpy()
    if judges.any() and len(every):
        counts = every["rater_id"].value_counts()
        out.loc[judges, "votes"] = out.loc[judges, "rater_id"].map(counts).fillna(0).to_numpy()
    return out


def refresh_exclusions(store: Store) -> dict[str, int]:
    """Apply the policy; returns how many raters were newly excluded and re-included."""
    report = quality_report(store)
    flagged = dict(zip(report["rater_id"], report["flag_reasons"], strict=True))
    return store.set_policy_exclusions(flagged)


class ExclusionRefresher:
    """Applies the exclusion policy every ``interval`` seconds in a daemon thread.

    Without it a flagged rater's votes would count until an admin pressed the button.
    Every server process on one database may run one: the policy is idempotent, and
    an admin's own decisions (``exclusion_manual``) are never changed.
    """

    def __init__(self, store: Store):
        self.store, self.interval = store, store.settings.policy_refresh_seconds
        self.runs, self.last_error = 0, ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="arena-exclusion", daemon=True)

    def start(self) -> ExclusionRefresher:
        if self.interval > 0:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                refresh_exclusions(self.store)
                self.runs += 1
            except Exception as exc:  # a database hiccup: try again next time
                self.last_error = repr(exc)[:200]
                log.warning("rater policy refresh failed: %s", self.last_error)
