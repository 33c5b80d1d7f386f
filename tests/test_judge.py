"""`arena judge` (issue 21, item 2): a VLM votes through the battle path as its own rater.

A stub VLM with a known preference checks the position-swap logic, the storage of both
orders and the blinding (it records exactly what it was shown); the tiny random Qwen2-VL
(real files, real processor, real ``generate``) checks the command end to end and that a
batch gives the same answers as one pair per call.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
import torch
from PIL import Image
from sqlalchemy import func, select

from arena.cli import main
from arena.reports.frames import Filters
from arena.reports.leaderboard import LeaderboardService
from arena.storage import db
from arena.storage.rater_verbs import VotedBattle
from arena.storage.store import PromptRow, StoreError
from arena.voting.battles import RaterIdentity, record_vote, serve_battle
from arena.voting.judging import SWAP, JudgeSchedule, Order, run_judge, voted_pairs
from scoring.judge import JudgeTemplate, JudgeTemplateError, PairJudge, parse_answers
from scoring.metrics.vlm import NextToken

MODELS = {"alpha": 220, "beta": 130, "gamma": 40}  # each model's mean brightness


def build_arena(store, prompts: int = 3, seed: int = 0) -> dict[str, int]:
    """Three models with images of known brightness, human votes on every model pair of
    every prompt (one or two raters each). Returns image id -> brightness."""
    rng = np.random.default_rng(seed)
    store.add_prompts([PromptRow(f"a lantern number {k}", str(k)) for k in range(prompts)], "s")
    pids = store.prompt_ids("s")
    brightness, by_prompt = {}, {}
    for name, level in MODELS.items():
        model = store.add_model(name, "import")
        for k in range(prompts):
            noise = rng.integers(-20, 21, (36, 52, 3))
            pixels = np.clip(level + noise, 0, 255).astype(np.uint8)
            stored = store.images.put_image(Image.fromarray(pixels))
            image = store.add_image(model, pids[("s", str(k))], stored, seed=k)
            brightness[image] = level
            by_prompt.setdefault(k, []).append(image)
    raters = [store.rater_id(f"sim-{r}", kind="simulated") for r in range(2)]
    t = db.utcnow() - timedelta(hours=1)
    rows = []
    for k, images in by_prompt.items():
        pid = pids[("s", str(k))]
        for i in range(3):
            for j in range(i + 1, 3):
                a, b = images[i], images[j]
                for r in raters[: 1 + (k + i + j) % 2]:
                    outcome = "left" if brightness[a] > brightness[b] else "right"
                    rows.append(VotedBattle(pid, a, b, r, outcome, 3000, t, t))
    store.add_voted_battles(rows)
    return brightness


class StubVLM:
    """A VLM whose answer is known: it prefers the brighter image (``"bright"``) or always
    answers the first (``"first"``). It records the questions and the images it got."""

    name = "stub/vlm"

    def __init__(self, mode: str = "bright"):
        self.WORDS = {"A": 0, "B": 1, "C": 2, "D": 3, "Yes": 4}
        self.mode = mode
        self.questions: list[str] = []
        self.images: list[list[Image.Image]] = []
        self.calls = 0

    def token_id(self, word: str) -> int:
        return self.WORDS.get(word, 9)

    def next_token(self, images, questions) -> NextToken:
        self.calls += 1
        self.questions += list(questions)
        self.images += [list(row) for row in images]
        logits = torch.zeros(len(images), 10)
        for k, (first, second) in enumerate(images):
            if self.mode == "first":
                logits[k, 0] = 5.0
            else:
                diff = np.asarray(first, float).mean() - np.asarray(second, float).mean()
                logits[k, 0 if diff > 0 else 1] = 4.0
                logits[k, 2] = 1.0
        return NextToken(logits.clone(), logits)


def judge_votes(store, rater_id: int) -> list[tuple]:
    """(left id, right id, outcome, details) of each vote of the rater, with the battle."""
    v, b = db.Vote, db.Battle
    with store.session() as s:
        return [
            tuple(row)
            for row in s.execute(
                select(b.left_image_id, b.right_image_id, v.outcome, v.details, b.policy, b.kind)
                .join(b, b.id == v.battle_id)
                .where(v.rater_id == rater_id)
                .order_by(v.id)
            )
        ]


def test_a_judge_judges_every_voted_pair_in_both_orders(db_store):
    brightness = build_arena(db_store)
    judge = PairJudge(StubVLM("bright"))
    summary = run_judge(db_store, judge, group="vlm", batch_size=4)
    pairs = voted_pairs(db_store)
    assert len(pairs) == 9 and summary.votes == 18 == summary.planned
    rows = judge_votes(db_store, summary.rater_id)
    assert {(a, b) for a, b, *_ in rows} == {(a, b) for _p, a, b, *_ in pairs} | {
        (b, a) for _p, a, b, *_ in pairs
    }
    for left, right, outcome, details, policy, kind in rows:
        assert (policy, kind) == ("judge", "normal")
        assert outcome == ("left" if brightness[left] > brightness[right] else "right")
        assert sum(details["probs"].values()) == pytest.approx(1.0)
        assert details["order"] in ("first", "swapped")
        assert max(details["probs"], key=details["probs"].get) == outcome
    assert summary.pairs_both_orders == 9 and summary.consistent == 9
    raters = db_store.raters_frame().set_index("rater_id")
    assert raters.loc[summary.rater_id, "kind"] == "judge"
    assert raters.loc[summary.rater_id, "rater_group"] == "vlm"
    with db_store.session() as s:
        stored = s.scalar(select(db.Rater.details).where(db.Rater.id == summary.rater_id))
    assert stored["template"] == judge.template.text and stored["answers"]["left"] == "A"
    assert stored["name"] == judge.name == f"stub/vlm#{judge.template.digest}"


def test_a_judge_that_always_answers_first_is_inconsistent_in_every_pair(store):
    build_arena(store)
    summary = run_judge(store, PairJudge(StubVLM("first")), batch_size=5)
    rows = judge_votes(store, summary.rater_id)
    assert {outcome for *_x, outcome, _d, _p, _k in rows} == {"left"}
    assert summary.pairs_both_orders == 9 and summary.consistent == 0
    # each pair's two orders: mapped back to the first order they disagree
    by_pair = {}
    for left, right, outcome, details, *_ in rows:
        first = outcome if details["order"] == "first" else SWAP[outcome]
        by_pair.setdefault(frozenset((left, right)), set()).add(first)
    assert all(len(answers) == 2 for answers in by_pair.values())


def test_the_judge_sees_only_the_prompt_and_the_display_renditions(store):
    build_arena(store)
    vlm = StubVLM()
    template = JudgeTemplate('Which is better for "{prompt}"? A, B, C or D.')
    summary = run_judge(store, PairJudge(vlm, template), batch_size=3)
    prompts = set(store.prompts_frame()["text"])
    assert {template.question(p) for p in prompts} == set(vlm.questions)
    assert not any(name in q for q in vlm.questions for name in MODELS)
    rows = judge_votes(store, summary.rater_id)
    shas = store.images_frame().set_index("image_id")["sha256"]
    box = store.images.renditions.box
    for (left, right, *_), shown in zip(rows, vlm.images, strict=True):
        for image_id, image in zip((left, right), shown, strict=True):
            rendition = Image.open(store.images.renditions.path_for(shas[image_id]))
            assert image.size == rendition.size and max(image.size) == max(box)
            assert np.array_equal(np.asarray(image), np.asarray(rendition.convert("RGB")))
            assert not getattr(image, "filename", "")  # no file name travels with it


def test_judge_votes_leave_the_human_leaderboard_unchanged(store):
    build_arena(store)
    before = LeaderboardService(store).get(seed=0, rounds=20).frame
    summary = run_judge(store, PairJudge(StubVLM("first")), batch_size=6)
    after = LeaderboardService(store).get(seed=0, rounds=20).frame
    assert before.equals(after)
    judged = LeaderboardService(store).get(Filters(rater_kind="judge"), seed=0, rounds=20)
    assert judged.votes_used == summary.votes == 18


def test_a_capped_run_resumes_where_it_stopped_and_repeats_nothing(store):
    build_arena(store)
    vlm = StubVLM()
    first = run_judge(store, PairJudge(vlm), max_votes=5, batch_size=2)
    assert first.votes == 5 and vlm.calls == 3  # batches of 2, 2, 1
    rows = judge_votes(store, first.rater_id)
    half = [(a, b) for a, b, _o, d, *_ in rows if d["order"] == "first"]
    assert len(rows) == 5 and len(half) == 3  # the third pair has its first order only
    second = run_judge(store, PairJudge(vlm), batch_size=4)
    assert second.rater_id == first.rater_id and second.votes == 13
    rows = judge_votes(store, first.rater_id)
    assert len(rows) == len({(a, b) for a, b, *_ in rows}) == 18
    assert vlm.images[5][0] is not None
    assert run_judge(store, PairJudge(vlm)).votes == 0  # nothing left


def test_pairs_any_goes_on_with_new_pairs_in_both_orders(store):
    build_arena(store, prompts=3)
    # one more image per model for prompt 0: pairs nobody voted on
    pid = store.prompt_ids("s")[("s", "0")]
    for name in MODELS:
        pixels = np.full((36, 52, 3), MODELS[name] // 2, np.uint8)
        store.add_image(
            store.model_id(name), pid, store.images.put_image(Image.fromarray(pixels)), seed=7
        )
    summary = run_judge(store, PairJudge(StubVLM()), max_votes=22, pairs="any", batch_size=4)
    rows = judge_votes(store, summary.rater_id)
    assert summary.votes == len(rows) == 22
    new = [(a, b) for a, b, *_ in rows[18:]]
    assert new[0] == new[1][::-1] and new[2] == new[3][::-1]
    assert not {frozenset(p) for p in new} & {
        frozenset((a, b)) for _p, a, b, *_ in voted_pairs(store)
    }


def test_judge_votes_skip_what_guards_people_and_only_judges_have_details(store):
    build_arena(store)
    rid = store.judge_rater("j", {"model": "m", "template": "t {prompt}", "answers": {}})
    schedule = JudgeSchedule([Order(*voted_pairs(store)[0][:3], "first")])
    view = serve_battle(store, RaterIdentity.for_judge("j"), schedule)
    late = view.served_at + timedelta(seconds=store.settings.battle_ttl_seconds + 60)
    receipt = record_vote(
        store, view.token, RaterIdentity.for_judge("j"), "tie", 1, now=late, details={"x": 1}
    )
    assert receipt.flag is None  # 1 ms is no "fast" vote for a machine
    assert judge_votes(store, rid)[0][2:4] == ("tie", {"x": 1})
    person = RaterIdentity("person-0001")
    from arena.voting.matchmaking import Matchmaker

    view = serve_battle(store, person, Matchmaker.for_store(store))
    with pytest.raises(ValueError, match="people have none"):
        record_vote(store, view.token, person, "left", 2000, details={"probs": {}})
    with pytest.raises(StoreError, match="another model, template"):
        store.judge_rater("j", {"model": "other", "template": "t {prompt}", "answers": {}})


def test_templates_and_answers_are_checked():
    with pytest.raises(JudgeTemplateError, match=r"no \{prompt\}"):
        JudgeTemplate("Which image is better?")
    with pytest.raises(JudgeTemplateError, match="no word for both_bad"):
        parse_answers("left=A,right=B,tie=C")
    with pytest.raises(JudgeTemplateError, match="given twice"):
        parse_answers("left=A,left=B,tie=C,both_bad=D")
    same = JudgeTemplate("{prompt}", parse_answers("left=Yes,right=Yes2,tie=C,both_bad=D"))
    vlm = StubVLM()
    vlm.WORDS["Yes2"] = 4
    with pytest.raises(JudgeTemplateError, match="start with the same token"):
        PairJudge(vlm, same)
    assert JudgeTemplate("a {prompt}").digest != JudgeTemplate("b {prompt}").digest
    # a mapping is checked as it is (a word with a comma in it is a word), in outcome order
    mapped = JudgeTemplate(
        "{prompt}", {"tie": "C", "both_bad": "D, none", "left": "A", "right": "B"}
    )
    assert list(mapped.answers) == ["left", "right", "tie", "both_bad"]
    assert mapped.answers["both_bad"] == "D, none"
    with pytest.raises(JudgeTemplateError, match="no word for right"):
        JudgeTemplate("{prompt}", {"left": "A", "tie": "C", "both_bad": "D"})
    with pytest.raises(JudgeTemplateError, match="expected OUTCOME=WORD"):
        JudgeTemplate("{prompt}", {"left": "A", "right": "", "tie": "C", "both_bad": "D"})


# -- the tiny random Qwen2-VL, end to end -------------------------------------------------
@pytest.fixture(scope="module")
def vlm_folder(tmp_path_factory):
    from scoring.testing.tiny_vlm import write_tiny_qwen2vl

    return write_tiny_qwen2vl(tmp_path_factory.mktemp("vlm") / "Qwen2-VL-tiny")


def test_arena_judge_on_a_tiny_qwen2vl_stores_votes_and_resumes(settings, vlm_folder, capsys):
    from arena.storage.store import Store

    store = Store(settings)
    build_arena(store, prompts=2)
    ws = str(settings.workspace_path)
    argv = ["-w", ws, "judge", "--model", str(vlm_folder), "--device", "cpu", "--no-progress"]
    assert main([*argv, "--votes", "4", "--batch-size", "3", "--group", "vlm"]) == 0
    out = capsys.readouterr().out
    assert "4 votes of 4 planned" in out
    raters = store.raters_frame()
    judge = raters[raters["kind"] == "judge"].iloc[0]
    assert judge["external_id"].startswith("judge:") and judge["rater_group"] == "vlm"
    rows = judge_votes(store, int(judge["rater_id"]))
    assert len(rows) == 4
    for *_ids, _outcome, details, _p, _k in rows:
        assert sum(details["probs"].values()) == pytest.approx(1.0)
        assert 0 < details["answer_mass"] <= 1
    assert main(argv) == 0  # the rest
    assert len(judge_votes(store, int(judge["rater_id"]))) == 2 * len(voted_pairs(store)) == 12
    assert main(argv) == 0
    assert "has voted on all 6 pairs people voted on" in capsys.readouterr().out


@pytest.mark.parametrize("family", ["qwen2-vl", "qwen2.5-vl", "llava-1.5"])
def test_a_batch_answers_as_one_pair_per_call(family, vlm_folder, tmp_path):
    from scoring.testing.tiny_vlm_families import write_tiny_llava, write_tiny_qwen25vl

    writers = {"qwen2.5-vl": write_tiny_qwen25vl, "llava-1.5": write_tiny_llava}
    folder = writers[family](tmp_path / family) if family in writers else vlm_folder
    judge = PairJudge.load(folder, "cpu")
    rng = np.random.default_rng(3)
    sizes = [(40, 28), (28, 56), (56, 56), (32, 44)]
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes]
    pairs = [(images[0], images[1]), (images[2], images[3]), (images[1], images[2])]
    prompts = ["a red cat", "two dogs on a long sofa by the window", "x"]
    batch = judge.judge(pairs, prompts)
    single = [judge.judge([p], [q]) for p, q in zip(pairs, prompts, strict=True)]
    assert np.allclose(batch.probs, np.vstack([s.probs for s in single]), atol=1e-5)
    assert np.allclose(batch.probs.sum(axis=1), 1.0)
    assert batch.probs.std(axis=0).max() > 0  # the answers depend on the inputs


def test_arena_judge_refuses_bad_input_with_clear_errors(settings, vlm_folder, tmp_path, capsys):
    from arena.storage.store import Store

    build_arena(Store(settings), prompts=1)
    ws = str(settings.workspace_path)
    base = ["-w", ws, "judge", "--model", str(vlm_folder), "--device", "cpu", "--no-progress"]

    def refused(argv: list[str], message: str) -> None:
        assert main(argv) == 2
        assert message in capsys.readouterr().err

    refused(["-w", ws, "judge", "--model", str(tmp_path)], "expected a model folder with config")
    bad = tmp_path / "t.txt"
    bad.write_text("Which is better?", encoding="utf-8")
    refused([*base, "--template", str(bad)], "has no {prompt}")
    refused([*base, "--answers", "left=A,right=B"], "no word for tie, both_bad")
    refused([*base, "--pairs", "any"], "--pairs any needs --votes")
    refused([*base, "--batch-size", "0"], "--batch-size 0: must be 1 or more")
    assert main([*base, "--name", "mine", "--votes", "2"]) == 0
    bad.write_text("Other question about {prompt}: A, B, C or D?", encoding="utf-8")
    refused([*base, "--name", "mine", "--template", str(bad)], "another model, template")
    with Store(settings).session() as s:  # the refused run stored nothing
        assert s.scalar(select(func.count(db.Rater.id)).where(db.Rater.kind == "judge")) == 1
        assert (
            s.scalar(select(func.count(db.Vote.id))) == 5 + 2
        )  # five human votes, two of the judge


def test_0005_adds_the_details_columns_keeps_the_rows_and_downgrades(db_url, tmp_path):
    from alembic import command
    from sqlalchemy import inspect, text

    from arena.storage.migrate import alembic_config, current_revision, upgrade_to_head

    def migrate(engine, revision, down=False):
        config = alembic_config()
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            (command.downgrade if down else command.upgrade)(config, revision)

    def columns(engine, table):
        return {c["name"] for c in inspect(engine).get_columns(table)}

    engine = db.make_engine(db_url or f"sqlite:///{tmp_path / 'old.db'}")
    migrate(engine, "0004")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO raters (id, external_id, kind, excluded, excluded_reason, "
                "exclusion_manual, created_at) VALUES (1, 'sim-00', 'simulated', false, '', "
                "false, '2026-01-01 00:00:00')"
            )
        )
    assert "details" not in columns(engine, "raters") | columns(engine, "votes")
    upgrade_to_head(engine)
    assert "details" in columns(engine, "raters") and "details" in columns(engine, "votes")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT external_id, details FROM raters")).all() == [
            ("sim-00", None)
        ]
    migrate(engine, "0004", down=True)
    assert current_revision(engine) == "0004"
    assert "details" not in columns(engine, "raters") | columns(engine, "votes")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT external_id FROM raters")).all() == [("sim-00",)]
    engine.dispose()
