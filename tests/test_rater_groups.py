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
    # a group no rater is in is refused (a typo would read as "no votes"), nothing printed
    argv = ["--workspace", ws, "leaderboard", "--rater-group", "expret"]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and "--rater-group 'expret': no rater group" in err
    assert "Did you mean 'expert'?" in err and "Known: crowd, expert." in err


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
    from arena.ui.filter_row import ALL, filters_of, rater_choices

    options = filter_options(_grouped(arena_store))
    assert options["rater_group"] == ["crowd", "expert"]
    assert rater_choices(options) == [
        ALL, "human", "simulated", "judge", "group: crowd", "group: expert"
    ]  # fmt: skip
    assert filters_of(rater_kind="group: expert").key()[2:6] == (None, None, None, "expert")
    assert filters_of(rater_kind="judge").rater_kind == "judge"
    assert filters_of(rater_kind=ALL).key() == Filters().key()


# -- who sets a group: the login file, the Admin app; never a browser ------------------------
def _login_file(tmp_path, text_):
    path = tmp_path / "logins.txt"
    path.write_text(text_, encoding="utf-8")
    return str(path)


def test_the_login_file_takes_an_optional_group(tmp_path):
    from arena.commands.serve import read_auth_file, read_logins

    path = _login_file(
        tmp_path,
        "# invited raters\nann:pw-ann:expert\nbob:pw-bob\n\n carol : pw:with:colons:crowd\n"
        "dan:pw-dan:\n",
    )
    logins = read_logins(path)
    assert logins.auth == [
        ("ann", "pw-ann"),
        ("bob", "pw-bob"),
        ("carol", " pw:with:colons"),
        ("dan", "pw-dan"),
    ]
    assert logins.groups == {"ann": "expert", "carol": "crowd"}
    assert read_auth_file(path) == logins.auth  # the two-field form, as before
    assert read_auth_file(_login_file(tmp_path, "eve:pw-eve\n")) == [("eve", "pw-eve")]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("ann:pw:two words", "line 1: rater group"),
        ("ann::expert", "non-empty password"),
        (":pw:expert", "non-empty user"),
        ("ann", "'user:password'"),
    ],
)
def test_a_bad_login_line_is_refused_naming_the_line(tmp_path, line, message):
    from arena.cli import CommandError
    from arena.commands.serve import read_logins

    with pytest.raises(CommandError, match=message):
        read_logins(_login_file(tmp_path, line + "\n"))


def test_the_admin_app_sets_and_clears_a_group(store):
    from arena.ui.admin import RATER_COLUMNS, raters_table, set_group

    rid = store.rater_id("v1someissuedid0", client_group="g1")
    assert "rater_group" in RATER_COLUMNS
    assert set_group(store, rid, "expert") == f"Rater {rid} is in group 'expert' now."
    assert raters_table(store).set_index("rater_id").loc[rid, "rater_group"] == "expert"
    assert set_group(store, rid, "  ") == f"Rater {rid} is in no group now."
    assert pd.isna(raters_table(store).set_index("rater_id").loc[rid, "rater_group"])
    assert "rater group" in set_group(store, rid, "no spaces please")
    assert "unknown rater id" in set_group(store, 12345, "expert")
    assert set_group(store, None, "expert") == "Enter a rater id from the table."


def test_the_admin_app_has_the_group_control(store):
    import gradio as gr

    from arena.ui.admin import build_admin_app

    app = build_admin_app(store.with_settings(admin_secret="pw"))
    labels = {getattr(b, "label", None) for b in app.blocks.values()}
    buttons = {b.value for b in app.blocks.values() if isinstance(b, gr.Button)}
    assert "Group (e.g. expert, crowd; empty: none)" in labels and "Set group" in buttons


def _rater_rows(store):
    with store.session() as s:
        return {
            r.external_id: (r.kind, r.rater_group, r.login) for r in s.scalars(select(db.Rater))
        }


def test_logins_get_their_group_from_the_login_file(tmp_path):
    from gradio_client import Client

    from arena.config import load_settings
    from arena.serve import serve
    from arena.storage.store import Store
    from tests.arena_app import free_port
    from tests.arena_fixtures import build_fixture

    store = Store(load_settings(env={}, workspace=str(tmp_path / "ws")))
    build_fixture(store, n_prompts=2, seeds=1)
    # bob voted before the file put him in a group: the start of `arena serve` moves him
    store.rater_id("login:bob", login="bob", client_group="g1")
    auth = [("ann", "pw-ann-1"), ("bob", "pw-bob-1"), ("cy", "pw-cy-1")]
    port = free_port()
    server = serve(
        store,
        host="127.0.0.1",
        port=port,
        block=False,
        auth=auth,
        login_groups={"ann": "expert", "bob": "crowd"},
    )
    issued = "v1" + "0" * 48  # any id: a login is the rater, whatever id it sends
    try:
        assert _rater_rows(store)["login:bob"] == ("human", "crowd", "bob")
        for user, password in auth:
            client = Client(f"http://127.0.0.1:{port}/", verbose=False, auth=(user, password))
            battle = client.predict(issued, api_name="/battle")
            client.predict(battle["token"], issued, "left", 3000, api_name="/vote")
    finally:
        server.close()
    rows = _rater_rows(store)
    assert rows["login:ann"] == ("human", "expert", "ann")
    assert rows["login:bob"] == ("human", "crowd", "bob")
    assert rows["login:cy"] == ("human", None, "cy")
    store.close()


