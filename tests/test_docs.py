"""The documentation site builds with `mkdocs build --strict` (as CI runs it), and the
export schema on docs/exports.md names every column an export writes.

Strict mode turns every warning into a failure: a link to a page or an anchor that
does not exist, a page missing from the nav, the benchmarks file the Benchmarks page
includes gone missing. mkdocs is a test dependency (the `docs` extra), so a missing
install fails here rather than skipping.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_the_docs_site_builds_strict(tmp_path):
    site = tmp_path / "site"
    result = mkdocs_build(ROOT / "mkdocs.yml", site)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (site / "index.html").exists()
    # The Benchmarks page includes benchmarks/README.md, the figures file.
    benchmarks = (site / "benchmarks.html").read_text(encoding="utf-8")
    assert "Sample efficiency of matchmaking" in benchmarks


def test_a_broken_link_fails_the_strict_build(tmp_path):
    """The check above can fail: a link to a missing anchor aborts the build."""
    docs = tmp_path / "docs"
    docs.mkdir()
    for page in (ROOT / "docs").glob("*.md"):
        (docs / page.name).write_text(page.read_text(encoding="utf-8"), encoding="utf-8")
    with (docs / "index.md").open("a", encoding="utf-8") as f:
        f.write("\n[broken](voting.md#no-such-section)\n")
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "README.md").write_text(
        (ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8"), encoding="utf-8"
    )
    config = tmp_path / "mkdocs.yml"
    config.write_text((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), encoding="utf-8")
    result = mkdocs_build(config, tmp_path / "site")
    assert result.returncode != 0
    assert "no-such-section" in result.stdout + result.stderr


def documented_columns(page: str) -> dict[str, str]:
    """table name -> the text of its row in the schema table of docs/exports.md."""
    rows = re.findall(r"^\| `([a-z_]+)` \|(.*)$", page, flags=re.M)
    return dict(rows)


def undocumented(columns: list[str], row: str, metrics: set[str]) -> list[str]:
    """Columns of one exported table that its row on docs/exports.md does not name.

    A row names a column literally (`rating`), through a placeholder (`<metric>_mean`),
    as a suffix of a named column (`spearman` ... each with `_low`/`_high`), or, for
    "one column per metric", by the metric's own name.
    """
    tokens = re.findall(r"`([^`]+)`", row)
    exact = {t for t in tokens if not t.startswith("_") and "<metric>" not in t}
    suffixes = [t for t in tokens if t.startswith("_")]
    templates = [t for t in tokens if "<metric>" in t]
    per_metric = "one column per metric" in row

    def named(column: str) -> bool:
        return (
            column in exact
            or any(column == t.replace("<metric>", m) for t in templates for m in metrics)
            or any(column == base + sfx for base in exact for sfx in suffixes)
            or (per_metric and column in metrics)
        )

    return [c for c in columns if not named(c)]


def test_the_export_schema_names_every_column_of_every_table(store, tmp_path):
    from arena.reports.export import export_workspace
    from arena.reports.methods import BoardOptions
    from tests.agreement_data import populate_store, small_arena

    data = small_arena(n_votes=600, metric_noise={"sharp": 0.4})
    populate_store(store, data)
    store.add_model("real", "reference")
    for k, name in enumerate(sorted(data.images.model.unique())):
        details = {"features": "inception@x#0"}
        mid = store.model_id(name)
        store.put_model_metric(
            mid, "kid", "real", 0.01 * k, 0.002, 30, details, higher_is_better=False
        )
    out = tmp_path / "export"
    # style control on, so that every table an export can write is written
    options = BoardOptions(style=("sharp",))
    export_workspace(store, out, fmt="csv", rounds=20, seed=1, options=options)
    tables = json.loads((out / "manifest.json").read_text())["tables"]
    page = (ROOT / "docs" / "exports.md").read_text(encoding="utf-8")
    rows = documented_columns(page)
    assert set(rows) == set(tables), "docs/exports.md lists other tables than an export writes"
    metrics = {"sharp", "kid"}
    missing = {
        name: undocumented(t["columns"], rows[name], metrics)
        for name, t in tables.items()
        if undocumented(t["columns"], rows[name], metrics)
    }
    assert not missing, f"columns missing from docs/exports.md: {missing}"
    # The check can fail: a column the page does not name is reported.
    assert undocumented(["made_up"], rows["votes"], metrics) == ["made_up"]
