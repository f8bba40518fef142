"""A record's conversation as the end-to-end tests build and read it: the vendor, Megan, uploads and threads."""

from __future__ import annotations

from email.message import EmailMessage

from app.core.queue import JobQueue
from tests.e2e.waiting import wait_for

VENDOR = {"name": "Dana Whitfield", "address": "dana@acme.example"}
MEGAN = "megan@contoso.example"


def upload(api, record_id, message_id="<first.1@acme.example>", subject="Onboarding documents"):
    email = EmailMessage()
    email["Message-ID"] = message_id
    email["From"] = "Dana Whitfield <dana@acme.example>"
    email["To"] = f"Megan Bowen <{MEGAN}>"
    email["Subject"] = subject
    email["Date"] = "Tue, 03 Nov 2026 09:00:00 +0000"
    email.set_content("Attached are our W-9 and banking details.")
    rv = api.post(f"/api/records/{record_id}/emails", data=bytes(email),
                  headers={"Content-Type": "message/rfc822"})
    assert rv.status_code == 201, rv.text
    return rv.json()


def linked_copies(db):
    return list(db.query("SELECT * FROM message_copies"))


def thread(api, record_id):
    rv = api.get(f"/api/records/{record_id}/thread")
    assert rv.status_code == 200
    return rv.json()["messages"]


def wait_for_thread(api, record_id, count, timeout=30.0):
    return wait_for(lambda: (lambda messages: messages if len(messages) >= count else None)(thread(api, record_id)),
                    timeout=timeout, message=f"{count} thread messages")


def pending_work(db) -> int:
    """Every job ever queued and not yet pruned, plus deliveries still in the receiver's inbox."""
    return sum(JobQueue(db).stats().by_state.values())


def queue_idle(db) -> bool:
    """No job queued or running, and no delivery left in the receiver's inbox."""
    states = JobQueue(db).stats().by_state
    return states["queued"] + states["running"] == 0
