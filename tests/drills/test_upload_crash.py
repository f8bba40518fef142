"""Drill: ``kill -9`` of the service while it uploads a 10 MB attachment in ranges, then a restart.

The send's job dies with the process after the first 4 MB range was accepted, so Graph holds a draft
with an unfinished upload session (which leaves no attachment on it). Once the job's lease runs out the
new process finds its own draft by id, sees the file is not on it, uploads it again whole in a new
session and sends. What this proves: the message is sent exactly once, with one copy of the file, byte
for byte, and nothing is left in Drafts.
"""

from __future__ import annotations

import base64
import time

import pytest

from app.core.db import open_db
from app.runtime import LEASE_SECONDS, REAP_INTERVAL_SECONDS
from emulator import Emulator
from tests.drills.harness import ServiceProcess, start_conversation
from tests.e2e.harness import Browser
from tests.e2e.mail import queue_idle
from tests.e2e.waiting import wait_for

CONTENT = bytes(range(256)) * (10 * 4096)  # 10 MiB: three ranges of at most 4 MiB
GRAPH_LATENCY_MS = 400  # each range takes this long, so the kill lands while the upload is unfinished
RECOVERY_SECONDS = LEASE_SECONDS + REAP_INTERVAL_SECONDS + 15.0


def upload_puts(emulator: Emulator) -> list[dict]:
    return [r for r in emulator.requests(method="PUT") if "AttachmentSessions" in r["path"]]


def sends(emulator: Emulator) -> list[dict]:
    return [r for r in emulator.requests(method="POST") if r["path"].endswith("/send")]


@pytest.fixture(scope="module")
def crash(tmp_path_factory):
    """Connect, ask for a send with a 10 MB file, SIGKILL the service after its first range, restart it."""
    emulator = Emulator().start()
    service = ServiceProcess(emulator, tmp_path_factory.mktemp("upload-crash")).start()
    db = open_db(service.database)
    try:
        megan = service.demo["users"]["megan"]
        record = start_conversation(service, emulator, megan)
        assert Browser(service).connect(record["id"], "megan").status_code == 302
        wait_for(lambda: queue_idle(db), timeout=20, message="backfilled and reconciled")
        [connection] = service.get("/api/connections").json()["connections"]
        emulator.set_graph_latency(GRAPH_LATENCY_MS)
        rv = service.post(f"/api/records/{record['id']}/messages", headers={"Idempotency-Key": "scan-1"}, json={
            "connection_id": connection["id"], "to": ["dana@acme.example"], "subject": "Signed scan",
            "body": "The signed contract, scanned.", "attachments": [
                {"name": "contract.tif", "content_type": "image/tiff",
                 "content_base64": base64.b64encode(CONTENT).decode()}]})
        assert rv.status_code == 202, rv.text
        outbox_id = rv.json()["id"]
        wait_for(lambda: [r for r in upload_puts(emulator) if r["status"] == 200], timeout=30, interval=0.005,
                 message="the first range accepted")
        service.kill()
        killed_at = time.monotonic()
        [row] = db.query("SELECT status FROM outbox WHERE id = ?", [outbox_id])
        at_kill = {"puts": len(upload_puts(emulator)), "status": row["status"], "sends": len(sends(emulator))}
        emulator.set_graph_latency(None)
        service.start()
        yield {"emulator": emulator, "service": service, "db": db, "megan": megan, "outbox_id": outbox_id,
               "at_kill": at_kill, "killed_at": killed_at}
    finally:
        db.close()
        service.stop()
        emulator.stop()


def test_the_kill_landed_with_the_upload_unfinished_and_nothing_sent(crash):
    assert crash["at_kill"]["status"] == "sending"
    assert crash["at_kill"]["sends"] == 0
    assert 1 <= crash["at_kill"]["puts"] < 3, "the upload had finished before the kill"


def test_after_the_restart_the_message_is_sent_once_with_one_whole_copy_of_the_file(crash):
    emulator, service, megan = crash["emulator"], crash["service"], crash["megan"]
    deadline = crash["killed_at"] + RECOVERY_SECONDS
    outbox = wait_for(lambda: (lambda o: o if o["status"] == "sent" else None)(
        service.get(f"/api/outbox/{crash['outbox_id']}").json()),
        timeout=max(0.0, deadline - time.monotonic()), message="the send finished after the restart")
    assert len(sends(emulator)) == 1
    mailbox = emulator.mail.mailbox(megan)
    [sent] = mailbox.by_internet_id(outbox["internet_message_id"])
    assert sent.folder_id == mailbox.folder("sentitems").id
    assert [(a.name, a.content) for a in sent.attachments] == [("contract.tif", CONTENT)]
    drafts = mailbox.folder("drafts").id
    assert [m.subject for m in mailbox.messages() if m.folder_id == drafts] == []
    wait_for(lambda: queue_idle(crash["db"]), timeout=20, message="the queue settled")
    assert not list(crash["db"].query("SELECT kind, last_error FROM jobs WHERE state = 'dead'"))


def test_the_file_was_uploaded_again_from_its_first_byte(crash):
    puts = upload_puts(crash["emulator"])
    sessions: dict[str, list[str]] = {}
    for put in puts:
        sessions.setdefault(put["path"], []).append(put["headers"]["Content-Range"])
    assert len(sessions) == 2, sessions
    first, second = sessions.values()
    total = len(CONTENT)
    assert first[0].startswith("bytes 0-") and len(first) < 3
    assert second == [f"bytes 0-{4 * 2**20 - 1}/{total}", f"bytes {4 * 2**20}-{8 * 2**20 - 1}/{total}",
                      f"bytes {8 * 2**20}-{total - 1}/{total}"]
