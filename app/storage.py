"""The SQLite store: one connection per thread, WAL mode, migrations applied at start-up."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from flask import Flask, current_app
from sqlite_utils import Database

BUSY_TIMEOUT_MS = 10_000

_local = threading.local()


def open_db(path: str | Path) -> Database:
    """Open ``path`` with the pragmas every connection of the service needs.

    WAL lets the receiver write while workers read; ``busy_timeout`` makes concurrent
    writers wait for each other instead of failing; foreign keys are off by default in SQLite.
    """
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False,
                           isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA synchronous=NORMAL")
    return Database(conn, execute_plugins=False)


@contextlib.contextmanager
def write_transaction(db: Database) -> Iterator[Database]:
    """A transaction that takes the write lock up front (``BEGIN IMMEDIATE``).

    ``db.atomic()`` begins deferred: a transaction that reads before it writes then fails at once
    with "database is locked" if another connection committed in between (WAL cannot upgrade a
    stale read snapshot), without waiting for ``busy_timeout``. Use this one for read-then-write.
    """
    if db.conn.in_transaction:
        with db.atomic():
            yield db
        return
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.conn.execute("ROLLBACK")
        raise
    db.conn.execute("COMMIT")


def thread_db(path: str | Path) -> Database:
    """This thread's connection to ``path``, opened on first use (SQLite connections are per thread)."""
    cache: dict[str, Database] = _local.__dict__.setdefault("databases", {})
    key = str(path)
    if key not in cache:
        cache[key] = open_db(path)
    return cache[key]


def close_thread_dbs() -> None:
    """Close this thread's connections (threads that end, and tests, call this)."""
    for db in _local.__dict__.pop("databases", {}).values():
        db.close()


def get_db() -> Database:
    """The current thread's connection to the application's database."""
    return thread_db(current_app.config["DATABASE_PATH"])


def init_app(app: Flask) -> None:
    """Apply pending migrations so the schema is current before the first request."""
    from app.migrations import migrate

    migrate(thread_db(app.config["DATABASE_PATH"]))
