"""A throwaway PostgreSQL server for the database tests.

Uses ``ARENA_TEST_POSTGRES_URL`` when set; otherwise starts a private cluster
from Debian's ``postgresql`` binaries (``initdb`` + ``pg_ctl``) on 127.0.0.1 and a
free port, in a temporary folder, as the ``postgres`` user when run as root
(PostgreSQL refuses to run as root). The server is stopped at the end.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager


class PostgresUnavailable(RuntimeError):
    pass


def _bindir() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return os.path.dirname(found[-1]) if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yield a SQLAlchemy URL of a running PostgreSQL server (the maintenance database)."""
    url = os.environ.get("ARENA_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    bindir = _bindir()
    if bindir is None:
        raise PostgresUnavailable("no PostgreSQL binaries (apt-get install postgresql)")
    root = tempfile.mkdtemp(prefix="arena-pg-")
    data = os.path.join(root, "data")
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(root, pw.pw_uid, pw.pw_gid)
    port = _free_port()
    try:
        subprocess.run(
            _as_server_user(
                [
                    f"{bindir}/initdb",
                    "-D",
                    data,
                    "-U",
                    "arena",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ]
            ),
            check=True,
            capture_output=True,
        )
        subprocess.run(
            _as_server_user(
                [
                    f"{bindir}/pg_ctl",
                    "-D",
                    data,
                    "-w",
                    "-l",
                    os.path.join(root, "log"),
                    "-o",
                    f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off -c max_connections=200",
                    "start",
                ]
            ),
            check=True,
            capture_output=True,
        )
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(root, ignore_errors=True)
        raise PostgresUnavailable(
            f"could not start PostgreSQL: {exc.stderr.decode(errors='replace')}"
        ) from None
    try:
        yield f"postgresql+psycopg://arena@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_server_user([f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


def fresh_database(server_url: str) -> str:
    """Create an empty database on the server; return its URL."""
    from sqlalchemy import create_engine, text

    name = f"t_{uuid.uuid4().hex[:12]}"
    engine = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return server_url.rsplit("/", 1)[0] + f"/{name}"
