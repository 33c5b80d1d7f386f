"""The Leaderboard tab's rating method row (arena.ui.board_methods): ties, intervals, style
control and reweighting reach the board, its summary, its two extra tables and Compare;
refused combinations are explained; the raters' released snapshot has no such row; and,
in headless chromium, the Admin app's tab follows a ticked style feature."""

from __future__ import annotations

import gradio as gr
import numpy as np
import pandas as pd
import pytest

from arena.reports.leaderboard import LeaderboardService, separation
from arena.reports.methods import BoardOptions
from arena.storage import db
from arena.ui import board_methods, leaderboard_tab
from arena.ui.filter_row import UNFILTERED
from arena.ui.leaderboard_tab import board_outputs, compare_text, display_table, tab_outputs
from tests.test_leaderboard import arena_store  # noqa: F401 (a fixture)

ROUNDS = 40
PLAIN = board_methods.PLAIN_FIT


def _colour(store) -> None:
    """A ``colorfulness`` score per image, drawn apart from the model (so the fit can
    tell it from the models' strengths)."""
    rng = np.random.default_rng(5)
    with store.session() as s:
        for row in store.images_frame().itertuples():
            s.add(
                db.Score(
                    image_id=row.image_id,
                    metric="colorfulness",
                    version="1",
                    value=float(rng.normal(50.0, 10.0)),
                    higher_is_better=True,
                )
            )


@pytest.fixture
def service(arena_store):  # noqa: F811
    _colour(arena_store)
    return LeaderboardService(arena_store.with_settings(bootstrap_rounds=ROUNDS))


def test_the_default_row_is_the_plain_board_with_flip_counts(service):
    summary, table, ratings_fig, heatmap = board_outputs(service)
    result = service.get()  # BoardOptions(): split, bootstrap, no style, flips
    assert service.computations == 1  # the tab asked for the same board
    assert result.notes[0] in summary and "Rank = upper bound" in summary
    assert "Uncontrolled" not in table.columns
    flips = result.frame.set_index("model")["votes_to_flip"]
    shown = table.set_index("Model")["Votes to flip"]
    for model, votes in flips.items():
        assert shown[model] == ("–" if pd.isna(votes) else f"{int(votes):,}")
    assert shown["newbie"] == "–"  # provisional: no rank to hold
    assert ratings_fig.axes[0].get_title().endswith("95% bootstrap intervals")
    assert heatmap is not None


def test_sandwich_intervals_reach_the_table_summary_and_figure(service):
    summary, table, ratings_fig, _ = board_outputs(service, ci="sandwich")
    result = service.get(options=BoardOptions(ci="sandwich"))
    assert "95% sandwich intervals (closed form)" in summary and "bootstrap" not in summary
    row = result.frame.set_index("model").loc["alpha"]
    shown = table.set_index("Model").loc["alpha", "95% CI"]
    up, down = row["ci_upper"] - row["rating"], row["rating"] - row["ci_lower"]
    assert shown == f"+{up:.0f} / -{down:.0f}"
    plain = service.get().frame.set_index("model").loc["alpha"]
    assert (row["ci_lower"], row["ci_upper"]) != (plain["ci_lower"], plain["ci_upper"])
    assert ratings_fig.axes[0].get_title().endswith("95% sandwich intervals")


def test_style_control_adds_the_uncontrolled_column_and_the_coefficients(service):
    outputs = tab_outputs(service, *[None] * 5, "", "", "split", "bootstrap", ["colorfulness"])
    summary, table, _, _, style, flips = outputs
    result = service.get(options=BoardOptions(style=("colorfulness",)))
    assert "controlled for colorfulness" in summary and "Style control fitted on" in summary
    assert list(table.columns[:6]) == ["Rank", "Model", "Rating", "95% CI", "Uncontrolled", "Elo"]
    plain = service.get().frame.set_index("model")["rating"]
    uncontrolled = result.frame.set_index("model")["uncontrolled"]
    shown = table.set_index("Model")["Uncontrolled"]
    for model in ("alpha", "delta"):  # the plain rating of the same votes, as the tab shows it
        assert uncontrolled[model] == pytest.approx(plain[model], abs=1e-6)
        assert shown[model] == f"{uncontrolled[model]:.0f}"
    assert style["visible"] is True and flips["visible"] is True
    # the flip counts are of the plain fit's order, which style control can change
    assert flips["label"].endswith("counted on the plain Bradley-Terry order, " + PLAIN)
    coefficients = style["value"]
    assert list(coefficients.columns) == board_methods.STYLE_COLUMNS
    assert coefficients["Feature"].tolist() == ["colorfulness"]
    fit = result.style.iloc[0]
    assert coefficients["Elo per SD"].iloc[0] == f"{fit['elo_per_sd']:+.1f}"
    assert coefficients["95% interval"].iloc[0] == (
        f"{fit['ci_lower']:+.1f} to {fit['ci_upper']:+.1f}"
    )
    assert fit["ci_lower"] < fit["elo_per_sd"] < fit["ci_upper"]
    assert np.isfinite(fit["ci_upper"] - fit["ci_lower"])


