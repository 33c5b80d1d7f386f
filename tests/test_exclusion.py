"""The rater-exclusion policy on real databases (SQLite and PostgreSQL)."""

import uuid

from PIL import Image

from arena.storage import db
from arena.storage.store import PromptRow
from arena.voting.exclusion import quality_report, refresh_exclusions


def _arena(store, n_images=12):
    models = [store.add_model(name, "import") for name in ("m-a", "m-b")]
    store.add_prompts([PromptRow(f"prompt {k}", f"p{k}") for k in range(n_images)], "s")
    ids = store.prompt_ids()
    images = {}
    for m, model in enumerate(models):
        for k in range(n_images):
            stored = store.images.put_image(Image.new("RGB", (8, 8), (m * 100, k * 10, 0)))
            images[(m, k)] = store.add_image(model, ids[("s", f"p{k}")], stored, seed=0)
    return ids, images


def _vote(
    store, rater, prompt_id, left, right, outcome, kind="normal", gold_answer=None, decision_ms=3000
):
    with store.session() as s:
        battle = db.Battle(
            token=uuid.uuid4().hex,
            prompt_id=prompt_id,
            left_image_id=left,
            right_image_id=right,
            rater_id=rater,
            policy="test",
            kind=kind,
            gold_answer=gold_answer,
        )
        s.add(battle)
        s.flush()
        s.add(
            db.Vote(battle_id=battle.id, rater_id=rater, outcome=outcome, decision_ms=decision_ms)
        )


def test_always_left_rater_is_excluded_and_an_admin_can_reverse_it(db_store):
    ids, images = _arena(db_store)
    good = db_store.rater_id("good")
    lefty = db_store.rater_id("lefty")
    for k in range(12):
        pid = ids[("s", f"p{k}")]
        a, b = images[(0, k)], images[(1, k)]
        left, right = (a, b) if k % 2 else (b, a)
        for _ in range(3):
            _vote(db_store, good, pid, left, right, "left" if left == a else "right")
            _vote(db_store, lefty, pid, left, right, "left")
    assert refresh_exclusions(db_store) == {"excluded": 1, "included": 0}
    raters = db_store.raters_frame().set_index("external_id")
    assert (
        bool(raters.loc["lefty", "excluded"])
        and "chooses left" in raters.loc["lefty", "excluded_reason"]
    )
    assert not bool(raters.loc["good", "excluded"])
    # The leaderboard's frame leaves the excluded rater out; nothing is deleted.
    assert set(db_store.votes_frame()["rater_id"]) == {good}
    assert len(db_store.votes_frame(include_excluded=True)) == 72

    db_store.set_rater_exclusion(lefty, False)
    assert refresh_exclusions(db_store) == {"excluded": 0, "included": 0}
    assert not bool(db_store.raters_frame().set_index("external_id").loc["lefty", "excluded"])


def test_gold_failures_show_in_the_report(db_store):
    ids, images = _arena(db_store)
    careless = db_store.rater_id("careless")
    for k in range(6):
        pid = ids[("s", f"p{k}")]
        _vote(
            db_store,
            careless,
            pid,
            images[(0, k)],
            images[(1, k)],
            "right",
            kind="gold",
            gold_answer="left",
        )
    report = quality_report(db_store).set_index("external_id")
    assert report.loc["careless", "gold_accuracy"] == 0.0
    assert "gold accuracy 0%" in report.loc["careless", "flag_reasons"]


def test_the_running_server_applies_the_policy_by_itself(tmp_path):
    """A flagged rater stops counting without an admin pressing the button."""
    import time

    from arena.config import load_settings
    from arena.storage.store import Store
    from tests.arena_app import running_app

    settings = load_settings(env={}, workspace=str(tmp_path / "ws"), policy_refresh_seconds=1)
    store = Store(settings)
    ids, images = _arena(store)
    lefty = store.rater_id("lefty")
    for k in range(12):
        left, right = (images[(0, k)], images[(1, k)])[:: 1 if k % 2 else -1]
        for _ in range(3):
            _vote(store, lefty, ids[("s", f"p{k}")], left, right, "left")
    assert len(store.votes_frame()) == 36  # counted until the policy runs
    with running_app(store, tabs=("arena.ui.workspace_tab",)):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(store.votes_frame()):
            time.sleep(0.2)
    assert store.votes_frame().empty
    reason = store.raters_frame().set_index("external_id").loc["lefty", "excluded_reason"]
    assert reason.startswith("policy:") and "chooses left" in reason
    store.close()
