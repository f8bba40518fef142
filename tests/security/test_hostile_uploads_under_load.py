"""Hostile uploads against the real service on loopback (waitress, 8 threads): fast answers, no 500s.

Before the content limits, eight such uploads held every web thread for minutes, and one upload
with 700,000 ``References`` ids held the write lock for ~24 s, so concurrent writes failed with
500 "database is locked".
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from app.core.db import store_location, thread_db
from tests.conftest import API_TOKEN
from tests.e2e.harness import ServiceServer
from tests.security.mail_support import email
from tests.tables import table

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
UNTERMINATED_TAGS = email(b"Content-Type: text/html", body=b"\r\n" + b"<a " * 50_000)  # 150 KB
HUGE_TO = email(b"To: " + b"someone@vendor.example, " * 75_000)  # 1.8 MB


@pytest.fixture
def service(emulator, app_config):
    server = ServiceServer(emulator, app_config, workers=1).start()
    yield server
    server.stop()


def new_record(service) -> int:
    rv = requests.post(service.url("/api/records"), json={"title": "Acme"}, headers=AUTH, timeout=10)
    assert rv.status_code == 201
    return rv.json()["id"]


def timed_upload(service, record_id: int, raw: bytes) -> tuple[int, float, dict]:
    start = time.perf_counter()
    rv = requests.post(service.url(f"/api/records/{record_id}/emails"), data=raw, timeout=10,
                       headers={**AUTH, "Content-Type": "message/rfc822"})
    return rv.status_code, time.perf_counter() - start, rv.json()


def test_eight_hostile_uploads_at_once_are_each_answered_within_two_seconds(service):
    record = new_record(service)
    uploads = [UNTERMINATED_TAGS.replace(b"<hostile@", b"<tags-%d@" % i) for i in range(4)] + [HUGE_TO] * 4
    with ThreadPoolExecutor(len(uploads)) as pool:
        answers = list(pool.map(lambda raw: timed_upload(service, record, raw), uploads))
    assert [status for status, _, _ in answers] == [201] * 4 + [422] * 4
    assert max(took for _, took, _ in answers) < 2.0, [round(took, 2) for _, took, _ in answers]
    assert answers[0][2]["body_preview"].startswith("<a <a <a")
    assert "The To header is over 100 KB" in answers[-1][2]["error"]["message"]


def test_a_700k_references_upload_is_refused_fast_while_concurrent_writes_succeed(service):
    record = new_record(service)
    raw = email(b"References: " + b" ".join(b"<%d@x>" % i for i in range(700_000)))
    statuses: list[int] = []
    done = threading.Event()

    def keep_writing():
        while not done.is_set():
            statuses.append(requests.post(service.url("/api/records"), json={"title": "concurrent"},
                                          headers=AUTH, timeout=30).status_code)

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        status, took, body = timed_upload(service, record, raw)
        time.sleep(0.2)  # writes go on after the upload, too
    finally:
        done.set()
        writer.join(30)
    assert (status, body["error"]["code"]) == (422, "invalid_email") and "References header" in body["error"]["message"]
    assert took < 2.0
    assert statuses and set(statuses) == {201}
    db = thread_db(store_location(service.app.config))
    assert table(db, "thread_message_ids").count == 0
