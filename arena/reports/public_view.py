"""What raters may see with the reveal off: the votes released in steps.

With ``reveal_models`` off a rater must not learn which models a battle showed. A live
leaderboard undoes that: the board before and after one's own vote differ by exactly that
vote, and a filter (a date window around it, one prompt set) or a Compare of two models
narrows a view down to it. So the raters' app shows only views over a *released snapshot*
of the votes, and the snapshot advances in steps of at least ``public_view_min_votes``
counted votes: any two views a rater can see are equal or differ by at least that many
votes, and before the first release there is no board at all. Filters, Compare and the
Agreement analysis live in the Admin app (behind its login) and in the CLI.

The snapshot is a pure function of the database, so every server process on one database
shows the same one, whatever it computed before:

1. The *counted* votes are the leaderboard's (``Store.votes_frame``: normal battles,
   raters not excluded).
2. Each counted vote gets a *release key*: its own id, or -- for a rater the web app
   created, whose votes count only once the rater has cast ``probation_votes`` votes
   (gold included; ``Store.votes_frame``) -- the id of the rater's ``probation_votes``-th
   vote, when all of that rater's votes so far enter the board at once. A key never
   changes as votes are added, so a rater finishing probation cannot make older votes
   appear between two releases.
3. Walking the keys in order, release *k+1* is the smallest key at which at least
   ``step`` more counted votes have keys at or below it than at release *k* (votes with
   equal keys enter together). The released snapshot is the votes with keys at or below
   the last release.

What is not held back: an exclusion decision (an admin's, or ``arena.voting.exclusion`` when it is
run) takes a rater's votes out of every view at once, and scores or model-level metrics
show as soon as they are computed. Neither is something a rater triggers with one vote;
see docs/threat-model.md, "What a rater can see".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from arena.reports.frames import Filters
from arena.reports.leaderboard import LeaderboardResult, LeaderboardService
from arena.reports.service import CachedReports


@dataclass(frozen=True)
class Release:
    """The released snapshot: ``number`` releases so far (0: none yet), the counted votes
    with release keys up to ``last_key`` (``votes`` of them), released ``step`` at a time."""

    number: int
    last_key: int
    votes: int
    step: int


def release_keys(
    votes: pd.DataFrame, all_votes: pd.DataFrame, probation: int, on_probation
) -> np.ndarray:
    """The release key of each row of ``votes`` (float; ``inf`` while still in probation).

    ``votes`` are the counted votes, ``all_votes`` every vote of the same raters (gold
    battles included), both with ``vote_id`` and ``rater_id`` columns; ``on_probation``
    holds the ids of the raters whose votes count only from their ``probation``-th vote
    on (those the web app created, see ``Store.votes_frame``).
    """
    keys = votes["vote_id"].to_numpy(dtype=float)
    if probation <= 1 or len(votes) == 0:
        return keys
    mine = all_votes.loc[all_votes["rater_id"].isin(on_probation), ["rater_id", "vote_id"]]
    mine = mine.sort_values("vote_id")
    rank = mine.groupby("rater_id").cumcount().to_numpy()
    entry = mine[rank == probation - 1].set_index("rater_id")["vote_id"]  # probation-th
    at = votes["rater_id"].map(entry).astype(float).fillna(np.inf).to_numpy()
    held = votes["rater_id"].isin(on_probation).to_numpy()
    return np.where(held, np.maximum(keys, at), keys)


def current_release(keys: np.ndarray, step: int) -> Release:
    """The latest release over these release keys (see the module docstring, step 3)."""
    step = max(1, int(step))
    ordered = np.sort(keys[np.isfinite(keys)])
    number, have, last = 0, 0, 0
    while have + step <= len(ordered):
        last = ordered[have + step - 1]
        have = int(np.searchsorted(ordered, last, side="right"))
        number += 1
    return Release(number=number, last_key=int(last), votes=have, step=step)


class PublicViews(CachedReports):
    """The released snapshot of one store and the leaderboard over it, cached.

    The release is recomputed when the data signature changes (every vote); the
    board only when the release, the exclusions or the scores change.
    """

    def __init__(self, store, max_entries: int = 4):
        super().__init__(store, max_entries)
        self.service = LeaderboardService.of(store)

    @property
    def step(self) -> int:
        return max(1, int(self.settings.public_view_min_votes))

    def _released(self) -> tuple[tuple, Release, pd.DataFrame]:
        return self.cached(("release",), self._release_of)

    def _release_of(self, signature: tuple) -> tuple[tuple, Release, pd.DataFrame]:
        votes = Filters().apply(self.store.votes_frame())  # judges never count here
        probation = int(self.settings.probation_votes)
        web = self.store.web_rater_ids() if probation > 1 else set()
        everything = self.store.votes_frame(include_gold=True) if web else votes
        keys = release_keys(votes, everything, probation, web)
        release = current_release(keys, self.step)
        released = votes[keys <= release.last_key] if release.number else votes[:0]
        return signature, release, released

    def release(self) -> Release:
        return self._released()[1]

    def board(self) -> tuple[Release, LeaderboardResult | None]:
        """The release and the unfiltered leaderboard over it (None before the first)."""
        signature, release, released = self._released()
        if release.number == 0:
            return release, None
        key = ("board", release.last_key, release.votes, signature[1:])
        return release, self.remember(key, lambda: self.service.board_of(released, Filters()))


def public_views(store) -> PublicViews:
    """One :class:`PublicViews` per store (the tabs of one app share it)."""
    return store.shared(PublicViews, lambda: PublicViews(store))
