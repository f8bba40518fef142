"""The production layout on PostgreSQL: web processes under gunicorn, workers as ``flask --app wsgi worker``,
nothing shared between them but the database.

A person connects through the web processes, replies arrive as Graph's notifications at the web processes,
and worker processes on their own link each one exactly once and send mail queued through the API; one
scheduler leads at a time.
"""

from __future__ import annotations

import time
import uuid

import pytest

from app.core import leases
from app.core.db import open_db
from subscriptions.leader import LEASE_NAME
from tests.drills.harness import (
    WEB,
    WORKER,
    ServiceProcess,
    assert_exactly_once,
    deliver_reply,
    reply_id,
    start_conversation,
    wait_for_replies,
)
from tests.e2e.harness import Browser
from tests.e2e.waiting import wait_for

REPLIES = 40


@pytest.fixture
def layout(emulator, tmp_path, postgres_server):
    url = postgres_server.fresh_database()
    web = ServiceProcess(emulator, tmp_path, database_url=url, command=WEB, WEB_PROCESSES=2)
    workers = [ServiceProcess(emulator, tmp_path, database_url=url, command=WORKER, like=web) for _ in range(2)]
    for process in (web, *workers):
        process.start(timeout=30)
    db = open_db(url)
    yield {"web": web, "workers": workers, "db": db}
    db.close()
    for process in (web, *workers):
        process.stop()
    postgres_server.drop(url)


def test_web_and_worker_processes_share_only_the_database(layout, emulator):
    web, workers, db = layout["web"], layout["workers"], layout["db"]
    megan = web.demo["users"]["megan"]
    record = start_conversation(web, emulator, megan)
    assert Browser(web).connect(record["id"], "megan").status_code == 302
    wait_for(lambda: list(db.query("SELECT 1 FROM subscriptions WHERE status = 'active'")), timeout=30,
             message="subscribed by a worker process")
    for n in range(REPLIES):
        deliver_reply(emulator, megan, "layout", n)
    expected = {reply_id("layout", n) for n in range(REPLIES)}
    ids = wait_for_replies(web, record["id"], expected, timeout=60)
    assert_exactly_once(ids, expected)

    [connection] = web.get("/api/connections").json()["connections"]
    rv = web.post(f"/api/records/{record['id']}/messages", headers={"Idempotency-Key": str(uuid.uuid4())},
                  json={"connection_id": connection["id"], "to": [], "reply": True,
                        "body": "Thanks, we have the documents."})
    assert rv.status_code == 202, rv.text
    outbox_id = rv.json()["id"]
    wait_for(lambda: web.get(f"/api/outbox/{outbox_id}").json()["status"] == "sent", timeout=30,
             message="the send sent by a worker process")
    assert len([m for m in emulator.mail.outbound if m.get("userId") == megan]) == 1

    # One scheduler leads: a worker process (the web processes run none).
    holder = wait_for(lambda: leases.holder(db, LEASE_NAME, time.time()), timeout=10, message="a scheduler leader")
    assert [worker for worker in workers if f":{worker.process.pid}:" in holder] != []
