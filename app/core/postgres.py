"""The PostgreSQL store: the calls the service makes of a SQLite ``Database`` (``execute``, ``query``,
``atomic``), over a psycopg 3 connection pool.

Statements are written once, with SQLite's ``?`` and ``:name`` placeholders (:mod:`app.core.dialects`
says why); :func:`translate` turns them into psycopg's ``%s`` and ``%(name)s``. Outside a transaction a
statement borrows a pooled connection (in autocommit) only while it runs, so any number of threads
share a few connections; inside :meth:`PostgresDatabase.atomic` the thread keeps one until the end.

A connection the server dropped (a restart, a failover) is found by the pool's check before it is
handed out; the check costs a round trip, so a connection back in the pool for less than
:data:`CHECK_AFTER_IDLE_SECONDS` is handed out unchecked. An error during a statement surfaces as
``psycopg.OperationalError``, which the web layer answers with 503 and the worker retries
(:func:`unavailable_retry_after`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import psycopg
import psycopg_pool
from psycopg.rows import dict_row

from app.core.dialects import POSTGRES, Dialect

log = logging.getLogger(__name__)

# A thread waits this long for a connection, then the store is "busy" (503). It stays under Graph's
# 3-s acknowledgement deadline: while the server is away, a delivery answered 503 is retried by Graph
# on its schedule, where one left waiting longer would fail anyway and hold a request thread.
POOL_TIMEOUT_SECONDS = 2.0
# SQLSTATE codes and classes that mean "not now" rather than "wrong", with the Retry-After to give:
# serialization failure, deadlock, lock not available; insufficient resources (a full disk);
# operator intervention (shutdown, restart, recovery); connection exceptions.
_RETRY_AFTER_BY_SQLSTATE = {"40001": 2, "40P01": 2, "55P03": 2, "53": 30, "57P": 5, "08": 5}

POOL_SIZE = 20  # connections a process's threads share (a statement holds one only while it runs)
# Handed back this recently, a connection is taken to be alive: the statement it served had just
# succeeded. Checking every checkout doubled the round trips of a worker's job (bench.pg).
CHECK_AFTER_IDLE_SECONDS = 1.0

_TOKEN = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|::|\?|:[A-Za-z_]\w*|%")


@functools.lru_cache(maxsize=1024)
def translate(sql: str) -> str:
    """``sql`` with SQLite placeholders as psycopg's; quoted text, comments and casts untouched but for
    ``%``, which psycopg reads as a placeholder wherever it stands, so it is doubled everywhere."""

    def token(match: re.Match[str]) -> str:
        text = match.group(0)
        if text == "?":
            return "%s"
        if text.startswith(":") and text != "::":
            return f"%({text[1:]})s"
        return text.replace("%", "%%")

    return _TOKEN.sub(token, sql)


class Result:
    """What ``execute`` returns: the rows already read (the connection went back to the pool)."""

    def __init__(self, rowcount: int, rows: list[tuple[Any, ...]]) -> None:
        self.rowcount = rowcount
        self._rows = rows

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._rows.pop(0) if self._rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows, self._rows = self._rows, []
        return rows


class _Connection(psycopg.Connection):
    """A pooled connection that remembers when it was last handed back."""

    returned_at = 0.0


def _note_return(conn: _Connection) -> None:
    conn.returned_at = time.monotonic()


def _check_if_idle(conn: _Connection) -> None:
    if time.monotonic() - conn.returned_at >= CHECK_AFTER_IDLE_SECONDS:
        psycopg_pool.ConnectionPool.check_connection(conn)


class PostgresDatabase:
    """A process's PostgreSQL store, shared by all its threads."""

    dialect: Dialect = POSTGRES

    def __init__(self, url: str, *, max_size: int = POOL_SIZE) -> None:
        self.url = url
        self.pool = psycopg_pool.ConnectionPool(
            url, connection_class=_Connection, min_size=1, max_size=max_size, timeout=POOL_TIMEOUT_SECONDS,
            open=True, kwargs={"autocommit": True},
            check=_check_if_idle, reset=_note_return, name="outlook-integration")
        self._local = threading.local()

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Result:
        with self._connection() as conn:
            cursor = conn.execute(translate(sql), _params(params))
            rows = cursor.fetchall() if cursor.description else []
            return Result(cursor.rowcount, rows)

    def query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Iterator[dict[str, Any]]:
        """Rows as dicts; unlike SQLite's, the statement runs at once, not when first iterated."""
        with self._connection() as conn, conn.cursor(row_factory=dict_row) as cursor:
            cursor.execute(translate(sql), _params(params))
            return iter(cursor.fetchall() if cursor.description else [])

    def executemany(self, sql: str, rows: Sequence[Sequence[Any] | Mapping[str, Any]]) -> None:
        with self._connection() as conn, conn.cursor() as cursor:
            cursor.executemany(translate(sql), [_params(row) for row in rows])

    @contextlib.contextmanager
    def atomic(self) -> Iterator[PostgresDatabase]:
        """A transaction (a savepoint when one is open already); commits unless the block raises."""
        held = getattr(self._local, "conn", None)
        if held is not None:
            with held.transaction():
                yield self
            return
        with self.pool.connection() as conn:
            self._local.conn = conn
            try:
                with conn.transaction():
                    yield self
            finally:
                self._local.conn = None

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> PostgresDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        held = getattr(self._local, "conn", None)
        if held is not None:
            yield held
        else:
            with self.pool.connection() as conn:
                yield conn


