"""`arena report --candidate A --baseline B` (issue 22, item 9): the four pillars against
hand-computed values, the verdicts and exit codes of a regression gate, and that no number
moves when ids or insertion order do."""

from __future__ import annotations

import json
import math
import re
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sqlalchemy import insert

from arena.cli import main
from arena.config import load_settings
from arena.reports.candidate import candidate_report, head_to_head, paired_cells, prompt_adherence
from arena.reports.candidate_page import candidate_html, candidate_markdown
from arena.reports.frames import ReportError
from arena.reports.thresholds import evaluate, read_thresholds
from arena.storage import db
from arena.storage.rater_verbs import VotedBattle
from arena.storage.store import PromptRow, Store
from tests.agreement_data import relabel_prompts

PROMPTS, SEEDS = 12, 2
# head to head: the candidate wins 26, loses 10, ties 3, both bad 1 (40 votes)
H2H = ["left"] * 26 + ["right"] * 10 + ["tie"] * 3 + ["both_bad"]


def build(store, reverse: bool = False) -> dict:
    """base, cand, other: 12 prompts x 2 seeds each; cand's image of (prompt 0, seed 1) is
    broken. clip (higher better): cand = base + 0.02; anomaly (lower better): cand = base +
    0.05. fid (lower better): cand 20, base 18. ``reverse`` inserts everything in the
    opposite order (other ids, same data)."""
    names = ["base", "cand", "other"]
    order = list(range(PROMPTS))
    if reverse:
        names, order = names[::-1], order[::-1]
    store.add_prompts([PromptRow(f"prompt {k}", f"p{k:02d}") for k in order], "bench")
    pids = store.prompt_ids("bench")
    models = {n: store.add_model(n, "import") for n in names}
    image, scores = {}, []
    for name in names:
        for k in order:
            for seed in range(SEEDS):
                level = (
                    40 * (names.index(name) + 1) if not reverse else 40 * (3 - names.index(name))
                )
                pixels = np.full((8, 8, 3), (k * 7 + seed * 3 + level) % 256, np.uint8)
                pixels[0, 0] = (
                    names.index(name) if not reverse else 2 - names.index(name),
                    k,
                    seed,
                )
                stored = store.images.put_image(Image.fromarray(pixels))
                iid = store.add_image(models[name], pids[("bench", f"p{k:02d}")], stored, seed=seed)
                image[(name, k, seed)] = iid
                base_clip = 0.2 + 0.01 * k + 0.003 * seed
                base_anom = 0.5 - 0.01 * k
                clip = base_clip + {"base": 0.0, "cand": 0.02, "other": -0.05}[name]
                anomaly = base_anom + {"base": 0.0, "cand": 0.05, "other": 0.1}[name]
                scores += [(iid, "clip", clip, True), (iid, "anomaly", anomaly, False)]
    with store.session() as s:
        s.execute(
            insert(db.Score),
            [{"image_id": i, "metric": m, "version": "v1", "value": v, "higher_is_better": h}
             for i, m, v, h in scores],
        )  # fmt: skip
        s.get(db.Image, image[("cand", 0, 1)]).broken = "black"
    for name, fid in (("base", 18.0), ("cand", 20.0), ("other", 30.0)):
        store.put_model_metric(models[name], "fid", "real", fid, None, 24, higher_is_better=False)
    rater = store.rater_id("sim-0", kind="simulated")
    t = db.utcnow() - timedelta(hours=1)
    rows = []
    for n, outcome in enumerate(H2H):
        k, seed = n % PROMPTS, (n // PROMPTS) % SEEDS
        if (k, seed) == (0, 1):
            seed = 0
        pid = pids[("bench", f"p{k:02d}")]
        cand, base = image[("cand", k, seed)], image[("base", k, seed)]
        if n % 2:  # the candidate on the right: the outcome flips sides
            flipped = {"left": "right", "right": "left"}.get(outcome, outcome)
            rows.append(VotedBattle(pid, base, cand, rater, flipped, 3000, t, t))
        else:
            rows.append(VotedBattle(pid, cand, base, rater, outcome, 3000, t, t))
    for n in range(30):  # the third model loses to both, so every model has a rating
        k = n % PROMPTS
        pid = pids[("bench", f"p{k:02d}")]
        rival = image[("base" if n % 2 else "cand", k, 0)]
        rows.append(VotedBattle(pid, rival, image[("other", k, 0)], rater, "left", 3000, t, t))
    rows.append(VotedBattle(pids[("bench", "p01")], image[("other", 1, 0)], image[("base", 1, 0)],
                            rater, "left", 3000, t, t))  # fmt: skip
    store.add_voted_battles(rows)
    return image


@pytest.fixture
def bench(settings):
    store = Store(settings)
    build(store)
    return store


GATE = """
[win_rate]
min = 0.6
[metrics.clip]
max_regression = 0.0
[metrics.anomaly]
max_regression = 0.01
[model_metrics.fid]
max_regression = 1.0
"""


def test_the_pillars_against_hand_computed_values(bench):
    report = candidate_report(bench, "cand", "base", rounds=200, seed=1)
    q = report.quality.set_index("metric").loc["fid"]
    assert (q["candidate"], q["baseline"], q["difference"], q["better"]) == (20, 18, 2, "baseline")
    a = report.adherence.set_index("metric")
    assert a.loc["clip", "cells"] == PROMPTS * SEEDS - 1  # the broken image's cell is out
    assert a.loc["clip", "difference"] == pytest.approx(0.02)
    assert a.loc["clip", "better"] == "candidate"
    assert a.loc["anomaly", "difference"] == pytest.approx(0.05)
    assert a.loc["anomaly", "better"] == "baseline"  # lower is better: higher anomaly is worse
    # every cell's difference is the same, so every bootstrap round gives it too
    assert a.loc["clip", "lower"] == pytest.approx(0.02) == a.loc["clip", "upper"]
    p = report.preference
    assert (p["votes"], p["wins"], p["losses"], p["ties"], p["both_bad"]) == (40, 26, 10, 3, 1)
    assert p["win_rate"] == pytest.approx(28 / 40)
    z, n, x = 1.959963984540054, 40, 28 / 40  # Wilson by hand
    centre = (x + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(x * (1 - x) / n + z * z / (4 * n * n))
    assert p["win_rate_lower"] == pytest.approx(centre - half)
    assert p["win_rate_upper"] == pytest.approx(centre + half)
    assert p["decisive_win_rate"] == pytest.approx(26 / 36)
    assert p["rating_difference"] > 0 and p["rating_lower"] < p["rating_difference"]


def test_paired_cells_drop_a_broken_image_and_its_counterpart(bench):
    images = bench.images_frame()  # broken images left out, as the report's frames do
    cells = paired_cells(images, "cand", "base")
    assert len(cells) == PROMPTS * SEEDS - 1
    prompts = bench.prompts_frame().set_index("prompt_id")["external_id"]
    missing = {(prompts[p], s) for p, s in zip(cells["prompt_id"], cells["seed"], strict=True)}
    assert ("p00", 1) not in missing and ("p00", 0) in missing


def test_verdicts_pass_and_fail_as_the_thresholds_say(bench, tmp_path):
    path = tmp_path / "gate.toml"
    path.write_text(GATE, encoding="utf-8")
    report = candidate_report(bench, "cand", "base", rounds=100, seed=1)
    report.verdicts = evaluate(report, read_thresholds(path))
    v = report.verdicts.set_index("check")["verdict"].to_dict()
    assert v == {
        "win_rate: min 0.6": "pass",
        "metrics.clip: max_regression 0": "pass",
        "metrics.anomaly: max_regression 0.01": "fail",
        "model_metrics.fid: max_regression 1": "fail",
    }
    values = report.verdicts.set_index("check")["value"]
    assert values["metrics.clip: max_regression 0"] == pytest.approx(-0.02)
    assert values["model_metrics.fid: max_regression 1"] == pytest.approx(2.0)
    assert not report.passed
    page, md = candidate_html(report), candidate_markdown(report)
    assert "FAIL: 2 of 4 thresholds do not pass." in page and "FAIL: 2 of 4" in md
    assert "<script" not in page and "http" not in page
    assert "| metrics.anomaly: max_regression 0.01 | 0.05 | fail |" in md


def test_the_interval_option_uses_the_pessimistic_end(bench, tmp_path):
    path = tmp_path / "gate.json"
    path.write_text(json.dumps({"win_rate": {"min": 0.6, "on": "interval"}}), encoding="utf-8")
    report = candidate_report(bench, "cand", "base", rounds=100, seed=1)
    verdict = evaluate(report, read_thresholds(path)).iloc[0]
    assert verdict["value"] == pytest.approx(report.preference["win_rate_lower"])
    assert verdict["verdict"] == "fail"  # 0.70 passes, its lower bound (0.55) does not


def test_arena_report_exits_by_the_gate(settings, tmp_path, capsys):
    build(Store(settings))
    ws = str(settings.workspace_path)
    gate, passing = tmp_path / "gate.toml", tmp_path / "ok.toml"
    gate.write_text(GATE, encoding="utf-8")
    passing.write_text("[win_rate]\nmin = 0.6\n[metrics.clip]\nmax_regression = 0\n", "utf-8")
    argv = ["-w", ws, "report", "--candidate", "cand", "--baseline", "base", "--bootstrap", "50"]
    assert main([*argv, "--thresholds", str(gate), "--out", str(tmp_path / "a")]) == 1
    out = capsys.readouterr().out
    assert "| model_metrics.fid: max_regression 1 | 2 | fail |" in out
    assert (tmp_path / "a" / "candidate-report.html").is_file()
    assert (tmp_path / "a" / "candidate-report.md").read_text().startswith("# Candidate cand")
    assert main([*argv, "--thresholds", str(passing), "--out", str(tmp_path / "b")]) == 0
    assert main([*argv, "--out", str(tmp_path / "c")]) == 0  # no thresholds: no verdict
    missing = tmp_path / "missing.toml"
    missing.write_text("[failures.any]\nmax_increase = 0.02\n", encoding="utf-8")
    assert main([*argv, "--thresholds", str(missing), "--out", str(tmp_path / "d")]) == 1
    assert "no data" in capsys.readouterr().out  # missing evidence fails the gate


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[speed]\nmin = 1\n", "unknown check [speed]"),
        ("[win_rate]\nmax = 1\n", "unknown key(s) max"),
        ("[win_rate]\nmin = 'a'\n", "is not a finite number"),
        ("[metrics]\n", "needs a name"),
        ("[rating]\nmin = 0\nreference = 'x'\n", "reference applies to [model_metrics.*]"),
        ("[win_rate\n", "not valid TOML"),
    ],
)
def test_bad_threshold_files_are_refused_with_the_reason(tmp_path, text, message):
    path = tmp_path / "gate.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ReportError, match=re.escape(message)):
        read_thresholds(path)


