"""The column-wise frame readers against the row-wise reader they replaced, on both back
ends (SQLite and PostgreSQL), and the CSV writer against pandas' ``to_csv``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select, update

from arena.reports.export import FLOAT_FORMAT, compute_tables, read_table
from arena.storage import db
from arena.storage.columnar import positions
from arena.storage.table_io import write_csv
from tests.agreement_data import populate_store, synthetic_arena

FLAGS = [{}, {"include_excluded": True}, {"include_gold": True}]
FLAGS.append({"include_excluded": True, "include_gold": True})


def rowwise_votes(store, include_excluded=False, include_gold=False) -> pd.DataFrame:
    """The reference: the previous ``Store.votes_frame`` (one SQL join, ``pd.read_sql``)."""
    left, right = db.Image.__table__.alias("li"), db.Image.__table__.alias("ri")
    lm, rm = db.Model.__table__.alias("lm"), db.Model.__table__.alias("rm")
    v, b, r, p = db.Vote.__table__, db.Battle.__table__, db.Rater.__table__, db.Prompt.__table__
    query = (
        select(
            v.c.id.label("vote_id"),
            b.c.id.label("battle_id"),
            v.c.created_at,
            v.c.outcome,
            v.c.decision_ms,
            v.c.flag,
            r.c.id.label("rater_id"),
            r.c.kind.label("rater_kind"),
            r.c.rater_group,
            r.c.excluded.label("rater_excluded"),
            b.c.policy,
            b.c.kind.label("battle_kind"),
            b.c.gold_answer,
            p.c.id.label("prompt_id"),
            p.c.prompt_set,
            p.c.category,
            b.c.left_image_id,
            b.c.right_image_id,
            lm.c.name.label("left_model"),
            rm.c.name.label("right_model"),
            left.c.sha256.label("left_sha256"),
            right.c.sha256.label("right_sha256"),
            b.c.client_group,
        )
        .select_from(v)
        .join(b, b.c.id == v.c.battle_id)
        .join(r, r.c.id == v.c.rater_id)
        .join(p, p.c.id == b.c.prompt_id)
        .join(left, left.c.id == b.c.left_image_id)
        .join(right, right.c.id == b.c.right_image_id)
        .join(lm, lm.c.id == left.c.model_id)
        .join(rm, rm.c.id == right.c.model_id)
        .order_by(v.c.created_at, v.c.id)
    )
    if not include_excluded:
        query = query.where(r.c.excluded.is_(False))
    if not include_gold:
        query = query.where(b.c.kind == "normal")
    with store.engine.connect() as conn:
        return pd.read_sql(query, conn)


def rowwise_scores(store, metrics=None) -> pd.DataFrame:
    sc = db.Score.__table__
    query = select(sc.c.image_id, sc.c.metric, sc.c.version, sc.c.value, sc.c.higher_is_better)
    if metrics is not None:
        query = query.where(sc.c.metric.in_(list(metrics)))
    with store.engine.connect() as conn:
        return pd.read_sql(query.order_by(sc.c.image_id, sc.c.metric), conn)


@pytest.fixture
def varied(db_store):
    """A small arena with what real data has: NULLs, flags, gold checks, an excluded
    rater, shuffled vote times, awkward prompt texts, a missing score, a broken image."""
    data = synthetic_arena(
        np.random.default_rng(5),
        n_models=3,
        n_prompts=12,
        n_votes=240,
        n_raters=6,
        rater_sd=0.5,
        tie_band=0.3,
        metric_noise={"sharp": 0.3, "vague": 1.5},
    )
    # Vote times out of id order, with a few equal times (ties broken by vote id).
    shift = np.random.default_rng(1).permutation(len(data.votes)) // 2
    data.votes["created_at"] = pd.Timestamp("2025-03-01 08:00:00.123456") + pd.to_timedelta(
        shift, unit="s"
    )
    populate_store(db_store, data)
    v, b, r, p = db.Vote.__table__, db.Battle.__table__, db.Rater.__table__, db.Prompt.__table__
    texts = ['a "quoted", comma', "two\nlines", "carriage\rreturn", "ünïcödé ✓", ""]
    with db_store.engine.begin() as conn:
        conn.execute(update(v).where(v.c.id % 7 == 0).values(flag="fast", decision_ms=None))
        conn.execute(update(v).where(v.c.id % 11 == 0).values(flag="straightliner"))
        conn.execute(update(r).where(r.c.id == 2).values(excluded=True))
        conn.execute(update(r).where(r.c.id % 2 == 1).values(rater_group="expert"))
        conn.execute(update(b).where(b.c.id % 13 == 0).values(kind="gold", gold_answer="left"))
        conn.execute(update(b).where(b.c.id % 3 == 0).values(client_group="9f2c41d07ab35e68"))
        conn.execute(update(b).where(b.c.id % 5 == 0).values(client_group="0b7d5a11c3e4f296"))
        for k, text in enumerate(texts, start=1):
            conn.execute(update(p).where(p.c.id == k).values(text=text, category=f"c,{k}"))
        sc = db.Score.__table__
        conn.execute(
            update(sc).where(sc.c.image_id == 3, sc.c.metric == "vague").values(value=None)
        )
        conn.execute(update(sc).where(sc.c.metric == "vague").values(higher_is_better=False))
        im = db.Image.__table__
        conn.execute(update(im).where(im.c.id == 5).values(broken="unreadable"))
    return db_store


@pytest.mark.parametrize("flags", FLAGS)
def test_columnar_votes_frame_is_the_rowwise_frame(varied, flags):
    expected = rowwise_votes(varied, **flags)
    got = varied.votes_frame(**flags)
    assert len(got) > 100
    pd.testing.assert_frame_equal(got, expected)


def test_filters_keep_what_they_should(varied):
    every = varied.votes_frame(include_excluded=True, include_gold=True)
    counted = varied.votes_frame()
    assert every["rater_excluded"].any() and (every["battle_kind"] == "gold").any()
    assert not counted["rater_excluded"].any() and (counted["battle_kind"] == "normal").all()
    assert counted["decision_ms"].isna().any() and (counted["flag"] == "fast").any()
    groups = every["client_group"]
    assert groups.isna().any() and set(groups.dropna()) == {"9f2c41d07ab35e68", "0b7d5a11c3e4f296"}
    stamps = counted["created_at"].to_numpy()
    assert (np.diff(stamps) >= np.timedelta64(0)).all()  # vote order: time, then id
    assert not counted["vote_id"].is_monotonic_increasing


def test_columnar_scores_frame_is_the_rowwise_frame(varied):
    for metrics in (None, ["vague"], ["sharp", "nothing"]):
        pd.testing.assert_frame_equal(varied.scores_frame(metrics), rowwise_scores(varied, metrics))
    assert varied.scores_frame()["value"].isna().sum() == 1
    directions = varied.scores_frame().groupby("metric")["higher_is_better"].unique()
    assert [list(d) for d in directions] == [[True], [False]]  # sharp, vague


def test_empty_frames_are_the_rowwise_frames(db_store):
    pd.testing.assert_frame_equal(db_store.votes_frame(), rowwise_votes(db_store))
    pd.testing.assert_frame_equal(db_store.scores_frame(), rowwise_scores(db_store))


def test_positions_finds_ids_and_marks_missing_ones():
    keys = np.array([30, 10, 20])
    np.testing.assert_array_equal(
        positions(np.array([10, 30, 25, 5, 99]), keys), [1, 0, -1, -1, -1]
    )
    np.testing.assert_array_equal(positions(np.array([1, 2]), np.array([], dtype=int)), [-1, -1])


# -- CSV ----------------------------------------------------------------------------------
def awkward_frame(n: int = 53) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    words = np.array(["plain", "comma, inside", 'say "hi"', "new\nline", "", "ünï ✓", " lead"])
    floats = rng.normal(0, 1, n) * 10.0 ** rng.integers(-8, 12, n)
    floats[:7] = [np.nan, np.inf, -0.0, 1e-5, 1e20, 0.1 + 0.2, 3.0]
    text = pd.Series(words[np.arange(n) % len(words)], dtype="str")
    text[3] = np.nan
    return pd.DataFrame(
        {
            "id": np.arange(n, dtype=np.int64) - 5,
            "text": text,
            "maybe_int": pd.array([None if k % 4 == 0 else k * 1000 for k in range(n)], "Int64"),
            "value": floats,
            "flag": np.arange(n) % 3 == 0,
            "nothing": pd.Series([None] * n, dtype=object),
            "object_text": pd.Series(
                [None if k % 5 else f"o{k},x" for k in range(n)], dtype=object
            ),
            'head "quoted", name': np.arange(n) * 0.5,
        }
    )


def pandas_csv(frame: pd.DataFrame, path) -> bytes:
    frame.to_csv(path, index=False, float_format=FLOAT_FORMAT, lineterminator="\n")
    return path.read_bytes()


@pytest.mark.parametrize("chunk_rows", [7, 100_000])
def test_write_csv_gives_pandas_bytes(tmp_path, chunk_rows):
    frame = awkward_frame()
    write_csv(frame, tmp_path / "fast.csv", FLOAT_FORMAT, chunk_rows=chunk_rows)
    assert (tmp_path / "fast.csv").read_bytes() == pandas_csv(frame, tmp_path / "pandas.csv")


def test_write_csv_quotes_carriage_returns_and_reads_back(tmp_path):
    frame = pd.DataFrame({"a": ["x\ry", "z"], "b": [1, 2]})
    write_csv(frame, tmp_path / "cr.csv", FLOAT_FORMAT)
    assert (tmp_path / "cr.csv").read_bytes() == b'a,b\n"x\ry",1\nz,2\n'
    back = read_table(tmp_path / "cr.csv")
    assert back["a"].tolist() == ["x\ry", "z"] and back["b"].tolist() == [1, 2]


def test_write_csv_leaves_other_kinds_to_pandas(tmp_path):
    for frame in (
        pd.DataFrame({"only": ["", "a"]}),  # one column: an empty field needs quotes
        pd.DataFrame({"when": pd.to_datetime(["2025-01-01", None]), "n": [1, 2]}),
        pd.DataFrame({"mixed": pd.Series([1.5, "x"], dtype=object), "n": [1, 2]}),
    ):
        write_csv(frame, tmp_path / "fast.csv", FLOAT_FORMAT)
        assert (tmp_path / "fast.csv").read_bytes() == pandas_csv(frame, tmp_path / "p.csv")


def test_exported_csv_tables_are_pandas_bytes(varied, tmp_path):
    tables, *_ = compute_tables(varied, rounds=20, seed=1)
    assert tables["votes"]["prompt_text"].str.contains('"', regex=False).any()
    for name, frame in tables.items():
        write_csv(frame, tmp_path / f"{name}.csv", FLOAT_FORMAT)
        expected = pandas_csv(frame, tmp_path / f"{name}.pandas.csv")
        got = (tmp_path / f"{name}.csv").read_bytes()
        # the one deliberate difference: "\r" is quoted (prompt texts: votes, prompts)
        expected = expected.replace(b"carriage\rreturn", b'"carriage\rreturn"')
        assert got == expected, name