def test_the_order_features_are_ticked_in_makes_no_second_fit(service):
    both = ["resolution", "colorfulness"]
    first = board_outputs(service, style=both)[0]
    computed = service.computations
    assert board_outputs(service, style=both[::-1])[0] == first
    assert service.computations == computed
    # 8x8 images: resolution never varies, so the fit leaves it out and says so
    assert "resolution did not vary and was left out" in first


def test_davidson_and_reweighting_are_named_in_the_summary(service):
    summary = board_outputs(service, ties="davidson")[0]
    tie = service.get(options=BoardOptions(ties="davidson")).ratings.tie_model
    assert f"ν = {tie.nu:.3f}" in summary and "predicted tie rate" in summary
    assert "modelled (Davidson's tie parameter ν)" in summary
    summary = board_outputs(service, reweight=True)[0]
    assert "pairs reweighted by 1/max(votes of the pair, 50)" in summary
    assert service.get(options=BoardOptions(reweight=50.0)).ratings is not None
    summary = board_outputs(service, ties="drop")[0]
    assert "ties and both-bad votes left out" in summary


@pytest.mark.parametrize(
    "values, message",
    [
        (dict(ties="davidson", style=["colorfulness"]), "ties='davidson' models ties in the plain"),
        (dict(ties="davidson", reweight=True), "ties='davidson' models ties in the plain"),
        (dict(style=["contrast"]), "style feature 'contrast' has no stored values"),
        (dict(ci="jackknife"), "ci='jackknife': expected one of bootstrap, sandwich"),
    ],
)
def test_a_refused_combination_is_explained_not_raised(service, values, message):
    filters = [None, None, None, None, None, "", ""]
    args = [values.get(k) for k in ("ties", "ci", "style")] + [values.get("reweight", False)]
    summary, table, ratings_fig, heatmap, style, flips = tab_outputs(service, *filters, *args)
    assert summary.startswith("**Cannot show the leaderboard:**") and message in summary
    assert table.empty and ratings_fig is None and heatmap is None
    assert style["visible"] is False and flips["visible"] is False
    assert compare_text(service, "alpha", "beta", *filters, *args) == summary


def test_the_flips_table_lists_the_votes_that_hold_each_rank(service):
    *_, style, flips = tab_outputs(service)
    assert style["visible"] is False and style["value"].empty  # style control is off
    assert flips["label"] == board_methods.FLIPS_LABEL  # the plain fit: no caveat
    result = service.get()
    raw, shown = result.flips, flips["value"]
    assert list(shown.columns) == board_methods.FLIP_COLUMNS and len(shown) == len(raw) > 0
    assert shown["Position"].tolist() == raw["position"].tolist()
    assert shown["Position"].iloc[0] == "top" and shown["Position"].iloc[1] == "1 vs 2"
    assert shown["Higher"].tolist() == raw["upper"].tolist()
    for text, votes, share in zip(
        shown["Votes to flip"], raw["votes_to_flip"], raw["share"], strict=True
    ):
        assert text == f"{int(votes):,}"
        assert shown["Share of votes"].str.endswith("%").all() and share > 0
    # the board's column is the same count, against the model above the next one down
    board = result.frame.set_index("model")["votes_to_flip"]
    pairs = raw[raw["position"] != "top"]
    for upper, votes in zip(pairs["upper"], pairs["votes_to_flip"], strict=True):
        assert board[upper] == votes


