"""The one report layer (arena.reports.frames, .service, .stand_in): every report counts the
same votes and averages over the same images under a filter, the pages and the export agree,
and the caches of all services follow one data signature."""

from __future__ import annotations

import pandas as pd

from arena.reports.agreement import AgreementService
from arena.reports.export import compute_tables
from arena.reports.frames import Filters, load_report_frames
from arena.reports.leaderboard import LeaderboardService
from arena.reports.public_view import PublicViews
from arena.reports.stand_in import STAND_IN_TAG, stand_in_label, stand_in_warning
from arena.storage import db
from tests.test_leaderboard import _add_votes, arena_store  # noqa: F401 (a fixture)


def _score_everything(store) -> None:
    with store.session() as s:
        for row in store.images_frame().itertuples():
            s.add(
                db.Score(
                    image_id=row.image_id,
                    metric="sharpness",
                    version="1",
                    value=len(row.model) + row.prompt_id / 10,
                    higher_is_better=True,
                )
            )


def test_frames_under_a_filter(arena_store):  # noqa: F811
    _score_everything(arena_store)
    prompts = arena_store.prompts_frame().set_index("category")
    places = int(prompts.loc["places", "prompt_id"])
    broken = int(arena_store.images_frame().query("prompt_id == @places").image_id.iloc[0])
    with arena_store.session() as s:
        s.get(db.Image, broken).broken = "truncated file"

    everything = load_report_frames(arena_store)
    assert len(everything.votes) == len(arena_store.votes_frame())
    assert len(everything.prompts) == 3 and broken not in set(everything.images.image_id)
    assert broken in set(everything.images_all.image_id)  # the exported scores table keeps it
    assert len(everything.images_all) == len(everything.images) + 1

    frames = load_report_frames(arena_store, Filters(category="places", rater_kind="human"))
    assert set(frames.votes["category"]) == {"places"}
    assert set(frames.votes["rater_kind"]) == {"human"}
    assert set(frames.images["prompt_id"]) == {places}  # the metric means' images
    assert set(frames.image_scores["image_id"]) == set(frames.images["image_id"])
    assert len(frames.scores) == len(everything.scores)  # versions are chosen over all scores
    assert len(frames.prompts) == 3  # tag and category slices see every prompt

    # the filter's votes replace the store's when given (the released snapshot)
    some = arena_store.votes_frame().iloc[:10]
    assert len(load_report_frames(arena_store, votes=some).votes) == 10
    assert Filters(prompt_set="other-set").prompt_ids(arena_store.prompts_frame()) == {
        int(prompts.loc["dogs", "prompt_id"])
    }
    assert Filters(rater_kind="human").prompt_ids(arena_store.prompts_frame()) is None


def test_the_export_and_the_leaderboard_page_agree(arena_store):  # noqa: F811
    _score_everything(arena_store)
    arena_store.put_model_metric(
        arena_store.model_id("alpha"), "kid", "real", 0.02, std=0.001, n=50, higher_is_better=False
    )
    store = arena_store.with_settings(bootstrap_rounds=20)
    tables, board, report, _ = compute_tables(store, rounds=20, seed=store.settings.seed)
    page = LeaderboardService(store).get().frame
    pd.testing.assert_frame_equal(board, page)
    assert {"sharpness", "kid", "kid_std"} <= set(board.columns)
    shown = AgreementService(store).get().report
    pd.testing.assert_frame_equal(report.accuracy, shown.accuracy)
    pd.testing.assert_frame_equal(
        tables["agreement_accuracy"], shown.tables()["agreement_accuracy"]
    )


def test_an_export_after_a_page_view_reuses_the_pages_reports(arena_store):  # noqa: F811
    """The pages and exports share one cache per store: exporting right after the
    Leaderboard and Agreement pages were shown computes neither again."""
    store = arena_store.with_settings(bootstrap_rounds=20)
    boards, agreements = LeaderboardService.of(store), AgreementService.of(store)
    assert LeaderboardService.of(store) is boards  # one per store
    page, shown = boards.get().frame, agreements.get().report
    assert boards.computations == agreements.computations == 1
    _, board, report, _ = compute_tables(store, rounds=20, seed=store.settings.seed)
    assert boards.computations == agreements.computations == 1
    assert board is page and report is shown
    compute_tables(store, rounds=20, seed=store.settings.seed + 1)  # another seed: computed
    assert boards.computations == agreements.computations == 2


def test_a_cold_export_reads_the_votes_once(arena_store, monkeypatch):  # noqa: F811
    """On a cache miss the services compute from the export's own frames: the votes (the
    slow read of a big workspace) are read once, not once per report."""
    store = arena_store.with_settings(bootstrap_rounds=20)
    reads = []
    votes_frame = store.votes_frame
    monkeypatch.setattr(
        store, "votes_frame", lambda *a, **k: reads.append(1) or votes_frame(*a, **k)
    )
    _, board, _, _ = compute_tables(store, rounds=20, seed=store.settings.seed)
    assert len(reads) == 1
    assert LeaderboardService.of(store).computations == AgreementService.of(store).computations == 1
    page = LeaderboardService(store).get(rounds=20).frame  # an independent computation
    pd.testing.assert_frame_equal(board, page)


def test_every_service_follows_one_data_signature(arena_store):  # noqa: F811
    store = arena_store.with_settings(
        bootstrap_rounds=0, public_view_min_votes=1, probation_votes=1
    )
    boards, agreements, views = (
        LeaderboardService(store),
        AgreementService(store),
        PublicViews(store),
    )
    assert boards.signature() == agreements.signature() == views.signature()

    def everyone():
        return boards.get(), agreements.get(), views.board()[1]

    first = everyone()
    assert everyone() == first and boards.computations == agreements.computations == 1
    changes = [
        lambda: _add_votes(store, [("delta", "alpha", "left", "human", "animals", 2)]),
        lambda: store.set_rater_exclusion(int(store.raters_frame().rater_id.iloc[0]), True, "x"),
        lambda: _score_everything(store),
        lambda: store.put_model_metric(
            store.model_id("beta"), "fid", "real", 3.0, higher_is_better=False
        ),
    ]
    for k, change in enumerate(changes, start=2):
        before = store.data_signature()
        change()
        assert store.data_signature() != before
        again = everyone()
        assert all(a is not b for a, b in zip(again, first, strict=True))
        assert boards.computations == agreements.computations == k
        first = again


def test_the_stand_in_warning_is_one_sentence():
    real, stand_in = "inception@1#abc", f"inception@1#abc+{STAND_IN_TAG}"
    assert stand_in_warning([real]) == "" and stand_in_label([real]) == ""
    warning = stand_in_warning([real, stand_in])
    assert "random-weight stand-in extractors" in warning and STAND_IN_TAG in warning
    assert stand_in_label([stand_in]) == f"[{STAND_IN_TAG}]"
