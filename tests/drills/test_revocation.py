"""Drill: the user's grant is revoked in the middle of a burst (Entra "revoke sessions", AADSTS50173).

Proves that the service notices on the first failed refresh, marks the connection
``reconnect_required``, stops touching the mailbox (Graph and token calls stop after a handful), does
not retry what cannot succeed (no crash loop: the failed jobs are dead-lettered with the reason), and
keeps serving: ``/healthz`` answers and another user's mailbox is still linked.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

import pytest

from app.core.queue import JobQueue
from app.runtime import Runtime
from tests.drills.harness import FIRST_ID, VENDOR, deliver_reply, thread_ids
from tests.e2e.harness import Browser
from tests.e2e.mail import queue_idle
from tests.e2e.waiting import wait_for
from tests.tables import table

pytestmark = pytest.mark.both_engines

BURST = 30
BACKLOG = 50  # more than two workers claim at once (2 x 20 per $batch), so a third batch comes later
AFTERWARDS = 5  # replies delivered once the service has settled: they must cause no call to Microsoft


def connection_status(api, connection_id: int) -> str:
    return next(c["status"] for c in api.get("/api/connections").json()["connections"] if c["id"] == connection_id)


def calls_since(emulator, since_index: int) -> tuple[list[dict], list[dict]]:
    """(Graph calls, token-endpoint calls) the emulator received after the first ``since_index`` requests."""
    later = emulator.requests()[since_index:]
    return ([r for r in later if r["path"].startswith("/v1.0")],
            [r for r in later if r["path"].endswith("/oauth2/v2.0/token")])


def test_revocation_mid_burst_means_reconnect_required_without_a_crash_loop(service, api, megan, db, connected):
    emulator, record, connection = service.emulator, connected["record"], connected["connection"]
    admin = service.demo["users"]["contoso_admin"]
    assert Browser(service).connect(record["id"], "contoso_admin").status_code == 302
    wait_for(lambda: queue_idle(db), timeout=20, message="the second connection settled")

    def burst():
        for n in range(BURST):
            deliver_reply(emulator, megan, "revoked", n)
            time.sleep(0.05)

    sender = threading.Thread(target=burst, name="burst")
    sender.start()
    wait_for(lambda: len(thread_ids(api, record["id"])) >= 6, timeout=20, message="the burst under way")
    mark = len(emulator.requests())
    emulator.revoke_user(megan)  # 50173: tokens and refresh tokens issued before now stop working
    assert sender.is_alive(), "the burst ended before the revocation"
    wait_for(lambda: connection_status(api, connection["id"]) == "reconnect_required", timeout=20,
             message="the connection marked reconnect_required")
    sender.join()
    wait_for(lambda: queue_idle(db), timeout=20, message="no job queued or running")
    assert emulator.subscriptions.delivery.wait_idle(10)

    # No crash loop: each of the two workers (and a lifecycle job) may find out once; then silence while
    # notifications keep coming. (Typically it is one $batch answered 401 and one refused refresh.)
    graph_calls, token_calls = calls_since(emulator, mark)
    assert len(graph_calls) <= 4, [(r["method"], r["path"], r["status"]) for r in graph_calls]
    assert len(token_calls) <= 4, len(token_calls)
    settled = len(emulator.requests())
    for n in range(BURST, BURST + AFTERWARDS):  # notifications keep coming for the revoked mailbox
        deliver_reply(emulator, megan, "revoked", n)
    assert emulator.subscriptions.delivery.wait_idle(10)  # every one of them answered by the service
    wait_for(lambda: queue_idle(db), timeout=20, message="anything they queued has run")
    graph_later, token_later = calls_since(emulator, settled)
    assert graph_later == [] and token_later == [], "the service still calls Microsoft for a revoked user"

    jobs = list(db.query("SELECT kind, state, last_error FROM jobs WHERE connection_id = ? AND state = 'dead'",
                         [connection["id"]]))
    assert jobs and {job["last_error"] for job in jobs} == {"reconnect_required"}, jobs
    # Nothing acknowledged was dropped silently: a completed message job's message is on the record.
    linked = {row["graph_id"] for row in db.query("SELECT graph_id FROM message_copies")}
    skipped = [row["id"] for row in db.query(
        "SELECT id, payload FROM jobs WHERE kind = 'message' AND state = 'done' AND connection_id = ?",
        [connection["id"]]) if json.loads(row["payload"])["message_id"] not in linked]
    assert not skipped, f"{len(skipped)} message job(s) completed without linking their message"
    assert not list(db.query("SELECT 1 FROM jobs WHERE state = 'dead' AND connection_id IS DISTINCT FROM ?",
                             [connection["id"]]))
    assert table(db, "connections").get(connection["id"])["status_reason"].startswith("invalid_grant")
    ids = thread_ids(api, record["id"])
    assert len(ids) == len(set(ids))

    # The service stays healthy: liveness, and the other mailbox is still followed.
    assert api.get("/healthz").status_code == 200
    emulator.deliver_email(admin, subject="RE: Onboarding documents", body="admin here", sender=VENDOR,
                           to=["admin@contoso.example"], in_reply_to=FIRST_ID, internet_message_id="<admin.1@acme.example>")
    wait_for(lambda: "<admin.1@acme.example>" in thread_ids(api, record["id"]), timeout=15,
             message="the other user's reply linked")
    assert connection_status(api, connection["id"]) == "reconnect_required"


def test_a_backlog_acknowledged_before_the_revocation_is_dead_lettered_visibly(service, api, megan, db, connected):
    emulator, connection = service.emulator, connected["connection"]
    service.runtime.stop(timeout=10)
    for n in range(BACKLOG):
        deliver_reply(emulator, megan, "backlog", n)
    assert emulator.subscriptions.delivery.wait_idle(10)
    JobQueue(db).drain_inbox()  # the workers are stopped: move the acknowledged deliveries ourselves
    queued = list(db.query("SELECT id FROM jobs WHERE kind = 'message' AND state = 'queued'"))
    assert len(queued) >= BACKLOG, "the notifications were not all acknowledged and queued"
    emulator.revoke_user(megan)
    service.runtime = Runtime(service.app, workers=2, scheduler=False)
    service.runtime.start()
    wait_for(lambda: connection_status(api, connection["id"]) == "reconnect_required" and queue_idle(db),
             timeout=20, message="revocation noticed and the backlog settled")
    ids = {row["id"] for row in queued}
    outcomes = Counter((row["state"], row["last_error"]) for row in db.query(
        "SELECT id, state, last_error FROM jobs WHERE kind = 'message'") if row["id"] in ids)
    assert outcomes == {("dead", "reconnect_required"): len(queued)}
