"""Votes as arrays, and their counts per model pair: the input of every rating.

Models are integer indices ``0..n-1`` (names are mapped at the edges, see
:func:`index_items`); votes are three parallel arrays ``left``, ``right``,
``outcome`` with the outcome codes ``LEFT=0, RIGHT=1, TIE=2, BOTH_BAD=3``
(:func:`encode_outcomes` maps the database strings, :data:`OUTCOMES`, which the
database schema takes from here). Aggregated, the votes are a
:class:`PairCounts`: left/right forgotten, what the Bradley-Terry fit, the
bootstrap and the pair-choice rule need.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

#: The outcomes of a vote, in code order (the database stores these strings).
OUTCOMES = ("left", "right", "tie", "both_bad")
LEFT, RIGHT, TIE, BOTH_BAD = range(4)
#: How ties (and both-bad votes) enter a win matrix: half a win each way, or left out.
TIE_MODES = ("split", "drop")


def pair_index(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the unordered pairs a < b: the order in which pair
    probabilities and per-pair arrays are laid out everywhere."""
    return np.triu_indices(n, k=1)


def encode_outcomes(outcomes: Iterable[str]) -> np.ndarray:
    """Outcome strings ("left", "right", "tie", "both_bad") -> int8 codes 0..3."""
    import pandas as pd

    values = outcomes if isinstance(outcomes, np.ndarray) else np.asarray(list(outcomes))
    codes = pd.Index(OUTCOMES).get_indexer(values.astype(object))
    if np.any(codes < 0):
        bad = values[codes < 0]
        raise ValueError(
            f"outcome {str(bad[0])!r} is not one of {OUTCOMES} ({bad.size} such vote(s)); "
            "fix or delete those votes."
        )
    return codes.astype(np.int8)


def index_items(
    left_names: Sequence[str], right_names: Sequence[str], names: Sequence[str] | None = None
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Map model names to indices: (names, left indices, right indices).

    ``names`` fixes the order (and may include models without votes); by
    default it is the sorted set of names that appear.
    """
    import pandas as pd

    both = np.concatenate(
        [np.asarray(left_names, dtype=object), np.asarray(right_names, dtype=object)]
    )
    codes, uniques = pd.factorize(both)
    names = sorted(uniques) if names is None else list(names)
    if len(set(names)) != len(names):
        raise ValueError("model names must be unique.")
    where = pd.Index(names).get_indexer(uniques)
    if np.any(where < 0):
        raise ValueError(f"vote names model {uniques[where < 0][0]!r}, which is not in names.")
    index = where[codes].astype(np.int64)
    half = len(both) // 2
    return names, index[:half], index[half:]


def check_votes(n_items: int, left, right, outcome) -> tuple[np.ndarray, ...]:
    left = np.asarray(left, dtype=np.int64)
    right = np.asarray(right, dtype=np.int64)
    outcome = np.asarray(outcome, dtype=np.int64)
    if not (left.shape == right.shape == outcome.shape) or left.ndim != 1:
        raise ValueError("left, right and outcome must be 1-d arrays of the same length.")
    if left.size:
        if min(left.min(), right.min()) < 0 or max(left.max(), right.max()) >= n_items:
            raise ValueError(f"model indices must lie in 0..{n_items - 1}.")
        if np.any(left == right):
            raise ValueError("a vote compares a model with itself; drop those votes.")
        if outcome.min() < 0 or outcome.max() > BOTH_BAD:
            raise ValueError("outcome codes must be 0..3 (left, right, tie, both_bad).")
    return left, right, outcome


@dataclass(frozen=True)
class PairCounts:
    """Votes aggregated per pair: ``wins[i, j]`` decisive wins of i over j;
    ``ties`` and ``both_bad`` symmetric counts. Left/right is forgotten."""

    wins: np.ndarray
    ties: np.ndarray
    both_bad: np.ndarray

    @property
    def n_items(self) -> int:
        return self.wins.shape[0]

    @property
    def battles(self) -> np.ndarray:
        """Battle-count matrix (symmetric): votes of any outcome between i and j."""
        return self.wins + self.wins.T + self.ties + self.both_bad

    @property
    def total(self) -> int:
        return int(np.triu(self.battles, 1).sum())

    def win_matrix(self, ties: str = "split") -> np.ndarray:
        """W[i, j] = wins of i over j, ties and both-bad as half a win each way ("split")
        or left out ("drop")."""
        check_ties(ties)
        w = self.wins.astype(np.float64)
        if ties == "split":
            w = w + 0.5 * (self.ties + self.both_bad)
        return w

    @classmethod
    def of_cells(cls, cells: np.ndarray) -> PairCounts:
        """From votes per (left model, right model, outcome) cell, shape (n, n, 4)."""
        wins = cells[:, :, LEFT] + cells[:, :, RIGHT].T
        ties = cells[:, :, TIE] + cells[:, :, TIE].T
        both_bad = cells[:, :, BOTH_BAD] + cells[:, :, BOTH_BAD].T
        return cls(wins, ties, both_bad)

    def __add__(self, other: PairCounts) -> PairCounts:
        return PairCounts(
            self.wins + other.wins, self.ties + other.ties, self.both_bad + other.both_bad
        )


def check_ties(ties: str) -> None:
    if ties not in TIE_MODES:
        raise ValueError(f"ties={ties!r}: expected one of {TIE_MODES}.")


def aggregate(n_items: int, left, right, outcome) -> PairCounts:
    """Count votes per (pair, outcome) cell: one bincount, O(votes) time, O(n²) memory."""
    left, right, outcome = check_votes(n_items, left, right, outcome)
    code = left * n_items
    code += right
    code *= 4
    code += outcome
    cells = np.bincount(code, minlength=n_items * n_items * 4).reshape(n_items, n_items, 4)
    return PairCounts.of_cells(cells)
