"""The store: SQLite (one connection per thread, WAL mode) unless the location is a ``postgresql://``
URL (:mod:`app.core.postgres`, one pool per process), and what a busy or full store means for callers."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import psycopg
import psycopg_pool
from sqlite_utils import Database

from app.core import postgres
from app.core.dialects import dialect_of

BUSY_TIMEOUT_MS = 10_000
# The database holds mail and encrypted tokens: only the service's own user may read it. SQLite
# creates the -wal and -shm files with the mode of the database file, so they follow.
FILE_MODE = 0o600
DIRECTORY_MODE = 0o700

# SQLite result codes (the primary code, the low byte of sqlite_errorcode) that mean the store
# cannot take the request now, and how many seconds a client should wait before trying again: a
# writer held the lock past busy_timeout, or the disk (or max_page_count) is full, unwritable or failing.
RETRY_AFTER_SECONDS = {sqlite3.SQLITE_BUSY: 2, sqlite3.SQLITE_LOCKED: 2, sqlite3.SQLITE_FULL: 30,
                       sqlite3.SQLITE_IOERR: 30, sqlite3.SQLITE_READONLY: 30, sqlite3.SQLITE_CANTOPEN: 30}

# What a failing store raises, on either engine: the web layer and the receiver catch these.
STORAGE_ERRORS = (sqlite3.Error, psycopg.Error, psycopg_pool.PoolTimeout)

_local = threading.local()
_creating = threading.Lock()
_pools: dict[str, postgres.PostgresDatabase] = {}
_pools_lock = threading.Lock()


def store_location(config: Mapping[str, Any]) -> str:
    """Where the store is: ``DATABASE_URL`` when set, else the SQLite file ``DATABASE_PATH``."""
    return config.get("DATABASE_URL") or str(config["DATABASE_PATH"])


def is_postgres(location: str | Path) -> bool:
    return str(location).startswith(("postgresql://", "postgres://"))


def open_db(path: str | Path) -> Database:
    """Open ``path`` with the pragmas every connection of the service needs; a ``postgresql://``
    URL gets a store of its own (for a command or a test: the service shares :func:`thread_db`'s).

    WAL lets the receiver write while workers read; ``busy_timeout`` makes concurrent
    writers wait for each other instead of failing; foreign keys are off by default in SQLite.
    """
    if is_postgres(path):
        return postgres.PostgresDatabase(str(path), max_size=4)
    if str(path) != ":memory:":
        _create_private(Path(path))
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False,
                           isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA synchronous=NORMAL")
    return Database(conn, execute_plugins=False)


def _create_private(path: Path) -> None:
    """Create ``path`` (and its folder) readable by this user only, whatever the umask; tighten a
    database file an older version left readable by others.

    An existing database file is never opened here: closing any descriptor of it would cancel every
    POSIX lock this process holds on it, those of its live SQLite connections included, and another
    process closing its own connection would then take itself for the last one and checkpoint and
    delete the WAL under them (https://www.sqlite.org/howtocorrupt.html, section 2.2). A new file is
    created under a lock that every opening connection takes, so none opens it before its creating
    descriptor is closed.
    """
    with _creating:
        if not path.exists():
            if not path.parent.exists():
                path.parent.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):  # another process created it first
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, FILE_MODE))
    for existing in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            if existing.stat().st_mode & 0o077:
                existing.chmod(FILE_MODE)


def unavailable_retry_after(error: BaseException) -> int | None:
    """Seconds to ask a client to wait when ``error`` means the store is busy or full, else None.

    Such an error is no fault of the request: the web layer answers 503 with ``Retry-After``.
    """
    if not isinstance(error, sqlite3.Error):
        return postgres.unavailable_retry_after(error)
    code = getattr(error, "sqlite_errorcode", None)
    if code is None:
        return None
    return RETRY_AFTER_SECONDS.get(code & 0xFF)


@contextlib.contextmanager
def write_transaction(db: Database) -> Iterator[Database]:
    """A transaction that takes the write lock up front (``BEGIN IMMEDIATE``).

    ``db.atomic()`` begins deferred: a transaction that reads before it writes then fails at once
    with "database is locked" if another connection committed in between (WAL cannot upgrade a
    stale read snapshot), without waiting for ``busy_timeout``. Use this one for read-then-write.
    On PostgreSQL the same guarantee is an advisory lock that every such transaction takes first:
    writers of this kind take turns, as on SQLite, while single statements (acknowledgements,
    claims) never wait for it.
    """
    if isinstance(db, postgres.PostgresDatabase):
        with db.atomic():
            for statement in dialect_of(db).begin_write:
                db.execute(statement)
            yield db
        return
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


@contextlib.contextmanager
def erasing(db: Database) -> Iterator[Database]:
    """Rows deleted inside leave no bytes of theirs in the SQLite file (``PRAGMA secure_delete``).

    SQLite otherwise only marks a deleted row's space as free: its text stays in the page, or in the
    freed page, readable in the file until the space is reused, so purged mail could still be found
    by reading the file. With secure_delete the space is overwritten with zeros as it is freed (in the
    WAL first, in the database file at the next checkpoint). Every freed page is then written once
    more, so it is on only inside this block, not for the queue's constant deletes. On PostgreSQL a
    deleted row is gone for every query at once, and autovacuum reclaims its space.
    """
    if isinstance(db, postgres.PostgresDatabase):
        yield db
        return
    before = db.conn.execute("PRAGMA secure_delete").fetchone()[0]
    db.conn.execute("PRAGMA secure_delete = ON")
    try:
        yield db
    finally:
        db.conn.execute(f"PRAGMA secure_delete = {int(before)}")


def thread_db(path: str | Path) -> Database:
    """This thread's connection to ``path``, opened on first use (SQLite connections are per thread);
    for a ``postgresql://`` URL, the process's one pooled store."""
    if is_postgres(path):
        return _pool(str(path))
    cache: dict[str, Database] = _local.__dict__.setdefault("databases", {})
    key = str(path)
    if key not in cache:
        cache[key] = open_db(path)
    return cache[key]


def close_thread_dbs() -> None:
    """Close this thread's connections (threads that end, and tests, call this)."""
    for db in _local.__dict__.pop("databases", {}).values():
        db.close()


def _pool(url: str) -> postgres.PostgresDatabase:
    with _pools_lock:
        if url not in _pools:
            _pools[url] = postgres.PostgresDatabase(url)
        return _pools[url]


def close_pools() -> None:
    """Close the process's PostgreSQL pools and stop its listeners (at exit, and between tests)."""
    postgres.stop_listeners()
    with _pools_lock:
        for store in _pools.values():
            store.close()
        _pools.clear()
