"""The system under test: the emulator in this process, the service as ``python -m app`` in a child.

Running the service in its own process keeps the emulator's work off its interpreter (two cores,
one GIL each) and lets us read its resident memory from /proc. Users connect through the real
Connect Outlook flow: the service's redirect, the emulator's authorize decision, the callback.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import requests
import requests.adapters
from cryptography.fernet import Fernet
from sqlite_utils import Database

from app.core.db import open_db, store_location
from bench.measure import cpu_seconds, peak_rss_mb, rss_mb
from emulator import Emulator

API_TOKEN = "bench-api-token"
VENDOR = {"name": "Dana Whitfield", "address": "dana@vendor.example"}
REQUEST_LOG_SIZE = 100_000  # the renewal benchmark alone makes 10,000 Graph calls


def start_emulator() -> Emulator:
    return Emulator(request_log_size=REQUEST_LOG_SIZE).start()


def service_config(emulator: Emulator, workdir: Path, client_id: str, client_secret: str, port: int,
                   database: str = "service.db") -> dict[str, Any]:
    """Settings for a non-sandbox service pointed at ``emulator`` (its environment, as strings)."""
    return {
        "HOST": "127.0.0.1", "PORT": str(port), "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "DATABASE_PATH": str(workdir / database), "TOKEN_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "SECRET_KEY": "bench-secret-key", "API_TOKEN": API_TOKEN,
        "AZURE_CLIENT_ID": client_id, "AZURE_CLIENT_SECRET": client_secret,
        "AZURE_AUTHORITY_HOST": emulator.authority_host, "GRAPH_ENDPOINT": emulator.graph_endpoint,
        "REQUESTS_CA_BUNDLE": emulator.ca_file,
    }


REPO = Path(__file__).resolve().parents[1]
ALL_IN_ONE = ("-m", "app")
WEB = ("-m", "gunicorn", "wsgi:app", "--config", str(REPO / "gunicorn.conf.py"))
WORKER = ("-m", "flask", "--app", "wsgi", "worker")


class ServiceProcess:
    """``python -m app`` (web server, workers and scheduler), or ``command`` (:data:`WEB` for gunicorn's
    web processes, :data:`WORKER` for a worker process), with ``config`` as its environment."""

    def __init__(self, config: dict[str, Any], workdir: Path, log_path: Path, *,
                 command: tuple[str, ...] = ALL_IN_ONE) -> None:
        self.config = config
        self.command = command
        self.base_url = config["PUBLIC_BASE_URL"]
        self.workdir, self.log_path = workdir, log_path
        self.process: subprocess.Popen | None = None
        self.api = requests.Session()
        self.api.headers["Authorization"] = f"Bearer {API_TOKEN}"
        self._peak_sampled = 0.0
        self._db: Database | None = None
        self._sampling = threading.Event()

    def start(self, timeout: float = 60.0) -> ServiceProcess:
        env = {**os.environ, **self.config, "PYTHONPATH": str(REPO)}
        env.pop("WERKZEUG_RUN_MAIN", None)
        with open(self.log_path, "ab") as log:
            started_at = log.tell()
            # cwd is a scratch directory so no developer .env file leaks into the run.
            self.process = subprocess.Popen([sys.executable, *self.command], cwd=self.workdir, env=env,
                                            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the service exited with {self.process.returncode}; see {self.log_path}")
            if self._started(started_at):
                threading.Thread(target=self._sample_rss, daemon=True).start()
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the service did not start within {timeout} s; see {self.log_path}")

    def _started(self, log_offset: int) -> bool:
        """A worker process serves no HTTP: it has started once its log says so; others answer /healthz."""
        if self.command == WORKER:
            with open(self.log_path, "rb") as log:
                log.seek(log_offset)
                return b"worker running" in log.read()
        try:
            return requests.get(f"{self.base_url}/healthz", timeout=2).status_code == 200
        except (requests.ConnectionError, requests.Timeout):
            return False

    def cpu_seconds(self) -> float:
        """CPU time of the process and, for gunicorn, of its web processes (live ones only)."""
        pids = [self.process.pid]
        with contextlib.suppress(OSError):
            pids += [int(p) for p in Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text()
                     .split()]
        return sum(cpu_seconds(pid) for pid in pids)

    def _sample_rss(self) -> None:
        """A second opinion on the peak, in case ``VmHWM`` is unavailable."""
        while not self._sampling.wait(0.25):
            try:
                self._peak_sampled = max(self._peak_sampled, rss_mb(self.process.pid))
            except (OSError, LookupError):
                return

    def peak_rss_mb(self) -> float:
        try:
            return peak_rss_mb(self.process.pid)
        except (OSError, LookupError):
            return self._peak_sampled

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (the service finishes jobs in hand), then SIGKILL if it takes too long."""
        self._sampling.set()
        if self._db is not None:
            self._db.close()
            self._db = None
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.api.request(method, f"{self.base_url}{path}", timeout=30, **kwargs)

    @contextlib.contextmanager
    def db(self) -> Iterator[Database]:
        """The service's store, on either engine, for reading results (WAL lets us read alongside it)."""
        if self._db is None:
            self._db = open_db(store_location(self.config))
        yield self._db


