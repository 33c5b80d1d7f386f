"""The errors of the storage layer, shared by the Store and its verb mixins."""

from __future__ import annotations


class StoreError(ValueError):
    """A request the store refuses; the message says what was wrong and how to fix it."""


class StoreWriteError(StoreError):
    """The database refused a write (read-only file, full disk, a lock held too long).

    ``reason`` is the driver's own message; the caller says what was not written.
    """

    def __init__(self, url: str, reason: str):
        super().__init__(f"database {url}: cannot write ({reason}).")
        self.url, self.reason = url, reason