def test_a_browser_cannot_choose_its_kind_or_group(tmp_path):
    """A hostile client sends kind and group every way the public API could take them:
    extra arguments, keyword-ish dicts, fields beside ``data``. Every rater the web app
    made is a human in no group, and only /rater, /battle and /vote answer."""
    import httpx

    from arena.config import load_settings
    from arena.storage.store import Store
    from tests.arena_app import running_app
    from tests.arena_fixtures import build_fixture

    store = Store(load_settings(env={}, workspace=str(tmp_path / "ws")))
    build_fixture(store, n_prompts=2, seeds=1)
    attempts = [
        ["judge", "expert"],
        [{"kind": "judge", "group": "expert", "rater_group": "expert"}],
    ]
    with running_app(store) as url, httpx.Client(base_url=url, timeout=30) as http:

        def call(name, data, **extra):
            joined = http.post(f"gradio_api/call/{name}", json={"data": data, **extra})
            if joined.status_code != 200:
                return joined.status_code, None
            stream = http.get(f"gradio_api/call/{name}/{joined.json()['event_id']}")
            return 200, stream.text

        from tests.attack_kit import _last_event

        def value(name, data, **extra):
            status, body = call(name, data, **extra)
            if status != 200:
                return None
            event, payload = _last_event(body)
            return json.loads(payload)[0] if event == "complete" else None

        rater = value("rater", [])["rater_id"]
        for extra in attempts:
            got = value("rater", extra, kind="judge", rater_group="expert")
            assert got is None or set(got) == {"rater_id"}
            battle = value("battle", [rater, *extra], kind="judge", group="expert")
            if battle is None:  # too many arguments: refused; the plain call then
                battle = value("battle", [rater], kind="judge", group="expert")
            voted = value("vote", [battle["token"], rater, "left", 3000, *extra], kind="judge")
            if voted is None:
                value("vote", [battle["token"], rater, "left", 3000], kind="judge")
        for name in ("set_rater_group", "set_group", "rater_id", "admin"):
            assert call(name, [rater, "expert"])[0] == 404
    rows = _rater_rows(store)
    assert rows and all(kind == "human" and group is None for kind, group, _ in rows.values())
    with store.session() as s:
        assert s.scalar(select(db.Vote.id)) is not None  # the votes were stored, as humans'
    store.close()


def test_a_judge_is_no_yardstick_of_the_humans_quality(arena_store):  # noqa: F811
    """A contrarian judge voting on the same pairs changes no human's quality signals and
    is never flagged by the policy; its row counts its votes."""
    from arena.voting.exclusion import quality_report, refresh_exclusions

    before = quality_report(arena_store)
    _add_votes(arena_store, _judge_plan(400))
    after = quality_report(arena_store)
    judge = after["kind"] == "judge"
    # the same numbers (a judge's row without signals turns integer columns to floats)
    pd.testing.assert_frame_equal(after[~judge].reset_index(drop=True), before, check_dtype=False)
    row = after[judge].iloc[0]
    assert row["votes"] == 400 and row["flag_reasons"] == ""
    refresh_exclusions(arena_store)
    raters = arena_store.raters_frame().set_index("kind")
    assert not bool(raters.loc["judge", "excluded"])


def test_a_group_change_refreshes_the_cached_reports(arena_store):  # noqa: F811
    """The report caches key on Store.data_signature: moving a rater to another group,
    with no new vote, must give the group's board anew."""
    service = LeaderboardService.of(arena_store.with_settings(bootstrap_rounds=1))
    human = int(arena_store.raters_frame().set_index("kind").loc["human", "rater_id"])
    signature = arena_store.data_signature()
    assert service.get(Filters(rater_group="expert")).votes_used == 0
    arena_store.set_rater_group(human, "expert")
    assert arena_store.data_signature() != signature
    assert service.get(Filters(rater_group="expert")).votes_used == 208
    moved = arena_store.data_signature()
    arena_store.set_rater_group(human, "crowd")
    assert arena_store.data_signature() != moved
    assert service.get(Filters(rater_group="expert")).votes_used == 0
    assert service.get(Filters(rater_group="crowd")).votes_used == 208
