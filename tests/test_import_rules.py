"""The import rules of the package tree (docs/architecture.md), checked on the source.

* ``arena.stats`` is pure: it imports nothing else of the project (and no database,
  web or torch library), so the statistics can be read and tested on their own.
* The web side never imports torch: the server, the raters' app, the Admin app and
  every tab build on a real workspace in a fresh interpreter without loading it.
* Who may speak SQL: ``arena/storage`` owns the schema and the Store façade; besides
  it only the voting hot path and the scoring jobs import ``sqlalchemy`` or
  ``arena.storage.db``. Everything else uses Store verbs.
* The tiny stand-in models (``scoring.testing``) are imported by the product only in
  the offline demo's model-level numbers.
* Every module that imports a torchvision-loading library imports ``scoring._compat``
  first (``scoring/__init__.py`` has no side effects).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("arena", "scoring")

SQL_ALLOWED = (
    "arena/storage/",
    "arena/voting/battles.py",
    "arena/voting/matchmaking.py",
    "arena/voting/gold.py",
    "scoring/metrics/runner.py",
    "scoring/distribution/feature_cache.py",
    "scoring/distribution/run.py",
    "scoring/generation/",
)
STAND_INS_ALLOWED = ("arena/demo/model_metrics.py",)
NOT_IN_STATS = ("sqlalchemy", "gradio", "fastapi", "starlette", "torch", "torchvision")
TORCH_FAMILY = ("torch", "torchvision", "diffusers", "open_clip", "transformers")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (function-level imports too), as the
    absolute dotted names of the module and of each imported member
    (``from arena.storage import db`` gives ``arena.storage`` and ``arena.storage.db``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _module_name(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def project_modules(*folders: str) -> list[Path]:
    paths = sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))
    assert paths, f"no modules found under {folders}"
    return paths


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _in(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_stats_imports_nothing_else_of_the_project():
    bad = {}
    for path in project_modules("arena/stats"):
        wrong = {
            name
            for name in imported_names(path)
            if (any(_in(name, p) for p in (*PACKAGES, "tests")) and not _in(name, "arena.stats"))
            or any(_in(name, lib) for lib in NOT_IN_STATS)
        }
        if wrong:
            bad[_rel(path)] = sorted(wrong)
    assert not bad, f"arena.stats must stay pure (numpy/scipy/pandas and itself): {bad}"


def speaks_sql(path: Path) -> bool:
    return any(
        _in(name, "sqlalchemy") or _in(name, "arena.storage.db") for name in imported_names(path)
    )


def test_only_storage_the_voting_hot_path_and_the_scoring_jobs_speak_sql():
    speakers = [p for p in project_modules(*PACKAGES) if speaks_sql(p)]
    # The checker sees the façade's own SQL (else it would pass whatever the tree does).
    assert ROOT / "arena/storage/store.py" in speakers
    bad = [_rel(p) for p in speakers if not _rel(p).startswith(SQL_ALLOWED)]
    assert not bad, (
        f"these modules import sqlalchemy or arena.storage.db but may not: {bad}; "
        "add a domain verb to the Store (arena/storage) and call it instead"
    )


def test_the_checker_resolves_every_import_form(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    pkg = tmp_path / "arena" / "storage"
    pkg.mkdir(parents=True)
    forms = {
        "a.py": "from arena.storage import db\n",
        "b.py": "def f():\n    from sqlalchemy.orm import Session\n",
        "c.py": "from . import db\n",
        "d.py": "import arena.storage.db as d\n",
        "e.py": "from .db import Image\n",
    }
    for name, source in forms.items():
        (pkg / name).write_text(source)
    (pkg / "clean.py").write_text("from arena.storage.store import Store\nimport dbm\n")
    assert all(speaks_sql(pkg / name) for name in forms)
    assert not speaks_sql(pkg / "clean.py")


def test_only_the_offline_demo_uses_the_stand_in_models():
    users = [
        _rel(p)
        for p in project_modules(*PACKAGES)
        if not _rel(p).startswith("scoring/testing/")
        and any(_in(name, "scoring.testing") for name in imported_names(p))
    ]
    assert users == list(STAND_INS_ALLOWED), users


BUILD_THE_WEB_SIDE = """
import importlib, sys
import arena.serve, arena.ui, arena.ui.app, arena.ui.admin, arena.voting.battles
from arena.storage.store import Store
from arena.ui.app import TABS
from tests.arena_fixtures import build_fixture

