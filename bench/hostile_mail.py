"""Hostile mail inside the service: ``python -m bench.hostile_mail`` prints the figures.

(:mod:`bench.hostile` sends hostile uploads over the wire while Graph delivers.)

- parse time of hostile uploads near the 10 MB limit (the slowest of them is shown);
- the longest write transaction of the worst upload the limits accept (100 KB of ``References``,
  1,000 recipients in each of From, To and Cc, a 1 MB HTML body), posted through the API of an
  in-process app;
- the thread API's sanitizer on hostile 1 MB HTML bodies (the stored cap): the slowest.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

import app.records.threads
from app import create_app
from app.core.db import close_thread_dbs
from app.records.mail_html import sanitized_html
from app.records.rfc822 import InvalidEmail, parse_email
from bench.ack import service_config

AUTH = {"Authorization": "Bearer bench"}  # bench.ack.service_config's API token
MID = b"Message-ID: <hostile@sender.example>\r\n"
MB = 1024 * 1024


def hostile_uploads() -> dict[str, bytes]:
    html = MID + b"Content-Type: text/html\r\n\r\n"
    nest = b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i) for i in range(170_000))
    return {
        "quoted strings in From, To, Cc (100 KB each)": MID + b"".join(
            name + b": " + b'"a' * 50_000 + b"\r\n" for name in (b"From", b"To", b"Cc")) + b"\r\nhi",
        "Content-Type parameters (100 KB)": MID + b"Content-Type: text/plain; " + b"a=b; " * 20_000 + b"\r\n\r\nhi",
        "10,000 header fields": MID + (b"X-A: " + b"b" * 93 + b"\r\n") * 9_990 + b"\r\nhi",
        "10 MB of unterminated <a": html + b"<a " * (10 * MB // 3),
        "10 MB of <!--": html + b"<!--" * (10 * MB // 4),
        "10 MB of <div>": html + b"<div>" * (10 * MB // 5),
        "10 MB of empty parts": MID + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + b"--b\r\n\r\n" * (10 * MB // 7),
        "10 MB of nested multiparts": MID + nest + b"Content-Type: text/plain\r\n\r\nhi\r\n",
        "10 MB of empty lines": MID + b"\r\n" + b"\r\n" * (5 * MB),
    }


def parse_times() -> dict[str, float]:
    times = {}
    for name, raw in hostile_uploads().items():
        start = time.perf_counter()
        with contextlib.suppress(InvalidEmail):
            parse_email(raw)
        times[name] = time.perf_counter() - start
    return times


def pad(markup: str) -> str:
    return markup + "x" * (MB - len(markup))


def sanitize_times() -> dict[str, float]:
    bodies = {"9,998 nested <div>": pad("<div>" * 9_998), "a & in one text": "a & " * (MB // 4),
              "formatting re-opened in 3,000 paragraphs": pad("<p>" + "".join(f"<b id={i}>" for i in range(3_000))
                                                              + "</p>" + "<p>x</p>" * 3_000),
              "<div> * 200,000 (text rendering)": "<div>" * (MB // 5), "< * 1M": "<" * MB}
    times = {}
    for name, markup in bodies.items():
        start = time.perf_counter()
        sanitized_html(markup)
        times[name] = time.perf_counter() - start
    return times


def longest_write_transaction(client: Any) -> dict[str, Any]:
    """The worst upload the limits accept, through the API: its answer time and how long its
    transaction held the write lock (timed from ``BEGIN IMMEDIATE`` to ``COMMIT``)."""
    held: list[float] = []
    real = app.records.threads.write_transaction

    @contextlib.contextmanager
    def timed(db):
        with real(db) as inner:
            start = time.perf_counter()
            yield inner
        held.append(time.perf_counter() - start)

    references = b" ".join(b"<%d@x.example>" % i for i in range(7_000))[:100 * 1024 - 200]
    recipients = b", ".join(b"<r%d@x.example>" % i for i in range(1_000))
    raw = (MID + b"References: " + references + b"\r\nFrom: " + recipients + b"\r\nTo: " + recipients
           + b"\r\nCc: " + recipients + b"\r\nContent-Type: text/html\r\n\r\n" + b"<p>word</p>" * (MB // 11))
    record = client.post("/api/records", json={"title": "bench"}, headers=AUTH).get_json()["id"]
    app.records.threads.write_transaction = timed
    try:
        start = time.perf_counter()
        rv = client.post(f"/api/records/{record}/emails", data=raw, headers={**AUTH, "Content-Type": "message/rfc822"})
        took = time.perf_counter() - start
    finally:
        app.records.threads.write_transaction = real
    return {"status": rv.status_code, "answer_s": took, "write_lock_held_s": max(held)}


def run() -> dict[str, Any]:
    figures: dict[str, Any] = {"parse_s": parse_times(), "sanitize_s": sanitize_times()}
    with tempfile.TemporaryDirectory() as tmp:
        service = create_app(service_config(str(Path(tmp) / "bench.db"), Fernet.generate_key().decode(), 1))
        figures["worst_acceptable_upload"] = longest_write_transaction(service.test_client())
    close_thread_dbs()
    return figures


if __name__ == "__main__":
    for key, value in run().items():
        if isinstance(value, dict) and all(isinstance(v, float) for v in value.values()):
            print(f"{key}:")
            for name, seconds in value.items():
                print(f"  {name:48s} {seconds:7.3f} s")
        else:
            print(f"{key}: {value}")
