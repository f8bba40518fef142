"""Helpers for the fault drills: the service as a real ``python -m app`` process, and the burst.

The in-thread :class:`tests.e2e.harness.ServiceServer` shares the interpreter (and the GIL) with
the emulator; a drill that kills the service, or measures its acknowledgement latency, runs it as
its own process instead, configured only through the environment, the way an operator runs it.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import requests
from cryptography.fernet import Fernet

from emulator import Emulator
from tests.e2e.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
API_TOKEN = "drill-api-token"
VENDOR = {"name": "Dana Whitfield", "address": "dana@acme.example"}
MEGAN = "megan@contoso.example"
FIRST_ID = "<first.1@acme.example>"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def soft_open_file_limit(soft: int | None) -> Iterator[None]:
    """Lower this process's soft ``RLIMIT_NOFILE`` to ``soft`` meanwhile, so the processes it starts inherit it."""
    saved = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft is not None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, saved[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, saved)


# The processes of a deployment: everything in one (the default), or web and workers apart.
ALL_IN_ONE = ("-m", "app")
WEB = ("-m", "gunicorn", "wsgi:app", "--config", str(REPO / "gunicorn.conf.py"))
WORKER = ("-m", "flask", "--app", "wsgi", "worker")


class ServiceProcess:
    """``python -m app`` (or ``command``: :data:`WEB`, :data:`WORKER`) against ``emulator``, on a fixed
    port and database so it can be restarted. A worker process serves no HTTP: it has started once it
    says so in its log.

    Quacks like :class:`tests.e2e.harness.ServiceServer` where :class:`tests.e2e.harness.Browser`
    needs it (``url``, ``emulator``, ``demo``).
    """

    def __init__(self, emulator: Emulator, workdir: Path, *, database_url: str | None = None,
                 command: tuple[str, ...] = ALL_IN_ONE, like: ServiceProcess | None = None, **settings: Any) -> None:
        """``like``: another process of the same deployment, whose port, keys and app registration
        this one shares (a second web process behind the same address is a second gunicorn)."""
        self.emulator = emulator
        self.workdir = workdir
        self.command = command
        self.port = like.port if like else free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.demo = like.demo if like else emulator.seed_demo(
            [f"{self.base_url}/auth/callback", f"{self.base_url}/admin/consent/callback"])
        self.database = database_url or str(workdir / "service.db")  # where the store is, on either engine
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "GRAPH_"))},
            "PYTHONPATH": str(REPO),
            "PYTHONUNBUFFERED": "1",
            "PORT": str(self.port),
            "PUBLIC_BASE_URL": self.base_url,
            "DATABASE_PATH": str(workdir / "service.db"),
            **({"DATABASE_URL": database_url} if database_url else {}),
            "TOKEN_ENCRYPTION_KEYS": like.env["TOKEN_ENCRYPTION_KEYS"] if like else Fernet.generate_key().decode(),
            "SECRET_KEY": "drill-secret-key",
            "API_TOKEN": API_TOKEN,
            "AZURE_CLIENT_ID": self.demo["client_id"],
            "AZURE_CLIENT_SECRET": self.demo["client_secret"],
            "AZURE_AUTHORITY_HOST": emulator.authority_host,
            "GRAPH_ENDPOINT": emulator.graph_endpoint,
            "REQUESTS_CA_BUNDLE": emulator.ca_file,
            "LOG_LEVEL": "INFO",
            **{name: str(value) for name, value in settings.items()},
        }
        self.process: subprocess.Popen | None = None
        self.runs = 0
        self.api = requests.Session()
        self.api.headers["Authorization"] = f"Bearer {API_TOKEN}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.command[1]}-{id(self)}-{self.runs}.log"

    def start(self, timeout: float = 20.0, *, open_files: int | None = None) -> "ServiceProcess":
        """Start the process; ``open_files`` is the soft open-file limit it starts with (as a shell's 1024)."""
        self.runs += 1
        with open(self.log_path, "wb") as log, soft_open_file_limit(open_files):
            self.process = subprocess.Popen([sys.executable, *self.command], cwd=self.workdir, env=self.env,
                                            stdout=log, stderr=subprocess.STDOUT)
        wait_for(self._healthy, timeout=timeout, interval=0.05, message=f"the service to start ({self.log_tail()})")
        return self

    def _healthy(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"the service exited with {self.process.returncode}: {self.log_tail()}")
        if self.command == WORKER:
            return "worker running" in self.log_path.read_text(errors="replace")
        try:
            return requests.get(self.url("/healthz"), timeout=1).status_code == 200
        except (requests.ConnectionError, requests.Timeout):  # not listening, or not answering yet
            return False

    def kill(self) -> None:
        """``kill -9``: no signal handler, no shutdown, no flush."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def url(self, path: str) -> str:
        return urljoin(self.base_url, path)

    def get(self, path: str) -> requests.Response:
        return self.api.get(self.url(path), timeout=30)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.api.post(self.url(path), timeout=30, **kwargs)


def first_email() -> bytes:
    """The vendor's first email, as the user uploads it to the record."""
    email = EmailMessage()
    email["Message-ID"] = FIRST_ID
    email["From"] = "Dana Whitfield <dana@acme.example>"
    email["To"] = f"Megan Bowen <{MEGAN}>"
    email["Subject"] = "Onboarding documents"
    email["Date"] = "Tue, 03 Nov 2026 09:00:00 +0000"
    email.set_content("Attached are our W-9 and banking details.")
    return bytes(email)