def _params(params: Sequence[Any] | Mapping[str, Any]) -> Sequence[Any] | Mapping[str, Any]:
    """SQLite takes booleans as 0 and 1 (the schema's flags are integers); so do we."""
    if isinstance(params, Mapping):
        return {key: int(value) if isinstance(value, bool) else value for key, value in params.items()}
    return [int(value) if isinstance(value, bool) else value for value in params]


def unavailable_retry_after(error: BaseException) -> int | None:
    """Seconds to ask a client to wait when ``error`` means PostgreSQL cannot take the request now
    (no free connection, the server down or restarting, a full disk, a lock or serialization
    conflict), else None."""
    if isinstance(error, psycopg_pool.PoolTimeout):
        return 2
    if not isinstance(error, psycopg.Error):
        return None
    sqlstate = error.sqlstate or ""
    if not sqlstate:
        return 5 if isinstance(error, psycopg.OperationalError) else None
    return next((seconds for prefix, seconds in _RETRY_AFTER_BY_SQLSTATE.items() if sqlstate.startswith(prefix)),
                None)


_listeners: weakref.WeakSet[Listener] = weakref.WeakSet()


def stop_listeners() -> None:
    """Stop every listener of the process (at exit, and between tests: a dropped database's listener
    would otherwise try to connect again every second)."""
    for listener in list(_listeners):
        listener.stop()


class Listener:
    """Calls ``on_notify(payload)`` for each notification on ``channel``, from a thread of its own with
    a connection of its own (a pooled one would be handed to others between statements).

    A lost connection (a restart, a failover) is opened again after a pause; notifications sent
    meanwhile are lost, so ``on_listening`` is called each time listening (re)starts, for a caller
    that must then assume it missed some. The workers need not: they also look for work every second.
    """

    def __init__(self, url: str, channel: str, on_notify: Callable[[str], None], *,
                 on_listening: Callable[[], None] = lambda: None, reconnect_seconds: float = 1.0) -> None:
        self.url, self.channel, self.on_notify, self.on_listening = url, channel, on_notify, on_listening
        self._reconnect_seconds = reconnect_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"listen-{channel}", daemon=True)
        self.listening = threading.Event()

    def start(self) -> Listener:
        _listeners.add(self)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {self.channel}")
                    self.on_listening()
                    self.listening.set()
                    while not self._stop.is_set():
                        for notify in conn.notifies(timeout=0.5, stop_after=1):
                            self.on_notify(notify.payload)
            except psycopg.Error as e:
                self.listening.clear()
                log.warning("Listener %s: %s; listening again in %.0f s", self.channel, e, self._reconnect_seconds)
                self._stop.wait(self._reconnect_seconds)
