"""Drill: ``kill -9`` of the service in the middle of a burst, then a restart on the same port and database.

The service runs as a real ``python -m app`` process. It is killed while a worker holds jobs and while
the emulator keeps delivering, then started again. What this proves:

- what the receiver acknowledged was in the store before the 2xx: every acknowledged notification has a job;
- deliveries the dead process refused are retried by Graph (the emulator) and taken by the new process;
- jobs that were queued are processed by the new process, and every reply is on the record exactly once;
- jobs the killed process held are re-run once their lease runs out (``app.runtime.LEASE_SECONDS``), and
  linking them again adds no duplicate.

One scenario (module fixture) serves all the tests, so the kill and restart happen once per engine: on
SQLite, and on PostgreSQL (the database outlives the process as the file does).
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from app.core.db import open_db
from app.core.queue import JobQueue
from app.records.notifications import message_dedupe_key
from app.runtime import LEASE_SECONDS, REAP_INTERVAL_SECONDS
from emulator import Emulator
from tests.drills.harness import (
    ServiceProcess,
    assert_exactly_once,
    deliver_reply,
    job_states,
    reply_id,
    start_conversation,
    thread_ids,
    wait_for_replies,
)
from tests.e2e.harness import Browser
from tests.e2e.mail import queue_idle
from tests.e2e.waiting import wait_for

BURST = 60
GRAPH_LATENCY_MS = 500  # each $batch takes at least this long, so the kill reliably lands while jobs are in hand
# A held job's lease was last extended at most a third of a lease before the kill; a reap pass then
# notices within REAP_INTERVAL_SECONDS; the rest is slack for the restart and the work itself.
RECOVERY_SECONDS = LEASE_SECONDS + REAP_INTERVAL_SECONDS + 8.0


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def crash(request, tmp_path_factory):
    """Connect, start a burst, SIGKILL the service while it holds jobs, restart it, let the burst finish."""
    postgres = request.getfixturevalue("postgres_server") if request.param == "postgresql" else None
    url = postgres.fresh_database() if postgres else None
    emulator = Emulator().start()
    # One worker: its $batch stays within the mailbox's 4 concurrent requests, so it is never throttled
    # back to the queue and is reliably caught holding its jobs.
    service = ServiceProcess(emulator, tmp_path_factory.mktemp("crash"), database_url=url, WORKER_THREADS=1).start()
    db = open_db(service.database)
    try:
        megan = service.demo["users"]["megan"]
        record = start_conversation(service, emulator, megan)
        assert Browser(service).connect(record["id"], "megan").status_code == 302
        wait_for(lambda: list(db.query("SELECT 1 FROM subscriptions WHERE status = 'active'"))
                 and queue_idle(db),
                 timeout=20, message="subscribed, backfilled and reconciled")
        [connection] = service.get("/api/connections").json()["connections"]
        emulator.set_graph_latency(GRAPH_LATENCY_MS)

        graph_ids: dict[str, str] = {}  # Graph immutable id -> Internet Message-ID
        done_sending = threading.Event()

        def burst():
            for n in range(BURST):
                graph_ids[deliver_reply(emulator, megan, "crash", n)["@emulator.immutableId"]] = reply_id("crash", n)
                time.sleep(0.05)
            done_sending.set()

        sender = threading.Thread(target=burst, name="burst")
        sender.start()
        wait_for(lambda: len(thread_ids(service, record["id"])) >= 4, timeout=20, message="the burst under way")
        wait_for(lambda: job_states(db, "message").get("running"), timeout=10, interval=0.005,
                 message="a worker holding jobs")
        service.kill()
        killed_at = time.monotonic()
        in_hand = list(db.query("SELECT id, payload, lease_owner FROM jobs WHERE state = 'running'"))
        states_at_kill = job_states(db, "message")
        sending_at_kill = not done_sending.is_set()
        emulator.set_graph_latency(None)

        service.start()
        restarted_at = time.monotonic()
        sender.join()
        assert emulator.subscriptions.delivery.wait_idle(20)
        yield {"emulator": emulator, "service": service, "db": db, "record": record, "connection": connection,
               "graph_ids": graph_ids, "in_hand": in_hand, "states_at_kill": states_at_kill,
               "sending_at_kill": sending_at_kill, "killed_at": killed_at, "restarted_at": restarted_at}
    finally:
        db.close()
        service.stop()
        emulator.stop()
        if postgres:
            postgres.drop(url)


def acknowledged_items(emulator: Emulator) -> list[dict]:
    return [item for attempt in emulator.subscriptions.delivery.attempts()
            if attempt.status is not None and 200 <= attempt.status < 300 for item in attempt.value
            if "resourceData" in item]


def test_the_kill_landed_mid_burst_with_work_in_hand(crash):
    assert crash["sending_at_kill"], "the burst had ended before the kill"
    assert crash["in_hand"], f"no job was in hand at the kill: {crash['states_at_kill']}"
    refused = [a for a in crash["emulator"].subscriptions.delivery.attempts() if a.status is None]
    assert refused, "no delivery hit the dead service"
    assert crash["restarted_at"] - crash["killed_at"] < 10


def test_every_acknowledged_notification_was_persisted_and_nothing_was_given_up(crash):
    emulator, db, connection = crash["emulator"], crash["db"], crash["connection"]
    assert emulator.subscriptions.delivery.abandoned == 0, "Graph gave up on deliveries: the restart came too late"
    JobQueue(db).drain_inbox()  # acknowledged deliveries not yet claimed count as persisted
    keys = {row["dedupe_key"] for row in db.query("SELECT dedupe_key FROM jobs WHERE kind = 'message'")}
    acknowledged = acknowledged_items(emulator)
    data = [item["resourceData"] for item in acknowledged]
    missing = [d["id"] for d in data if message_dedupe_key(connection["id"], d["id"], d["@odata.etag"]) not in keys]
    assert acknowledged and not missing, f"{len(missing)} acknowledged notification(s) left no job"


def test_work_not_in_the_dead_process_s_hand_is_processed_exactly_once_after_restart(crash):
    service, db, record = crash["service"], crash["db"], crash["record"]
    in_hand = {row["id"] for row in crash["in_hand"]}
    # Replies whose every job died with the process wait for their lease; every other one must be linked.
    jobs_by_reply: dict[str, set[int]] = {}
    JobQueue(db).drain_inbox()
    for row in db.query("SELECT id, payload FROM jobs WHERE kind = 'message'"):
        graph_id = json.loads(row["payload"]).get("message_id")
        if graph_id in crash["graph_ids"]:
            jobs_by_reply.setdefault(crash["graph_ids"][graph_id], set()).add(row["id"])
    expected = {reply for reply, jobs in jobs_by_reply.items() if not jobs <= in_hand}
    assert len(jobs_by_reply) == BURST, "some replies never produced a notification job"
    wait_for_replies(service, record["id"], expected, timeout=20)
    wait_for(lambda: JobQueue(db).stats().by_state["queued"] == 0, timeout=20,
             message="nothing left queued")
    assert_exactly_once(thread_ids(service, record["id"]), expected)
    # "Nothing queued" can be seen while the new process still holds its last claim; stuck means it stays held.
    wait_for(lambda: {row["id"] for row in db.query("SELECT id FROM jobs WHERE state = 'running'")} <= in_hand,
             timeout=20, message="no job of the new process stuck running")
    assert job_states(db).get("dead", 0) == 0, list(db.query("SELECT kind, last_error FROM jobs WHERE state = 'dead'"))
    assert service.get("/healthz").status_code == 200


def test_jobs_the_killed_process_held_are_rerun_promptly_after_restart(crash):
    service, db, record = crash["service"], crash["db"], crash["record"]
    deadline = crash["killed_at"] + RECOVERY_SECONDS
    expected = set(crash["graph_ids"].values())
    wait_for_replies(service, record["id"], expected, timeout=max(0.0, deadline - time.monotonic()))
    wait_for(lambda: queue_idle(db), timeout=max(0.0, deadline - time.monotonic()),
             message="the dead process's jobs re-run")
    assert_exactly_once(thread_ids(service, record["id"]), expected)
    assert len(thread_ids(service, record["id"])) == BURST + 1
    in_hand = {row["id"] for row in crash["in_hand"]}
    rerun = [row for row in db.query("SELECT id, state, attempts FROM jobs") if row["id"] in in_hand]
    assert rerun and all(row["state"] == "done" and row["attempts"] >= 2 for row in rerun), rerun
    assert job_states(db).get("dead", 0) == 0