def start_conversation(api, emulator: Emulator, megan: str) -> dict:
    """A record with the uploaded first email, which also sits in Megan's inbox; returns the record.

    ``api`` is anything with ``post(path, **kwargs)`` answering a ``requests.Response``.
    """
    rv = api.post("/api/records", json={"title": "Acme vendor file"})
    assert rv.status_code == 201, rv.text
    record = rv.json()
    emulator.deliver_email(megan, subject="Onboarding documents", body="Attached are our W-9...", sender=VENDOR,
                           to=[MEGAN], internet_message_id=FIRST_ID)
    rv = api.post(f"/api/records/{record['id']}/emails", data=first_email(), headers={"Content-Type": "message/rfc822"})
    assert rv.status_code == 201, rv.text
    return record


def reply_id(tag: str, n: int) -> str:
    return f"<{tag}.{n}@acme.example>"


def deliver_reply(emulator: Emulator, megan: str, tag: str, n: int) -> dict:
    """Reply ``n`` of a burst: an inbound answer to the first email, so it belongs on the record."""
    return emulator.deliver_email(megan, subject=f"RE: Onboarding documents ({tag} {n})", body=f"{tag} reply {n}",
                                  sender=VENDOR, to=[MEGAN], in_reply_to=FIRST_ID, references=[FIRST_ID],
                                  internet_message_id=reply_id(tag, n))


def thread_ids(api, record_id: int) -> list[str]:
    rv = api.get(f"/api/records/{record_id}/thread")
    assert rv.status_code == 200, rv.text
    return [m["internet_message_id"] for m in rv.json()["messages"]]


def wait_for_replies(api, record_id: int, expected: set[str], *, timeout: float) -> list[str]:
    """Wait until every id in ``expected`` is on the record's thread; return the thread's ids."""
    def complete():
        ids = thread_ids(api, record_id)
        return ids if expected <= set(ids) else None
    try:
        return wait_for(complete, timeout=timeout, interval=0.2, message="every reply on the record")
    except AssertionError:
        missing = sorted(expected - set(thread_ids(api, record_id)))
        raise AssertionError(f"{len(missing)} of {len(expected)} replies never reached the record: {missing[:10]}")


def assert_exactly_once(ids: list[str], expected: set[str]) -> None:
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    assert not duplicates, f"on the record more than once: {duplicates}"
    assert expected <= set(ids)


def job_states(db, kind: str | None = None) -> dict[str, int]:
    where, params = ("WHERE kind = ?", [kind]) if kind else ("", [])
    return {row["state"]: row["n"] for row in db.query(f"SELECT state, count(*) AS n FROM jobs {where} GROUP BY state",
                                                       params)}

