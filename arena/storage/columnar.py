"""Column-wise reads of big tables, for the store's frames.

``pd.read_sql`` on a SQLAlchemy query builds one ``Row`` per result row and
then infers every column's type from Python objects; for a million votes that
is most of an export. Here a Core ``select`` runs on the raw DB-API cursor
(the same SQL, bound parameters and all, on SQLite and PostgreSQL), the rows
are turned into columns once, and each column is converted with the dtype the
caller names. Joins to small tables (models, prompts, images, raters) are
done by the caller with :func:`positions` and ``take``, which is much cheaper
than asking the database to repeat the same names and hashes a million times.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Sequence
from contextlib import contextmanager
from operator import itemgetter

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.sql import Select

from arena.storage import db

_PAUSE = {"depth": 0, "was_enabled": False}
_PAUSE_LOCK = threading.Lock()


@contextmanager
def gc_paused():
    """No cyclic garbage collection inside: building a million row tuples (none of them in
    a cycle) otherwise triggers collections that walk every live object, again and again
    -- a second or more of a 1M-vote read, more the more a process holds. Collection is
    deferred, not skipped. The switch is process-wide: concurrent or nested pauses are
    counted, and the last one out restores it as the first one in found it."""
    with _PAUSE_LOCK:
        if _PAUSE["depth"] == 0:
            _PAUSE["was_enabled"] = gc.isenabled()
            gc.disable()
        _PAUSE["depth"] += 1
    try:
        yield
    finally:
        with _PAUSE_LOCK:
            _PAUSE["depth"] -= 1
            if _PAUSE["depth"] == 0 and _PAUSE["was_enabled"]:
                gc.enable()


def fetch_columns(engine: Engine, query: Select) -> dict[str, Sequence]:
    """Run ``query`` on a raw DB-API cursor; its result columns by label (lists)."""
    with engine.connect() as conn, gc_paused():
        compiled = query.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
        params = compiled.params
        if compiled.positional:
            params = tuple(params[name] for name in compiled.positiontup)
        cursor = conn.connection.dbapi_connection.cursor()
        try:
            cursor.execute(str(compiled), params)
            rows = cursor.fetchall()
        finally:
            cursor.close()
        names = [c.name for c in query.selected_columns]
        # One list per column; map(itemgetter) is about 3x faster than zip(*rows) here.
        return {name: list(map(itemgetter(k), rows)) for k, name in enumerate(names)}


def ints(values: Sequence) -> np.ndarray:
    """A column without NULLs as int64."""
    return np.fromiter(values, dtype=np.int64, count=len(values))


def strings(values: Sequence) -> pd.api.extensions.ExtensionArray:
    """A text column as pandas' default string array (what ``pd.read_sql`` gives)."""
    return pd.array(values, dtype="str")


def bools(values: Sequence) -> np.ndarray:
    """A non-null boolean column (SQLite gives 0/1, PostgreSQL True/False)."""
    return np.asarray(values, dtype=bool)


def times(values: Sequence) -> np.ndarray:
    """A DateTime column (SQLite: ISO text; PostgreSQL: naive datetimes) as datetime64[us]."""
    try:
        return np.array(values, dtype="datetime64[us]")
    except ValueError:  # a format numpy does not parse (e.g. with an offset): pandas does
        parsed = pd.to_datetime(pd.Series(values, dtype=object), format="ISO8601")
        return parsed.dt.tz_localize(None).to_numpy("datetime64[us]")


def inferred(values: Sequence) -> pd.Series:
    """A nullable column typed the way ``pd.read_sql`` types it.

    All integers: int64; integers or floats with NULLs: float64 with NaN; only
    NULLs: object; text with NULLs: string with NaN. Used for the columns whose
    type depends on the data (``decision_ms``, ``flag``, ``gold_answer``, ``value``),
    so that the frame is the one the row-wise reader gave.
    """
    return pd.Series(values, dtype=None if len(values) else object)