def test_compare_uses_the_chosen_intervals(service):
    options = BoardOptions(ci="sandwich")
    ratings = service.get(options=options).ratings
    assert ratings.covariance is not None
    sep = separation(ratings, "beta", "gamma")
    text = compare_text(service, "beta", "gamma", *UNFILTERED, "split", "sandwich")
    assert f"95% sandwich interval {sep['lower']:+.0f} to {sep['upper']:+.0f}" in text
    plain = separation(service.get().ratings, "beta", "gamma")
    assert (round(plain["lower"]), round(plain["upper"])) != (
        round(sep["lower"]),
        round(sep["upper"]),
    )
    assert "95% bootstrap interval" in compare_text(service, "beta", "gamma")


def test_display_formats_flip_counts_and_missing_values():
    frame = pd.DataFrame(
        {
            "rank": pd.array([1, 2, pd.NA], dtype="Int64"),
            "model": ["a", "b", "c"],
            "rating": [1100.0, 1000.0, 900.0],
            "ci_lower": [1050.0, 950.0, 800.0],
            "ci_upper": [1150.0, 1050.0, 1000.0],
            "elo": [1010.0, 1000.0, 990.0],
            "votes": [5000, 4000, 10],
            "win_rate": [0.6, 0.5, 0.3],
            "both_bad_rate": [0.0, 0.1, 0.0],
            "provisional": [False, False, True],
            "identified": [True, True, True],
            "uncontrolled": [1120.4, np.nan, 880.0],
            "votes_to_flip": pd.array([1234, pd.NA, pd.NA], dtype="Int64"),
        }
    )
    table = display_table(frame)
    assert table["Votes to flip"].tolist() == ["1,234", "–", "–"]
    assert table["Uncontrolled"].tolist() == ["1120", "–", "880"]
    assert "uncontrolled" not in table.columns and "votes_to_flip" not in table.columns


def _events(app: gr.Blocks) -> list:
    return list(app.fns.values())


def _method_widgets(app: gr.Blocks) -> list:
    """The rating-method row's widgets (the Review tab's failure-mode boxes are not)."""
    return [
        b
        for b in app.blocks.values()
        if (isinstance(b, gr.Radio | gr.CheckboxGroup) and "Failure modes" not in str(b.label))
        or (isinstance(b, gr.Checkbox) and "Reweight" in str(b.label))
    ]


def test_the_raters_snapshot_has_no_method_row_and_no_new_endpoint(service):
    """With the reveal off raters get the released snapshot: no widget that picks a fit,
    no event taking one, and the public API stays the three voting endpoints."""
    from arena.ui.app import PUBLIC_API, build_app

    store = service.store
    blind = build_app(store)
    assert _method_widgets(blind) == []
    assert set(blind.get_api_info()["named_endpoints"]) == {f"/{n}" for n in PUBLIC_API}
    assert "Ratings: Bradley-Terry on the Elo scale, ties and both-bad votes count half" in (
        leaderboard_tab.ratings_note(store.settings)
    )
    assert f"95% bootstrap intervals ({store.settings.bootstrap_rounds} rounds)" in (
        leaderboard_tab.ratings_note(store.settings)
    )
    # with the reveal on raters get filters but no method row (a style bootstrap on a
    # million votes is a minute of CPU): only the Admin app has it, behind its login
    revealed = build_app(store.with_settings(reveal_models=True))
    assert _method_widgets(revealed) == []
    assert set(revealed.get_api_info()["named_endpoints"]) == {f"/{n}" for n in PUBLIC_API}
    from arena.ui.admin import build_admin_app

    admin = build_admin_app(store.with_settings(admin_secret="s" * 32))
    widgets = {b._id for b in _method_widgets(admin)}
    assert len(widgets) == 4
    fed = [fn for fn in _events(admin) if widgets & {b._id for b in fn.inputs}]
    assert fed and all(fn.api_visibility == "private" for fn in fed)


