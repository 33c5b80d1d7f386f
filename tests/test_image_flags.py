"""Failure flags and the gallery (issue 22, items 1 and 2) on real workspaces: migration
0006 up and down on SQLite and PostgreSQL, the Store's review verbs (editable verdicts,
refusals that write nothing), the gallery's reads and views against hand counts, the
cached failure rates, the exports and report.html, and which apps show any of it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from alembic import command
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from arena.config import load_settings
from arena.reports import failures as fl
from arena.reports import gallery as gv
from arena.reports.export import export_workspace, read_table
from arena.reports.frames import Filters
from arena.reports.leaderboard import LeaderboardService
from arena.stats.failures import ALL_REVIEWS, ANY_FAILURE, BLIND, failure_rates
from arena.storage import db
from arena.storage.migrate import alembic_config, current_revision, upgrade_to_head
from arena.storage.review_verbs import parse_failure_modes
from arena.storage.store import Store, StoreError
from arena.ui.review_images import ImageHandles
from tests.agreement_data import populate_store, small_arena


def _migrate(engine, revision, down=False):
    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(config, revision)


def _indexes(engine, table) -> set[str]:
    return {ix["name"] for ix in inspect(engine).get_indexes(table)}


def test_0006_adds_the_flags_table_and_indexes_and_downgrades(db_url, tmp_path):
    engine = db.make_engine(db_url or f"sqlite:///{tmp_path / 'old.db'}")
    _migrate(engine, "0005")
    assert "image_flags" not in inspect(engine).get_table_names()
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO models (id, name, kind, source, params, description, active, "
                "created_at) VALUES (1, 'm', 'import', '', '{}', '', true, '2026-01-01')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO images (id, sha256, model_id, prompt_id, seed, width, height, "
                "settings_hash, params, broken, source_name, created_at) VALUES (1, 'ab', 1, "
                "NULL, 3, 8, 8, '', '{}', NULL, '', '2026-01-01')"
            )
        )
    _migrate(engine, "0006")
    assert current_revision(engine) == "0006"
    assert "image_flags" in inspect(engine).get_table_names()
    assert "ix_images_prompt_seed" in _indexes(engine, "images")
    assert "ix_battles_prompt" in _indexes(engine, "battles")
    insert = text(
        "INSERT INTO image_flags (image_id, reviewer, flag, note, blind, created_at, "
        "updated_at) VALUES (1, 'ann', 'hands', '', false, '2026-01-01', '2026-01-01')"
    )
    with engine.begin() as conn:
        conn.execute(insert)
        # one row per (image, reviewer, blind, mode)
        with pytest.raises(IntegrityError), conn.begin_nested():
            conn.execute(insert)
    with pytest.raises(RuntimeError, match="image_flags holds 1 reviewer flag row"):
        _migrate(engine, "0005", down=True)
    assert current_revision(engine) == "0006"  # refused: nothing changed
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM image_flags"))
    _migrate(engine, "0005", down=True)
    assert current_revision(engine) == "0005"
    assert "image_flags" not in inspect(engine).get_table_names()
    assert "ix_images_prompt_seed" not in _indexes(engine, "images")
    assert "ix_battles_prompt" not in _indexes(engine, "battles")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id, seed FROM images")).all() == [(1, 3)]
    upgrade_to_head(engine)  # and up again
    assert "image_flags" in inspect(engine).get_table_names()
    engine.dispose()


@pytest.fixture
def arena_store(db_store):
    """The small synthetic arena (4 models x 30 prompts, 900 votes) on each back end."""
    data = small_arena()
    populate_store(db_store, data)
    return db_store, data


def test_verdicts_are_saved_replaced_and_removed(arena_store):
    store, _ = arena_store
    assert store.save_review(1, "ann", ["Text Rendering", "hands", "hands"]) == (
        "hands",
        "text rendering",
    )  # the configured order and spelling, once each
    assert store.save_review(1, "ann", [], blind=True) == ("none",)
    assert store.save_review(1, "bob", ["other"], note="  melted clock  ") == ("other",)
    flags = store.image_flags_frame()
    assert flags[["image_id", "reviewer", "flag", "blind", "note"]].values.tolist() == [
        [1, "ann", "hands", False, ""],
        [1, "ann", "text rendering", False, ""],
        [1, "ann", "none", True, ""],
        [1, "bob", "other", False, "melted clock"],
    ]
    first = flags.set_index(["reviewer", "flag"]).loc[("ann", "hands")]
    # Saving again replaces ann's open verdict only; the kept mode keeps its created_at.
    assert store.save_review(1, "ann", ["hands"], note="six fingers") == ("hands",)
    again = store.image_flags_frame()
    mine = again[(again.reviewer == "ann") & ~again.blind]
    assert mine["flag"].tolist() == ["hands"] and mine["note"].tolist() == ["six fingers"]
    kept = mine.iloc[0]
    assert kept["flag_id"] == first["flag_id"] and kept["created_at"] == first["created_at"]
    assert kept["updated_at"] >= first["updated_at"]
    assert len(again[(again.reviewer == "ann") & again.blind]) == 1  # the blind one stays
    assert store.remove_review(1, "ann", blind=False) == 1
    assert store.remove_review(1, "ann", blind=False) == 0
    assert store.remove_review(1, "bob") == 1
    assert store.image_flags_frame()[["reviewer", "flag", "blind"]].values.tolist() == [
        ["ann", "none", True]
    ]


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((1, "ann", ["feet"]), {}, "failure mode 'feet' is not one of hands"),
        ((1, "ann", ["none", "hands"]), {}, "either 'none'"),
        ((1, "ann", ["other"]), {}, "'other' needs a note"),
        ((1, "ann", ["other"]), {"note": "   "}, "'other' needs a note"),
        ((1, "  ", ["hands"]), {}, "reviewer '': expected a name"),
        ((1, "a\nb", ["hands"]), {}, "expected a name of 1 to 200 printable"),
        ((1, "ann", ["hands"]), {"note": "x" * 2001}, "note of 2001 characters"),
        ((10**6, "ann", ["hands"]), {}, "image 1000000: no such image"),
    ],
)
def test_a_refused_verdict_names_the_input_and_leaves_the_old_one(
    arena_store, args, kwargs, message
):
    store, _ = arena_store
    store.save_review(1, "ann", ["hands"])
    before = store.image_flags_frame()
    with pytest.raises(StoreError, match=message):
        store.save_review(*args, **kwargs)
    pd.testing.assert_frame_equal(store.image_flags_frame(), before)


def test_the_failure_modes_setting(tmp_path):
    assert parse_failure_modes(" hands ,, text ,other ") == ("hands", "text", "other")
    for bad, message in [
        ("", "is empty"),
        ("hands, None", "'none' is reserved"),
        ("hands, Hands", "lists 'Hands', 'hands' more than once"),
        ("x" * 41, "1 to 40 printable"),
    ]:
        with pytest.raises(StoreError, match=message):
            parse_failure_modes(bad)
    store = Store(load_settings(env={}, workspace=str(tmp_path), failure_modes="blur, sky"))
    try:
        assert store.failure_modes == ("blur", "sky")
        with pytest.raises(StoreError, match="'hands' is not one of blur, sky"):
            store.check_flags(["hands"])
    finally:
        store.close()


def _hand_vote_counts(votes: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for v in votes.itertuples(index=False):
        for side, image in (("left", v.left_image_id), ("right", v.right_image_id)):
            decisive = v.outcome in ("left", "right")
            rows.append(
                {
                    "image_id": image,
                    "votes": 1,
                    "wins": int(v.outcome == side),
                    "losses": int(decisive and v.outcome != side),
                    "ties": int(v.outcome == "tie"),
                    "both_bad": int(v.outcome == "both_bad"),
                }
            )
    return pd.DataFrame(rows).groupby("image_id").sum()


def test_gallery_vote_counts_and_scores_match_the_votes_and_scores(arena_store):
    store, data = arena_store
    ids = [1, 2, 3, 31, 62, 93, 119]
    counts = store.image_vote_counts(ids).set_index("image_id")
    expected = _hand_vote_counts(store.votes_frame()).reindex(ids, fill_value=0)
    pd.testing.assert_frame_equal(counts, expected.astype(np.int64), check_names=False)
    assert counts["votes"].sum() > 0
    scores = store.image_scores(ids)
    want = data.scores[data.scores.image_id.isin(ids)].sort_values(["image_id", "metric"])
    np.testing.assert_allclose(scores["value"], want["value"])
    assert scores["metric"].tolist() == want["metric"].tolist()


def test_the_newest_score_version_is_shown(store):
    from tests.arena_fixtures import build_fixture

    build_fixture(store, n_prompts=1, seeds=1)
    image = int(store.gallery_images()["image_id"].iloc[0])
    with store.session() as s:
        s.add(db.Score(image_id=image, metric="m", version="1", value=1.0, higher_is_better=True))
        s.flush()
        s.add(db.Score(image_id=image, metric="m", version="2", value=2.0, higher_is_better=True))
    assert store.image_scores([image])[["version", "value"]].values.tolist() == [["2", 2.0]]
    assert store.metric_values("m", store.gallery_images()["model"].iloc[0])["value"].max() == 2


def test_the_prompt_view_shows_every_model_at_one_size(arena_store):
    store, data = arena_store
    handles = ImageHandles.of(store)
    view = gv.prompt_view(store, handles, 5)
    images = data.images[data.images.prompt_id == 5]
    assert view.image_ids == images.sort_values("model")["image_id"].tolist()
    assert [label.split(" ", 1)[1] for label in view.labels] == sorted(images["model"])
    assert view.html.count('<figure class="rv-card"') == 4
    assert "--rv-aspect:1.0000" in view.html  # every card the same box
    counts = store.image_vote_counts(view.image_ids).set_index("image_id")
    for image_id in view.image_ids:
        assert f"votes {counts.at[image_id, 'votes']}: {counts.at[image_id, 'wins']} won" in (
            view.html
        )
        assert handles.url(image_id) in view.html
        assert handles.seal(image_id) != f"{image_id:016x}"  # not the id in plain sight
    assert "sharp " in view.html and "vague " in view.html  # metric values under each image
    assert "prompt 5" in view.header
    with pytest.raises(gv.GalleryError, match="prompt 9999 has no images"):
        gv.prompt_view(store, handles, 9999)
    with pytest.raises(gv.GalleryError, match="no images with seed 7; its seeds: 0"):
        gv.prompt_view(store, handles, 5, 7)
    with pytest.raises(gv.GalleryError, match="prompt id 'x'"):
        gv.prompt_view(store, handles, "x")


def test_the_model_view_sorts_and_filters_on_any_metric(arena_store):
    store, data = arena_store
    handles = ImageHandles.of(store)
    model = "model-02"
    sharp = data.scores[data.scores.metric == "sharp"].set_index("image_id")["value"]
    mine = data.images[data.images.model == model]["image_id"]
    values = sharp.reindex(mine)
    view = gv.model_view(store, handles, model, "sharp", descending=True, page_size=5)
    assert view.image_ids == values.sort_values(ascending=False).index[:5].tolist()
    assert "page 1 of 6" in view.header and "30 image(s)" in view.header
    last = gv.model_view(store, handles, model, "sharp", descending=True, page=6, page_size=5)
    assert last.image_ids == values.sort_values(ascending=False).index[25:].tolist()
    low, high = values.quantile(0.25), values.quantile(0.75)
    between = gv.model_view(
        store, handles, model, filter_metric="sharp", low=low, high=high, page_size=200
    )
    assert sorted(between.image_ids) == sorted(values[(values >= low) & (values <= high)].index)
    category = data.prompts["category"].iloc[0]
    in_category = set(data.prompts.loc[data.prompts.category == category, "prompt_id"])
    by_category = gv.model_view(store, handles, model, category=category, page_size=200)
    assert sorted(by_category.image_ids) == sorted(
        data.images[(data.images.model == model) & data.images.prompt_id.isin(in_category)][
            "image_id"
        ]
    )
    assert gv.model_view(store, handles, model, broken=True).image_ids == []
    for kwargs, message in [
        ({"model": "nope"}, "unknown model 'nope'"),
        ({"model": model, "sort": "fid"}, "sort by 'fid': not a scored metric"),
        ({"model": model, "page_size": 0}, "page size 0: expected 1 to 200"),
    ]:
        with pytest.raises(gv.GalleryError, match=message):
            gv.model_view(store, handles, **kwargs)


def test_the_blind_view_names_no_model_and_the_sample_continues(arena_store):
    store, data = arena_store
    handles = ImageHandles.of(store)
    ids = gv.draw_blind_sample(store, "ann", 8, seed=3)
    assert len(ids) == 8
    assert pd.Series(data.images.set_index("image_id").loc[ids, "model"]).value_counts().max() == 2
    view = gv.blind_view(store, handles, ids, "ann")
    assert view.image_ids == ids
    for name in data.images["model"].unique():
        assert name not in view.html and name not in view.header
    assert "sharp" not in view.html and "votes" not in view.html
    store.save_review(ids[0], "ann", ["hands"], blind=True)
    store.save_review(ids[1], "bob", ["hands"], blind=True)  # someone else's: not shown
    store.save_review(ids[2], "ann", ["hands"])  # ann's open verdict: not shown here
    view = gv.blind_view(store, handles, ids, "ann")
    assert view.html.count("flags: hands (you)") == 1 and "1 judged by you" in view.header
    again = gv.draw_blind_sample(store, "ann", 8, seed=3)
    assert ids[0] not in again and ids[1] in again  # only ann's blind verdicts are passed over
    with pytest.raises(gv.GalleryError, match="sample size 0"):
        gv.draw_blind_sample(store, "ann", 0, seed=3)


def test_handles_are_opaque_and_round_trip(store):
    handles = ImageHandles.of(store)
    seen = {handles.seal(i) for i in range(1, 2001)}
    assert len(seen) == 2000
    assert all(handles.open(handles.seal(i)) == i for i in (0, 1, 17, 2**33, 2**40 - 1))
    for bad in ("", "zz", "0" * 15, "G" * 16, "../../etc/passwd", None, 5):
        assert handles.open(bad) is None
    # Neighbouring ids do not give neighbouring handles, and another key gives others.
    a, b = handles.seal(100), handles.seal(101)
    assert sum(x != y for x, y in zip(a, b, strict=True)) > 8
    assert ImageHandles(b"another key").seal(100) != a
    assert ImageHandles.of(store) is handles  # one per store, its key in the database


def test_failure_rates_are_cached_on_the_flags_not_the_votes(arena_store):
    store, data = arena_store
    service = fl.FailureService(store)
    board = LeaderboardService(store)
    board.get(rounds=5)
    first = service.get()
    assert first.flags == 0 and service.computations == 1
    service.get()
    assert service.computations == 1
    store.save_review(1, "ann", ["hands"], blind=True)
    after = service.get()
    assert service.computations == 2
    cell = after.rates[
        (after.rates.model == "model-00")
        & (after.rates.source == BLIND)
        & (after.rates["mode"] == ANY_FAILURE)
    ]
    assert (cell["reviewed"].item(), cell["flagged"].item()) == (1, 1)
    board.get(rounds=5)
    assert board.computations == 1  # a flag does not refit the leaderboard
    store.save_review(1, "ann", [], blind=True)  # edited: the cache follows
    assert service.get().rates.loc[cell.index, "flagged"].item() == 0
    # the prompt filters narrow the images: only image 1's category has its review
    prompt = data.images.set_index("image_id").at[1, "prompt_id"]
    mine = data.prompts.set_index("prompt_id").at[prompt, "category"]
    other = sorted(set(data.prompts["category"]) - {mine})[0]
    assert service.get(Filters(category=other)).rates["reviewed"].sum() == 0
    inside = service.get(Filters(category=mine)).rates
    inside = inside[inside["mode"] == ANY_FAILURE].set_index(["model", "source"])["reviewed"]
    assert inside.sum() == 2 and inside[("model-00", BLIND)] == 1


def test_the_export_writes_the_failure_tables(arena_store, tmp_path):
    store, data = arena_store
    for image_id, model in zip(data.images.image_id[:40], data.images.model[:40], strict=True):
        flags = ["hands"] if model in ("model-00", "model-01") and image_id % 3 else []
        store.save_review(int(image_id), "ann", flags, blind=True)
    store.save_review(50, "bob", ["text rendering"])
    export_workspace(store, tmp_path, rounds=20, seed=4)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    for name in ("failure_rates", "failure_correlation", "image_flags"):
        assert manifest["tables"][name]["file"] == f"{name}.csv"
    rates = read_table(tmp_path / "failure_rates.csv")
    images = data.images[["image_id", "model"]]
    direct = failure_rates(store.image_flags_frame(), images, store.failure_modes)
    pd.testing.assert_frame_equal(
        rates[["model", "source", "mode", "reviewed", "flagged"]],
        direct[["model", "source", "mode", "reviewed", "flagged"]],
        check_dtype=False,
    )
    np.testing.assert_allclose(rates["ci_low"], direct["ci_low"], rtol=1e-9)
    flags = read_table(tmp_path / "image_flags.csv")
    assert len(flags) == 41 and set(flags["reviewer"]) == {"ann", "bob"}
    correlation = read_table(tmp_path / "failure_correlation.csv")
    row = correlation[(correlation.source == BLIND) & (correlation["mode"] == ANY_FAILURE)]
    assert row["n_models"].item() == 4
    assert manifest["summary"]["reviewed images"] == 41
    page = (tmp_path / "report.html").read_text()
    assert "<h2>Failure flags</h2>" in page and "Failure rate vs human rating" in page
    assert "failure_rates" in page and ALL_REVIEWS in page


def _labels(app) -> set:
    texts = set()
    for block in app.blocks.values():
        for name in ("label", "value"):
            if isinstance(getattr(block, name, None), str):
                texts.add(getattr(block, name))
    return texts


@pytest.mark.parametrize("reveal", [False, True])
def test_only_the_admin_app_has_the_gallery_and_the_flags(store, reveal):
    from arena.ui.admin import build_admin_app
    from arena.ui.app import build_app
    from tests.arena_fixtures import build_fixture

    build_fixture(store, n_prompts=2, seeds=1)
    raters = build_app(store.with_settings(reveal_models=reveal))
    admin = build_admin_app(store.with_settings(admin_secret="pw", reveal_models=reveal))
    words = ("Save verdict", "Failure modes", "Failure rates (reviewers' flags)", "Blind review")
    for word in words:
        assert any(word in str(label) for label in _labels(admin) if label), word
        assert not any(word in str(label) for label in _labels(raters) if label), word
    modules = {getattr(fn.fn, "__module__", "") for fn in raters.fns.values() if fn.fn}
    assert not any("review" in m or "failure" in m for m in modules), modules


def test_the_admin_leaderboard_and_agreement_tabs_show_the_rates(arena_store):
    import gradio as gr

    from arena.reports.agreement import AgreementService
    from arena.stats.failures import failure_rating_correlation
    from arena.ui import agreement_tab, failure_section, leaderboard_tab
    from arena.ui.filter_row import UNFILTERED

    store, data = arena_store
    store = store.with_settings(bootstrap_rounds=20)
    for image_id, model in zip(data.images.image_id[:60], data.images.model[:60], strict=True):
        flags = ["hands"] if model == "model-01" or image_id % 4 == 0 else []
        store.save_review(int(image_id), "ann", flags, blind=True)
    with gr.Blocks():
        update, _inputs, outputs = leaderboard_tab.render(store, full=True)
    shown = update(*UNFILTERED, None, None, None, False)
    assert len(shown) == len(outputs) == 6 + 2
    heading, table = shown[-2:]
    assert heading.startswith("### Failure rates") and "60 flag row(s)" in heading
    row = table.set_index("Model").loc["model-01"]
    assert row[f"Any failure: {BLIND}"] == "100.0% [79.6–100.0] (15/15)"
    with gr.Blocks():  # the raters' board, reveal on: no failure rates
        update, _inputs, outputs = leaderboard_tab.render(store.with_settings(reveal_models=True))
    assert len(update(*UNFILTERED, None, None, None, False)) == len(outputs) == 6

    with gr.Blocks():
        update, _inputs, outputs = agreement_tab.render(store, failures=True)
    shown = update(*UNFILTERED, "ties_half", "category")
    assert len(shown) == len(outputs) == 8 + 4 + 3  # the page, the judges, the failures
    note, correlation, figure = shown[-3:]
    assert "60 flag row(s) on the images of every prompt" in note and figure is not None
    report = AgreementService.of(store).get().report
    rates = fl.FailureService.of(store).get().rates
    direct = failure_rating_correlation(
        rates,
        report.models.set_index("model")["human_rating"],
        np.random.default_rng(store.settings.seed),
    )
    first = correlation.iloc[0]
    assert (first["Source"], first["Mode"], first["Models"]) == (BLIND, ANY_FAILURE, 4)
    assert first["Spearman ρ"] == (
        f"{direct.iloc[0]['spearman']:.2f} (p = {direct.iloc[0]['spearman_p']:.2g})"
    )
    # a bad date names the input
    message = failure_section.agreement_outputs(store, AgreementService.of(store), since="soon")
    assert "Cannot compare failure rates" in message[0] and "ISO date" in message[0]


def test_arena_leaderboard_prints_the_failure_rates_under_the_board(arena_store, capsys):
    from arena.cli import main

    store, data = arena_store
    ws = ["--workspace", str(store.settings.workspace), "--db-url", store.settings.db_url]
    assert main([*ws, "leaderboard", "--bootstrap", "0"]) == 0
    assert "Failure rates" not in capsys.readouterr().out  # nothing reviewed: no section
    for image_id, model in zip(data.images.image_id[:60], data.images.model[:60], strict=True):
        flags = ["hands"] if model == "model-01" else []
        store.save_review(int(image_id), "ann", flags, blind=True)
    assert main([*ws, "leaderboard", "--bootstrap", "0"]) == 0
    out = capsys.readouterr().out
    assert "Failure rates (60 flag row(s)" in out
    line = next(x for x in out.splitlines() if x.strip().startswith("model-01"))
    assert "100.0% [79.6–100.0] (15/15)" in line  # Wilson 95% of 15/15, as in the tab
    other = next(x for x in out.splitlines() if x.strip().startswith("model-02"))
    assert "0.0% [0.0–20.4] (0/15)" in other
    assert main([*ws, "leaderboard", "--bootstrap", "0", "--format", "json"]) == 0
    rows = pd.DataFrame(json.loads(capsys.readouterr().out)["failure_rates"])
    want = fl.FailureService.of(store).get().rates
    assert len(rows) == len(want) and rows["flagged"].tolist() == want["flagged"].tolist()
    any_blind = rows[(rows["mode"] == ANY_FAILURE) & (rows["source"] == BLIND)]
    counts = any_blind.set_index("model").loc["model-01", ["flagged", "reviewed"]]
    assert counts.tolist() == [15, 15]


def test_the_review_pool_is_the_intact_images_of_models(store):
    from tests.arena_fixtures import build_fixture

    fixture = build_fixture(store, n_prompts=3, seeds=2)
    pool = store.review_pool()
    frame = store.images_frame(include_broken=True)
    want = frame[frame["broken"].isna() & (frame["model_kind"] != "reference")]
    assert pool["image_id"].tolist() == want["image_id"].tolist()
    assert pool["model"].tolist() == want["model"].tolist()
    assert pool["prompt_id"].tolist() == want["prompt_id"].tolist()
    assert fixture.broken and fixture.reference_images
    assert not (fixture.broken | fixture.reference_images) & set(pool["image_id"])


def test_the_reviewer_file_is_read_or_refused_naming_the_line(tmp_path):
    from arena.cli import CommandError
    from arena.commands.serve import read_reviewers

    good = tmp_path / "reviewers.txt"
    good.write_text("# reviewers\nann:pass:with:colons\n\n bob :pw\n", encoding="utf-8")
    assert read_reviewers(str(good)) == [("ann", "pass:with:colons"), ("bob", "pw")]
    for content, message in [
        ("ann\n", "line 1: expected 'user:password'"),
        ("ann:\n", "line 1: expected 'user:password'"),
        ("ann:a\nann:b\n", "line 2: reviewer 'ann' is listed twice"),
        ("# nothing\n", "no 'user:password' lines found"),
    ]:
        bad = tmp_path / "bad.txt"
        bad.write_text(content, encoding="utf-8")
        with pytest.raises(CommandError, match=message):
            read_reviewers(str(bad))
    with pytest.raises(CommandError, match="no such file"):
        read_reviewers(str(tmp_path / "missing.txt"))


def test_names_prompts_and_notes_are_escaped_in_the_gallery(store):
    from PIL import Image

    from arena.storage.store import PromptRow

    evil = '<img src=x onerror="alert(1)">'
    store.add_prompts([PromptRow(f"a cat <script>alert(2)</script> {evil}", "p1")], "set")
    model = store.add_model(f"m{evil}", "import")
    stored = store.images.put_image(Image.new("RGB", (16, 16), (200, 10, 10)))
    image_id = store.add_image(model, store.prompt_ids()[("set", "p1")], stored, seed=1)
    store.save_review(image_id, "ann", ["other"], note="</figcaption><script>x()</script>")
    handles = ImageHandles.of(store)
    views = [
        gv.prompt_view(store, handles, store.prompt_ids()[("set", "p1")]),
        gv.model_view(store, handles, f"m{evil}"),
        gv.blind_view(store, handles, [image_id], "ann"),
    ]
    for view in views:
        for shown in (view.html, view.header):
            assert "<script>" not in shown and 'onerror="' not in shown
            assert "<img src=x" not in shown
    assert "&lt;script&gt;" in views[0].header and "&lt;img src=x" in views[0].html
