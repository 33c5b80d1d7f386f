"""The ``active`` pairing policy: arena.stats.active's pair allocation, refreshed in the
background.

Per request the policy only looks up cached pair probabilities (O(1) in the
number of votes; microseconds at 100 models). A background thread refits
Bradley-Terry on the vote counts (one SQL aggregate, ``Store.pair_outcome_counts``:
votes per left model, right model and outcome, over normal battles of raters not
excluded) and recomputes
the allocation when the cache is older than ``refresh_seconds`` or the set of
models changed. Until ``active_min_votes`` votes exist, or before the first
refresh finishes, it behaves exactly like ``balanced``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from arena.stats import active
from arena.stats.bradley_terry import bt_fit
from arena.stats.pairs import PairCounts, pair_index
from arena.voting.matchmaking import (
    BalancedPolicy,
    PairingPolicy,
    PairStats,
    register_policy,
)

MIN_HORIZON = 100


@dataclass(frozen=True)
class ActiveState:
    model_ids: tuple[int, ...]
    probabilities: np.ndarray
    theta: np.ndarray
    total_votes: int
    computed_at: float


def load_pair_counts(store, model_ids: tuple[int, ...]) -> PairCounts:
    """Outcome counts per model pair over normal battles of raters who are not excluded
    (votes of raters on probation count, judges' do not: see arena.storage.vote_counts)."""
    cells = store.pair_outcome_counts(
        model_ids,
        include_excluded=False,
        include_probation=True,
        include_gold=False,
        include_judges=False,
    )
    return PairCounts.of_cells(cells)


class ActivePolicy(PairingPolicy):
    name = "active"

    def __init__(
        self,
        store,
        refresh_seconds: float = 30.0,
        floor: float = 0.1,
        background: bool = True,
    ):
        self.store = store
        self.min_votes = store.settings.active_min_votes
        self.refresh_seconds = refresh_seconds
        self.floor = floor
        self.background = background
        self.fallback = BalancedPolicy()
        self._state: ActiveState | None = None
        self._lock = threading.Lock()
        self._refreshing = False

    def probabilities(self, stats: PairStats) -> np.ndarray:
        if stats.votes.sum() / 2 < self.min_votes:
            return self.fallback.probabilities(stats)
        state = self._state
        stale = (
            state is None
            or state.model_ids != stats.model_ids
            or (time.monotonic() - state.computed_at > self.refresh_seconds)
        )
        if stale:
            self._request_refresh(stats)
            state = self._state
        if state is None or state.model_ids != stats.model_ids:
            return self.fallback.probabilities(stats)
        rows, cols = pair_index(len(stats.model_ids))
        probs = state.probabilities * stats.available[rows, cols]
        total = probs.sum()
        return probs / total if total > 0 else self.fallback.probabilities(stats)

    def _request_refresh(self, stats: PairStats) -> None:
        with self._lock:
            if self._refreshing:
                return
            self._refreshing = True
        if self.background:
            threading.Thread(target=self._refresh_guarded, args=(stats,), daemon=True).start()
        else:
            self._refresh_guarded(stats)

    def _refresh_guarded(self, stats: PairStats) -> None:
        try:
            self.refresh(stats)
        finally:
            with self._lock:
                self._refreshing = False

    def refresh(self, stats: PairStats) -> ActiveState:
        """Refit BT and recompute the allocation now (the background thread calls this)."""
        counts = load_pair_counts(self.store, stats.model_ids)
        theta = bt_fit(counts.win_matrix("split"))
        total = counts.total
        previous = self._state
        # The votes expected before the next refresh: as many as came in since the last one.
        horizon = MIN_HORIZON
        if previous is not None and previous.model_ids == stats.model_ids:
            horizon = max(MIN_HORIZON, total - previous.total_votes)
        probs = active.pair_probabilities(
            counts.battles.astype(float),
            theta,
            available=stats.available,
            floor=self.floor,
            horizon=horizon,
        )
        state = ActiveState(stats.model_ids, probs, theta, total, time.monotonic())
        self._state = state
        return state


register_policy("active", lambda store=None: ActivePolicy(store))
