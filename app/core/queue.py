"""The durable job queue: rows of the ``jobs`` table, claimed under a lease.

A job moves ``queued`` → ``running`` (claimed, leased to one worker) → ``done`` or ``dead``, or back to
``queued`` for a retry. Every claim is one ``UPDATE … RETURNING`` statement: SQLite takes the write
lock before that statement reads, so two workers can never take the same row. (In a deferred
``BEGIN``, a ``SELECT`` then an ``UPDATE`` lets two workers read the same row, and one of them then
fails with "database is locked".) On PostgreSQL the claim's inner ``SELECT`` locks the rows it picks
``FOR UPDATE SKIP LOCKED``: concurrent claimers, on any host, each take other rows without waiting.
A worker that dies leaves its lease to run out; :meth:`JobQueue.reap_expired` then re-queues the job.

Only the lease owner may settle a running job; each settling verb returns ``False`` when the lease
was lost (reaped and perhaps claimed by another worker), so the caller knows its result was not
recorded. Times are epoch seconds; every verb takes ``now`` so tests can drive the clock.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, fields
from enum import Enum
from pathlib import Path
from typing import Any, NamedTuple

import orjson
from sqlite_utils import Database

from app.core import heartbeats
from app.core.db import close_thread_dbs, thread_db, write_transaction
from app.core.dialects import Dialect, dialect_of
from app.core.group_commit import GroupCommit

DEFAULT_MAX_ATTEMPTS = 10
# Dead letters are kept this many times longer than done jobs, for an operator to look at.
DEAD_RETENTION_FACTOR = 10
# Deliveries moved from the inbox into the queue per transaction (about ten jobs each): a drain
# holds the write lock for a few tens of milliseconds, which acknowledgements meanwhile wait out.
DRAIN_DELIVERIES = 100


class JobState(str, Enum):
    """Where a job is in its life."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    DEAD = "dead"


@dataclass(frozen=True)
class Job:
    """A row of the ``jobs`` table. ``attempts`` counts claims, the current one included."""

    id: int
    kind: str
    payload: dict[str, Any]
    connection_id: int | None
    attempts: int
    dedupe_key: str | None
    state: JobState
    run_after: float
    lease_owner: str | None
    lease_expires_at: float | None
    last_error: str | None
    created_at: float
    finished_at: float | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Job:
        values = {f.name: row[f.name] for f in fields(cls)}
        return cls(**{**values, "payload": json.loads(row["payload"]), "state": JobState(row["state"])})


class NewJob(NamedTuple):
    """A job to enqueue. ``payload`` holds ids only: never a subject, body or address.

    A named tuple, not a dataclass: the webhook receiver builds one per notification.
    """

    kind: str
    payload: dict[str, Any]
    dedupe_key: str | None = None
    connection_id: int | None = None
    run_after: float | None = None


class Reaped(NamedTuple):
    requeued: int
    dead: int


@dataclass(frozen=True)
class QueueStats:
    by_state: dict[str, int]
    by_kind: dict[str, dict[str, int]]
    oldest_pending_age: float


_COLUMNS = "kind, dedupe_key, connection_id, payload, run_after, created_at, updated_at"
_INSERT = (f"INSERT INTO jobs ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (dedupe_key) DO NOTHING")
_PAYLOAD_JSON = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode


def _inbox_json(rows: list[list[Any]]) -> str:
    """A delivery's jobs as the inbox row's text: orjson, a fifteenth of the standard encoder's time on
    the acknowledgement path (bench/findings.md, "JSON on the acknowledgement path")."""
    return orjson.dumps(rows).decode()


# The inbox's items are ``[kind, dedupe_key, connection_id, payload]``, plus ``run_after`` when it
# is not the time received. A job keeps the time its delivery was received as ``created_at``, so
# queue lag (and the notification-to-linked time) counts the wait in the inbox.
_LEASE = ("state = 'running', lease_owner = :worker, lease_expires_at = :now + :lease,"
          " attempts = attempts + 1, updated_at = :now")
_READY = "state = 'queued' AND run_after <= :now"
_UNLEASE = "lease_owner = NULL, lease_expires_at = NULL"


