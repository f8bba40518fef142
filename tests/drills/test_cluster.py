"""The many-host layout under fire: two gunicorn web processes and three worker processes on one
PostgreSQL, while a worker process and a web process are killed with SIGKILL and PostgreSQL restarts.

3,000 replies arrive across 30 mailboxes as Graph's change notifications, and the records platform
queues one send per mailbox meanwhile (retrying, with the same idempotency key, what a restart
refused). Every reply must end up on its record exactly once, every send must go out exactly once,
the webhook must answer 503 while the database is away (Graph then retries) and never 500, and one
worker process must lead the scheduler throughout.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections import Counter
from email.message import EmailMessage
from pathlib import Path

import pytest
import requests

from app.core import leases
from app.core.db import open_db
from subscriptions.leader import LEASE_NAME
from tests.drills.harness import VENDOR, WEB, WORKER, ServiceProcess
from tests.e2e.harness import Browser
from tests.e2e.waiting import wait_for

MAILBOXES = 30
REPLIES = 100  # per mailbox: 3,000 in all
DOMAIN = "contoso.example"
# pg_ctl restart -m fast takes 0.2 s here, which the connection pool rides out unseen; a server with
# much to recover stays away longer, past what a request may wait for a connection.
DATABASE_DOWN_SECONDS = 3.0


def first_id(n: int) -> str:
    return f"<first.{n}@acme.example>"


def reply_id(n: int, k: int) -> str:
    return f"<cluster.{n}.{k}@acme.example>"


def first_email(n: int, address: str) -> bytes:
    email = EmailMessage()
    email["Message-ID"] = first_id(n)
    email["From"] = f"{VENDOR['name']} <{VENDOR['address']}>"
    email["To"] = address
    email["Subject"] = f"Onboarding documents {n}"
    email["Date"] = "Tue, 03 Nov 2026 09:00:00 +0000"
    email.set_content("Attached are our W-9 and banking details.")
    return bytes(email)


class Mailbox:
    """A person of Contoso, their record, and the vendor's first email both hold."""

    def __init__(self, web: ServiceProcess, n: int) -> None:
        emulator = web.emulator
        self.n, self.name, self.address = n, f"person{n}", f"person{n}@{DOMAIN}"
        self.user_id = emulator.add_user(web.demo["tenants"]["contoso"], self.address, display_name=f"Person {n}")
        web.demo["users"][self.name] = self.user_id
        rv = web.post("/api/records", json={"title": f"Vendor file {n}"})
        assert rv.status_code == 201, rv.text
        self.record_id = rv.json()["id"]
        emulator.deliver_email(self.user_id, subject=f"Onboarding documents {n}", body="Attached are our W-9...",
                               sender=VENDOR, to=[self.address], internet_message_id=first_id(n))
        rv = web.post(f"/api/records/{self.record_id}/emails", data=first_email(n, self.address),
                      headers={"Content-Type": "message/rfc822"})
        assert rv.status_code == 201, rv.text
        self.connection_id = 0

    def connect(self, web: ServiceProcess) -> None:
        """Connect Outlook from the record, from this person's own address (a desk of their own)."""
        browser = Browser(web, address=f"127.0.1.{self.n + 1}")
        assert browser.connect(self.record_id, self.name).status_code == 302

    def reply(self, emulator, k: int) -> None:
        emulator.deliver_email(self.user_id, subject=f"RE: Onboarding documents {self.n}", body=f"reply {k}",
                               sender=VENDOR, to=[self.address], in_reply_to=first_id(self.n),
                               references=[first_id(self.n)], internet_message_id=reply_id(self.n, k))


def send_until_accepted(web: ServiceProcess, mailbox: Mailbox, key: str) -> int:
    """Queue the mailbox's send as the platform would: a refusal (503 while the database restarts, a
    dropped connection when a web process dies) is retried with the same idempotency key."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            rv = web.post(f"/api/records/{mailbox.record_id}/messages", headers={"Idempotency-Key": key},
                          json={"connection_id": mailbox.connection_id, "to": [], "reply": True,
                                "body": f"Cluster send {mailbox.n}: thanks, we have the documents."})
        except requests.ConnectionError:
            time.sleep(0.2)
            continue
        if rv.status_code in (200, 202):
            return rv.json()["id"]
        assert rv.status_code == 503, rv.text
        time.sleep(float(rv.headers.get("Retry-After", "1")))
    raise AssertionError(f"the send of mailbox {mailbox.n} was never accepted")


def count(db, sql: str) -> int:
    return next(iter(db.query(sql)))["n"]


def web_children(web: ServiceProcess) -> list[int]:
    """The pids of gunicorn's web processes (the children of its master)."""
    pid = web.process.pid
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


