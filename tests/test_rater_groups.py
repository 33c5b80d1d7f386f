"""Rater kinds (human, simulated, judge) and rater groups (issue 21, item 1): the
schema and its migration, the store's verbs, the login file, the Admin app, the
filters of every report, and that no browser can choose its own kind or group."""

import json

import numpy as np
import pandas as pd
import pytest
from alembic import command
from sqlalchemy import inspect, select, text

from arena.reports.agreement import AgreementService
from arena.reports.export import compute_export
from arena.reports.frames import Filters
from arena.reports.leaderboard import LeaderboardService
from arena.storage import db
from arena.storage.migrate import alembic_config, current_revision, upgrade_to_head
from arena.storage.store import StoreError
from tests.test_leaderboard import _add_votes, arena_store, simulated_plan  # noqa: F401 (a fixture)


def _migrate(engine, revision, down=False):
    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(config, revision)


def _rater_columns(engine):
    return {c["name"] for c in inspect(engine).get_columns("raters")}


def test_0004_adds_the_group_keeps_the_raters_and_downgrades(db_url, tmp_path):
    engine = db.make_engine(db_url or f"sqlite:///{tmp_path / 'old.db'}")
    _migrate(engine, "0003")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO raters (id, external_id, kind, excluded, excluded_reason, "
                "exclusion_manual, created_at) VALUES (1, 'sim-00', 'simulated', false, '', "
                "false, '2026-01-01 00:00:00')"
            )
        )
    assert "rater_group" not in _rater_columns(engine)
    upgrade_to_head(engine)
    assert "rater_group" in _rater_columns(engine)
    with engine.begin() as conn:
        assert conn.execute(text("SELECT kind, rater_group FROM raters")).all() == [
            ("simulated", None)
        ]
        conn.execute(text("UPDATE raters SET rater_group = 'expert'"))
    _migrate(engine, "0003", down=True)
    assert current_revision(engine) == "0003"
    assert "rater_group" not in _rater_columns(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT external_id, kind FROM raters")).all() == [
            ("sim-00", "simulated")
        ]
    upgrade_to_head(engine)  # and up again
    assert "rater_group" in _rater_columns(engine)
    engine.dispose()


def test_0004_downgrade_refuses_a_database_holding_judges(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    upgrade_to_head(engine)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO raters (id, external_id, kind, excluded, excluded_reason, "
                "exclusion_manual, created_at) VALUES (1, 'judge:vlm', 'judge', false, '', "
                "false, '2026-01-01 00:00:00')"
            )
        )
    with pytest.raises(RuntimeError, match="kind 'judge'"):
        _migrate(engine, "0003", down=True)
    assert "rater_group" in _rater_columns(engine)
    engine.dispose()


def test_kinds_and_groups_round_trip_through_the_store(db_store):
    judge = db_store.rater_id("judge:tiny-vlm", kind="judge", group="vlm")
    expert = db_store.rater_id("login:ada", kind="human", login="ada", group=" expert ")
    crowd = db_store.rater_id("v1browser0001", kind="human")
    frame = db_store.raters_frame().set_index("rater_id")
    assert frame.loc[judge, "kind"] == "judge" and frame.loc[judge, "rater_group"] == "vlm"
    assert frame.loc[expert, "rater_group"] == "expert"
    assert pd.isna(frame.loc[crowd, "rater_group"])
    # first sight decides: asking again with another group changes nothing
    assert db_store.rater_id("login:ada", group="crowd") == expert
    assert db_store.raters_frame().set_index("rater_id").loc[expert, "rater_group"] == "expert"
    assert db_store.set_rater_group(crowd, "crowd") == "crowd"
    assert db_store.set_rater_group(expert, "") is None
    frame = db_store.raters_frame().set_index("rater_id")
    assert frame.loc[crowd, "rater_group"] == "crowd"
    assert pd.isna(frame.loc[expert, "rater_group"])
    with pytest.raises(StoreError, match="rater group"):
        db_store.set_rater_group(crowd, "<script>")
    with pytest.raises(StoreError, match="rater group"):
        db_store.rater_id("v1browser0002", group="x" * 41)
    with pytest.raises(StoreError, match="unknown rater id"):
        db_store.set_rater_group(999, "crowd")
    with pytest.raises(StoreError, match="rater kind"):
        db_store.rater_id("v1browser0003", kind="robot")


def test_login_groups_update_the_raters_that_logged_in(store):
    ada = store.rater_id("login:ada", login="ada", client_group="g1")
    bob = store.rater_id("login:bob", login="bob", client_group="g1", group="expert")
    assert store.set_login_groups({"ada": "expert", "bob": None, "carol": "crowd"}) == 1
    frame = store.raters_frame().set_index("rater_id")
    assert frame.loc[ada, "rater_group"] == "expert"
    assert frame.loc[bob, "rater_group"] == "expert"  # no group in the file: kept
    assert store.find_rater("login:carol") is None  # never creates a rater
    with pytest.raises(StoreError, match="rater group"):
        store.set_login_groups({"ada": "two words"})


# -- reports: judges stay out of the human board, groups filter every report ----------------


