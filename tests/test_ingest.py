"""Prompt files and image folders into a real workspace (library level)."""

import json

import pytest
from sqlalchemy import func, select

from arena.intake.image_import import import_images
from arena.intake.prompts import import_prompts, read_prompt_file
from arena.intake.reading import IngestError
from arena.storage import db
from arena.storage.store import StoreError
from tests.image_files import BAD_FILES, png_bytes, rgb_array, write_png


def _count(store, table) -> int:
    with store.session() as s:
        return s.scalar(select(func.count()).select_from(table))


def _prompts(store, tmp_path, n=5, name="set-a"):
    path = tmp_path / f"{name}.txt"
    path.write_text("\n".join(f"prompt {i}" for i in range(1, n + 1)) + "\n")
    return import_prompts(store, path, name)


# -- prompts ------------------------------------------------------------------------


def test_csv_prompts_with_ids_tags_and_category(store, tmp_path):
    path = tmp_path / "p.csv"
    path.write_text(
        "id,text,tags,category\n"
        'a1,"1girl, red hair",  "1girl,red hair ",portrait\n'
        'b2,"a cat on a roof",,\n',
        encoding="utf-8",
    )
    report = import_prompts(store, path, "dan", category="misc")
    assert (report.added, report.present) == (2, 0)
    frame = store.prompts_frame().set_index("external_id")
    assert frame.loc["a1", "tags"] == "1girl, red hair"
    assert frame.loc["a1", "category"] == "portrait"
    assert frame.loc["b2", "category"] == "misc"
    again = import_prompts(store, path, "dan")
    assert (again.added, again.present) == (0, 2)


def test_jsonl_and_txt_prompts(store, tmp_path):
    jl = tmp_path / "p.jsonl"
    jl.write_text(
        json.dumps({"prompt": "1boy, sword", "id": 7, "tags": ["1boy", "sword"]})
        + "\n\n"
        + json.dumps({"text": "a house"})
        + "\n"
    )
    rows = read_prompt_file(jl)
    assert [(r.external_id, r.text, r.tags) for r in rows] == [
        ("7", "1boy, sword", "1boy, sword"),
        ("2", "a house", ""),
    ]
    txt = tmp_path / "p.txt"
    txt.write_text("first prompt\n\n  second   prompt \n")
    assert [(r.external_id, r.text, r.line) for r in read_prompt_file(txt)] == [
        ("1", "first prompt", 1),
        ("2", "second prompt", 3),
    ]


def test_a_changed_prompt_under_an_existing_id_is_skipped_and_reported(store, tmp_path):
    _prompts(store, tmp_path, 2)
    path = tmp_path / "set-a.txt"
    path.write_text("prompt 1\nsomething else\nprompt 3\n")
    report = import_prompts(store, path, "set-a")
    assert (report.added, report.present, len(report.skipped)) == (1, 1, 1)
    assert report.skipped[0][0] == "line 2" and "another text" in report.skipped[0][1]


@pytest.mark.parametrize(
    "name, content, fragment",
    [
        ("nocol.csv", b"id,caption\n1,a cat\n", r"nocol.csv, line 1: no 'text' column"),
        ("short.csv", b"id,text,tags\n1,a,b\n2,c\n", r"short.csv, line 3: missing column.*'tags'"),
        ("long.csv", b"id,text\n1,a,b\n", r"long.csv, line 2: 3 fields but the header has 2"),
        ("latin.csv", b"text\nok\ncaf\xe9 au lait\n", r"latin.csv, line 3: not valid UTF-8"),
        ("latin.txt", b"ok\n\nna\xefve\n", r"latin.txt, line 3: not valid UTF-8"),
        ("bad.jsonl", b'{"text": "a"}\n{"text": \n', r"bad.jsonl, line 2: not valid JSON"),
        ("nokey.jsonl", b'{"caption": "a"}\n', r"nokey.jsonl, line 1: no string 'text'"),
        ("empty.csv", b'text\nok\n"  "\n', r"empty.csv, line 3: the prompt text is empty"),
        ("dup.csv", b"id,text\n1,a\n1,b\n", r"dup.csv, line 3: prompt id '1'.*line 2"),
        ("p.docx", b"x", r"p.docx: unknown prompt file type"),
    ],
)
def test_bad_prompt_files_name_the_line_and_write_nothing(store, tmp_path, name, content, fragment):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(IngestError, match=fragment):
        import_prompts(store, path, "s")
    assert _count(store, db.Prompt.__table__) == 0


