"""Fuzzing (hypothesis) of the vote and import entry points: random payloads raise only
the documented error types, and a refused call writes nothing. The battle path is also
run on both back ends (SQLite and PostgreSQL) through ``db_store``."""

from __future__ import annotations

import io
import itertools
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from sqlalchemy import func, select

from arena.intake.prompts import import_prompts
from arena.intake.reading import IngestError
from arena.storage import db
from arena.storage.images import ImageError, decode_rgb
from arena.voting.battles import BattleError, record_vote, serve_battle
from arena.voting.matchmaking import BalancedPolicy, Matchmaker
from tests.arena_fixtures import build_fixture

FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
RATER = "fuzz-rater-000001"


def counts(store) -> tuple[int, int, int, int]:
    with store.session() as s:
        return tuple(
            s.scalar(select(func.count(t.id))) for t in (db.Vote, db.Battle, db.Rater, db.Prompt)
        )


@pytest.fixture
def arena(store):
    build_fixture(store, n_prompts=4, seeds=2)
    return store, Matchmaker(store, BalancedPolicy(), np.random.default_rng(0)), itertools.count()


junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=80),
    st.binary(max_size=40),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


@FUZZ
@given(
    token=st.one_of(junk, st.just("VALID")),
    rater=st.one_of(junk, st.just("OWNER")),
    outcome=st.one_of(junk, st.sampled_from(["left", "right", "tie", "both_bad"])),
    decision=junk,
)
def test_record_vote_random_payloads(arena, token, rater, outcome, decision):
    store, mm, serial = arena
    owner = f"fuzz-rater-{next(serial):06d}"  # a fresh rater: never runs out of pairs
    battle = serve_battle(store, owner, mm)
    token = battle.token if token == "VALID" else token
    rater = owner if rater == "OWNER" else rater
    before = counts(store)
    try:
        receipt = record_vote(store, token, rater, outcome, decision, matchmaker=mm)
    except BattleError as exc:
        assert exc.reason in BattleError.REASONS
        assert counts(store) == before  # refused: nothing written
        return
    assert receipt.battle_token == battle.token
    assert counts(store)[0] == before[0] + 1


@FUZZ
@given(
    rows=st.lists(st.text(max_size=60), max_size=6),
    kind=st.sampled_from(["txt", "csv", "tsv", "jsonl"]),
    raw=st.one_of(st.none(), st.binary(max_size=200)),
)
def test_import_prompts_random_files(store, tmp_path_factory, rows, kind, raw):
    path = tmp_path_factory.mktemp("prompts") / f"p.{kind}"
    if raw is not None:
        path.write_bytes(raw)
    else:
        sep = {"csv": ",", "tsv": "\t"}.get(kind, "")
        head = f"text{sep}id\n" if sep else ""
        body = "\n".join(f"{r}{sep}{k}" if sep else r for k, r in enumerate(rows))
        path.write_text(head + body, encoding="utf-8", errors="surrogatepass")
    before = counts(store)
    try:
        import_prompts(store, path, "fuzz")
    except IngestError as exc:
        assert str(path) in str(exc) or "prompt set" in str(exc)
        assert counts(store) == before  # nothing half-written


def _png(w: int = 16, h: int = 12) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (h, w, 3), np.uint8)).save(out, "PNG")
    return out.getvalue()


PNG = _png()


@FUZZ
@given(
    data=st.one_of(
        st.binary(max_size=300),
        st.builds(
            lambda pos, b: PNG[:pos] + bytes([b]) + PNG[pos + 1 :],
            st.integers(0, len(PNG) - 1),
            st.integers(0, 255),
        ),
        st.builds(lambda n: PNG[:n], st.integers(0, len(PNG))),
    )
)
def test_decode_random_image_bytes(data):
    try:
        img = decode_rgb(data, "fuzz.png")
    except ImageError as exc:
        assert str(exc).startswith("fuzz.png")
        return
    assert img.mode == "RGB"


def test_decompression_bomb_header_is_a_clear_error():
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0"))
    bomb += chunk(b"IEND", b"")
    with pytest.raises(ImageError, match=r"bomb\.png: .*too large"):
        decode_rgb(bomb, "bomb.png", max_pixels=10**12)
    with pytest.raises(ImageError, match="max_image_pixels"):
        decode_rgb(bomb, "bomb.png")


def test_long_and_unicode_prompts_on_import(store, tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("a fox 🦊 in 雪, café <b>x</b>\n" + "x" * 2001 + "\n", encoding="utf-8")
    with pytest.raises(IngestError, match=r"line 2: .*2001 characters.*max_prompt_chars"):
        import_prompts(store, path, "long")
    assert counts(store)[3] == 0
    path.write_text("a fox 🦊 in 雪, café <b>x</b>\n", encoding="utf-8")
    import_prompts(store, path, "long")
    assert store.prompts_frame()["text"].tolist() == ["a fox 🦊 in 雪, café <b>x</b>"]


def test_battle_path_on_both_backends(db_store):
    """serve/vote, every refusal, and a concurrent double vote, on SQLite and PostgreSQL."""
    build_fixture(db_store, n_prompts=3, seeds=2)
    mm = Matchmaker(db_store, BalancedPolicy(), np.random.default_rng(0))
    battle = serve_battle(db_store, RATER, mm)
    before = counts(db_store)
    for token, rater, outcome, reason in [
        ("x" * 32, RATER, "left", "unknown_token"),
        (battle.token, "other-rater-0001", "left", "wrong_rater"),
        (battle.token, RATER, "sideways", "bad_outcome"),
    ]:
        with pytest.raises(BattleError) as info:
            record_vote(db_store, token, rater, outcome, 3000)
        assert info.value.reason == reason
    assert counts(db_store)[:2] == before[:2]
    results: list = []

    def vote():
        try:
            results.append(record_vote(db_store, battle.token, RATER, "left", 3000).vote_id)
        except BattleError as exc:
            results.append(exc.reason)

    threads = [threading.Thread(target=vote) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(map(str, results)).count("already_voted") == 5
    assert counts(db_store)[0] == before[0] + 1
