"""The real `arena` command in subprocesses on fresh workspaces."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from arena.storage.store import Store
from tests.image_files import BAD_FILES, rgb_array, write_png
from tests.unprivileged import make_read_only, run_unprivileged, shared_tmpdir

ARENA = [sys.executable, "-m", "arena.cli"]
ENV = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "ARENA_WORKSPACE": "/nonexistent"}


def arena(*args, check=True) -> subprocess.CompletedProcess:
    done = subprocess.run([*ARENA, *map(str, args)], capture_output=True, text=True, env=ENV)
    if check and done.returncode != 0:
        raise AssertionError(f"arena {args} failed ({done.returncode}):\n{done.stderr}")
    return done


def status(ws) -> dict:
    """The workspace's counts, read in-process (the commands under test run as subprocesses)."""
    store = Store.open(ws)
    try:
        return store.status()
    finally:
        store.close()


def test_the_console_script_and_every_command_has_help(capsys):
    script = Path(sys.executable).parent / "arena"
    done = subprocess.run([script, "--help"], capture_output=True, text=True, env=ENV)
    assert done.returncode == 0 and "import-images" in done.stdout
    from arena.cli import main

    for cmd in ("init", "import-prompts", "import-images", "status", "demo"):
        with pytest.raises(SystemExit) as exit_:
            main([cmd, "--help"])
        assert exit_.value.code == 0
        assert capsys.readouterr().out.startswith(f"usage: arena {cmd}")


def test_init_import_status_and_reimport(tmp_path):
    ws = tmp_path / "ws"
    assert "workspace ready" in arena("init", ws).stdout
    prompts = tmp_path / "prompts.csv"
    prompts.write_text(
        "id,text,tags,category\n" + "".join(f"p{i},prompt {i},,c\n" for i in range(6))
    )
    out = arena("-w", ws, "import-prompts", prompts, "--set", "mine").stdout
    assert "added 6, already present 0" in out
    folder = tmp_path / "outputs" / "model-a"
    folder.mkdir(parents=True)
    for i in range(6):
        write_png(folder / f"p{i}_0.png", rgb_array(i), {"parameters": "Model: model-a"})
    bad = {kind: f"p1_{k + 10}.png" for k, kind in enumerate(BAD_FILES)}
    for kind, (make, _fragment) in BAD_FILES.items():
        (folder / bad[kind]).write_bytes(make())
    write_png(folder / "p77_0.png", rgb_array(99))
    done = arena("-w", ws, "import-images", folder, "--model", "model-a")
    assert "added 6, already present 0, skipped 7" in done.stdout
    for kind, (_make, fragment) in BAD_FILES.items():
        line = next(x for x in done.stdout.splitlines() if bad[kind] in x)
        assert fragment in line
    assert "p77_0.png: prompt id 'p77' is not in any prompt set" in done.stdout
    assert "import model-a" in done.stderr  # the progress bar
    st = json.loads(arena("-w", ws, "status", "--json").stdout)
    assert (st["models"], st["prompts"], st["images"]) == (1, 6, 6)
    assert st["per_model"] == [{"model": "model-a", "kind": "import", "images": 6}]
    text = arena("-w", ws, "status").stdout
    assert "model-a" in text and "prompts 6" in text
    again = arena("-w", ws, "import-images", folder, "--model", "model-a", "--no-progress")
    assert "added 0, already present 6, skipped 7" in again.stdout
    assert (
        "added 0, already present 6"
        in arena("-w", ws, "import-prompts", prompts, "--set", "mine").stdout
    )
    assert status(ws)["images"] == 6


def test_a_bad_prompt_file_is_refused_naming_the_line(tmp_path):
    ws = tmp_path / "ws"
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"text,tags\nfine,a\ncaf\xe9,b\n")
    done = arena("-w", ws, "import-prompts", bad, "--set", "s", check=False)
    assert done.returncode == 2
    assert f"{bad}, line 3: not valid UTF-8" in done.stderr and "Traceback" not in done.stderr
    assert "Nothing was imported" in done.stderr
    bad.write_text("id,prompt_text\n1,a cat\n")
    done = arena("-w", ws, "import-prompts", bad, "--set", "s", check=False)
    assert done.returncode == 2 and "line 1: no 'text' column" in done.stderr
    assert status(ws)["prompts"] == 0


def test_a_colliding_model_name_is_refused_and_nothing_written(tmp_path):
    ws = tmp_path / "ws"
    out = arena("-w", ws, "demo").stdout
    assert "built the demo" in out
    before = status(ws)
    prompts = tmp_path / "p.txt"
    prompts.write_text("a\nb\n")
    arena("-w", ws, "import-prompts", prompts, "--set", "mine")
    folder = tmp_path / "out"
    folder.mkdir()
    write_png(folder / "1_0.png", rgb_array(1))
    done = arena(
        "-w",
        ws,
        "import-images",
        folder,
        "--model",
        "faithful",
        "--prompt-set",
        "mine",
        check=False,
    )
    assert done.returncode == 2
    assert "'faithful' is already used by a demo model" in done.stderr
    after = status(ws)
    assert after["images"] == before["images"] and after["per_model"] == before["per_model"]


def test_demo_command_adds_simulated_votes(tmp_path):
    ws = tmp_path / "ws"
    arena("-w", ws, "demo", "--simulate-votes", "400", "--seed", "3")
    done = arena("-w", ws, "demo", "--simulate-votes", "100")
    assert "already has images" in done.stdout and "added 100 simulated votes" in done.stdout
    st = status(ws)
    assert st["votes"] == 500 and st["raters"] == 20
    assert {m["model"] for m in st["per_model"]} >= {"faithful", "blurry", "demo-real"}


@pytest.fixture
def read_only_workspace():
    root = shared_tmpdir()
    ws = root / "ws"
    store = Store.open(ws)
    store.close()
    prompts = root / "p.txt"
    prompts.write_text("first\nsecond\n")
    folder = root / "out"
    folder.mkdir()
    write_png(folder / "1_0.png", rgb_array(1))
    arena("-w", ws, "import-prompts", prompts, "--set", "s")
    make_read_only(ws)
    yield ws, prompts, folder
    _writable(root)
    shutil.rmtree(root)


def _writable(root: Path) -> None:
    for p in [root, *root.rglob("*")]:
        p.chmod(0o755)


def test_a_read_only_workspace_is_refused(read_only_workspace):
    ws, prompts, folder = read_only_workspace
    for args in (
        ["import-prompts", prompts, "--set", "t"],
        ["import-images", folder, "--model", "m"],
        ["demo"],
    ):
        done = run_unprivileged(
            [*ARENA, "-w", str(ws), *map(str, args)], env={"PYTHONDONTWRITEBYTECODE": "1"}
        )
        assert done.returncode == 2, done.stderr
        assert f"workspace {ws} is read-only" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    _writable(ws)
    st = status(ws)
    assert (st["prompts"], st["images"], st["models"], st["votes"]) == (2, 0, 0, 0)
