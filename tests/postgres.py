"""A real PostgreSQL server for the tests: Debian's ``postgresql`` package (installed with apt-get on first
use, as the browser tests install chromium), a cluster in a temporary directory on a free loopback port,
started once per test session; or the server ``TEST_DATABASE_URL`` names.

Each test gets a database of its own, created from a migrated template in a few milliseconds.
``python -m tests.postgres`` starts one by hand and prints its URL.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

from app.core.db import open_db
from app.core.migrations import migrate
from tests.debian import PackageUnavailable, ensure_package

TEMPLATE = "outlook_template"
# Durability is not under test on a throwaway cluster (the crash drills kill the service, never the
# machine): without fsync a test database is created and dropped in milliseconds.
SETTINGS = ("-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
            " -c shared_buffers=64MB")


class PostgresUnavailable(PackageUnavailable):
    """PostgreSQL is not installed and could not be installed with apt-get."""


def _bin_dir() -> Path | None:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    return versions[-1].parent if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """One cluster: ``url(name)`` reaches database ``name``; ``fresh_database()`` makes a migrated one."""

    def __init__(self, base_url: str, *, directory: Path | None = None, bin_dir: Path | None = None) -> None:
        self.base_url = base_url
        self.directory, self.bin_dir = directory, bin_dir
        self._names = itertools.count(1)
        self._template_ready = False
        self.options = ""  # what ``postgres`` is started with (pg_ctl -o), for a start after a stop

    @classmethod
    def start(cls) -> PostgresServer:
        """A new cluster in a temporary directory, run as the ``postgres`` user when we are root
        (PostgreSQL refuses to run as root)."""
        bin_dir = ensure_package("postgresql", _bin_dir, PostgresUnavailable)
        directory = Path(tempfile.mkdtemp(prefix="outlook-pg-"))
        port = _free_port()
        server = cls(f"postgresql://postgres@127.0.0.1:{port}/postgres", directory=directory, bin_dir=bin_dir)
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            os.chown(directory, account.pw_uid, account.pw_gid)
        server._run("initdb", "-D", str(directory / "data"), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                    "--no-sync", "--no-instructions")
        server.options = f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 {SETTINGS}"
        server._pg_ctl("start", "-o", server.options)
        return server

    def url(self, name: str) -> str:
        parts = urlsplit(self.base_url)
        return urlunsplit(parts._replace(path=f"/{name}"))

    def fresh_database(self) -> str:
        """The URL of a new database holding the current schema."""
        if not self._template_ready:
            self._create(TEMPLATE, drop=True)
            with open_db(self.url(TEMPLATE)) as db:
                migrate(db)
            self._template_ready = True
        name = f"test_{os.getpid()}_{next(self._names)}"
        self._create(name, template=TEMPLATE, drop=True)
        return self.url(name)

    def drop(self, url: str) -> None:
        """Drop the database of ``url`` (its connections are cut)."""
        with psycopg.connect(self.base_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{urlsplit(url).path.lstrip("/")}" WITH (FORCE)')

    def restart(self, *, down_for: float = 0.0) -> None:
        """``pg_ctl restart -m fast``: every connection is cut, the server is back a moment later; or
        ``down_for`` seconds later, as a server with much to recover would be."""
        if not down_for:
            self._pg_ctl("restart", "-m", "fast")
            return
        self._pg_ctl("stop", "-m", "fast")
        time.sleep(down_for)
        self._pg_ctl("start", "-o", self.options)

    def stop(self) -> None:
        if self.directory is None:
            return
        with contextlib.suppress(subprocess.CalledProcessError):
            self._pg_ctl("stop", "-m", "immediate")
        shutil.rmtree(self.directory, ignore_errors=True)

    def _create(self, name: str, *, template: str | None = None, drop: bool = False) -> None:
        with psycopg.connect(self.base_url, autocommit=True) as conn:
            if drop:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))

    def _pg_ctl(self, *args: str) -> None:
        self._run("pg_ctl", "-D", str(self.directory / "data"), "-w", "-l", str(self.directory / "log"), *args)

    def _run(self, program: str, *args: str) -> None:
        user = "postgres" if os.geteuid() == 0 else None
        done = subprocess.run([str(self.bin_dir / program), *args], user=user, capture_output=True, text=True,
                              timeout=120)
        if done.returncode != 0:
            raise PostgresUnavailable(f"{program} {' '.join(args)} failed: {done.stdout}{done.stderr}")


def test_server() -> PostgresServer:
    """The server of ``TEST_DATABASE_URL`` when set (its databases are created there), else a new one."""
    existing = os.environ.get("TEST_DATABASE_URL")
    return PostgresServer(existing) if existing else PostgresServer.start()


if __name__ == "__main__":
    print(PostgresServer.start().fresh_database())
