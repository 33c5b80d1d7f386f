"""Published prompt benchmarks as published (PartiPrompts TSV, DrawBench CSV, GenAI-Bench
JSON), held-out prompt sets, and their use by the leaderboard, agreement and export.

No benchmark prompt ships with the arena: every file here is written by the test in the
published *format* (columns, quoting, structure) with invented prompts.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import numpy as np
import pytest
from PIL import Image

from arena.cli import main
from arena.intake.prompts import import_prompts, read_prompt_file
from arena.intake.reading import IngestError
from arena.reports.agreement import AgreementService
from arena.reports.export import compute_export, read_table
from arena.reports.frames import Filters, ReportError, load_report_frames
from arena.reports.leaderboard import LeaderboardService
from arena.storage import db
from arena.storage.errors import StoreError
from arena.storage.rater_verbs import VotedBattle

# PartiPrompts' published layout: a header row, tab-separated, unquoted; the last column
# (Note) is often empty and a prompt may start with a quote mark.
PARTI = (
    "Prompt\tCategory\tChallenge\tNote\n"
    "a teal kettle on a windowsill\tArtifacts\tBasic\t\n"
    "three otters, one holding a lantern\tAnimals\tQuantity\tcounting\n"
    '"OPEN LATE" painted on a blue door\tIllustrations\tWriting & Symbols\t\n'
    "a heron made of folded maps\tAnimals\tImagination\tpaper craft\n"
    "a tram seen from directly above\tVehicles\tPerspective\t\n"
)
# DrawBench's sheet exported as CSV: quoted cells, Prompts and Category.
DRAWBENCH = (
    '"Prompts","Category"\n'
    '"A violet bicycle.","Colors"\n'
    '"Five lemons, two pears and a spoon.","Counting"\n'
    '"A mug to the left of a fern.","Positional"\n'
)
# GenAI-Bench's genai_image.json: id -> entry (extra fields such as human ratings kept
# out of the prompt); skills in genai_skills.json as skill -> prompt numbers.
GENAI = {
    "00001": {"id": 1, "prompt": "a red kite above a grey pier", "models": {"M": [4, 5]}},
    "00002": {"id": 2, "prompt": "a lamp in an empty hall at night", "models": {}},
    "00003": {"id": 3, "prompt": "four cups but no saucers", "models": {}},
    "00004": {"id": 4, "prompt": "a quiet street", "models": {}},
}
GENAI_SKILLS = {
    "basic": [1, 2],
    "advanced": [3],
    "attribute": [1, 3],
    "scene": [2, 3],
    "spatial relation": [1],
    "counting": [3],
    "negation": [3],
}


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def _prompts(store):
    return store.prompts_frame().set_index("external_id")


def test_partiprompts_tsv_is_read_as_published(store, tmp_path):
    path = _write(tmp_path / "PartiPrompts.tsv", PARTI)
    report = import_prompts(store, path, "parti")
    assert (report.added, report.format) == (5, "parti")
    assert "PartiPrompts TSV (category <- Category, tags <- Challenge)" in report.summary()
    got = _prompts(store)
    assert list(got.index) == ["1", "2", "3", "4", "5"]  # no id column: the row position
    assert got.loc["2", "text"] == "three otters, one holding a lantern"  # commas kept
    assert got.loc["2", "category"] == "Animals" and got.loc["2", "tags"] == "Quantity"
    # Unquoted TSV: the opening quote mark is part of the prompt (csv quoting would strip it).
    assert got.loc["3", "text"] == '"OPEN LATE" painted on a blue door'
    assert got.loc["3", "tags"] == "Writing & Symbols"
    assert set(got["category"]) == {"Artifacts", "Animals", "Illustrations", "Vehicles"}
    # The Note is free text, not a label: it goes nowhere.
    assert not got["tags"].str.contains("counting|paper craft").any()
    again = import_prompts(store, path, "parti")
    assert (again.added, again.present) == (0, 5)


def test_drawbench_csv_and_genai_bench_json_are_recognised(store, tmp_path):
    draw = import_prompts(store, _write(tmp_path / "drawbench.csv", DRAWBENCH), "draw")
    assert draw.format == "drawbench" and draw.added == 3
    got = store.prompts_frame()
    got = got[got.prompt_set == "draw"].set_index("external_id")
    assert got.loc["2", "text"] == "Five lemons, two pears and a spoon."
    assert list(got["category"]) == ["Colors", "Counting", "Positional"]
    assert (got["tags"] == "").all()

    image = _write(tmp_path / "genai_image.json", json.dumps(GENAI, indent=2))
    skills = _write(tmp_path / "genai_skills.json", json.dumps(GENAI_SKILLS))
    report = import_prompts(store, image, "genai", skills=skills)
    assert report.format == "genai-bench" and report.added == 4
    got = store.prompts_frame()
    got = got[got.prompt_set == "genai"].set_index("external_id")
    # The ids are the file's keys (GenAI-Bench names its images 00001.jpeg ...).
    assert list(got.index) == ["00001", "00002", "00003", "00004"]
    assert got.loc["00001", "category"] == "basic"
    assert got.loc["00001", "tags"] == "attribute, spatial relation"
    assert got.loc["00002", "category"] == "basic" and got.loc["00002", "tags"] == "scene"
    # Any advanced skill makes an advanced prompt; skills in GenAI-Bench's order.
    assert got.loc["00003", "category"] == "advanced"
    assert got.loc["00003", "tags"] == "attribute, scene, counting, negation"
    assert got.loc["00004", "category"] == "" and got.loc["00004", "tags"] == ""


def test_genai_skills_inline_and_order_invariance(tmp_path):
    """Skills given inside the entries (the dataset card's Tags: {basic, advanced}) read
    the same as the skills file; neither the entries' nor the lists' order matters."""
    inline = {
        "00003": {
            "prompt": "four cups but no saucers",
            "Tags": {"advanced": ["negation", "counting"], "basic": ["scene", "attribute"]},
        },
        "00001": {
            "prompt": "a red kite above a grey pier",
            "tags": {"basic": ["spatial relation", "attribute"], "advanced": []},
        },
    }
    records = read_prompt_file(_write(tmp_path / "a.json", json.dumps(inline)))
    by_id = {r.external_id: (r.category, r.tags) for r in records}
    assert by_id == {
        "00003": ("advanced", "attribute, scene, counting, negation"),
        "00001": ("basic", "attribute, spatial relation"),
    }
    shuffled = dict(reversed(list(GENAI.items())))
    skills = {k: sorted(v, reverse=True) for k, v in reversed(list(GENAI_SKILLS.items()))}
    a = read_prompt_file(
        _write(tmp_path / "x.json", json.dumps(GENAI)),
        skills=_write(tmp_path / "xs.json", json.dumps(GENAI_SKILLS)),
    )
    b = read_prompt_file(
        _write(tmp_path / "y.json", json.dumps(shuffled)),
        skills=_write(tmp_path / "ys.json", json.dumps(skills)),
    )
    as_map = lambda rs: {r.external_id: (r.text, r.category, r.tags) for r in rs}  # noqa: E731
    assert as_map(a) == as_map(b)


def test_format_flag_forces_a_reader_and_checks_the_header(store, tmp_path):
    renamed = _write(tmp_path / "parti-prompts.txt", PARTI)  # a .txt would be one per line
    assert read_prompt_file(renamed)[0].text == "Prompt Category Challenge Note"
    records = read_prompt_file(renamed, fmt="parti")
    assert [r.category for r in records][:2] == ["Artifacts", "Animals"]
    with pytest.raises(
        IngestError, match=r"line 1: not a DrawBench file: no column\(s\) 'Prompts'"
    ):
        read_prompt_file(_write(tmp_path / "p.tsv", PARTI), fmt="drawbench")
    plain = _write(tmp_path / "plain.csv", "text,category\na fox,animals\n")
    assert read_prompt_file(plain)[0].category == "animals"  # a plain file stays plain
    with pytest.raises(IngestError, match="'Challenge'"):
        read_prompt_file(plain, fmt="parti")
    assert (
        main(
            [
                "--workspace",
                str(store.workspace),
                "import-prompts",
                str(renamed),
                "--set",
                "p",
                "--format",
                "parti",
            ]
        )
        == 0
    )
    assert set(store.prompts_frame()["category"]) == {
        "Artifacts",
        "Animals",
        "Illustrations",
        "Vehicles",
    }


BAD = [
    (
        "p.tsv",
        PARTI + "a fern\tProduce\tBasic\t\textra\n",
        "p.tsv, line 7: 5 fields but the PartiPrompts header has 4",
    ),
    (
        "p.tsv",
        PARTI + "a fern\tProduce & Plants\n",
        "p.tsv, line 7: 2 fields but the PartiPrompts header has 4",
    ),
    (
        "p.tsv",
        PARTI.replace("a teal kettle on a windowsill", " "),
        "p.tsv, line 2: the prompt text is empty",
    ),
    (
        "d.csv",
        '"Prompt text","Category"\n"x","y"\n',
        "d.csv, line 1: no 'text' column (found 'Prompt text', 'Category')",
    ),
    ("d.csv", DRAWBENCH + '"A cat.","Colors","extra"\n', "d.csv, line 5: 3 fields"),
    ("g.json", "[1, 2]", "g.json: a JSON list; expected one JSON object of prompt id"),
    (
        "g.json",
        '{\n "00001": {"prompt": "a"},\n "00002": {"text": "b"}\n}',
        "g.json, entry '00002' (line 3): no string 'prompt'",
    ),
    (
        "g.json",
        '{\n "00001": {"prompt": "a"},\n "00001": {"prompt": "b"}\n}',
        "'00001' appears twice",
    ),
    ("g.json", '{\n "00001": {"prompt": "a",}\n}', "g.json, line 2: not valid JSON"),
    ("g.json", '{"00001": {"prompt": "a", "tags": 3}}', "'tags' is a JSON int"),
]


@pytest.mark.parametrize("name,content,fragment", BAD)
def test_bad_benchmark_files_name_the_line_and_import_nothing(
    store, tmp_path, name, content, fragment
):
    path = _write(tmp_path / name, content)
    with pytest.raises(IngestError) as err:
        import_prompts(store, path, "s", held_out=True)
    assert fragment in str(err.value)
    assert store.prompts_frame().empty and store.held_out_sets() == []


def test_a_bad_skills_file_is_refused_with_the_skill_named(store, tmp_path, capsys):
    image = _write(tmp_path / "genai_image.json", json.dumps(GENAI))
    unknown = _write(tmp_path / "s1.json", json.dumps({"counting": [3, 1601]}))
    with pytest.raises(
        IngestError,
        match=r"skill 'counting' \(line 1\): prompt number\(s\) "
        r"1601 are not ids of .*its ids run 1-4",
    ):
        import_prompts(store, image, "g", skills=unknown)
    bad = _write(tmp_path / "s2.json", '{\n "scene": "2"\n}')
    with pytest.raises(IngestError, match=r"skill 'scene' \(line 2\): expected a list"):
        import_prompts(store, image, "g", skills=bad)
    parti = _write(tmp_path / "p.tsv", PARTI)
    with pytest.raises(IngestError, match="a skills file goes with a GenAI-Bench JSON"):
        import_prompts(store, parti, "g", skills=unknown)
    argv = ["--workspace", str(store.workspace), "import-prompts", str(image), "--set", "g"]
    assert main([*argv, "--skills", str(unknown)]) == 2
    assert "Nothing was imported from this file" in capsys.readouterr().err
    assert store.prompts_frame().empty


def test_held_out_sets_are_marked_listed_and_unmarked(store, tmp_path, capsys):
    ws = ["--workspace", str(store.workspace)]
    parti = _write(tmp_path / "PartiPrompts.tsv", PARTI)
    assert main([*ws, "import-prompts", str(parti), "--set", "parti", "--held-out"]) == 0
    assert "the set is held out" in capsys.readouterr().out
    dev = _write(tmp_path / "dev.csv", "text,category\na fox,Animals\na bus,Vehicles\n")
    assert main([*ws, "import-prompts", str(dev), "--set", "dev"]) == 0
    assert store.held_out_sets() == ["parti"]
    frame = store.prompts_frame()
    assert frame.groupby("prompt_set")["held_out"].agg(set).to_dict() == {
        "dev": {False},
        "parti": {True},
    }
    assert main([*ws, "status"]) == 0
    assert "held-out prompt sets: parti" in capsys.readouterr().out
    assert main([*ws, "prompt-sets"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[1].split() == ["dev", "2", "2", "no"]
    assert table[2].split() == ["parti", "5", "4", "yes"]
    from arena.ui.admin import prompt_sets_table  # the Admin app's table shows the flag

    assert prompt_sets_table(store).set_index("prompt_set")["held_out"].to_dict() == {
        "dev": False,
        "parti": True,
    }
    assert main([*ws, "prompt-sets", "--held-out", "dev", "--not-held-out", "parti"]) == 0
    assert store.held_out_sets() == ["dev"]
    assert main([*ws, "prompt-sets", "--held-out", "nope"]) == 2
    assert "no prompt set named 'nope'; known sets: dev, parti" in capsys.readouterr().err
    assert store.held_out_sets() == ["dev"]  # nothing changed
    with pytest.raises(StoreError):
        store.set_held_out(["dev", "nope"], False)
    assert store.held_out_sets() == ["dev"]
    # Re-importing without the flag leaves it; --not-held-out clears it.
    assert main([*ws, "import-prompts", str(dev), "--set", "dev"]) == 0
    assert store.held_out_sets() == ["dev"]
    assert main([*ws, "import-prompts", str(dev), "--set", "dev", "--not-held-out"]) == 0
    assert store.held_out_sets() == []


# -- the labels in the reports ------------------------------------------------------------------
def _voted_workspace(store, tmp_path):
    """Parti (held out) and a dev set; three models with an image per prompt; 240 votes
    between random pairs on random prompts, no ties. Returns the votes as
    (prompt external id, set, left model, right model, outcome)."""
    import_prompts(store, _write(tmp_path / "PartiPrompts.tsv", PARTI), "parti", held_out=True)
    dev = (  # several tags per prompt, as GenAI-Bench's skills
        'text,category,tags\na fox,Animals,"counting, spatial"\na bus,Vehicles,counting\n'
        'a jar,Artifacts,"spatial, negation"\n'
    )
    import_prompts(store, _write(tmp_path / "dev.csv", dev), "dev")
    prompts = store.prompts_frame()
    rng = np.random.default_rng(5)
    models = {name: store.add_model(name, "import") for name in ("ash", "birch", "cedar")}
    image = {}
    for name, mid in models.items():
        for pid in prompts.prompt_id:
            pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
            stored = store.images.put_image(Image.fromarray(pixels))
            image[(name, pid)] = store.add_image(mid, int(pid), stored, seed=0)
    rater = store.rater_id("sim-1", kind="simulated")
    start = datetime(2026, 1, 1)
    rows, log = [], []
    for k in range(240):
        pid = int(rng.choice(prompts.prompt_id))
        left, right = rng.choice(list(models), 2, replace=False)
        outcome = "left" if rng.random() < (0.8 if left == "ash" else 0.4) else "right"
        at = start + timedelta(minutes=k)
        rows.append(
            VotedBattle(pid, image[(left, pid)], image[(right, pid)], rater, outcome, 900, at, at)
        )
        row = prompts.set_index("prompt_id").loc[pid]
        log.append((row.external_id, row.prompt_set, row.category, left, right, outcome))
    store.add_voted_battles(rows)
    with store.session() as s:  # a metric that prefers ash, with distinct values
        for (name, pid), iid in image.items():
            value = {"ash": 3.0, "birch": 2.0, "cedar": 1.0}[name] + pid / 1000
            s.add(
                db.Score(
                    image_id=iid,
                    metric="sharpness",
                    version="1",
                    value=value,
                    higher_is_better=True,
                )
            )
    return log


def test_benchmark_labels_and_held_out_sets_filter_every_report(store, tmp_path):
    log = _voted_workspace(store, tmp_path)
    votes = store.votes_frame()
    only = Filters(held_out="only").apply(votes, store.prompts_frame())
    rest = Filters(held_out="exclude").apply(votes, store.prompts_frame())
    assert len(only) == sum(s == "parti" for _e, s, *_ in log)
    assert len(rest) == sum(s == "dev" for _e, s, *_ in log)
    assert len(only) + len(rest) == len(log) == 240
    frames = load_report_frames(store, Filters(held_out="only"))
    parti_ids = set(store.prompts_frame().query("prompt_set == 'parti'").prompt_id)
    assert set(frames.images.prompt_id) == parti_ids
    with pytest.raises(ReportError, match="held-out filter 'maybe'"):
        Filters(held_out="maybe")
    # A Parti category filters the leaderboard like any category: its votes, by hand.
    service = LeaderboardService(store.with_settings(bootstrap_rounds=0))
    animals = service.get(Filters(category="Animals"))
    assert animals.votes_used == sum(c == "Animals" for _e, _s, c, *_ in log)
    board = service.get(Filters(held_out="exclude"))
    assert board.votes_used == len(rest)
    hand = {m: [0, 0] for m in ("ash", "birch", "cedar")}  # wins, battles on dev prompts
    for _e, s, _c, left, right, outcome in log:
        if s != "dev":
            continue
        for m in (left, right):
            hand[m][1] += 1
        hand[left if outcome == "left" else right][0] += 1
    frame = board.frame.set_index("model")
    for m, (wins, n) in hand.items():
        assert frame.loc[m, "votes"] == n and frame.loc[m, "win_rate"] == pytest.approx(wins / n)
    # The agreement page slices by the benchmark's categories (and filters held-out sets).
    report = AgreementService(store).get(Filters(held_out="only"), rounds=10).report
    cats = report.slices[
        (report.slices.slice_kind == "category") & (report.slices.metric == "sharpness")
    ].set_index("slice")
    expected = {}
    for _e, s, c, *_ in log:
        if s == "parti":
            expected[c] = expected.get(c, 0) + 1
    assert cats["n"].to_dict() == expected
    assert set(cats.index) <= {"Artifacts", "Animals", "Illustrations", "Vehicles"}


def test_the_export_marks_held_out_prompts_and_filters_on_them(store, tmp_path, capsys):
    log = _voted_workspace(store, tmp_path)
    out = compute_export(store, rounds=5, seed=1)
    prompts = out.tables["prompts"].set_index("external_id")
    assert list(out.tables["prompts"].columns) == [
        "prompt_id",
        "prompt_set",
        "external_id",
        "text",
        "tags",
        "category",
        "held_out",
    ]
    by_set = out.tables["prompts"].groupby("prompt_set")["held_out"].agg(set).to_dict()
    assert by_set == {"dev": {False}, "parti": {True}}
    assert prompts.loc["3"].set_index("prompt_set").loc["parti", "tags"] == "Writing & Symbols"
    dest = tmp_path / "exp"
    argv = [
        "--workspace",
        str(store.workspace),
        "export",
        "--out",
        str(dest),
        "--bootstrap",
        "5",
        "--held-out",
        "exclude",
        "--no-report",
    ]
    assert main(argv) == 0
    votes = read_table(dest / "votes.csv")
    assert len(votes) == sum(s == "dev" for _e, s, *_ in log)
    assert set(votes.prompt_set) == {"dev"}
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["summary"]["votes counted"] == "held-out prompt sets left out"
    table = read_table(dest / "prompts.csv")
    assert len(table) == 8 and table.held_out.sum() == 5
    assert (
        main(
            [
                "--workspace",
                str(store.workspace),
                "leaderboard",
                "--bootstrap",
                "0",
                "--held-out",
                "only",
            ]
        )
        == 0
    )
    assert f"{sum(s == 'parti' for _e, s, *_ in log)} votes (held-out prompt sets only" in (
        capsys.readouterr().out
    )


def _tags_of_votes(store, log) -> list[set[str]]:
    """The tags of each logged vote's prompt (by set and external id), in log order."""
    prompts = store.prompts_frame().set_index(["prompt_set", "external_id"])
    return [{t.strip() for t in prompts.loc[(s, e), "tags"].split(",")} for e, s, *_ in log]


def test_prompt_tags_are_split_matched_and_ranked_as_stored():
    import pandas as pd

    from arena.stats.prompt_tags import has_tag, known_tags, split_tags

    stored = pd.Series(["Writing & Symbols", " counting ,spatial,", None, "", "spatial, spatial"])
    assert split_tags(stored[1]) == ["counting", "spatial"] and split_tags(None) == []
    assert split_tags(pd.NA) == [] and split_tags(np.float32("nan")) == []  # not "<NA>"
    assert has_tag(stored, "spatial").tolist() == [False, True, False, False, True]
    assert has_tag(stored, "Writing").tolist() == [False] * 5  # a whole tag, not a part
    assert known_tags(stored) == ["Writing & Symbols", "counting", "spatial"]
    # the dropdown's most common tags: by prompts carrying them, ties alphabetical
    assert known_tags(stored, most_common=2) == ["Writing & Symbols", "spatial"]


def test_filter_values_are_read_strictly():
    from arena.commands.filter_flags import check_known
    from arena.ui.filter_row import UNFILTERED, filters_of, named

    assert Filters(tag="  spatial ").tag == "spatial" and Filters(tag="   ").tag is None
    assert Filters(tag=" spatial").key() == Filters(tag="spatial").key()  # one cache entry
    with pytest.raises(TypeError, match="8 values"):
        named((*UNFILTERED, "extra"), {})
    with pytest.raises(TypeError, match="unknown"):
        filters_of(categroy="Animals")  # a misspelt name is a bug, not "no filter"
    with pytest.raises(TypeError, match="twice-given"):
        filters_of("Animals", category="Vehicles")
    with pytest.raises(ReportError, match="filter tag: expected text, got list"):
        filters_of(tag=["a", "b"])  # what a forged page request could send
    with pytest.raises(ReportError, match="filter since: expected text, got int"):
        filters_of(since=20250101)
    check_known(Filters(tag="x"), {"category": []})  # options without tags: nothing checked
    with pytest.raises(ReportError, match="--tag 'y': no tag"):
        check_known(Filters(tag="y"), {"tag": ["x"]})


def test_a_prompt_tag_filters_the_board_the_failure_rates_and_the_cli(store, tmp_path, capsys):
    log = _voted_workspace(store, tmp_path)
    tags = _tags_of_votes(store, log)
    service = LeaderboardService(store.with_settings(bootstrap_rounds=0))
    for tag in ("Quantity", "counting", "spatial"):  # a Parti challenge, dev's shared tags
        mine = [row for row, t in zip(log, tags, strict=True) if tag in t]
        board = service.get(Filters(tag=tag))
        assert board.votes_used == len(mine) > 0, tag
        hand = {}  # model -> (wins, battles), by hand from the log
        for _e, _s, _c, left, right, outcome in mine:
            for m in (left, right):
                w, n = hand.get(m, (0, 0))
                hand[m] = (w + (m == (left if outcome == "left" else right)), n + 1)
        frame = board.frame.set_index("model")
        for m, (wins, n) in hand.items():
            assert frame.loc[m, "votes"] == n
            assert frame.loc[m, "win_rate"] == pytest.approx(wins / n)
    # "count" is a substring of "counting", and no prompt has it: nothing passes.
    assert Filters(tag="count").apply(store.votes_frame(), store.prompts_frame()).empty
    assert Filters(tag="counting").describe() == "prompt tag counting"
    # Failure rates follow the tag: the images of its prompts only.
    frames = load_report_frames(store, Filters(tag="negation"))
    jar = store.prompts_frame().query("external_id == '3' and prompt_set == 'dev'").prompt_id
    assert set(frames.images.prompt_id) == set(jar)
    ws = ["--workspace", str(store.workspace)]
    assert main([*ws, "leaderboard", "--bootstrap", "0", "--tag", "spatial"]) == 0
    spatial = sum("spatial" in t for t in tags)
    assert f"{spatial} votes (prompt tag spatial" in capsys.readouterr().out
    # A typo is refused with the close names, not read as "no votes".
    assert main([*ws, "leaderboard", "--tag", "quantity"]) == 2
    err = capsys.readouterr().err
    assert "--tag 'quantity': no tag of that name" in err and "Did you mean 'Quantity'" in err
    assert main([*ws, "leaderboard", "--category", "Animal"]) == 2
    assert "Did you mean 'Animals'" in capsys.readouterr().err
    dest = tmp_path / "by-tag"
    argv = [*ws, "export", "--out", str(dest), "--bootstrap", "2", "--no-report"]
    assert main([*argv, "--tag", "counting"]) == 0
    votes = read_table(dest / "votes.csv")
    assert len(votes) == sum("counting" in t for t in tags)
    assert json.loads((dest / "manifest.json").read_text())["summary"]["votes counted"] == (
        "prompt tag counting"
    )


def test_the_agreement_tag_slice_counts_a_vote_under_each_of_its_prompt_tags(store, tmp_path):
    log = _voted_workspace(store, tmp_path)
    tags = _tags_of_votes(store, log)
    service = AgreementService(store)
    report = service.get(Filters(), rounds=10).report
    slices = report.slices[(report.slices.metric == "sharpness")]
    by_tag = slices[slices.slice_kind == "tag"].set_index("slice")
    counts = {}
    for t in tags:
        for tag in t:
            counts[tag] = counts.get(tag, 0) + 1
    assert by_tag["n"].to_dict() == counts  # multi-label: dev's votes count twice
    assert by_tag["n"].sum() == sum(len(t) for t in tags) > len(log)
    for tag in ("counting", "spatial", "Imagination"):  # the slice = the filtered report
        alone = service.get(Filters(tag=tag), rounds=10).report.accuracy
        row = alone.set_index(["metric", "protocol"]).loc[("sharpness", "ties_half")]
        assert by_tag.loc[tag, "accuracy"] == pytest.approx(row["accuracy"])
        assert by_tag.loc[tag, "n"] == row["n"]
    # every other kind still partitions the votes
    for kind in ("category", "tag count", "model pair"):
        assert slices[slices.slice_kind == kind]["n"].sum() == len(log), kind


def test_the_filter_row_offers_the_tags_and_the_admin_app_the_held_out_sets(store, tmp_path):
    import gradio as gr
    import httpx

    from arena.ui import leaderboard_tab
    from arena.ui.filter_row import ALL
    from tests.arena_app import event_of, queue_call, running_app

    log = _voted_workspace(store, tmp_path)
    tags = _tags_of_votes(store, log)
    revealed = store.with_settings(reveal_models=True, bootstrap_rounds=5)
    with (
        running_app(revealed, tabs=("arena.ui.leaderboard_tab",)) as url,
        httpx.Client(base_url=url, timeout=60) as http,
    ):
        config = http.get("config").json()
        props = {c.get("props", {}).get("label"): c.get("props", {}) for c in config["components"]}
        offered = [c[0] for c in props["Prompt tag"]["choices"]]
        assert offered[0] == ALL and set(offered[1:]) == set().union(*tags)
        # which prompt sets are held out is the operators' to know: no such filter here
        assert "Held-out sets" not in props and "held-out sets only" not in http.get("config").text
        fn, dep = event_of(config, "Prompt tag", 6)
        assert len(dep["inputs"]) == 7 + 4  # the row (held-out: server state), the method
        summary, *_ = queue_call(http, fn, [ALL, ALL, "spatial", None, ALL, "", ""] + [None] * 4)
        want = sum("spatial" in t for t in tags)
        assert f"**{want}** votes (prompt tag spatial)" in summary
        # a forged value in the held-out slot is not read: the slot is server-side state
        summary, *_ = queue_call(http, fn, [ALL, ALL, ALL, "only", ALL, "", ""] + [None] * 4)
        assert f"**{len(log)}** votes (all votes)" in summary
    revealed.close()
    with gr.Blocks():  # the Admin app's board: the held-out choice as well
        update, inputs, _outputs = leaderboard_tab.render(store, full=True)
    labels = [getattr(w, "label", None) for w in inputs]
    assert labels[:4] == ["Prompt category", "Prompt set", "Prompt tag", "Held-out sets"]
    row = [ALL, ALL, "spatial", "exclude held-out sets", ALL, "", ""]
    summary = update(*row, None, None, None, False)[0]
    dev = sum("spatial" in t and s == "dev" for t, (_e, s, *_) in zip(tags, log, strict=True))
    assert f"**{dev}** votes (prompt tag spatial, held-out prompt sets left out" in summary
    row[3] = "held-out sets only"  # dev is not held out and parti has no "spatial"
    assert update(*row, None, None, None, False)[0].startswith(
        "No votes yet for prompt tag spatial, held-out prompt sets only"
    )


def test_held_out_counts_do_not_depend_on_set_names(store, tmp_path):
    """Renaming the sets (labels) moves nothing: the same votes pass the filter."""
    log = _voted_workspace(store, tmp_path)
    before = len(Filters(held_out="only").apply(store.votes_frame(), store.prompts_frame()))
    with store.session() as s:
        for old, new in (("parti", "zz-bench"), ("dev", "aa-dev")):
            s.query(db.Prompt).filter(db.Prompt.prompt_set == old).update({"prompt_set": new})
            s.query(db.PromptSet).filter(db.PromptSet.name == old).update({"name": new})
    assert store.held_out_sets() == ["zz-bench"]
    after = len(Filters(held_out="only").apply(store.votes_frame(), store.prompts_frame()))
    assert before == after == sum(s == "parti" for _e, s, *_ in log)
