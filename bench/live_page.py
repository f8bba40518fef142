"""What an open record page costs while nothing changes: its live check against ``/healthz``.

An open record page asks ``/records/{id}/live`` every 1.5 s (:mod:`app.web.pages`, ``static/live.js``)
and is answered 304 while the record is unchanged. This times that check through the whole Flask app
(the person's session, the organization check, the record's version), side by side with ``/healthz``
(the cheapest answer the app gives) in alternating rounds, the fastest round of each counting, and
counts the bytes each check moves. The record holds a thread of 50 messages with attachments and 10
sends, so the version's lookups have rows to look at.

    python -m bench.live_page
"""

from __future__ import annotations

import json
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

from app import create_app
from app.core.db import store_location, thread_db
from app.records.threads import store_upload
from bench.ack import service_config
from tests.forms import sign_in_person

ROUNDS = 15
REQUESTS_PER_ROUND = 200
CHECK_INTERVAL_S = 1.5  # live.js, while the tab is visible
THREAD_MESSAGES = 50


def _seed(app: Any) -> int:
    """A record with a thread of messages, each with a small attachment."""
    db = thread_db(store_location(app.config))
    record_id = db.execute("INSERT INTO records (title, organization_id, created_at) VALUES ('Bench', 1, '2026-12-04')"
                           " RETURNING id").fetchone()[0]
    for number in range(THREAD_MESSAGES):
        email = EmailMessage()
        email["From"], email["Message-ID"] = "dana@vendor.example", f"<bench-{number}@vendor.example>"
        email.set_content(f"Message {number}")
        email.add_attachment(b"%PDF-1.4 " * 50, maintype="application", subtype="pdf", filename=f"form-{number}.pdf")
        store_upload(db, record_id, bytes(email))
    return record_id


def _round(client: Any, path: str, headers: dict[str, str]) -> tuple[float, int]:
    """Seconds per request over one round, and the status of the last answer."""
    started = time.perf_counter()
    for _ in range(REQUESTS_PER_ROUND):
        rv = client.get(path, headers=headers)
    return (time.perf_counter() - started) / REQUESTS_PER_ROUND, rv.status_code


def _wire_bytes(rv: Any) -> int:
    """The answer's size on the wire: status line, headers, body."""
    head = f"HTTP/1.1 {rv.status}\r\n" + "".join(f"{name}: {value}\r\n" for name, value in rv.headers.items())
    return len(head.encode()) + 2 + len(rv.data)


def run() -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
        config = service_config(str(Path(tmp) / "live.db"), Fernet.generate_key().decode(), 8)
        app = create_app(config)
        record_id = _seed(app)
        client = app.test_client()
        sign_in_person(client)
        path = f"/records/{record_id}/live"
        first = client.get(path)
        unchanged = {"If-None-Match": first.headers["ETag"]}
        live, bare = [], []
        for _ in range(ROUNDS):
            seconds, status = _round(client, path, unchanged)
            assert status == 304, status
            live.append(seconds)
            bare.append(_round(client, "/healthz", {})[0])
        answer = client.get(path, headers=unchanged)
        request_bytes = len(f"GET {path} HTTP/1.1\r\nHost: records.example\r\nCookie: session=…\r\n"
                            f"If-None-Match: {first.headers['ETag']}\r\n\r\n".encode()) + len(client.get_cookie(
                                "session").value)
    check_ms, healthz_ms = min(live) * 1000, min(bare) * 1000
    return {"live_check_ms": check_ms, "live_healthz_ms": healthz_ms, "live_check_to_healthz": check_ms / healthz_ms,
            "live_answer_bytes": _wire_bytes(answer), "live_request_bytes": request_bytes,
            "live_requests_per_s_per_page": 1 / CHECK_INTERVAL_S,
            "live_bytes_per_s_per_page": (_wire_bytes(answer) + request_bytes) / CHECK_INTERVAL_S,
            "live_cpu_ms_per_s_per_page": check_ms / CHECK_INTERVAL_S}


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