class LeaderWatch:
    """Samples who holds the scheduler lease, every 0.2 s, until stopped."""

    def __init__(self, url: str) -> None:
        self.url, self.holders, self._stop = url, Counter(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LeaderWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                with open_db(self.url) as db:
                    self.holders[leases.holder(db, LEASE_NAME, time.time())] += 1
            except Exception:  # the restart: nobody can be asked, so nobody is counted
                pass


@pytest.fixture
def cluster(emulator, tmp_path, postgres_server):
    url = postgres_server.fresh_database()
    web = ServiceProcess(emulator, tmp_path, database_url=url, command=WEB, WEB_PROCESSES=2, WEB_THREADS=8)
    workers = [ServiceProcess(emulator, tmp_path, database_url=url, command=WORKER, like=web) for _ in range(3)]
    for process in (web, *workers):
        process.start(timeout=30)
    db = open_db(url)
    yield {"url": url, "web": web, "workers": workers, "db": db}
    db.close()
    for process in (web, *workers):
        process.stop()
    postgres_server.drop(url)


def test_kills_and_a_database_restart_lose_and_repeat_nothing(cluster, emulator, postgres_server):
    web, workers, db = cluster["web"], cluster["workers"], cluster["db"]
    emulator.subscriptions.delivery.config.created_then_updated = False  # one notification per reply: 3,000
    mailboxes = [Mailbox(web, n) for n in range(MAILBOXES)]
    for mailbox in mailboxes:
        mailbox.connect(web)
    wait_for(lambda: count(db, "SELECT count(*) AS n FROM subscriptions WHERE status = 'active'")
             == MAILBOXES, timeout=60, message="every mailbox subscribed")
    connections = {row["user_id"]: row["id"] for row in db.query("SELECT id, user_id FROM connections")}
    for mailbox in mailboxes:
        mailbox.connection_id = connections[mailbox.user_id]
    leader = wait_for(lambda: leases.holder(db, LEASE_NAME, time.time()), timeout=10, message="a scheduler leader")
    victim = next(worker for worker in workers if f":{worker.process.pid}:" not in leader)

    keys = {mailbox.n: str(uuid.uuid4()) for mailbox in mailboxes}
    started = time.monotonic()
    outbox_ids: dict[int, int] = {}
    restart = threading.Thread(target=postgres_server.restart, kwargs={"down_for": DATABASE_DOWN_SECONDS})
    with LeaderWatch(cluster["url"]) as watch:
        for k in range(REPLIES):
            for mailbox in mailboxes:
                mailbox.reply(emulator, k)
            if k == 20:
                victim.kill()  # jobs it held come back when their leases lapse
            if k == 35:
                os.kill(web_children(web)[0], signal.SIGKILL)  # gunicorn's master starts another
            if k == 50:  # mail keeps arriving while the server goes down and comes back
                restart.start()
            if k % 3 == 0 and k // 3 < MAILBOXES:
                mailbox = mailboxes[k // 3]
                outbox_ids[mailbox.n] = send_until_accepted(web, mailbox, keys[mailbox.n])
            time.sleep(0.01)
        restart.join()
        for mailbox in mailboxes:
            if mailbox.n not in outbox_ids:
                outbox_ids[mailbox.n] = send_until_accepted(web, mailbox, keys[mailbox.n])

        expected = {reply_id(m.n, k) for m in mailboxes for k in range(REPLIES)}

        def linked() -> bool:
            return count(db, "SELECT count(DISTINCT internet_message_id) AS n FROM messages "
                             "WHERE internet_message_id LIKE '<cluster.%'") >= len(expected)
        burst_s = time.monotonic() - started
        wait_for(linked, timeout=180, interval=0.5, message="every reply linked")
        linked_s = time.monotonic() - started
        wait_for(lambda: count(db, "SELECT count(*) AS n FROM outbox WHERE status = 'sent'")
                 == MAILBOXES, timeout=120, interval=0.5, message="every send sent")

    # Every reply on its own record, once.
    placed = list(db.query("SELECT record_id, internet_message_id FROM messages "
                           "WHERE internet_message_id LIKE '<cluster.%'"))
    assert len(placed) == len(expected)
    records = {m.record_id: m.n for m in mailboxes}
    assert all(row["internet_message_id"].startswith(f"<cluster.{records[row['record_id']]}.") for row in placed)
    # Every send once: one accepted outbox row per key, one message out of each mailbox.
    assert len(set(outbox_ids.values())) == MAILBOXES
    sent = Counter(m["userId"] for m in emulator.mail.outbound if "Cluster send" in m["body"]["content"])
    assert sent == Counter({m.user_id: 1 for m in mailboxes})
    # The webhook answered 503 while the database was away (Graph retried those), and never 500.
    statuses = Counter(attempt.status for attempt in emulator.subscriptions.delivery.attempts())
    assert statuses[503] > 0, statuses
    print(f"cluster drill: {len(expected)} replies delivered in {burst_s:.1f} s, all linked after {linked_s:.1f} s; "
          f"webhook answers {dict(statuses)}, slowest "
          f"{max(a.latency for a in emulator.subscriptions.delivery.attempts()):.2f} s; leader samples {dict(watch.holders)}")
    assert not [status for status in statuses if status is not None and status >= 500 and status != 503], statuses
    # One leader throughout, the worker that led before the burst; no other process ever took the lease.
    assert set(watch.holders) - {None} == {leader}, watch.holders
    took = [w for w in workers if "took leadership" in w.log_path.read_text(errors="replace")]
    assert [w.process.pid for w in took] == [int(leader.split(":")[1])]


def test_a_web_process_started_while_the_database_is_away_waits_for_it(emulator, tmp_path, postgres_server):
    """gunicorn replaces a killed web process at once; if the database is away just then, the new
    process must wait for it: one that fails to boot makes gunicorn stop every web process."""
    url = postgres_server.fresh_database()
    # Away longer than a request may wait for a connection, so the start really waits.
    restart = threading.Thread(target=postgres_server.restart, kwargs={"down_for": 8.0})
    restart.start()

    def away() -> bool:
        try:
            with open_db(url) as db:
                db.execute("SELECT 1")
            return False
        except Exception:
            return True
    wait_for(away, timeout=10, interval=0.05, message="the database going away")
    web = ServiceProcess(emulator, tmp_path, database_url=url, command=WEB, WEB_PROCESSES=1)
    try:
        web.start(timeout=60)
        restart.join()
        assert web.get("/api/connections").status_code == 200  # serving, from the database
        assert "trying again" in web.log_path.read_text(errors="replace")
    finally:
        restart.join()
        web.stop()
        postgres_server.drop(url)
