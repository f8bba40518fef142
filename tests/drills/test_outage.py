"""Drill: Graph is down (every call answers 503) while replies keep arriving, then comes back.

Proves that notifications are still acknowledged and kept during the outage, that the workers back off
instead of giving up (no dead letters after several failed attempts each), and that the backlog drains
once Graph answers again, every reply on the record exactly once.
"""

from __future__ import annotations

import time

import pytest

from tests.drills.harness import (
    assert_exactly_once,
    deliver_reply,
    job_states,
    reply_id,
    thread_ids,
    wait_for_replies,
)
from tests.e2e.mail import queue_idle
from tests.e2e.waiting import wait_for

pytestmark = pytest.mark.both_engines

BURST = 30
FAILED_ATTEMPTS = 2  # the outage lasts until every message job has failed this often
DRAIN_SECONDS = 20.0  # after recovery: the next attempt comes at most 2 s * 2**(attempts - 1) later


def test_backlog_built_during_a_graph_outage_drains_when_graph_returns(service, api, megan, db, connected):
    emulator, record = service.emulator, connected["record"]
    emulator.add_graph_fault(503, rate=1.0, retry_after=1)
    started = time.monotonic()
    for n in range(BURST):
        deliver_reply(emulator, megan, "outage", n)
    assert emulator.subscriptions.delivery.wait_idle(10)

    def all_failed_enough():
        rows = list(db.query("SELECT state, min(attempts) AS fewest, count(*) AS n FROM jobs WHERE kind = 'message' "
                             "GROUP BY state"))
        return rows if rows and all(r["state"] == "queued" and r["fewest"] >= FAILED_ATTEMPTS for r in rows) else None

    [backlog] = wait_for(all_failed_enough, timeout=30, message=f"every job failed {FAILED_ATTEMPTS} times")
    assert backlog["n"] >= BURST
    assert thread_ids(api, record["id"]) == ["<first.1@acme.example>"]
    outage = time.monotonic() - started
    emulator.clear_faults()
    recovered = time.monotonic()

    expected = {reply_id("outage", n) for n in range(BURST)}
    wait_for_replies(api, record["id"], expected, timeout=DRAIN_SECONDS)
    wait_for(lambda: queue_idle(db), timeout=DRAIN_SECONDS, message="no job queued or running")
    drained = time.monotonic() - recovered
    assert_exactly_once(thread_ids(api, record["id"]), expected)
    assert job_states(db).get("dead", 0) == 0, list(db.query("SELECT kind, last_error FROM jobs WHERE state = 'dead'"))
    assert drained < DRAIN_SECONDS, f"outage {outage:.1f} s, drained {drained:.1f} s after recovery"
    assert api.get("/healthz").status_code == 200
