"""Paired comparison (issue 22, item 4): the common set of (prompt, seed) cells, the metric
means and the agreement page's per-model means over it, the notes that say how many cells
were left out, and the setting that turns it off; on the hand-built workspace of
tests/analyses_data.py (B's image of (p1, 20) broken, C without an image of (p2, 20))."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from arena.reports.agreement import AgreementService
from arena.reports.frames import Filters, load_report_frames
from arena.reports.leaderboard import LeaderboardService, metric_columns
from arena.stats.common_set import PER_MODEL_COLUMNS, common_set
from scoring.distribution.pairing import PairingError, paired_pool
from tests import analyses_data as D

EVERY = [(p, s) for p in D.PROMPTS for s in D.SEEDS]


def _frame() -> pd.DataFrame:
    """The fixture's images as Store.images_frame(include_broken=True) would give them."""
    rows = [
        {
            "image_id": 100 + k,
            "model": m,
            "model_kind": "import",
            "prompt_id": D.PROMPTS.index(p) + 1,
            "seed": s,
            "broken": "black" if (m, p, s) == D.BROKEN else None,
        }
        for k, (m, p, s) in enumerate(D.cells())
    ]
    return pd.DataFrame(rows)


def test_the_common_set_by_hand():
    images = _frame()
    common = common_set(images)
    assert common.models == ["A", "B", "C"]
    assert (common.cells, common.common, common.left_out) == (6, 4, 2)
    kept = {(r.model, D.PROMPTS[r.prompt_id - 1], r.seed) for r in images[common.keep].itertuples()}
    assert kept == {(m, p, s) for m in D.MODELS for p, s in D.COMMON}
    expected = pd.DataFrame(
        {
            "model": ["A", "B", "C"],
            "images": [6, 5, 5],  # non-broken images
            "kept": [4, 4, 4],
            "left_out": [2, 1, 1],  # A loses (p1, 20) and (p2, 20); B (p2, 20); C (p1, 20)
            "broken": [0, 1, 0],
            "missing_cells": [0, 0, 1],
        }
    )
    pd.testing.assert_frame_equal(common.per_model, expected, check_dtype=False)
    assert list(common.per_model.columns) == PER_MODEL_COLUMNS
    text = common.describe()
    assert "4 of 6 (prompt, seed) cells" in text and "2 left out" in text
    assert "B: 1 broken, 0 missing" in text and "C: 0 broken, 1 missing" in text


def test_the_compared_models_decide_the_cells():
    images = _frame()
    # A and C alone: B's broken image no longer removes anything; C's missing cell does.
    pair = common_set(images, ["C", "A"])
    assert pair.models == ["A", "C"] and (pair.cells, pair.common) == (6, 5)
    assert set(images.loc[pair.keep, "model"]) == {"A", "C"}
    # A alone: every usable image of A
    alone = common_set(images, ["A"])
    assert alone.common == 6 and images.loc[alone.keep, "model"].eq("A").sum() == 6
    # a model without any usable image leaves nothing in common
    assert common_set(images, ["A", "nobody"]).common == 0


def test_reference_images_seedless_cells_and_bad_input():
    images = _frame()
    reference = pd.DataFrame(
        {"image_id": [900, 901], "model": "real", "model_kind": "reference",
         "prompt_id": np.nan, "seed": np.nan, "broken": None}
    )  # fmt: skip
    with_ref = pd.concat([images, reference], ignore_index=True)
    common = common_set(with_ref)
    assert "real" not in common.models and common.common == 4
    assert not common.keep[-2:].any()
    # no seed: all of one prompt's seedless images share one cell
    seedless = images.assign(seed=np.nan)
    none = common_set(seedless)
    assert (none.cells, none.common) == (3, 3)  # every model has a usable image of each prompt
    assert none.keep.sum() == len(images) - 1  # every usable image is kept
    with pytest.raises(ValueError, match=r"lacks columns \['seed'\].*include_broken=True"):
        common_set(images.drop(columns="seed"))


def test_the_common_set_does_not_move_with_ids_row_order_or_names():
    images = _frame()
    base = common_set(images)
    kept = set(images.loc[base.keep, "image_id"])
    rng = np.random.default_rng(3)
    shuffled = images.sample(frac=1, random_state=5).reset_index(drop=True)
    new_ids = dict(zip(images.image_id, rng.permutation(len(images)) * 11 + 7, strict=True))
    shuffled["image_id"] = shuffled["image_id"].map(new_ids)
    shuffled["prompt_id"] = shuffled["prompt_id"] * 13 + 1000  # prompt ids are labels too
    names = {"A": "zeta", "B": "alpha", "C": "mid"}  # their sorted order changes
    shuffled["model"] = shuffled["model"].map(names)
    got = common_set(shuffled)
    assert (got.cells, got.common) == (base.cells, base.common)
    assert set(shuffled.loc[got.keep, "image_id"]) == {new_ids[i] for i in kept}
    back = got.per_model.assign(model=got.per_model.model.map({v: k for k, v in names.items()}))
    pd.testing.assert_frame_equal(
        back.sort_values("model").reset_index(drop=True), base.per_model, check_dtype=False
    )


