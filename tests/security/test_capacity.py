"""Slow requests never take the request threads Graph's deliveries need.

The service runs as its own process with its default eight request threads, and the test holds
SQLite's write lock, as a long write elsewhere would: every upload then waits on ``busy_timeout``
(10 s) inside a request thread. Eight such uploads used to hold all eight threads, and Graph's
deliveries queued behind them past Graph's 3 s deadline. The last test pins the waiting rule of
:class:`app.web.capacity.CapacityLimit` on its own.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from email.message import EmailMessage

import requests
from werkzeug.test import Client, TestResponse

from app.web.capacity import CapacityLimit
from tests.drills.harness import ServiceProcess
from tests.e2e.waiting import wait_for

ACK_BOUND_SECONDS = 1.0
UPLOADS = 8  # WEB_THREADS' default; two threads are reserved, so six run and two are refused


def email(n: int) -> bytes:
    message = EmailMessage()
    message["Message-ID"] = f"<upload.{n}@acme.example>"
    message["From"] = "Dana Whitfield <dana@acme.example>"
    message["To"] = "Megan Bowen <megan@contoso.example>"
    message["Subject"] = f"Onboarding documents, part {n}"
    message["Date"] = "Tue, 03 Nov 2026 09:00:00 +0000"
    message.set_content("Attached are our W-9 and banking details.")
    return bytes(message)


def timed(call) -> tuple[float, requests.Response]:
    started = time.monotonic()
    try:
        answer = call()
    except requests.Timeout as e:
        raise AssertionError(f"no answer after {time.monotonic() - started:.1f} s: {e}") from None
    return time.monotonic() - started, answer


def test_webhook_answers_within_1_s_while_uploads_wait_on_a_locked_database(emulator, tmp_path):
    service = ServiceProcess(emulator, tmp_path).start()
    lock = sqlite3.connect(service.database, isolation_level=None)
    uploads: list[tuple[float, requests.Response]] = []
    try:
        record = service.post("/api/records", json={"title": "Acme vendor file"}).json()
        lock.execute("BEGIN IMMEDIATE")  # every write now waits, up to busy_timeout

        def upload(n: int) -> None:
            uploads.append(timed(lambda: service.post(f"/api/records/{record['id']}/emails", data=email(n),
                                                      headers={"Content-Type": "message/rfc822"})))

        senders = [threading.Thread(target=upload, args=(n,)) for n in range(UPLOADS)]
        for sender in senders:
            sender.start()
        deadline = time.monotonic() + 3
        while len(uploads) < 2 and time.monotonic() < deadline:  # the uploads over the limit are refused at once
            time.sleep(0.05)

        elapsed, answer = timed(lambda: requests.post(service.url("/webhooks/graph?validationToken=still-here"),
                                                      timeout=3))
        assert answer.text == "still-here" and elapsed < ACK_BOUND_SECONDS, elapsed
        elapsed, answer = timed(lambda: requests.get(service.url("/healthz"), timeout=3))
        assert answer.status_code == 200 and elapsed < ACK_BOUND_SECONDS, elapsed

        api = timed(lambda: service.get(f"/api/records/{record['id']}"))
        page = timed(lambda: requests.get(service.url(f"/records/{record['id']}"), headers={"Accept": "text/html"},
                                          timeout=3))
        for elapsed, answer in (api, page):  # over the limit: told so at once, never left hanging
            assert answer.status_code == 503 and elapsed < ACK_BOUND_SECONDS, (elapsed, answer.text)
            assert answer.headers["Retry-After"].isdigit()
        assert api[1].json()["error"]["code"] == "busy"
        assert page[1].headers["Content-Type"].startswith("text/html")

        lock.execute("ROLLBACK")
        for sender in senders:
            sender.join(15)
        assert sorted(answer.status_code for _, answer in uploads) == [201] * (UPLOADS - 2) + [503] * 2
        assert service.get(f"/api/records/{record['id']}").status_code == 200  # the slots were given back
    finally:
        if lock.in_transaction:
            lock.execute("ROLLBACK")
        lock.close()
        service.stop()


def test_a_request_over_the_limit_waits_briefly_for_a_slot_and_only_one_waits_at_a_time():
    """Four threads, two of them reserved: two requests run, one more may wait for a slot, another is refused."""
    entered, release = threading.Semaphore(0), threading.Event()

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/slow":
            entered.release()
            release.wait(5)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"done"]

    client = Client(CapacityLimit(app, threads=4, large_body_bytes=1000, wait=2.0,
                                  headers=[("X-Content-Type-Options", "nosniff")]))
    answers: list[tuple[str, float, TestResponse]] = []

    def call(path: str) -> None:
        answer = client.get(path, headers={"Accept": "application/json"})
        answers.append((path, time.monotonic(), answer))

    callers = [threading.Thread(target=call, args=(path,)) for path in ("/slow", "/slow", "/fast", "/fast")]
    for caller in callers[:2]:
        caller.start()
    assert entered.acquire(timeout=5) and entered.acquire(timeout=5)  # both slots taken
    for caller in callers[2:]:
        caller.start()
    wait_for(lambda: len(answers) == 1, timeout=5)  # one was refused at once; the other is waiting
    released_at = time.monotonic()
    release.set()
    for caller in callers:
        caller.join(5)

    fast = sorted(((answer.status_code, at) for path, at, answer in answers if path == "/fast"))
    assert [status for status, _ in fast] == [200, 503]
    assert fast[0][1] > released_at > fast[1][1], "one waited for a slot, the other was refused at once"
    [refused] = [answer for _, _, answer in answers if answer.status_code == 503]
    assert refused.json["error"]["code"] == "busy" and refused.headers["Retry-After"] == "1"
    assert refused.headers["X-Content-Type-Options"] == "nosniff"  # the security headers, as on every answer
    assert [answer.status_code for path, _, answer in answers if path == "/slow"] == [200, 200]


def test_only_two_large_bodies_are_taken_in_at_once_and_a_third_is_told_to_retry():
    """A send carrying files costs several times its size in memory while it is checked: a third large
    body waits its turn (503, Retry-After) while small requests still run."""
    entered, release = threading.Semaphore(0), threading.Event()

    def app(environ, start_response):
        environ["wsgi.input"].read()
        if environ["PATH_INFO"] == "/slow":
            entered.release()
            release.wait(5)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"done"]

    client = Client(CapacityLimit(app, threads=16, large_body_bytes=1000))
    answers: dict[str, int] = {}

    def call(name: str, path: str, size: int) -> None:
        answers[name] = client.post(path, data=b"x" * size, headers={"Accept": "application/json"}).status_code

    large = [threading.Thread(target=call, args=(f"large{n}", "/slow", 5000)) for n in range(2)]
    for caller in large:
        caller.start()
    assert entered.acquire(timeout=5) and entered.acquire(timeout=5)  # two large bodies being taken in
    call("third large", "/fast", 5000)
    call("small", "/fast", 500)
    release.set()
    for caller in large:
        caller.join(5)
    assert answers == {"large0": 200, "large1": 200, "third large": 503, "small": 200}
    call("large again", "/fast", 5000)
    assert answers["large again"] == 200  # the places were given back
