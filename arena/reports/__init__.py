"""One report layer: the frames under a filter -> leaderboard, agreement, exports; cached."""
