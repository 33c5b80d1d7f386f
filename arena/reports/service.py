"""Reports of one store, cached until the data they count changes.

A report (a leaderboard, an agreement analysis) takes seconds to compute while a page
load must be quick. :class:`CachedReports` keys every result on the store's
``data_signature()`` (vote count and newest vote id, excluded raters, scores,
model-level metrics: four aggregate queries) and the request, and keeps the newest
``max_entries`` (LRU): a page load or a tab opened recomputes only when votes, rater
exclusions or scores changed. Settings are read from ``store.settings``, their one owner.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

from arena.reports.frames import filter_options

T = TypeVar("T")


class CachedReports:
    """The cache the report services share; subclasses add ``get`` and the computation."""

    def __init__(self, store, max_entries: int = 32):
        self.store = store
        self.max_entries = max_entries
        self._cache: OrderedDict[tuple, object] = OrderedDict()
        self._lock = threading.Lock()
        self.computations = 0  # how many times a report was actually computed

    @classmethod
    def of(cls, store):
        """The one service of this kind for ``store``: the raters' app, the Admin app and
        exports share its cache (``Store.shared``)."""
        return store.shared(cls, lambda: cls(store))

    @property
    def settings(self):
        return self.store.settings

    def signature(self) -> tuple:
        """Changes whenever votes, rater exclusions, scores or model-level metrics change."""
        return self.store.data_signature()

    def options(self) -> dict[str, list[str]]:
        """Values the filters can take (categories, prompt sets, rater kinds)."""
        return filter_options(self.store)

    def cached(
        self, key: tuple, compute: Callable[[tuple], T], signature: tuple | None = None
    ) -> T:
        """The result for ``key`` under the current signature (or ``signature``: that of
        frames the caller already loaded); ``compute(signature)`` runs only on a miss."""
        signature = self.signature() if signature is None else signature
        return self.remember((signature, *key), lambda: compute(signature))

    def remember(self, key: tuple, compute: Callable[[], T]) -> T:
        """The result kept under ``key`` (which must say what it depends on), computed on
        a miss; one computation at a time, so concurrent page loads wait for one result."""
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            result = compute()
            self._cache[key] = result
            while len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)
            return result