def _judge_plan(n=400):
    """Votes of a judge that prefers the weakest models: it would turn the board over."""
    rng = np.random.default_rng(7)
    plan = []
    for left, right, outcome, _kind, category, day in simulated_plan(rng, n):
        flipped = {"left": "right", "right": "left"}.get(outcome, outcome)
        plan.append((left, right, flipped, "judge", category, day))
    return plan


def test_the_human_leaderboard_is_unchanged_when_judge_votes_are_added(arena_store):  # noqa: F811
    service = LeaderboardService(arena_store.with_settings(bootstrap_rounds=20))
    before = {
        "all": service.get(seed=3),
        "human": service.get(Filters(rater_kind="human"), seed=3),
    }
    _add_votes(arena_store, _judge_plan())
    assert before["all"].votes_used == 808
    service = LeaderboardService(arena_store.with_settings(bootstrap_rounds=20))  # no cache
    after_all = service.get(seed=3)
    after_human = service.get(Filters(rater_kind="human"), seed=3)
    assert after_all.votes_used == 808 and after_human.votes_used == 208
    pd.testing.assert_frame_equal(after_all.frame, before["all"].frame)
    pd.testing.assert_frame_equal(after_human.frame, before["human"].frame)
    judged = service.get(Filters(rater_kind="judge"), seed=3)
    assert judged.votes_used == 400
    ratings = judged.frame.set_index("model")["rating"]
    assert ratings["alpha"] < ratings["delta"]  # the judge's own board: upside down


def test_arena_leaderboard_counts_judges_only_when_asked(arena_store, capsys):  # noqa: F811
    from arena.cli import main

    _add_votes(arena_store, _judge_plan(50))
    ws = str(arena_store.settings.workspace)

    def board(*flags):
        assert main(["--workspace", ws, "leaderboard", "--format", "json", "--bootstrap", "1",
                     *flags]) == 0  # fmt: skip
        return json.loads(capsys.readouterr().out)["leaderboard"]

    assert sum(r["votes"] for r in board()) == 2 * 808
    assert sum(r["votes"] for r in board("--rater-kind", "judge")) == 2 * 50
    with arena_store.session() as s:
        for rater in s.scalars(select(db.Rater)):
            rater.rater_group = "expert" if rater.kind == "human" else "crowd"
    assert sum(r["votes"] for r in board("--rater-group", "expert")) == 2 * 208
    assert sum(r["votes"] for r in board("--rater-group", "crowd")) == 2 * 600
    assert board("--rater-group", "nobody") == []


def _grouped(store):
    with store.session() as s:
        for rater in s.scalars(select(db.Rater)):
            rater.rater_group = {"human": "expert", "simulated": "crowd"}.get(rater.kind, "vlm")
    return store


def test_every_report_filters_by_group_and_kind(arena_store):  # noqa: F811
    _add_votes(arena_store, _judge_plan(40))
    store = _grouped(arena_store.with_settings(bootstrap_rounds=2))
    board = LeaderboardService(store)
    assert board.get(Filters(rater_group="expert")).votes_used == 208
    assert board.get(Filters(rater_group="crowd")).votes_used == 600
    assert board.get(Filters(rater_group="vlm")).votes_used == 0  # judges: only when asked
    assert board.get(Filters(rater_kind="judge", rater_group="vlm")).votes_used == 40
    assert board.get(Filters(rater_kind="human", rater_group="crowd")).votes_used == 0
    assert "rater group expert" in Filters(rater_group="expert").describe()
    agreement = AgreementService(store)
    assert agreement.get(Filters(rater_group="expert")).votes_used == 208
    assert agreement.get(Filters(rater_kind="judge")).votes_used == 40
    assert agreement.get().votes_used == 808
    exported = compute_export(store, rounds=1, filters=Filters(rater_group="expert"))
    votes = exported.tables["votes"]
    assert len(votes) == 208 and set(votes["rater_group"]) == {"expert"}
    assert exported.summary["votes counted"] == "rater group expert"
    every = compute_export(store, rounds=1).tables["votes"]
    assert len(every) == 808 and "judge" not in set(every["rater_kind"])
    assert "votes counted" not in compute_export(store, rounds=1).summary
    judges = compute_export(store, rounds=1, filters=Filters(rater_kind="judge"))
    assert set(judges.tables["votes"]["rater_kind"]) == {"judge"}


def test_the_raters_dropdown_offers_kinds_and_groups(arena_store):  # noqa: F811
    from arena.reports.frames import filter_options
    from arena.ui.leaderboard_tab import ALL, filters_of, rater_choices

    options = filter_options(_grouped(arena_store))
    assert options["rater_group"] == ["crowd", "expert"]
    assert rater_choices(options) == [
        ALL, "human", "simulated", "judge", "group: crowd", "group: expert"
    ]  # fmt: skip
    assert filters_of(rater_kind="group: expert").key()[2:] == (None, None, None, "expert")
    assert filters_of(rater_kind="judge").rater_kind == "judge"
    assert filters_of(rater_kind=ALL).key() == Filters().key()
