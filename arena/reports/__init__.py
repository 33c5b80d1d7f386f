"""One report layer: the store's frames under a filter -> leaderboard, agreement, exports; cached on the data."""