def test_too_long_prompts_are_refused(store, tmp_path):
    path = tmp_path / "long.txt"
    path.write_text("short\n" + "x" * 3000 + "\n")
    with pytest.raises(IngestError, match=r"line 2: the prompt has 3000 characters"):
        import_prompts(store, path, "s")


# -- images -------------------------------------------------------------------------


def _folder(tmp_path, names, seed=0):
    folder = tmp_path / "out"
    folder.mkdir(exist_ok=True)
    for k, name in enumerate(names):
        write_png(folder / name, rgb_array(seed * 1000 + k), {"parameters": "Model: secret"})
    return folder


def test_prompt_id_seed_layout_imports_and_reimport_adds_nothing(store, tmp_path):
    _prompts(store, tmp_path)
    folder = _folder(tmp_path, ["1_0.png", "1_1.png", "2_0.png", "5_42.png"])
    report = import_images(store, folder, "alpha", workers=1)
    assert (report.added, report.present, report.skipped) == (4, 0, [])
    frame = store.images_frame().merge(store.prompts_frame(), on="prompt_id")
    got = sorted(zip(frame.external_id, frame.seed, strict=True))
    assert got == [("1", 0), ("1", 1), ("2", 0), ("5", 42)]
    again = import_images(store, folder, "alpha", workers=1)
    assert (again.added, again.present) == (0, 4)
    assert _count(store, db.Image.__table__) == 4
    write_png(folder / "3_0.png", rgb_array(77))
    assert import_images(store, folder, "alpha", workers=1).added == 1


def test_bad_files_are_skipped_with_reasons_and_leave_nothing(store, tmp_path):
    _prompts(store, tmp_path)
    folder = _folder(tmp_path, ["1_0.png"])
    for k, (_kind, (make, _fragment)) in enumerate(sorted(BAD_FILES.items())):
        (folder / f"{(k % 5) + 1}_{k + 10}.png").write_bytes(make())
    write_png(folder / "99_0.png", rgb_array(5))  # unknown prompt id
    (folder / "notes.txt").write_text("hello")
    report = import_images(store, folder, "alpha", workers=1)
    assert report.added == 1
    reasons = dict(report.skipped)
    assert len(reasons) == len(BAD_FILES) + 2
    for k, (_kind, (_make, fragment)) in enumerate(sorted(BAD_FILES.items())):
        assert fragment in reasons[f"{(k % 5) + 1}_{k + 10}.png"]
    assert "prompt id '99' is not in any prompt set" in reasons["99_0.png"]
    assert "not an image file name" in reasons["notes.txt"]
    assert list(store.images_frame().sha256) == [
        p.stem for p in (store.workspace / "images").rglob("*.png")
    ]
    assert "99_0.png" in report.summary() and "added 1" in report.summary()


def test_prompt_ids_in_several_sets_need_a_prompt_set(store, tmp_path):
    _prompts(store, tmp_path, name="set-a")
    _prompts(store, tmp_path, name="set-b")
    folder = _folder(tmp_path, ["1_0.png"])
    report = import_images(store, folder, "alpha", workers=1)
    assert report.added == 0 and "several prompt sets (set-a, set-b)" in report.skipped[0][1]
    assert _count(store, db.Model.__table__) == 0  # nothing to add: no model row either
    report = import_images(store, folder, "alpha", prompt_set="set-b", workers=1)
    assert report.added == 1
    frame = store.images_frame().merge(store.prompts_frame(), on="prompt_id")
    assert list(frame.prompt_set) == ["set-b"]


def test_unknown_prompt_set_and_empty_workspace_are_refused(store, tmp_path):
    folder = _folder(tmp_path, ["1_0.png"])
    with pytest.raises(IngestError, match="no prompts; import them first"):
        import_images(store, folder, "alpha")
    _prompts(store, tmp_path)
    with pytest.raises(IngestError, match=r"prompt set 'nope' has no prompts.*set-a"):
        import_images(store, folder, "alpha", prompt_set="nope")


