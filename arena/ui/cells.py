"""How the tabs write a number into a table cell: one rule for a missing value (None,
pandas' NA, NaN: an en dash), so every tab shows gaps alike."""

from __future__ import annotations

import math

import pandas as pd


def missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def number(value, digits: int) -> str:
    """``value`` to ``digits`` decimals, or – when it is missing."""
    return "–" if missing(value) else f"{value:.{digits}f}"


def percent(value) -> str:
    """A share as a percentage with one decimal, or – when it is missing or not finite."""
    return "–" if missing(value) or not math.isfinite(float(value)) else f"{100 * value:.1f}%"