def positions(ids: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Row position in a small table with primary keys ``keys`` of each id (-1: not there)."""
    if len(keys) == 0:
        return np.full(len(ids), -1, dtype=np.int64)
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    at = np.minimum(np.searchsorted(sorted_keys, ids), len(keys) - 1)
    return np.where(sorted_keys[at] == ids, order[at], -1)


def empty_frame(names: Sequence[str]) -> pd.DataFrame:
    """No rows, object columns: what ``pd.read_sql`` gives for an empty result."""
    return pd.DataFrame(columns=list(names))


VOTE_FRAME_COLUMNS = [
    "vote_id",
    "battle_id",
    "created_at",
    "outcome",
    "decision_ms",
    "flag",
    "rater_id",
    "rater_kind",
    "rater_group",
    "rater_excluded",
    "policy",
    "battle_kind",
    "gold_answer",
    "prompt_id",
    "prompt_set",
    "category",
    "left_image_id",
    "right_image_id",
    "left_model",
    "right_model",
    "left_sha256",
    "right_sha256",
    "client_group",
]


def _small_table(engine: Engine, table, *names: str) -> dict[str, Sequence]:
    return fetch_columns(engine, select(*(table.c[n] for n in names)))


def read_votes(engine: Engine, query: Select) -> pd.DataFrame:
    """The votes frame (``Store.votes_frame``) from ``query`` over votes joined with battles.

    ``query`` selects vote_id, battle_id, created_at, outcome, decision_ms, flag,
    rater_id, policy, battle_kind, gold_answer, prompt_id, left_image_id,
    right_image_id, client_group (with the caller's filters); raters, prompts, images and models are
    read whole and joined here. Rows whose rater, prompt, image or model is missing
    are left out (an inner join), and rows come in vote order (created_at, vote_id).
    """
    with gc_paused():  # a million Python values in flight (see gc_paused)
        return _votes_frame(engine, fetch_columns(engine, query))


def _votes_frame(engine: Engine, col: dict[str, Sequence]) -> pd.DataFrame:
    if not len(col["vote_id"]):
        return empty_frame(VOTE_FRAME_COLUMNS)
    raters = _small_table(engine, db.Rater.__table__, "id", "kind", "rater_group", "excluded")
    prompts = _small_table(engine, db.Prompt.__table__, "id", "prompt_set", "category")
    images = _small_table(engine, db.Image.__table__, "id", "sha256", "model_id")
    models = _small_table(engine, db.Model.__table__, "id", "name")

    rater_at = positions(ints(col["rater_id"]), ints(raters["id"]))
    prompt_at = positions(ints(col["prompt_id"]), ints(prompts["id"]))
    image_keys = ints(images["id"])
    left_at = positions(ints(col["left_image_id"]), image_keys)
    right_at = positions(ints(col["right_image_id"]), image_keys)
    image_model = positions(ints(images["model_id"]), ints(models["id"]))
    model_ok = np.append(image_model >= 0, False)  # index -1 -> False
    keep = (rater_at >= 0) & (prompt_at >= 0) & model_ok[left_at] & model_ok[right_at]

    vote_id = ints(col["vote_id"])
    created = times(col["created_at"])
    order = np.flatnonzero(keep)
    order = order[np.lexsort((vote_id[order], created[order].view(np.int64)))]
    rater_at, prompt_at = rater_at[order], prompt_at[order]
    left_at, right_at = left_at[order], right_at[order]
    model_names = strings(models["name"])
    image_model_name = model_names.take(image_model, allow_fill=True)
    sha256 = strings(images["sha256"])
    rater_kind = strings(raters["kind"])
    prompt_set, category = strings(prompts["prompt_set"]), strings(prompts["category"])

    in_order = order.size == vote_id.size and bool(np.all(order == np.arange(order.size)))

    def row_ordered(values: Sequence, kind) -> object:
        converted = kind(values)
        if in_order:  # the usual case (ids follow time): no copy of a million cells
            return converted
        if isinstance(converted, pd.Series):
            return converted.iloc[order].reset_index(drop=True)
        return converted[order] if isinstance(converted, np.ndarray) else converted.take(order)

    return pd.DataFrame(
        {
            "vote_id": vote_id[order],
            "battle_id": row_ordered(col["battle_id"], ints),
            "created_at": created[order],
            "outcome": row_ordered(col["outcome"], strings),
            "decision_ms": row_ordered(col["decision_ms"], inferred),
            "flag": row_ordered(col["flag"], inferred),
            "rater_id": row_ordered(col["rater_id"], ints),
            "rater_kind": rater_kind.take(rater_at),
            "rater_group": strings(raters["rater_group"]).take(rater_at),
            "rater_excluded": np.array(raters["excluded"], dtype=bool)[rater_at],
            "policy": row_ordered(col["policy"], strings),
            "battle_kind": row_ordered(col["battle_kind"], strings),
            "gold_answer": row_ordered(col["gold_answer"], inferred),
            "prompt_id": row_ordered(col["prompt_id"], ints),
            "prompt_set": prompt_set.take(prompt_at),
            "category": category.take(prompt_at),
            "left_image_id": row_ordered(col["left_image_id"], ints),
            "right_image_id": row_ordered(col["right_image_id"], ints),
            "left_model": image_model_name.take(left_at),
            "right_model": image_model_name.take(right_at),
            "left_sha256": sha256.take(left_at),
            "right_sha256": sha256.take(right_at),
            "client_group": row_ordered(col["client_group"], inferred),
        }
    )
