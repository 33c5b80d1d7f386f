"""The pieces every section of ``report.html`` is made of: a table as HTML, a figure as an
inline PNG (:mod:`arena.reports.report_page` and the sections it includes)."""

from __future__ import annotations

import html

import pandas as pd

from arena.reports import plots


def html_table(frame: pd.DataFrame, digits: int = 3, max_rows: int = 200) -> str:
    """``frame`` as an HTML table, floats to ``digits`` places, missing values as –; at
    most ``max_rows`` rows (a note says how many more the exported file has)."""
    if frame is None or frame.empty:
        return "<p><em>Nothing yet.</em></p>"
    shown = frame.head(max_rows).copy()
    for col in shown.columns:
        if pd.api.types.is_float_dtype(shown[col]):
            shown[col] = [("–" if pd.isna(v) else f"{v:.{digits}f}") for v in shown[col]]
        elif isinstance(shown[col].dtype, pd.Int64Dtype):  # to_html writes <NA> for these
            shown[col] = ["–" if pd.isna(v) else str(v) for v in shown[col]]
    more = len(frame) - len(shown)
    note = f"<p><em>{more} more rows in the exported file.</em></p>" if more > 0 else ""
    return shown.to_html(index=False, border=0, classes="t", na_rep="–") + note


def img(fig, alt: str) -> str:
    """A matplotlib figure as an inline base64 PNG."""
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{plots.png_base64(fig)}">'