@dataclass
class Mailbox:
    """A user of the benchmark tenant, their record, and the email that starts its conversation."""

    index: int
    user_id: str
    email: str
    record_id: int = 0
    first_message_id: str = ""
    connection_id: int = 0


def add_users(emulator: Emulator, tenant_id: str, count: int, domain: str) -> list[Mailbox]:
    return [Mailbox(i, emulator.add_user(tenant_id, f"user{i}@{domain}", display_name=f"User {i}"),
                    f"user{i}@{domain}") for i in range(count)]


def rfc822(message_id: str, to: str, subject: str) -> bytes:
    email = EmailMessage()
    email["Message-ID"] = message_id
    email["From"] = f"{VENDOR['name']} <{VENDOR['address']}>"
    email["To"] = to
    email["Subject"] = subject
    email["Date"] = "Tue, 03 Nov 2026 09:00:00 +0000"
    email.set_content("Attached are our W-9 and banking details.")
    return bytes(email)


def prepare_record(service: ServiceProcess, emulator: Emulator, mailbox: Mailbox) -> None:
    """A record whose uploaded email also sits in the mailbox, so replies to it link."""
    rv = service.call("POST", "/api/records", json={"title": f"Vendor file {mailbox.index}"})
    rv.raise_for_status()
    mailbox.record_id = rv.json()["id"]
    mailbox.first_message_id = f"<first.{mailbox.index}@vendor.example>"
    subject = f"Onboarding documents {mailbox.index}"
    emulator.deliver_email(mailbox.user_id, subject=subject, body="Attached are our W-9 and banking details.",
                           sender=VENDOR, to=[mailbox.email], internet_message_id=mailbox.first_message_id)
    rv = service.call("POST", f"/api/records/{mailbox.record_id}/emails",
                      data=rfc822(mailbox.first_message_id, mailbox.email, subject),
                      headers={"Content-Type": "message/rfc822"})
    rv.raise_for_status()


def connect_form(html: str) -> dict[str, str]:
    """The hidden fields of the Connect Outlook page's form (its CSRF token and record id), as a browser posts them."""
    return dict(re.findall(r'name="(csrf_token|record_id)" value="([^"]*)"', html))


def sign_in(browser: requests.Session, service: ServiceProcess, emulator: Emulator, user_id: str,
            next_path: str) -> None:
    """Sign in to the service as ``user_id``: ``/login``, the emulator's decision, the callback."""
    rv = browser.get(f"{service.base_url}/login", params={"next": next_path}, allow_redirects=False, timeout=30)
    follow_authorize(browser, emulator, rv, user_id, "sign-in")


def follow_authorize(browser: requests.Session, emulator: Emulator, rv: requests.Response, user_id: str,
                     step: str) -> None:
    """From the service's redirect to the authorize endpoint, through the emulator, to the service's callback."""
    if rv.status_code != 302:
        raise RuntimeError(f"{step} answered {rv.status_code}: {rv.text[:200]}")
    rv = browser.get(emulator.authorize(rv.headers["Location"], user_id), allow_redirects=False, timeout=30)
    if rv.status_code != 302:
        raise RuntimeError(f"the {step} callback answered {rv.status_code}: {rv.text[:200]}")


class SourceAddressAdapter(requests.adapters.HTTPAdapter):
    """Connections from one loopback address, so each benchmark user is its own client to the service's
    per-address limit on sign-in starts, as people at their own desks are."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, source_address=(self.address, 0), **kwargs)


def browser_of(mailbox: Mailbox) -> requests.Session:
    """A browser session for the mailbox's user, from a loopback address of its own (127.0.1.x)."""
    browser = requests.Session()
    browser.mount("http://", SourceAddressAdapter(f"127.0.{1 + mailbox.index // 250}.{1 + mailbox.index % 250}"))
    return browser


def connect(service: ServiceProcess, emulator: Emulator, mailbox: Mailbox) -> None:
    """Connect Outlook as the mailbox's user: sign in, the page's button, consent at the emulator, callback."""
    browser = browser_of(mailbox)
    page_path = f"/connect/outlook?record_id={mailbox.record_id}"
    sign_in(browser, service, emulator, mailbox.user_id, page_path)
    page = browser.get(f"{service.base_url}{page_path}", timeout=30)
    rv = browser.post(f"{service.base_url}/connect/outlook", data=connect_form(page.text), allow_redirects=False,
                      timeout=30)
    follow_authorize(browser, emulator, rv, mailbox.user_id, "Connect Outlook")


def wait_until_settled(service: ServiceProcess, subscriptions: int, timeout: float = 120.0) -> None:
    """Until ``subscriptions`` are active and the queue holds no pending work (connect, backfill, reconcile)."""
    deadline = time.monotonic() + timeout
    with service.db() as db:
        while time.monotonic() < deadline:
            active = db.execute("SELECT count(*) FROM subscriptions WHERE status = 'active'").fetchone()[0]
            pending = db.execute("SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')").fetchone()[0]
            if active >= subscriptions and pending == 0:
                return
            time.sleep(0.2)
    raise RuntimeError(f"set-up did not settle within {timeout} s ({active} subscriptions, {pending} jobs pending)")


def connection_ids(service: ServiceProcess) -> dict[str, int]:
    with service.db() as db:
        return {row["user_id"]: row["id"] for row in db.query("SELECT id, user_id FROM connections")}