def test_unknown_models_are_refused(bench, capsys):
    ws = str(bench.settings.workspace_path)
    assert main(["-w", ws, "report", "--candidate", "nope", "--baseline", "base"]) == 2
    assert "'nope' is not a model of this workspace; pick one of base, cand, other" in (
        capsys.readouterr().err
    )


def test_no_number_moves_with_ids_or_insertion_order(tmp_path):
    reports = []
    for reverse in (False, True):
        store = Store(load_settings(env={}, workspace=str(tmp_path / f"ws{reverse}")))
        build(store, reverse=reverse)
        reports.append(candidate_report(store, "cand", "base", rounds=200, seed=3))
    a, b = reports
    cols = ["metric", "cells", "candidate", "baseline", "difference", "lower", "upper", "better"]
    assert a.adherence[cols].round(12).equals(b.adherence[cols].round(12))
    assert a.quality.equals(b.quality)
    keys = ["votes", "wins", "losses", "win_rate", "win_rate_lower", "rating_difference"]
    assert {k: a.preference[k] for k in keys} == pytest.approx({k: b.preference[k] for k in keys})


def test_adherence_intervals_do_not_move_with_prompt_ids():
    """The bootstrap draws prompts in the order of their content: the same prompts under
    other ids (reversed, spread out) and the cells shuffled give exactly the same table."""
    rng = np.random.default_rng(4)
    n_prompts = 40
    prompts = pd.DataFrame(
        {
            "prompt_id": np.arange(1, n_prompts + 1),
            "prompt_set": "bench",
            "external_id": [f"p{k:02d}" for k in range(n_prompts)],
            "text": [f"prompt {k * 13 % n_prompts}" for k in range(n_prompts)],
            "tags": "",
            "category": "",
        }
    )
    cells = pd.DataFrame(
        {
            "prompt_id": np.repeat(prompts.prompt_id, 2).to_numpy(),
            "seed": np.tile([0, 1], n_prompts),
            "candidate_image": np.arange(2 * n_prompts),
            "baseline_image": 1000 + np.arange(2 * n_prompts),
        }
    )
    images = np.r_[cells.candidate_image, cells.baseline_image]
    scores = pd.DataFrame(
        {
            "image_id": images,
            "metric": "clip",
            "version": "v1",
            "value": rng.normal(0.3, 0.05, images.size),
            "higher_is_better": True,
        }
    )
    versions = pd.DataFrame({"metric": ["clip"], "version": ["v1"]})

    def table(cells_, prompts_):
        rng_ = np.random.default_rng(9)
        return prompt_adherence(scores, versions, cells_, rng_, 300, prompts=prompts_)

    base = table(cells, prompts)
    got = table(*relabel_prompts(prompts, cells)[::-1])
    assert got[["lower", "upper", "prompts"]].equals(base[["lower", "upper", "prompts"]])
    pd.testing.assert_frame_equal(got, base)  # the means add the shuffled cells in row order
    assert base.lower[0] < base.difference[0] < base.upper[0]