@pytest.mark.browser
def test_admin_tab_follows_a_ticked_style_feature(service, tmp_path):
    """The Admin app in headless chromium: tick a style feature, the coefficient table
    appears and the summary names the control; sandwich intervals change the note."""
    from playwright.sync_api import expect

    from tests.arena_app import running_app
    from tests.browser import chromium

    secret = "board-methods-secret"
    store = service.store.with_settings(admin_secret=secret, bootstrap_rounds=20)
    with running_app(store) as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1366, "height": 900})
        page.goto(url + "admin/")
        page.fill("input[type=text]", "admin")
        page.fill("input[type=password]", secret)
        page.keyboard.press("Enter")
        page.get_by_role("tab", name="Leaderboard").click()
        panel = page.get_by_role("tabpanel")
        expect(panel.get_by_text("votes (all votes)")).to_be_visible(timeout=20_000)
        expect(panel.locator("#lb-style")).to_be_hidden()
        expect(panel.locator("#lb-flips")).to_contain_text("1 vs 2")
        panel.get_by_label("colorfulness").check()
        expect(panel.locator("#lb-style")).to_contain_text("colorfulness", timeout=20_000)
        expect(panel.get_by_text("controlled for colorfulness", exact=False)).to_be_visible()
        expect(panel.locator("#lb-table")).to_contain_text("Uncontrolled")
        panel.get_by_label("Sandwich (closed form)").check()
        expect(
            panel.get_by_text("95% sandwich intervals (closed form)", exact=False)
        ).to_be_visible(timeout=20_000)
        page.close()


def test_a_rank_few_votes_decide_is_flagged_in_the_summary(arena_store):  # noqa: F811
    """With newbie ranked (8 votes), a couple of votes swap it with its neighbours: the
    fit's warning is shown, set apart, under the method sentence."""
    service = LeaderboardService(arena_store.with_settings(bootstrap_rounds=0, min_votes_ranked=5))
    summary = board_outputs(service)[0]
    warning = next(n for n in service.get().notes if n.startswith("Warning"))
    assert "newbie" in warning
    assert f"\n\n**⚠ {warning}**" in summary
    calm = LeaderboardService(arena_store.with_settings(bootstrap_rounds=0))
    assert "⚠" not in board_outputs(calm)[0]


def test_the_released_snapshot_has_no_fit_extras(arena_store):  # noqa: F811
    """Raters with the reveal off: the method sentence of plain BT with bootstrap
    intervals, and no votes-to-flip column (it would show where a few votes swap a rank)."""
    from arena.reports.public_view import PublicViews

    store = arena_store.with_settings(
        bootstrap_rounds=20, public_view_min_votes=1, probation_votes=1
    )
    views = PublicViews(store)
    summary, table, ratings_fig, _ = leaderboard_tab.public_board_outputs(views)
    _, result = views.board()
    assert "votes_to_flip" in result.frame.columns  # the fit has them ...
    assert "Votes to flip" not in table.columns and "Uncontrolled" not in table.columns
    assert len(table) == len(result.frame) and "alpha" in set(table["Model"])
    assert leaderboard_tab.ratings_note(store.settings) in summary
    assert "95% bootstrap intervals (20 rounds)" in summary and "Warning" not in summary
    assert ratings_fig.axes[0].get_title().endswith("95% bootstrap intervals")


def test_raters_with_the_reveal_on_get_no_flip_counts(service):
    """The raters' app (reveal on) has filters but its board counts no votes-to-flip:
    they would show where a handful of votes swaps a rank."""
    summary, table, *_rest = leaderboard_tab.tab_outputs(service, flips=False)
    assert "Votes to flip" not in table.columns
    assert "handful of votes" not in summary
    assert "Votes to flip" in leaderboard_tab.tab_outputs(service)[1].columns
    # nor does Compare on that app: the board it reads is the one without counts
    import gradio as gr

    store = service.store.with_settings(reveal_models=True)
    raters = leaderboard_tab.LeaderboardService.of(store)
    with gr.Blocks() as page:
        leaderboard_tab.render(store)
    compare = next(
        f for f in page.fns.values() if len(f.inputs) == 2 + 7 + 4 and len(f.outputs) == 1
    )
    leaderboard_tab.tab_outputs(raters, flips=False)  # the raters' board, computed once
    before = raters.computations
    text = compare.fn("alpha", "beta", *[None] * 11)  # reads that board: no new fit
    assert text.startswith("**alpha** − **beta**") and raters.computations == before