def _jobs_of(dialect: Dialect, deliveries: str) -> str:
    """``SELECT`` of the jobs of the inbox rows ``deliveries``, as ``jobs`` columns, in arrival order."""
    return (
        f"SELECT item.value ->> 0, item.value ->> 1, {dialect.json_integer('item.value ->> 2')},"
        f" CAST(item.value -> 3 AS TEXT), coalesce({dialect.json_number('item.value ->> 4')}, d.received_at),"
        f" d.received_at, :now FROM {deliveries} AS d, {dialect.json_items('d.jobs')} ORDER BY d.id, item.key"
    )


@functools.cache
def _claim_sql(dialect: Dialect, where: str, *, limit: bool) -> str:
    """Lease the oldest ready jobs matching ``where``: one, or up to ``:limit``.

    The picked ids are a materialized CTE: PostgreSQL may otherwise run an ``IN (… LIMIT n FOR
    UPDATE SKIP LOCKED)`` subquery again for each row it updates, and lease more than ``n`` jobs.
    """
    return (f"WITH picked AS MATERIALIZED (SELECT id FROM jobs WHERE {_READY}{where} ORDER BY run_after, id"
            f" LIMIT {':limit' if limit else '1'}{dialect.skip_locked})"
            f" UPDATE jobs SET {_LEASE} WHERE {_READY} AND id IN (SELECT id FROM picked) RETURNING *")


@functools.cache
def _drain_sql(dialect: Dialect) -> str:
    """Move up to ``:limit`` deliveries from the inbox into ``jobs``; the first row's value is how
    many moved.

    SQLite has one writer: the statement runs in a write transaction after the ids up to ``:last``
    were read. PostgreSQL moves them in one statement (a ``DELETE … RETURNING`` feeding the
    ``INSERT``): a delivery committed meanwhile is either in both or in neither. A second drain waits
    for the rows the first one locked (no ``SKIP LOCKED`` here), as on SQLite, so the claim that
    follows it sees the jobs the first one moved instead of finding nothing and going idle.
    """
    insert = f"INSERT INTO jobs ({_COLUMNS}) "
    if dialect.name == "sqlite":
        return (insert + _jobs_of(dialect, "(SELECT * FROM inbox WHERE id <= :last)")
                + " ON CONFLICT (dedupe_key) DO NOTHING")
    return (
        "WITH moved AS (DELETE FROM inbox WHERE id IN (SELECT id FROM inbox ORDER BY id LIMIT :limit"
        " FOR UPDATE) RETURNING *), added AS (" + insert + _jobs_of(dialect, "moved")
        + " ON CONFLICT (dedupe_key) DO NOTHING) SELECT count(*) FROM moved"
    )


