"""The storage façade on both back ends (SQLite and PostgreSQL)."""

import pytest
from PIL import Image
from sqlalchemy import select

from arena.storage import db
from arena.storage.migrate import current_revision, head_revision
from arena.storage.store import PromptRow, StoreError


def _image(color):
    return Image.new("RGB", (16, 12), color)


def test_schema_is_at_head(db_store):
    assert current_revision(db_store.engine) == head_revision()


def test_models_register_once_and_names_do_not_collide(db_store):
    a = db_store.add_model("alpha", "import", source="/out/alpha")
    assert db_store.add_model("alpha", "import", source="/out/alpha") == a
    with pytest.raises(StoreError, match=r"'alpha' is already used.*pick another name"):
        db_store.add_model("alpha", "diffusers", source="/ckpt/alpha")
    with pytest.raises(StoreError, match=r"unknown model 'beta'.*alpha"):
        db_store.model_id("beta")


def test_prompts_are_added_once_per_set(db_store):
    rows = [PromptRow("1girl, red hair", "p1", tags="1girl,red_hair"), PromptRow("a cat", "p2")]
    assert db_store.add_prompts(rows, "set-a") == (2, 0)
    assert db_store.add_prompts(rows, "set-a") == (0, 2)
    assert db_store.add_prompts(rows[:1], "set-b") == (1, 0)
    assert set(db_store.prompt_ids()) == {("set-a", "p1"), ("set-a", "p2"), ("set-b", "p1")}


def test_images_are_recorded_once_and_frames_join(db_store):
    model = db_store.add_model("alpha", "import")
    db_store.add_prompts([PromptRow("a cat", "p1")], "s")
    pid = db_store.prompt_ids()[("s", "p1")]
    stored = db_store.images.put_image(_image((255, 0, 0)))
    first = db_store.add_image(model, pid, stored, seed=0, params={"steps": 2})
    assert first is not None
    assert db_store.add_image(model, pid, stored, seed=0) is None
    frame = db_store.images_frame()
    assert list(frame["model"]) == ["alpha"] and frame["sha256"][0] == stored.sha256
    status = db_store.status()
    assert status["images"] == 1 and status["per_model"][0]["images"] == 1


def test_models_frame_lists_every_model_with_its_images(db_store):
    db_store.add_prompts([PromptRow("a cat", "p1")], "s")
    pid = db_store.prompt_ids()[("s", "p1")]
    beta, alpha = db_store.add_model("beta", "import"), db_store.add_model("alpha", "reference")
    db_store.add_model("gamma", "demo")
    db_store.set_model_active("gamma", False)
    for k in range(2):
        db_store.add_image(beta, pid, db_store.images.put_image(_image((k, 0, 0))), seed=k)
    db_store.add_image(alpha, pid, db_store.images.put_image(_image((9, 9, 9))), seed=0)
    frame = db_store.models_frame()
    assert frame.to_dict("records") == [
        {"model": "alpha", "kind": "reference", "active": True, "images": 1},
        {"model": "beta", "kind": "import", "active": True, "images": 2},
        {"model": "gamma", "kind": "demo", "active": False, "images": 0},
    ]
    assert db_store.status()["per_model"] == [
        {"model": m, "kind": k, "images": n}
        for m, k, n in [("alpha", "reference", 1), ("beta", "import", 2), ("gamma", "demo", 0)]
    ]


def test_a_failed_transaction_writes_nothing(db_store):
    with pytest.raises(RuntimeError), db_store.session() as s:
        s.add(db.Model(name="ghost", kind="import"))
        s.flush()
        raise RuntimeError("boom")
    with db_store.session() as s:
        assert s.scalar(select(db.Model).where(db.Model.name == "ghost")) is None


def test_rater_ids_are_stable(db_store):
    a = db_store.rater_id("browser-123")
    assert db_store.rater_id("browser-123") == a
    assert db_store.rater_id("sim-1", kind="simulated") != a
    with pytest.raises(StoreError, match="rater kind"):
        db_store.rater_id("x", kind="robot")
    assert db_store.find_rater("browser-123") == a and db_store.find_rater("nobody") is None


def test_a_web_rater_keeps_the_address_group_of_its_first_sight(db_store):
    rid = db_store.rater_id("browser-abcdefgh", login="ann", client_group="g1")
    assert db_store.rater_id("browser-abcdefgh", client_group="g2") == rid
    with db_store.session() as s:
        rater = s.get(db.Rater, rid)
        assert (rater.client_group, rater.login, rater.kind) == ("g1", "ann", "human")
        assert s.scalar(select(db.Rater.id).where(db.web_raters())) == rid


def test_migrations_match_the_models_on_this_back_end(db_store):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with db_store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), db.Base.metadata)
    assert diff == []


def test_shared_objects_are_made_once_per_store(store, tmp_path):
    """Admission limits, the gold pool and the report caches are one per store: eight
    threads asking at once for a slow-to-build object all get the same one, built once."""
    import threading
    import time

    from arena.config import load_settings
    from arena.storage.store import Store

    made = []

    def make():
        time.sleep(0.05)
        made.append(object())
        return made[-1]

    got = [None] * 8

    def ask(i):
        got[i] = store.shared("cache", make)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 1 and all(g is made[0] for g in got)
    other = Store(load_settings(env={}, workspace=str(tmp_path / "other")))
    try:
        assert other.shared("cache", object) is not made[0]  # another store, another object
    finally:
        other.close()
