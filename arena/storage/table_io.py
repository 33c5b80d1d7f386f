"""Fast, deterministic CSV writing of big frames with pyarrow compute.

``DataFrame.to_csv`` formats a million-row, 21-column votes table one Python
value at a time (about 15 s). :func:`write_csv` renders each column as an Arrow
string array (integers and text in C; floats with a printf format), joins the
columns with ``,`` and writes the joined bytes, a chunk of rows at a time. The
output is the bytes ``to_csv(index=False, float_format=..., lineterminator="\\n")``
writes (tested against it), with two deliberate differences: a field holding a
carriage return is quoted too (RFC 4180), where Python 3.11's ``csv`` module
leaves a lone ``\\r`` unquoted; and text that would run as a spreadsheet formula
gets a leading apostrophe (below).

Spreadsheet formulas are neutralised (OWASP "CSV injection"): a text cell that
starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is written
with a leading apostrophe, so a spreadsheet shows it as text instead of running
it (a model named ``=2+3``, a prompt ``=HYPERLINK(...)``). So that this stays
reversible, a cell that already starts with an apostrophe followed by one of
those characters or by another apostrophe gets one too; :func:`restore_text`
(used by ``arena.reports.export.read_table``) takes it off again. Only text columns are
touched: numbers (a negative rating) are not text. Vectorised like the rest (a
first-character test per text column, the anchored regex only where one matches).

A frame with a column of another kind (objects that are not text, dates,
categories) or with a single column (where an empty field needs quotes) is
written by pandas itself, with the same neutralisation of its text cells.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

CHUNK_ROWS = 100_000
NEEDS_QUOTES = r'[,"\n\r]'
FORMULA = r"^(?:[=+\-@\t\r]|'[=+\-@\t\r'])"  # cells that get a leading apostrophe
NEUTRALISED = r"^'(?:[=+\-@\t\r]|'[=+\-@\t\r'])"  # ... and how they read back
FIRST_CHARS = pa.array(list("=+-@\t\r'"), type=pa.string())

Cells = Callable[[pd.Series], pa.Array]


def quote(cells: pa.Array) -> pa.Array:
    """CSV minimal quoting: fields with a comma, quote or line break in quotes, quotes doubled."""
    needs = pc.match_substring_regex(cells, NEEDS_QUOTES)
    if not pc.any(needs).as_py():
        return cells
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(cells, '"', '""'), '"', "")
    return pc.if_else(needs, quoted, cells)


def neutralise(cells: pa.Array) -> pa.Array:
    """Text cells a spreadsheet would run as a formula, with a leading apostrophe."""
    first = pc.utf8_slice_codeunits(cells, 0, 1)  # cheaper than the regex; usually all clean
    if not pc.any(pc.is_in(first, value_set=FIRST_CHARS)).as_py():
        return cells
    risky = pc.match_substring_regex(cells, FORMULA)
    if not pc.any(risky).as_py():
        return cells
    return pc.if_else(risky, pc.binary_join_element_wise("'", cells, ""), cells)


def neutralise_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the text cells of its text and object columns neutralised (pandas)."""
    out = frame.copy(deep=False)
    for k in range(out.shape[1]):
        column = out.iloc[:, k]
        if column.dtype != object and not pd.api.types.is_string_dtype(column.dtype):
            continue
        try:
            risky = column.str.match(FORMULA, na=False).to_numpy(bool)
        except (AttributeError, TypeError):  # no text in this object column
            continue
        if risky.any():
            column = column.astype(object).copy()
            column[risky] = "'" + column[risky].astype(str)
            out.isetitem(k, column)
    return out


def restore_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Undo :func:`neutralise` on a frame read back from CSV (text columns only)."""
    for name in frame.columns:
        column = frame[name]
        if column.dtype != object and not pd.api.types.is_string_dtype(column.dtype):
            continue
        try:
            marked = column.str.match(NEUTRALISED, na=False)
        except (AttributeError, TypeError):  # no text in this object column
            continue
        if marked.any():
            frame[name] = column.where(~marked, column.str.slice(1))
    return frame


def _text_cells(part: pd.Series) -> pa.Array:
    if part.dtype == object:
        arr = pa.array(part.to_numpy(), type=pa.string(), from_pandas=True)
    else:  # pandas' Arrow-backed strings: no round trip through Python objects
        arr = pa.array(part.array)
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        arr = arr.cast(pa.string())
    return quote(neutralise(arr.fill_null("")))


def _int_cells(part: pd.Series) -> pa.Array:
    return pa.array(part, from_pandas=True).cast(pa.string()).fill_null("")


def _bool_cells(part: pd.Series) -> pa.Array:
    values = part.to_numpy(dtype=object, na_value=None)
    text = np.where(values == True, "True", np.where(values == False, "False", ""))  # noqa: E712
    return pa.array(text, type=pa.string())


def _float_cells(float_format: str) -> Cells:
    def cells(part: pd.Series) -> pa.Array:
        values = part.to_numpy(dtype=np.float64, na_value=np.nan).tolist()
        return pa.array(
            ["" if v != v else float_format % v for v in values],  # v != v: NaN
            type=pa.string(),
        )

    return cells


def _is_text(series: pd.Series) -> bool:
    if pd.api.types.is_string_dtype(series.dtype) and series.dtype != object:
        return True
    if series.dtype != object:
        return False
    return pd.api.types.infer_dtype(series, skipna=True) in ("string", "empty")


def column_cells(series: pd.Series, float_format: str) -> Cells | None:
    """How to render this column's cells, or None when only pandas knows."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return _bool_cells
    if pd.api.types.is_integer_dtype(dtype):
        return _int_cells
    if pd.api.types.is_float_dtype(dtype):
        return _float_cells(float_format)
    if _is_text(series):
        return _text_cells
    return None


def _buffer_bytes(lines: pa.Array) -> memoryview:
    """The concatenated bytes of a string array without nulls (its data buffer's used span)."""
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)[lines.offset :]
    first, last = int(offsets[0]), int(offsets[len(lines)])
    return memoryview(lines.buffers()[2])[first:last]


def write_csv(
    frame: pd.DataFrame, path: str | Path, float_format: str, chunk_rows: int = CHUNK_ROWS
) -> None:
    """Write ``frame`` (no index) as CSV; same bytes as pandas' ``to_csv`` (see the module doc)."""
    renderers = [column_cells(frame[c], float_format) for c in frame.columns]
    if len(frame.columns) < 2 or any(r is None for r in renderers) or frame.columns.has_duplicates:
        frame = neutralise_frame(frame)
        frame.to_csv(path, index=False, float_format=float_format, lineterminator="\n")
        return
    header = quote(pa.array([str(c) for c in frame.columns], type=pa.string()))
    with open(path, "wb") as fh:
        fh.write((",".join(header.to_pylist()) + "\n").encode("utf-8"))
        for start in range(0, len(frame), chunk_rows):
            part = frame.iloc[start : start + chunk_rows]
            cells = [render(part[c]) for render, c in zip(renderers, frame.columns, strict=True)]
            cells[-1] = pc.binary_join_element_wise(cells[-1], "\n", "")
            fh.write(_buffer_bytes(pc.binary_join_element_wise(*cells, ",")))