@pytest.fixture
def fixture_store(store):
    ids = D.build(store)
    return store, ids


def test_metric_means_are_paired_and_the_setting_turns_it_off(fixture_store):
    store, _ = fixture_store
    frames = load_report_frames(store)
    means = metric_columns(frames)
    for model in D.MODELS:  # over the four common cells, by hand
        assert means.at[model, "sharpness"] == pytest.approx(
            D.mean_over(D.SHARPNESS, model, D.COMMON)
        )
        assert means.at[model, "anomaly"] == pytest.approx(D.mean_over(D.ANOMALY, model, D.COMMON))
    # A = (1 + 2 + 3 + 5) / 4; B's broken sharpness of 100 never counts
    assert means.at["A", "sharpness"] == 2.75 and means.at["B", "sharpness"] == 3.5
    unpaired = metric_columns(load_report_frames(store, paired=False))
    for model in D.MODELS:  # every non-broken image of the model
        own = [(p, s) for p, s in EVERY if (model, p, s) not in (D.BROKEN, D.MISSING)]
        assert unpaired.at[model, "sharpness"] == pytest.approx(
            D.mean_over(D.SHARPNESS, model, own)
        )
    assert unpaired.at["A", "sharpness"] == 3.5 and unpaired.at["B", "sharpness"] == 4.6
    # the setting is what load_report_frames follows by default
    off = load_report_frames(store.with_settings(paired_metrics=False))
    assert not off.paired and len(off.metric_images) == len(off.images) == 17 - 1
    assert frames.paired and len(frames.metric_images) == 12


def test_a_filter_pairs_on_its_own_prompts(fixture_store):
    store, _ = fixture_store
    prompts = store.prompts_frame()
    p1 = int(prompts.loc[prompts.external_id == "p1", "prompt_id"].iloc[0])
    with store.session() as s:
        from arena.storage import db

        s.get(db.Prompt, p1).category = "hard"
    frames = load_report_frames(store, Filters(category="hard"))
    assert (frames.common.cells, frames.common.common) == (2, 1)  # (p1, 10) only
    means = metric_columns(frames)
    assert means.at["B", "sharpness"] == 7.0 and means.at["C", "sharpness"] == 2.5


def test_the_leaderboard_and_agreement_page_say_and_use_the_common_set(fixture_store):
    store, ids = fixture_store
    D.add_votes(store, ids)
    store = store.with_settings(bootstrap_rounds=20, min_votes_ranked=1)
    result = LeaderboardService(store).get()
    board = result.frame.set_index("model")
    assert board.at["A", "sharpness"] == 2.75
    assert "4 of 6 (prompt, seed) cells" in result.paired_note
    assert "2 left out" in result.paired_note and "paired" in result.paired_note
    models = AgreementService(store).get().report.models.set_index("model")
    for model in D.MODELS:  # the agreement page's per-model means are the board's
        assert models.at[model, "sharpness_mean"] == pytest.approx(board.at[model, "sharpness"])
    from arena.ui.leaderboard_tab import _board

    summary, _ = _board(LeaderboardService(store))  # the Leaderboard tab's summary
    assert result.paired_note in summary
    off = LeaderboardService(store.with_settings(paired_metrics=False)).get()
    assert off.frame.set_index("model").at["A", "sharpness"] == 3.5
    assert "paired_metrics` off" in off.paired_note and "would be 4 of 6" in off.paired_note
    # the pairwise accuracy still judges every voted image (votes on left-out cells count)
    accuracy = AgreementService(store).get().report.accuracy
    paired_n = accuracy.set_index(["metric", "protocol"]).at[("sharpness", "decisive"), "n"]
    votes = store.votes_frame()
    assert paired_n == (votes.outcome != "tie").sum()


def test_distribution_pool_is_the_common_set():
    images = _frame()
    pool, records = paired_pool(images, ["A", "B", "C"])
    assert len(pool) == 12 and pool.broken.isna().all()
    cells = set(zip(pool.prompt_id, pool.seed, strict=True))
    assert cells == {(D.PROMPTS.index(p) + 1, s) for p, s in D.COMMON}
    assert records["A"] == {
        "paired": True,
        "models": ["A", "B", "C"],
        "cells": 6,
        "common": 4,
        "left_out": 2,
        "images_left_out": 2,
    }
    assert records["B"]["images_left_out"] == 1
    everything, records = paired_pool(images, ["A", "B", "C"], paired=False)
    assert len(everything) == 16 and records["A"]["paired"] is False
    assert records["A"]["images_left_out"] == 0
    disjoint = images[~((images.model == "C") & (images.prompt_id < 3))]
    disjoint = disjoint[~((disjoint.model == "A") & (disjoint.prompt_id == 3))]
    with pytest.raises(PairingError, match=r"no \(prompt, seed\) cell.*--all-images"):
        paired_pool(disjoint, ["A", "C"])
