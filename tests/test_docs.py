"""The documentation site builds with `mkdocs build --strict` (as CI runs it).

Strict mode turns every warning into a failure: a link to a page or an anchor that
does not exist, a page missing from the nav, the benchmarks file the Benchmarks page
includes gone missing. mkdocs is a test dependency (the `docs` extra), so a missing
install fails here rather than skipping.
"""

from __future__ import annotations

import os
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
    benchmarks = (site / "benchmarks" / "index.html").read_text(encoding="utf-8")
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
