"""Heartbeats: each worker (and the readiness probe's write test) stamps its row; readiness reads them."""

from __future__ import annotations

from sqlite_utils import Database

PROBE = "readiness-probe"  # the row /readyz writes to prove the database takes writes; not a worker


def beat(db: Database, name: str, now: float) -> None:
    """Record that ``name`` is alive at ``now``."""
    db.execute("INSERT INTO heartbeats (name, beat_at) VALUES (?, ?)"
               " ON CONFLICT (name) DO UPDATE SET beat_at = excluded.beat_at", [name, now])


def latest_worker_beat(db: Database) -> float | None:
    """When a worker last reported in (epoch seconds), or None if none ever did."""
    return list(db.query("SELECT max(beat_at) AS beat FROM heartbeats WHERE name != ?", [PROBE]))[0]["beat"]