def test_metadata_jsonl_maps_files_to_prompt_text_or_id_with_params(store, tmp_path):
    _prompts(store, tmp_path)
    folder = _folder(tmp_path, ["a.png", "b.png", "c.png", "unlisted.png"])
    rows = [
        {"file_name": "a.png", "text": "prompt  2", "seed": 3, "steps": 20, "cfg": 7.5},
        {"file_name": "b.png", "prompt_id": "4"},
        {"file_name": "c.png", "prompt_id": "1", "seed": "x"},
        {"file_name": "missing.png", "prompt_id": "1"},
    ]
    (folder / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    report = import_images(store, folder, "alpha", workers=1)
    assert report.added == 2
    reasons = dict(report.skipped)
    assert "seed 'x' is not an integer" in reasons["c.png (metadata.jsonl line 3)"]
    assert "file not found" in reasons["missing.png (metadata.jsonl line 4)"]
    assert "not listed in metadata.jsonl" in reasons["unlisted.png"]
    with store.session() as s:
        img = s.scalar(select(db.Image).where(db.Image.source_name == "a.png"))
        prompt = s.get(db.Prompt, img.prompt_id)
    assert (prompt.text, img.seed, img.params) == ("prompt 2", 3, {"steps": 20, "cfg": 7.5})


def test_metadata_csv_and_its_bad_lines(store, tmp_path):
    _prompts(store, tmp_path)
    folder = _folder(tmp_path, ["a.png", "b.png"])
    (folder / "metadata.csv").write_text("file_name,prompt_id,seed\na.png,1,0\nb.png,2,1\n")
    assert import_images(store, folder, "alpha", workers=1).added == 2
    (folder / "metadata.csv").write_text("file_name,seed\na.png,0\n")
    with pytest.raises(IngestError, match=r"metadata.csv, line 2: no 'prompt_id' or 'text'"):
        import_images(store, folder, "beta", workers=1)
    assert store.model_names() == ["alpha"]


def test_duplicate_pixels_and_seed_clashes_within_a_model_are_skipped(store, tmp_path):
    _prompts(store, tmp_path)
    folder = tmp_path / "out"
    folder.mkdir()
    write_png(folder / "1_0.png", rgb_array(1))
    write_png(folder / "2_0.png", rgb_array(1))  # same pixels, other prompt
    write_png(folder / "3_0.png", rgb_array(3))
    (folder / "3_0.webp").write_bytes(png_bytes(rgb_array(4)))  # PNG bytes, other pixels
    report = import_images(store, folder, "alpha", workers=1)
    assert report.added == 2
    reasons = dict(report.skipped)
    assert "same pixels as 1_0.png" in reasons["2_0.png"]
    assert "already has a different image for this prompt and seed 0" in reasons["3_0.webp"]


def test_model_name_collisions_are_refused_before_anything_is_written(store, tmp_path):
    store.add_model("faithful", "demo", source="arena.demo.build:faithful")
    _prompts(store, tmp_path)
    folder = _folder(tmp_path, ["1_0.png"])
    images_before = _count(store, db.Image.__table__)
    with pytest.raises(StoreError, match="'faithful' is already used by a demo model"):
        import_images(store, folder, "faithful")
    import_images(store, folder, "alpha", workers=1)
    other = tmp_path / "other"
    other.mkdir()
    write_png(other / "2_0.png", rgb_array(9))
    with pytest.raises(StoreError, match=r"'alpha' is already used by a import model from"):
        import_images(store, other, "alpha")
    assert _count(store, db.Image.__table__) == images_before + 1


def test_flat_images_are_imported_but_flagged_broken(store, tmp_path):
    _prompts(store, tmp_path)
    folder = tmp_path / "out"
    folder.mkdir()
    write_png(folder / "1_0.png", rgb_array(0) * 0)
    report = import_images(store, folder, "alpha", workers=1)
    assert report.added == 1 and report.broken == 1
    assert store.images_frame(include_broken=True).broken.tolist() == ["black"]
    assert store.images_frame().empty


def test_the_process_pool_and_small_chunks_give_the_same_result(settings, tmp_path):
    from arena.storage.store import Store

    results = []
    for workers, chunk in ((1, 500), (2, 7)):
        store = Store(settings.replace(workspace=str(tmp_path / f"w{workers}")))
        _prompts(store, tmp_path, n=40)
        folder = tmp_path / "many"
        if not folder.exists():
            folder.mkdir()
            for k in range(80):
                write_png(folder / f"{k % 40 + 1}_{k // 40}.png", rgb_array(k, 24))
            (folder / "1_9.png").write_bytes(b"junk")
        report = import_images(store, folder, "alpha", workers=workers, chunk_rows=chunk)
        assert (report.added, len(report.skipped)) == (80, 1)
        results.append(
            sorted(zip(store.images_frame().sha256, store.images_frame().seed, strict=True))
        )
        store.close()
    assert results[0] == results[1]


def test_a_folder_of_model_subfolders_gets_a_hint(store, tmp_path):
    _prompts(store, tmp_path)
    (tmp_path / "outputs" / "model-a").mkdir(parents=True)
    with pytest.raises(
        IngestError, match=r"no image files.*subfolders \(model-a\).*--model model-a"
    ):
        import_images(store, tmp_path / "outputs", "x")
    with pytest.raises(IngestError, match="no such folder"):
        import_images(store, tmp_path / "nope", "x")
