"""Run a command as a user the file permissions apply to, even when the tests run as root.

Root ignores file permissions, so a read-only workspace cannot be tested by
chmod alone in CI (which runs as root). There the command runs as ``nobody``
(uid/gid 65534) through ``setpriv``; as any other user it runs directly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

NOBODY = 65534


def shared_tmpdir() -> Path:
    """A folder both root and the unprivileged user can reach (pytest's tmp is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="arena-perm-", dir="/tmp"))
    path.chmod(0o755)
    return path


def make_read_only(path: Path) -> None:
    for p in [path, *path.rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)


def run_unprivileged(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, **kwargs.pop("env", {})}
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.fail("running as root needs setpriv (util-linux) to test permissions")
        cmd = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *cmd]
        env["HOME"] = "/tmp"
    return subprocess.run(cmd, capture_output=True, text=True, env=env, **kwargs)