tabs = [importlib.import_module(t) for t in TABS]
store = Store.open({workspace!r}, admin_secret="s3cret-for-the-test")  # mounts the Admin app
build_fixture(store, n_prompts=3, seeds=2)
arena.serve.build_server_app(store)
loaded = [m for m in {torch_family!r} if m in sys.modules]
print("loaded:", loaded, "tabs:", len(tabs))
sys.exit(1 if loaded else 0)
"""


def test_the_web_side_never_imports_torch(tmp_path):
    """Server, raters' app, Admin app and every tab, built on a real workspace."""
    code = BUILD_THE_WEB_SIDE.format(workspace=str(tmp_path / "ws"), torch_family=TORCH_FAMILY)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARENA_")}
    env["GRADIO_ANALYTICS_ENABLED"] = "False"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "loaded: []" in result.stdout


# Libraries that import torchvision when they load: on this CPU torch the CUDA-only
# torchvision wheel imports only after ``scoring._compat`` has run.
NEEDS_SHIM = ("torchvision", "open_clip", "diffusers", "transformers", "torch_fidelity", "timm")


def _is_shim(node: ast.AST) -> bool:
    if isinstance(node, ast.ImportFrom):
        return node.module == "scoring" and any(a.name == "_compat" for a in node.names)
    return isinstance(node, ast.Import) and any(a.name == "scoring._compat" for a in node.names)


def unshimmed_imports(path: Path) -> list[int]:
    """Lines importing a torchvision-loading library with no ``scoring._compat`` import
    before it, either at module level or earlier in the same function."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    top_shims = [n.lineno for n in tree.body if _is_shim(n)]
    enclosing: dict[ast.AST, ast.AST] = {}
    for function in ast.walk(tree):
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(function):
                enclosing.setdefault(node, function)  # outer functions are walked first
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module or ""]
        else:
            continue
        if not any(_in(n, lib) for n in names for lib in NEEDS_SHIM):
            continue
        scope = enclosing.get(node)
        local = [n.lineno for n in ast.walk(scope) if _is_shim(n)] if scope else []
        if not any(line < node.lineno for line in (*top_shims, *local)):
            bad.append(node.lineno)
    return sorted(set(bad))


def test_modules_that_load_torchvision_run_the_shim_first():
    """``scoring/__init__.py`` has no side effects, so each module calls the shim itself."""
    modules = [p for p in project_modules(*PACKAGES) if _rel(p) != "scoring/_compat.py"]
    bad = {_rel(p): lines for p in modules if (lines := unshimmed_imports(p))}
    assert not bad, f"import scoring._compat before these torchvision-loading imports: {bad}"


@pytest.mark.parametrize(
    ("source", "flagged"),
    [
        ("import open_clip\nfrom scoring import _compat\n", [1]),  # shim too late
        ("def f():\n    from diffusers import UNet2DModel\n", [2]),
        ("from scoring import _compat\n\ndef f():\n    import torchvision\n", []),
        ("def f():\n    import scoring._compat\n    import transformers\n", []),
        ("def g():\n    from scoring import _compat\n\nimport timm\n", [4]),  # g's shim
    ],
)
def test_the_shim_checker_sees_a_missing_shim(tmp_path, source, flagged):
    (tmp_path / "m.py").write_text(source)
    assert unshimmed_imports(tmp_path / "m.py") == flagged
