"""The leaderboard on a real SQLite workspace: filters, provisional models, metric
columns, caching, the CLI and the tab's data."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from arena import cli
from arena.reports.frames import Filters, ReportError
from arena.reports.leaderboard import (
    LeaderboardError,
    LeaderboardService,
    leaderboard_frame,
    metric_means,
    parse_anchor,
)
from arena.stats.bradley_terry import bt_fit
from arena.stats.elo import online_elo, to_elo
from arena.stats.pairs import aggregate, encode_outcomes, index_items
from arena.stats.ratings import both_bad_rate, votes_per_model
from arena.storage import db
from arena.storage.store import PromptRow

T0 = datetime(2025, 3, 1, 12, 0, 0)
STRENGTH = {"alpha": 1.2, "beta": 0.4, "gamma": -0.3, "delta": -1.0}


def _add_votes(store, plan, seed=0):
    """plan: list of (left, right, outcome, rater_kind, category, day offset)."""
    with store.session() as s:
        prompts = {p.category: p for p in s.query(db.Prompt)}
        images = {(i.model_id, i.prompt_id): i.id for i in s.query(db.Image)}
        models = {m.name: m.id for m in s.query(db.Model)}
        raters = {}
        for left, right, outcome, kind, category, day in plan:
            if kind not in raters:
                raters[kind] = store.rater_id(f"{kind}-rater", kind=kind, session=s)
            prompt = prompts[category]
            battle = db.Battle(
                token=uuid.uuid4().hex,
                prompt_id=prompt.id,
                left_image_id=images[(models[left], prompt.id)],
                right_image_id=images[(models[right], prompt.id)],
                rater_id=raters[kind],
                policy="uniform",
                served_at=T0 + timedelta(days=day),
            )
            s.add(battle)
            s.flush()
            s.add(
                db.Vote(
                    battle_id=battle.id,
                    rater_id=raters[kind],
                    outcome=outcome,
                    created_at=T0 + timedelta(days=day, seconds=1),
                )
            )


def simulated_plan(rng, n_votes, models=tuple(STRENGTH), kind="simulated", category="animals"):
    plan = []
    for k in range(n_votes):
        a, b = rng.choice(len(models), 2, replace=False)
        left, right = models[a], models[b]
        p = 1 / (1 + np.exp(-(STRENGTH[left] - STRENGTH[right])))
        u = rng.random()
        outcome = "tie" if u < 0.05 else "both_bad" if u < 0.08 else "left"
        if outcome == "left" and rng.random() > p:
            outcome = "right"
        plan.append((left, right, outcome, kind, category, k % 10))
    return plan


@pytest.fixture
def arena_store(store):
    """Four models + one with few votes, two prompt categories, one image per (model, prompt)."""
    store.add_prompts(
        [
            PromptRow("a cat", "p1", "cat", "animals"),
            PromptRow("a city", "p2", "city", "places"),
        ],
        prompt_set="demo-set",
    )
    store.add_prompts([PromptRow("a dog", "q1", "dog", "dogs")], prompt_set="other-set")
    with store.session() as s:
        prompt_ids = [p.id for p in s.query(db.Prompt)]
    for name in [*STRENGTH, "newbie"]:
        mid = store.add_model(name, "import")
        with store.session() as s:
            for pid in prompt_ids:
                s.add(
                    db.Image(
                        sha256=f"{name}-{pid}".ljust(64, "0"),
                        model_id=mid,
                        prompt_id=pid,
                        width=8,
                        height=8,
                    )
                )
    rng = np.random.default_rng(0)
    plan = simulated_plan(rng, 600)
    plan += simulated_plan(rng, 200, kind="human", category="places")
    plan += [("newbie", "delta", "left", "human", "places", 3)] * 5
    plan += [("newbie", "gamma", "right", "human", "dogs", 4)] * 3
    _add_votes(store, plan)
    return store


def test_leaderboard_frame_columns_order_and_provisional(arena_store, settings):
    service = LeaderboardService(arena_store.with_settings(bootstrap_rounds=200))
    frame = service.get().frame
    assert list(frame.columns[:11]) == [
        "rank",
        "model",
        "rating",
        "ci_lower",
        "ci_upper",
        "elo",
        "votes",
        "win_rate",
        "both_bad_rate",
        "provisional",
        "identified",
    ]
    assert frame["model"].tolist()[:4] == ["alpha", "beta", "gamma", "delta"]
    newbie = frame.set_index("model").loc["newbie"]
    assert bool(newbie["provisional"]) and pd.isna(newbie["rank"]) and newbie["votes"] == 8
    assert frame["model"].iloc[-1] == "newbie"  # provisional models come last
    ranked = frame[~frame["provisional"]]
    assert ranked["rank"].iloc[0] == 1 and ranked["rank"].notna().all()
    assert (ranked["ci_lower"] <= ranked["rating"]).all()
    assert (ranked["rating"] <= ranked["ci_upper"]).all()
    assert frame["votes"].sum() == 2 * (600 + 200 + 8)
    # centred on the ranked models, so the provisional one cannot move everyone's interval
    assert ranked["rating"].mean() == pytest.approx(1000.0)
    assert (ranked["ci_upper"] - ranked["ci_lower"]).max() < 150


def test_frame_numbers_equal_the_ratings_module(arena_store, settings):
    votes = arena_store.votes_frame()
    frame, _ = leaderboard_frame(votes, np.random.default_rng(0), rounds=50, min_votes=50)
    names, left, right = index_items(votes["left_model"], votes["right_model"])
    outcome = encode_outcomes(votes["outcome"])
    counts = aggregate(len(names), left, right, outcome)
    theta = bt_fit(counts.win_matrix())
    by_model = frame.set_index("model")
    ranked = votes_per_model(counts) >= 50
    assert np.allclose(by_model.loc[names, "rating"], to_elo(theta, reference=ranked))
    assert np.allclose(by_model.loc[names, "elo"], online_elo(len(names), left, right, outcome))
    assert np.allclose(by_model.loc[names, "both_bad_rate"], both_bad_rate(counts))


def test_filters_select_votes(arena_store, settings):
    service = LeaderboardService(arena_store.with_settings(bootstrap_rounds=0))
    total = service.get().votes_used
    assert total == 808
    assert service.get(Filters(rater_kind="human")).votes_used == 208
    assert service.get(Filters(rater_kind="simulated")).votes_used == 600
    assert service.get(Filters(category="places")).votes_used == 205
    assert service.get(Filters(prompt_set="other-set")).votes_used == 3
    assert service.get(Filters(prompt_set="demo-set")).votes_used == 805
    day3 = service.get(Filters(since="2025-03-04", until="2025-03-04")).votes_used
    expected = sum(1 for k in range(600) if k % 10 == 3) + sum(1 for k in range(200) if k % 10 == 3)
    assert day3 == expected + 5
    humans = service.get(Filters(rater_kind="human")).frame
    assert set(humans["model"]) == {*STRENGTH, "newbie"}
    empty = service.get(Filters(category="nothing-here"))
    assert empty.frame.empty and empty.votes_used == 0


def test_bad_filters_are_explained():
    with pytest.raises(ReportError, match="rater kind 'robot'"):
        Filters(rater_kind="robot")
    with pytest.raises(ReportError, match="expected an ISO date"):
        Filters(since="yesterday").key()
    with pytest.raises(ReportError, match="date range is empty"):
        Filters(since="2025-03-05", until="2025-03-01")
    with pytest.raises(LeaderboardError, match="MODEL=RATING"):
        parse_anchor("alpha")
    assert parse_anchor("my=model=1100") == ("my=model", 1100.0)


def test_anchor_puts_model_at_rating(arena_store, settings):
    service = LeaderboardService(arena_store.with_settings(bootstrap_rounds=100))
    frame = service.get(anchor=("delta", 800.0)).frame.set_index("model")
    assert frame.loc["delta", "rating"] == pytest.approx(800.0)
    assert frame.loc["delta", "ci_lower"] == pytest.approx(800.0)
    with pytest.raises(LeaderboardError, match="anchor model 'zeta'"):
        service.get(anchor=("zeta", 1000.0))


def test_metric_columns_appear_once_scores_exist(arena_store, settings):
    service = LeaderboardService(arena_store.with_settings(bootstrap_rounds=0))
    assert "sharpness" not in service.get().frame.columns
    images = arena_store.images_frame()
    expected = {}
    with arena_store.session() as s:
        for row in images.itertuples():
            value = len(row.model) + row.prompt_id / 10
            s.add(
                db.Score(
                    image_id=row.image_id,
                    metric="sharpness",
                    version="1",
                    value=value,
                    higher_is_better=True,
                )
            )
            # an older version with fewer scores is ignored
            if row.prompt_id == 1:
                s.add(
                    db.Score(
                        image_id=row.image_id,
                        metric="sharpness",
                        version="0",
                        value=99,
                        higher_is_better=True,
                    )
                )
            expected.setdefault(row.model, []).append(value)
    frame = service.get().frame.set_index("model")
    for model, values in expected.items():
        assert frame.loc[model, "sharpness"] == pytest.approx(np.mean(values))
    # prompt filters restrict the images the metric mean is taken over
    places = service.get(Filters(category="places")).frame.set_index("model")
    prompts = arena_store.prompts_frame().set_index("category")
    pid = int(prompts.loc["places", "prompt_id"])
    assert places.loc["alpha", "sharpness"] == pytest.approx(len("alpha") + pid / 10)


def test_metric_means_empty_inputs():
    assert metric_means(pd.DataFrame(), pd.DataFrame()).empty


def test_cache_recomputes_only_when_votes_change(arena_store, settings):
    service = LeaderboardService(arena_store.with_settings(bootstrap_rounds=50))
    first = service.get()
    assert service.get() is first and service.computations == 1
    service.get(Filters(rater_kind="human"))
    assert service.computations == 2
    _add_votes(arena_store, [("delta", "alpha", "left", "human", "animals", 2)])
    second = service.get()
    assert second is not first and service.computations == 3
    assert second.votes_used == first.votes_used + 1
    # excluding a rater changes the board without changing the votes table
    with arena_store.session() as s:
        s.query(db.Rater).filter(db.Rater.kind == "human").update({"excluded": True})
    third = service.get()
    assert service.computations == 4 and third.votes_used == 600


def test_cli_leaderboard_formats(arena_store, settings, capsys):
    ws = str(settings.workspace_path)
    assert cli.main(["-w", ws, "leaderboard", "--bootstrap", "50", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = out["leaderboard"]
    assert out["notes"][0].startswith(
        "Bradley-Terry on the Elo scale, ties and both-bad votes count half"
    )
    assert rows[0]["model"] == "alpha" and rows[0]["rank"] == 1
    assert {"rating", "ci_lower", "ci_upper", "elo", "votes"} <= set(rows[0])
    assert (
        cli.main(
            [
                "-w",
                ws,
                "leaderboard",
                "--bootstrap",
                "20",
                "--format",
                "csv",
                "--rater-kind",
                "human",
                "--anchor",
                "beta=1100",
            ]
        )
        == 0
    )
    csv = pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out))
    assert csv.set_index("model").loc["beta", "rating"] == pytest.approx(1100.0)
    assert cli.main(["-w", ws, "leaderboard", "--bootstrap", "20"]) == 0
    table = capsys.readouterr().out
    assert "alpha" in table and "provisional" in table and "95% CI" in table
    assert cli.main(["-w", ws, "leaderboard", "--anchor", "nobody=1"]) == 2
    assert "anchor model 'nobody'" in capsys.readouterr().err
    assert cli.main(["-w", ws, "leaderboard", "--since", "soon"]) == 2


def test_cli_leaderboard_on_empty_workspace(settings, capsys):
    ws = str(settings.workspace_path)
    assert cli.main(["-w", ws, "leaderboard"]) == 0
    assert "no votes" in capsys.readouterr().out


def test_tab_renders_table_and_plots(arena_store, settings):
    from arena.ui import leaderboard_tab

    service = LeaderboardService(arena_store.with_settings(bootstrap_rounds=50))
    summary, table, ratings_fig, heatmap_fig = leaderboard_tab.board_outputs(service)
    assert "808" in summary
    assert table["Model"].iloc[0] == "alpha" and "95% CI" in table.columns
    assert ratings_fig is not None and heatmap_fig is not None
    summary, table, *_ = leaderboard_tab.board_outputs(service, category="nothing")
    assert "No votes" in summary and table.empty


def test_leaderboard_tab_in_a_browser(arena_store, settings, tmp_path):
    """The real page in headless Debian chromium at laptop size: table, both plots, a filter."""
    from playwright.sync_api import expect

    from tests.arena_app import running_app
    from tests.browser import chromium

    store = arena_store.with_settings(bootstrap_rounds=100, reveal_models=True)
    with running_app(store, tabs=("arena.ui.leaderboard_tab",)) as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        page.goto(url)
        page.get_by_role("tab", name="Leaderboard").click()
        summary = page.get_by_text("votes (all votes)")
        expect(summary).to_be_visible(timeout=60_000)
        expect(page.get_by_text("808", exact=True)).to_be_visible()
        for text in ("alpha", "delta", "newbie", "provisional", "95% CI"):
            expect(page.locator(f'text="{text}" >> visible=true').first).to_be_visible()
        for plot in ("#lb-ratings-plot", "#lb-heatmap"):
            image = page.locator(f"{plot} img").first
            expect(image).to_be_visible()
            assert image.evaluate("i => i.naturalWidth") > 300
        expect(page.get_by_text("processing")).to_have_count(0, timeout=60_000)
        page.screenshot(path=str(tmp_path / "leaderboard.png"), full_page=True)
        # filter to human raters: the summary and the vote count follow
        page.get_by_label("Raters").click()
        page.get_by_role("option", name="human").click()
        expect(page.get_by_text("votes (human raters)")).to_be_visible(timeout=60_000)
        expect(page.get_by_text("208", exact=True)).to_be_visible()
        # a date range applies on Enter; a bad date is explained on the page
        page.get_by_label("From (UTC date)").fill("2025-03-04")
        page.get_by_label("Until (inclusive)").fill("2025-03-04")
        page.get_by_label("Until (inclusive)").press("Enter")
        expect(page.get_by_text("until 2025-03-04 23:59")).to_be_visible(timeout=60_000)
        page.get_by_label("From (UTC date)").fill("someday")
        page.get_by_label("From (UTC date)").press("Enter")
        expect(page.get_by_text("expected an ISO date")).to_be_visible(timeout=60_000)


def test_model_level_numbers_join_the_board():
    import pandas as pd

    from arena.reports.leaderboard import model_level_columns

    rows = [
        ("alpha", "import", "kid", "real", 0.01, 0.002, 100, ""),
        ("beta", "import", "kid", "real", 0.05, 0.004, 100, ""),
        ("alpha", "import", "fid", "real", 12.0, None, 100, "n < 10000"),
        ("alpha", "import", "diversity", "", 0.3, None, 100, ""),
        ("demo-real", "reference", "as", "real", 0.1, None, 100, ""),
    ]
    frame = pd.DataFrame(
        rows, columns=["model", "model_kind", "metric", "reference", "value", "std", "n", "warning"]
    )
    table = model_level_columns(frame)
    assert list(table.columns) == ["diversity", "fid", "kid", "kid_std"]
    assert table.loc["beta", "kid"] == 0.05 and table.loc["alpha", "kid_std"] == 0.002
    assert "demo-real" not in table.index
    two_refs = pd.concat([frame, frame.assign(reference="other", value=frame["value"] * 2)])
    assert "kid@other" in model_level_columns(two_refs).columns
    assert model_level_columns(frame.iloc[0:0]) is None


def test_stored_model_level_numbers_appear_and_refresh_the_cache(arena_store, settings):
    service = LeaderboardService(arena_store.with_settings(bootstrap_rounds=0))
    first = service.get()
    assert "kid" not in first.frame.columns
    alpha = arena_store.model_id("alpha")
    arena_store.put_model_metric(
        alpha, "kid", "real", 0.02, std=0.001, n=500, higher_is_better=False
    )
    frame = service.get().frame.set_index("model")
    assert service.computations == 2
    assert frame.loc["alpha", "kid"] == pytest.approx(0.02)
    assert frame.loc["alpha", "kid_std"] == pytest.approx(0.001)
    assert np.isnan(frame.loc["beta", "kid"])


def test_separation_of_two_models(arena_store, settings):
    from arena.reports.leaderboard import separation
    from arena.ui.leaderboard_tab import compare_text

    service = LeaderboardService(arena_store.with_settings(bootstrap_rounds=200))
    ratings = service.get().ratings
    names = ratings.names
    a, b = names[0], names[1]
    sep = separation(ratings, a, b)
    i, j = names.index(a), names.index(b)
    assert sep["difference"] == pytest.approx(ratings.rating[i] - ratings.rating[j])
    assert sep["lower"] <= sep["difference"] <= sep["upper"]
    assert sep["votes_between"] == ratings.counts.battles[i, j]
    separated = sep["lower"] > 0 or sep["upper"] < 0
    assert (sep["more_votes"] == 0) == separated or not np.isfinite(sep["more_votes"])
    with pytest.raises(LeaderboardError, match="no votes"):
        separation(ratings, a, "no-such-model")
    text = compare_text(service, a, b)
    assert a in text and "Elo" in text
    assert compare_text(service, a, "") == "Pick two models."


def test_model_level_note_names_sources_and_labels_stand_ins(arena_store, settings):
    from arena.reports.leaderboard import model_level_note
    from arena.ui.leaderboard_tab import board_outputs, display_table

    service = LeaderboardService(arena_store.with_settings(bootstrap_rounds=0))
    assert "not computed yet" not in board_outputs(service)[0]  # no reference set: no hint
    real = arena_store.add_model("real", "reference")
    arena_store.put_model_metric(
        real, "fid", "real", 0.0, None, 5, {"features": "x"}, higher_is_better=False
    )
    summary = board_outputs(service)[0]
    assert "not computed yet" in summary and "--reference real" in summary
    alpha = arena_store.model_id("alpha")
    real_key = "inception@tf-2015-12-05-pool3.1#0123456789ab"
    arena_store.put_model_metric(
        alpha, "fid", "real", 12345.6, None, 50, {"features": real_key}, higher_is_better=False
    )
    summary = board_outputs(service)[0]
    assert "against the reference set real" in summary
    assert "inception@tf-2015-12-05-pool3.1" in summary and "stand-in" not in summary
    arena_store.put_model_metric(
        alpha,
        "kid",
        "real",
        3.2e10,
        1e9,
        50,
        {"features": real_key + "+demo-random"},
        higher_is_better=False,
    )
    summary = board_outputs(service)[0]
    assert "random-weight stand-in extractors" in summary and "[demo-random]" in summary
    assert "lower is better for fid, kid" in summary  # read from the stored direction
    arena_store.put_model_metric(
        alpha, "diversity", "", 0.4, 0.1, 50, {"features": real_key}, higher_is_better=True
    )
    summary = board_outputs(service)[0]
    assert "lower is better for fid, kid; higher is better for diversity" in summary
    table = display_table(service.get().frame).set_index("Model")
    assert table.loc["alpha", "fid"] == "12345.600" and table.loc["alpha", "kid"] == "3.2e+10"
    assert model_level_note(arena_store.model_metrics_frame().iloc[0:0]) == ""