class JobQueue:
    """The queue over the ``jobs`` table.

    :param database: a store's location, a SQLite file or a ``postgresql://`` URL (each calling thread
        then uses its connection from :func:`app.core.db.thread_db`), a callable returning the calling
        thread's ``Database``, or a ``Database`` (for single-threaded use, such as a script or a test).
    :param max_attempts: claims a job gets before :meth:`reap_expired` gives up on it, unless the
        caller (the worker, from its retry policy) says otherwise.
    """

    def __init__(self, database: str | Path | Database | Callable[[], Database], *,
                 max_attempts: int = DEFAULT_MAX_ATTEMPTS, clock: Callable[[], float] = time.time) -> None:
        if isinstance(database, (str, Path)):
            self._connect: Callable[[], Database] = lambda: thread_db(database)
        elif callable(database):
            self._connect = database
        else:
            self._connect = lambda: database
        self._owns_connections = isinstance(database, (str, Path))
        self.max_attempts = max_attempts
        self.clock = clock
        self._inbox_writes: GroupCommit[tuple[float, str]] = GroupCommit(self._write_inbox)

    def enqueue(self, kind: str, payload: dict[str, Any], *, dedupe_key: str | None = None,
                connection_id: int | None = None, run_after: float | None = None,
                now: float | None = None) -> int | None:
        """Add a job; return its id, or None when a job with ``dedupe_key`` already exists."""
        job = NewJob(kind, payload, dedupe_key, connection_id, run_after)
        db = self.db
        insert = dialect_of(db).announced(_INSERT, returning="id")
        row = db.execute(insert, self._insert_params(job, self._now(now))).fetchone()
        return None if row is None else row[0]

    def enqueue_unless_pending(self, kind: str, payload: dict[str, Any], *, connection_id: int,
                               now: float | None = None) -> int | None:
        """Add a job unless one of ``kind`` for ``connection_id`` is still waiting to run.

        For work that covers everything up to the moment it runs (a reconcile, a resubscribe):
        a waiting job already does what a second one would. A job that is running does not count,
        since it may have started before the reason for the new one arose.
        """
        now = self._now(now)
        with write_transaction(self.db):
            waiting = self._query("SELECT 1 FROM jobs WHERE kind = :kind AND connection_id = :connection_id"
                                  " AND state = 'queued' LIMIT 1", {"kind": kind, "connection_id": connection_id})
            if waiting:
                return None
            return self.enqueue(kind, payload, connection_id=connection_id, now=now)

    def enqueue_many(self, items: Iterable[NewJob], *, now: float | None = None) -> None:
        """Accept jobs with one cheap write, for a caller that must answer fast (the webhook receiver).

        The jobs go into one ``inbox`` row, whose only index is its row id; ten rows in ``jobs``
        would update four indexes ten times, the random ``dedupe_key`` one above all (bench/findings.md,
        "The inbox"). They become jobs, and duplicates of a ``dedupe_key`` are dropped,
        when :meth:`drain_inbox` moves them (:meth:`claim` does, first). All or none.

        Deliveries that arrive while another is being written share the next write, one statement
        and one commit (:class:`~app.core.group_commit.GroupCommit`); each call returns once its own
        row is committed. So it is never called inside a transaction: another thread may do the write.
        """
        rows = [_inbox_item(job) for job in items]
        if rows:
            self._inbox_writes.submit((self._now(now), _inbox_json(rows)))

    def _write_inbox(self, deliveries: Sequence[tuple[float, str]]) -> None:
        """One ``inbox`` row per delivery, in one statement (so one commit)."""
        db = self.db
        values = ", ".join(["(?, ?)"] * len(deliveries))
        insert = dialect_of(db).announced(f"INSERT INTO inbox (received_at, jobs) VALUES {values}")
        db.execute(insert, [value for delivery in deliveries for value in delivery]).fetchall()  # to the end

    def drain_inbox(self, *, limit: int = DRAIN_DELIVERIES, now: float | None = None) -> int:
        """Move up to ``limit`` deliveries from the inbox into ``jobs``, oldest first, dropping jobs
        whose ``dedupe_key`` is taken; return how many deliveries moved.

        One transaction: a crash moves all of them or none, so nothing acknowledged is lost.
        """
        dialect = dialect_of(self.db)
        if dialect.name != "sqlite":
            return self.db.execute(_drain_sql(dialect), {"limit": limit, "now": self._now(now)}).fetchone()[0]
        with write_transaction(self.db) as db:
            last = db.execute("SELECT max(id) FROM (SELECT id FROM inbox ORDER BY id LIMIT ?) AS first",
                              [limit]).fetchone()[0]
            if last is None:
                return 0
            db.execute(_drain_sql(dialect), {"last": last, "now": self._now(now)})
            return db.execute("DELETE FROM inbox WHERE id <= ?", [last]).rowcount

    def claim(self, worker_id: str, lease_seconds: float, now: float | None = None, *,
              skip_connections: Collection[int] = ()) -> Job | None:
        """Lease the next ready job (oldest ``run_after`` first) to ``worker_id``, after moving
        the deliveries waiting in the inbox into the queue; none of the connections ``skip_connections``."""
        now = self._now(now)
        if self.db.execute("SELECT EXISTS (SELECT 1 FROM inbox)").fetchone()[0]:
            self.drain_inbox(now=now)
        dialect = dialect_of(self.db)
        skip = (f" AND (connection_id IS NULL OR connection_id NOT IN (SELECT {dialect.json_integer('value')}"
                f" FROM {dialect.json_values(':skip')}))") if skip_connections else ""
        rows = self._query(_claim_sql(dialect, skip, limit=False),
                           {"worker": worker_id, "lease": lease_seconds, "now": now,
                            **({"skip": json.dumps(sorted(skip_connections))} if skip_connections else {})})
        return Job.from_row(rows[0]) if rows else None

    def claim_batch(self, worker_id: str, lease_seconds: float, *, kind: str, connection_id: int | None,
                    limit: int, now: float | None = None) -> list[Job]:
        """Lease up to ``limit`` ready jobs of one kind for one connection, oldest first."""
        if limit < 1:
            return []
        connection = "IS NULL" if connection_id is None else "= :connection"
        rows = self._query(
            _claim_sql(dialect_of(self.db), f" AND kind = :kind AND connection_id {connection}", limit=True),
            {"worker": worker_id, "lease": lease_seconds, "now": self._now(now), "kind": kind,
             "connection": connection_id, "limit": limit},
        )
        return sorted((Job.from_row(row) for row in rows), key=lambda job: (job.run_after, job.id))

    def extend_lease(self, job_id: int, worker_id: str, lease_seconds: float, now: float | None = None) -> bool:
        """Heartbeat: push the lease of a running job forward."""
        return self._update_leased(job_id, worker_id, "lease_expires_at = :now + :lease", now, lease=lease_seconds)

    def complete(self, job_ids: Sequence[int], worker_id: str, now: float | None = None) -> set[int]:
        """Mark done the jobs of ``job_ids`` that ``worker_id`` still holds, in one statement (a batch's
        twenty jobs cost one round trip, not twenty); return their ids."""
        dialect = dialect_of(self.db)
        rows = self.db.execute(
            f"UPDATE jobs SET state = 'done', finished_at = :now, last_error = NULL, {_UNLEASE}, updated_at = :now"
            f" WHERE id IN (SELECT {dialect.json_integer('value')} FROM {dialect.json_values(':ids')})"
            " AND state = 'running' AND lease_owner = :worker RETURNING id",
            {"ids": json.dumps(list(job_ids)), "worker": worker_id, "now": self._now(now)},
        ).fetchall()
        return {row[0] for row in rows}

    def retry(self, job_id: int, worker_id: str, delay: float, reason: str, now: float | None = None, *,
              counts: bool = True) -> bool:
        """Put the job back in the queue, ready ``delay`` seconds from now; with ``counts=False`` the
        attempt just made is not counted (the server asked for a pause: see :class:`handlers.errors.Deferred`)."""
        uncount = "" if counts else "attempts = attempts - 1, "
        return self._update_leased(
            job_id, worker_id,
            f"state = 'queued', {uncount}run_after = :now + :delay, last_error = :reason, {_UNLEASE}",
            now, delay=delay, reason=reason,
        )

    def dead_letter(self, job_id: int, worker_id: str, reason: str, now: float | None = None) -> bool:
        return self._update_leased(
            job_id, worker_id, f"state = 'dead', finished_at = :now, last_error = :reason, {_UNLEASE}",
            now, reason=reason,
        )

    def release(self, job_id: int, worker_id: str, now: float | None = None) -> bool:
        """Hand back a job that was claimed but not started (shutdown); the claim does not count."""
        return self._update_leased(job_id, worker_id, f"state = 'queued', attempts = attempts - 1, {_UNLEASE}", now)

    def reap_expired(self, now: float | None = None, *, max_attempts: int | None = None) -> Reaped:
        """Re-queue jobs whose lease ran out, or dead-letter them (``abandoned``) after ``max_attempts``
        claims (default: the queue's own ``max_attempts``)."""
        rows = self._query(
            f"""UPDATE jobs SET
                 state = CASE WHEN attempts >= :max THEN 'dead' ELSE 'queued' END,
                 last_error = CASE WHEN attempts >= :max THEN 'abandoned' ELSE 'lease_expired' END,
                 finished_at = CASE WHEN attempts >= :max THEN :now END,
                 run_after = :now, {_UNLEASE}, updated_at = :now
               WHERE state = 'running' AND lease_expires_at < :now
               RETURNING state""",
            {"max": max_attempts or self.max_attempts, "now": self._now(now)},
        )
        dead = sum(row["state"] == JobState.DEAD for row in rows)
        return Reaped(requeued=len(rows) - dead, dead=dead)

    def dead_letters(self, limit: int = 100) -> list[Job]:
        """The most recently dead-lettered jobs first."""
        rows = self.db.query(
            "SELECT * FROM jobs WHERE state = 'dead' ORDER BY finished_at DESC, id DESC LIMIT ?", [limit]
        )
        return [Job.from_row(row) for row in rows]

    def retry_dead(self, ids: Iterable[int] | None = None, now: float | None = None) -> int:
        """Queue dead jobs again with a fresh attempt count: those in ``ids``, or all of them."""
        chosen = f" AND id IN (SELECT CAST(value AS INTEGER) FROM {dialect_of(self.db).json_values(':ids')})"
        where = "state = 'dead'" + ("" if ids is None else chosen)
        cursor = self.db.execute(
            f"UPDATE jobs SET state = 'queued', attempts = 0, run_after = :now, finished_at = NULL,"
            f" updated_at = :now WHERE {where}",
            {"now": self._now(now), "ids": json.dumps(list(ids or []))},
        )
        return cursor.rowcount

    def prune(self, done_older_than: float, *, dead_older_than: float | None = None,
              now: float | None = None) -> int:
        """Delete jobs done more than ``done_older_than`` seconds ago, and dead ones older than
        ``dead_older_than`` (default: :data:`DEAD_RETENTION_FACTOR` times ``done_older_than``)."""
        if dead_older_than is None:
            dead_older_than = done_older_than * DEAD_RETENTION_FACTOR
        if done_older_than < 0 or dead_older_than < 0:
            raise ValueError(f"retention must not be negative, got {done_older_than!r}, {dead_older_than!r}")
        cursor = self.db.execute(
            "DELETE FROM jobs WHERE (state = 'done' AND finished_at < :now - :done)"
            " OR (state = 'dead' AND finished_at < :now - :dead)",
            {"now": self._now(now), "done": done_older_than, "dead": dead_older_than},
        )
        return cursor.rowcount

    def stats(self, now: float | None = None) -> QueueStats:
        """Job counts by state, overall and per kind, and the age of the oldest pending job.

        Jobs still in the inbox count as queued (duplicates among them included).
        """
        by_state = {state.value: 0 for state in JobState}
        by_kind: dict[str, dict[str, int]] = {}
        rows = self.db.query(
            "SELECT kind, state, count(*) AS n FROM jobs GROUP BY kind, state"
            " UNION ALL SELECT item.value ->> 0, 'queued', count(*)"
            f" FROM inbox, {dialect_of(self.db).json_items('jobs')}"
            " GROUP BY 1")
        for row in rows:
            by_state[row["state"]] += row["n"]
            by_kind.setdefault(row["kind"], {state.value: 0 for state in JobState})[row["state"]] += row["n"]
        return QueueStats(by_state, by_kind, self.oldest_pending_age(now))

    def oldest_pending_age(self, now: float | None = None) -> float:
        """Seconds the oldest ready job, or inbox delivery, has been waiting (0.0 when none is); the
        workers' lag."""
        now = self._now(now)
        rows = self._query(f"SELECT min(oldest) AS oldest FROM (SELECT min(run_after) AS oldest FROM jobs WHERE"
                           f" {_READY} UNION ALL SELECT min(received_at) FROM inbox) AS pending", {"now": now})
        oldest = rows[0]["oldest"]
        return 0.0 if oldest is None else now - oldest

    def heartbeat(self, name: str, now: float | None = None) -> None:
        """Record that worker ``name`` is alive (readiness reads the ``heartbeats`` table)."""
        heartbeats.beat(self.db, name, self._now(now))

    def disconnect(self) -> None:
        """Close the calling thread's connection, if this queue opened it (a worker thread ends)."""
        if self._owns_connections:
            close_thread_dbs()

    @property
    def db(self) -> Database:
        """The calling thread's connection."""
        return self._connect()

    def _now(self, now: float | None) -> float:
        return self.clock() if now is None else now

    def _query(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        return list(self.db.query(sql, params))

    def _update_leased(self, job_id: int, worker_id: str, assignments: str, now: float | None,
                       **params: Any) -> bool:
        """Apply ``assignments`` to a running job, if ``worker_id`` still holds its lease."""
        cursor = self.db.execute(
            f"UPDATE jobs SET {assignments}, updated_at = :now"
            " WHERE id = :id AND state = 'running' AND lease_owner = :worker",
            {"id": job_id, "worker": worker_id, "now": self._now(now), **params},
        )
        return cursor.rowcount == 1

    @staticmethod
    def _insert_params(job: NewJob, now: float) -> tuple[Any, ...]:
        run_after = now if job.run_after is None else job.run_after
        return (job.kind, job.dedupe_key, job.connection_id, _PAYLOAD_JSON(job.payload), run_after, now, now)


def _inbox_item(job: NewJob) -> list[Any]:
    """``job`` as an inbox item; a malformed job fails the caller's write, never a later drain."""
    if type(job.kind) is not str or not job.kind or not isinstance(job.payload, dict):
        raise ValueError(f"a job needs a kind and a payload dict, got {job.kind!r}, {type(job.payload).__name__}")
    item = [job.kind, job.dedupe_key, job.connection_id, job.payload]
    if job.run_after is not None:
        item.append(job.run_after)
    return item