def test_head_to_head_counts_the_candidate_on_either_side():
    import pandas as pd

    votes = pd.DataFrame(
        {
            "left_model": ["a", "b", "a", "b", "c"],
            "right_model": ["b", "a", "b", "a", "a"],
            "outcome": ["left", "left", "tie", "right", "left"],
        }
    )
    h = head_to_head(votes, "a", "b")
    assert (h["votes"], h["wins"], h["losses"], h["ties"]) == (4, 2, 1, 1)
    assert h["win_rate"] == pytest.approx(2.5 / 4)


def test_the_failure_pillar_and_its_gate(bench, tmp_path):
    """Blind verdicts: the candidate fails 4 of 10 reviewed images (hands), the baseline 1
    of 10; the increase's interval is Newcombe's, built from the two Wilson intervals."""
    images = bench.images_frame()
    for name, failed in (("cand", 4), ("base", 1)):
        ids = images[images["model"] == name]["image_id"].sort_values().tolist()[:10]
        for k, image_id in enumerate(ids):
            bench.save_review(image_id, "ada", ["hands"] if k < failed else [], blind=True)
    report = candidate_report(bench, "cand", "base", rounds=50, seed=1)
    rows = report.failures.set_index(["source", "flag"])
    row = rows.loc[("blind sample", "any failure")]
    assert (row["candidate"], row["baseline"]) == (pytest.approx(0.4), pytest.approx(0.1))
    assert (row["candidate_reviewed"], row["baseline_reviewed"]) == (10, 10)

    def wilson(x, n, z=1.959963984540054):
        p = x / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        return centre - half, centre + half

    (l1, u1), (l2, u2) = wilson(4, 10), wilson(1, 10)
    assert row["increase"] == pytest.approx(0.3)
    assert row["increase_low"] == pytest.approx(0.3 - math.sqrt((0.4 - l1) ** 2 + (u2 - 0.1) ** 2))
    assert row["increase_high"] == pytest.approx(0.3 + math.sqrt((u1 - 0.4) ** 2 + (0.1 - l2) ** 2))
    gate = tmp_path / "gate.toml"
    gate.write_text(
        "[failures.any]\nmax_increase = 0.2\n[failures.hands]\nmax_increase = 0.5\n", "utf-8"
    )
    verdicts = evaluate(report, read_thresholds(gate)).set_index("check")["verdict"]
    assert verdicts.to_dict() == {
        "failures.any: max_increase 0.2": "fail",
        "failures.hands: max_increase 0.5": "pass",
    }
    assert "Failure analysis" in candidate_markdown(report)
    assert "| blind sample | any failure | 0.4 |" in candidate_markdown(report)
