"""``python -m bench.hostile``: hostile uploads against the real service while Graph delivers.

The service runs as :mod:`bench.ack` runs it (its own process, :func:`app.server.build_server`,
seeded subscriptions). Paced genuine deliveries (:func:`bench.ack.ack_load`, 200 POST/s of 10
notifications) run twice: on a quiet server, then while rounds of :data:`HOSTILE_UPLOADS` uploads
arrive at once — half with an HTML body of 150 KB of unterminated tags, half with a 1.8 MB ``To:`` header,
the inputs that took minutes each before the parser was bounded — and then one upload naming
700,000 ``References`` ids, while another client keeps creating records through the API.

Reported: each upload's status and time (the ceiling is 2 s), the acknowledgements' p50 and p99
in both runs (the ceiling is Graph's: under 1 s, against 3 s for a delivery), and every status the
concurrent API writes got (none may be a 500).
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import requests
from cryptography.fernet import Fernet

from bench.ack import ack_load, load_figures, served, service_config, web_threads
from bench.load import run_load

HOSTILE_UPLOADS = 8
TOKEN = "bench"  # service_config's API token


def unterminated_tags() -> bytes:
    """An HTML body of ``<a `` 50,000 times (150 KB): quadratic for the standard library's HTMLParser."""
    return (b"Message-ID: <tags@hostile.example>\r\nFrom: x@hostile.example\r\nSubject: tags\r\n"
            b"Content-Type: text/html; charset=utf-8\r\n\r\n" + b"<a " * 50_000)


def huge_to_header() -> bytes:
    """A 1.8 MB ``To:`` header of 60,000 addresses."""
    to = ", ".join(f"person{n}@hostile.example" for n in range(60_000))
    return f"Message-ID: <to@hostile.example>\r\nFrom: x@hostile.example\r\nTo: {to}\r\n\r\nHello\r\n".encode()


def many_references() -> bytes:
    """700,000 ``References`` ids (6.3 MB): 700,000 thread keys, were they kept."""
    references = " ".join(f"<{n}@x>" for n in range(700_000))
    return (f"Message-ID: <refs@hostile.example>\r\nFrom: x@hostile.example\r\nReferences: {references}\r\n"
            f"\r\nHello\r\n").encode()


def _headers(content_type: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}", "Content-Type": content_type}


def _upload(base: str, record_id: int, name: str, raw: bytes, answers: list[dict[str, Any]]) -> None:
    started = time.perf_counter()
    rv = requests.post(f"{base}/api/records/{record_id}/emails", data=raw, headers=_headers("message/rfc822"),
                       timeout=300)
    answers.append({"upload": name, "status": rv.status_code, "seconds": round(time.perf_counter() - started, 3),
                    "answer": rv.text[:120] if rv.status_code >= 400 else None})


def _api_writes(base: str, stop: threading.Event, statuses: Counter) -> None:
    with requests.Session() as session:
        while not stop.is_set():
            rv = session.post(f"{base}/api/records", json={"title": "During hostile uploads"},
                              headers=_headers("application/json"), timeout=30)
            statuses[rv.status_code] += 1
            time.sleep(0.02)


def hostile_uploads(base: str, record_id: int, stop: threading.Event) -> tuple[list[dict[str, Any]], Counter]:
    """Rounds of :data:`HOSTILE_UPLOADS` uploads at once until ``stop``, then the 700k-References one,
    while API writes go on; return each upload's answer and the writes' statuses."""
    answers: list[dict[str, Any]] = []
    statuses: Counter = Counter()
    writes_done = threading.Event()
    writer = threading.Thread(target=_api_writes, args=(base, writes_done, statuses))
    writer.start()
    bodies = [("html_unterminated_tags", unterminated_tags()), ("to_header_1_8_mb", huge_to_header())]
    while not stop.is_set():
        uploads = [threading.Thread(target=_upload, args=(base, record_id, *bodies[n % 2], answers))
                   for n in range(HOSTILE_UPLOADS)]
        for upload in uploads:
            upload.start()
        for upload in uploads:
            upload.join()
    _upload(base, record_id, "references_700k", many_references(), answers)
    writes_done.set()
    writer.join()
    return answers, statuses


def run(results_dir: Path) -> dict[str, Any]:
    log_path = results_dir / "hostile-server.log"
    log_path.write_text("")
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as tmp:
        config = service_config(str(Path(tmp) / "hostile.db"), Fernet.generate_key().decode(), web_threads())
        with served("real", config, log_path) as (port, _):
            base = f"http://127.0.0.1:{port}"
            record = requests.post(f"{base}/api/records", json={"title": "Hostile uploads"},
                                   headers=_headers("application/json"), timeout=10).json()
            figures.update(load_figures("hostile_quiet_ack", [run_load(ack_load(port, "quiet", paced=True))]))
            outcome: dict[str, Any] = {}
            stop = threading.Event()
            attacker = threading.Thread(target=lambda: outcome.update(zip(("uploads", "api"),
                                                                         hostile_uploads(base, record["id"], stop))))
            attacker.start()
            figures.update(load_figures("hostile_ack", [run_load(ack_load(port, "hostile", paced=True))]))
            stop.set()
            attacker.join()
            figures["hostile_uploads"] = _upload_figures(outcome["uploads"])
            figures["hostile_slowest_upload_s"] = max(answer["seconds"] for answer in outcome["uploads"])
            figures["hostile_upload_count"] = len(outcome["uploads"])
            figures["hostile_api_writes"] = dict(outcome["api"])
            figures["hostile_api_5xx"] = sum(n for status, n in outcome["api"].items() if status >= 500)
    return figures


def _upload_figures(answers: list[dict[str, Any]]) -> dict[str, Any]:
    """Per kind of upload: how many, their statuses, the slowest answer; and the first refusal's text."""
    figures: dict[str, Any] = {}
    for kind in dict.fromkeys(answer["upload"] for answer in answers):
        mine = [answer for answer in answers if answer["upload"] == kind]
        figures[kind] = {"count": len(mine), "statuses": dict(Counter(answer["status"] for answer in mine)),
                         "slowest_s": max(answer["seconds"] for answer in mine),
                         "answer": next((answer["answer"] for answer in mine if answer["answer"]), None)}
    return figures


if __name__ == "__main__":
    out = Path("bench/results")
    out.mkdir(parents=True, exist_ok=True)
    json.dump(run(out), sys.stdout, indent=2)
    print()
