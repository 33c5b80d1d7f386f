"""Per-slice model-level numbers in the schema (migration 0007) and where they are shown:
the leaderboard under a category or prompt-set filter, its note, the agreement summary,
the export's model_metrics table and report.html."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from arena.reports.agreement import AgreementService
from arena.reports.export import compute_export
from arena.reports.frames import Filters, model_level_rows
from arena.reports.leaderboard import LeaderboardService, model_level_columns
from arena.storage import db
from arena.storage.migrate import current_revision, head_revision, upgrade_to_head
from arena.storage.rater_verbs import VotedBattle
from arena.storage.store import PromptRow
from arena.ui.agreement_tab import agreement_outputs


def _at_0005_with_a_model_metric(url: str):
    from alembic import command

    from arena.storage.migrate import alembic_config

    engine = db.make_engine(url)
    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0005")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO models (id, name, kind, source, params, description, active, "
                "created_at) VALUES (1, 'm', 'import', '', '{}', '', true, '2026-01-01')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO model_metrics (id, model_id, metric, reference, value, n, "
                "higher_is_better, computed_at) VALUES (1, 1, 'fid', 'real', 12.5, 40, false, "
                "'2026-01-01')"
            )
        )
    return engine


def _insert_sliced(conn, id_: int, value: float, part: str = "category=a") -> None:
    conn.execute(
        text(
            "INSERT INTO model_metrics (id, model_id, metric, reference, slice, value, n, "
            "higher_is_better, computed_at) VALUES (:id, 1, 'fid', 'real', :part, :v, 9, false, "
            "'2026-01-02')"
        ),
        {"id": id_, "v": value, "part": part},
    )


def test_0007_keeps_old_rows_whole_and_refuses_a_lossy_downgrade(db_url, tmp_path):
    from alembic import command

    from arena.storage.migrate import alembic_config

    engine = _at_0005_with_a_model_metric(db_url or f"sqlite:///{tmp_path / 'old.db'}")
    upgrade_to_head(engine)
    assert current_revision(engine) == head_revision()
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT metric, slice, value FROM model_metrics")).all()
        assert [tuple(r) for r in rows] == [("fid", "", 12.5)]
        assert conn.execute(text("SELECT count(*) FROM prompt_sets")).scalar() == 0
    with engine.begin() as conn:
        _insert_sliced(conn, 2, 30.0)  # beside the whole-model row: the key has the slice
    with pytest.raises(IntegrityError), engine.begin() as conn:
        _insert_sliced(conn, 3, 31.0)  # the same slice twice: refused
    config = alembic_config()
    refused = pytest.raises(RuntimeError, match=r"1 model-level number\(s\) per prompt slice")
    with refused, engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0006")
    assert current_revision(engine) == head_revision()  # nothing changed
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM model_metrics WHERE slice <> ''"))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0006")
    assert current_revision(engine) == "0006"
    with engine.connect() as conn:
        assert conn.execute(text("SELECT value FROM model_metrics")).scalar() == 12.5
    with pytest.raises(IntegrityError), engine.begin() as conn:  # the old key is back
        conn.execute(
            text(
                "INSERT INTO model_metrics (id, model_id, metric, reference, value, n, "
                "higher_is_better, computed_at) VALUES (5, 1, 'fid', 'real', 1, 1, false, "
                "'2026-01-03')"
            )
        )
    engine.dispose()


MODELS = ("ash", "birch", "cedar")
WHOLE = {"ash": 10.0, "birch": 20.0, "cedar": 30.0}
ANIMALS = {"ash": 35.0, "birch": 15.0, "cedar": 25.0}


@pytest.fixture
def board_store(store):
    """Three models, prompts in two categories, 150 votes; FID over all images and over
    the 'animals' category (as ``arena distribution --by category`` stores it)."""
    store.add_prompts(
        [
            PromptRow(f"prompt {k}", f"p{k}", "", "animals" if k < 3 else "vehicles")
            for k in range(6)
        ],
        "bench",
    )
    prompts = store.prompts_frame()
    rng = np.random.default_rng(2)
    ids = {m: store.add_model(m, "import") for m in MODELS}
    image = {}
    for m, mid in ids.items():
        for pid in prompts.prompt_id:
            stored = store.images.put_image(
                Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
            )
            image[(m, int(pid))] = store.add_image(mid, int(pid), stored, seed=0)
    rater = store.rater_id("sim", kind="simulated")
    at = datetime(2026, 1, 1)
    rows = []
    for k in range(150):
        pid = int(rng.choice(prompts.prompt_id))
        a, b = rng.choice(MODELS, 2, replace=False)
        outcome = "left" if rng.random() < 0.6 else "right"
        t = at + timedelta(minutes=k)
        rows.append(VotedBattle(pid, image[(a, pid)], image[(b, pid)], rater, outcome, 800, t, t))
    store.add_voted_battles(rows)
    store.add_model("real", "reference")
    for m in MODELS:
        store.put_model_metric(
            ids[m],
            "fid",
            "real",
            WHOLE[m],
            None,
            60,
            {"features": "inception@x#1"},
            higher_is_better=False,
        )
        details = {
            "features": "inception@x#1",
            "slice_images": 30,
            "slice_warning": "only 30 image(s) in this slice (fewer than 50): mostly noise",
            "warning": "FID on 30 images ...; only 30 image(s) in this slice",
        }
        if m == "cedar":
            details["size_warning"] = "image sizes differ from the reference set's (...)"
        store.put_model_metric(
            ids[m],
            "fid",
            "real",
            ANIMALS[m],
            None,
            30,
            details,
            higher_is_better=False,
            slice="category=animals",
        )
    return store


def test_the_leaderboard_shows_the_filters_slice_and_says_so(board_store):
    service = LeaderboardService(board_store.with_settings(bootstrap_rounds=0))
    whole = service.get()
    assert whole.frame.set_index("model")["fid"].to_dict() == WHOLE
    assert "over all images of each model" in whole.model_level_note
    animals = service.get(Filters(category="animals"))
    assert animals.frame.set_index("model")["fid"].to_dict() == ANIMALS
    note = animals.model_level_note
    assert "over each model's images of category animals" in note
    assert "images per model: ash 30, birch 30, cedar 30" in note
    assert "ash, birch, cedar: only 30 image(s) in this slice" in note
    assert "cedar: image sizes differ from the reference set's" in note
    # A filter without per-slice numbers keeps the whole-model ones and says how to get them.
    vehicles = service.get(Filters(category="vehicles"))
    assert vehicles.frame.set_index("model")["fid"].to_dict() == WHOLE
    assert "They ignore the filters" in vehicles.model_level_note
    assert "`arena distribution --by category`" in vehicles.model_level_note
    # Held out or two prompt filters at once: no single slice matches; whole-model numbers.
    assert Filters(category="animals", prompt_set="bench").model_level_slice() == ""
    assert Filters(prompt_set="bench").model_level_slice() == "prompt_set=bench"
    # Rows of several slices are never pivoted together by mistake.
    with pytest.raises(ValueError, match="several slices"):
        model_level_columns(board_store.model_metrics_frame())
    assert len(model_level_rows(board_store.model_metrics_frame(), "category=animals")) == 3


def test_agreement_uses_the_slices_numbers_under_its_filter(board_store):
    service = AgreementService(board_store.with_settings(bootstrap_rounds=20))
    whole = service.get().report
    animals = service.get(Filters(category="animals")).report
    assert whole.info["model_metrics_slice"] == ""
    assert animals.info["model_metrics_slice"] == "category=animals"
    assert animals.models.set_index("model")["fid_value"].to_dict() == ANIMALS
    assert whole.models.set_index("model")["fid_value"].to_dict() == WHOLE
    summary = agreement_outputs(service, "animals")[0]
    assert "over its images of category animals" in summary
    assert "over all its images, not filtered" in agreement_outputs(service)[0]


def test_the_export_carries_every_slice(board_store):
    out = compute_export(board_store, rounds=5, seed=0)
    table = out.tables["model_metrics"]
    assert list(table.columns[:4]) == ["model", "metric", "reference", "slice"]
    assert len(table) == 6
    got = {(r.model, r.slice): r.value for r in table.itertuples()}
    assert got == {
        **{(m, ""): v for m, v in WHOLE.items()},
        **{(m, "category=animals"): v for m, v in ANIMALS.items()},
    }
    assert table.set_index(["model", "slice"]).loc[("cedar", "category=animals"), "warning"]
    # The unfiltered leaderboard in the export keeps the whole-model numbers.
    assert out.board.frame.set_index("model")["fid"].to_dict() == WHOLE
