"""Readiness checks: each returns ``(ok, reason)``; ``/readyz`` is 503 when any fails.

A check that passes but needs an operator soon adds ``"warning": true`` to its result; a warning alone
keeps the service ready. The client certificate nearing its expiry is one. The advisory checks
(:data:`ADVISORIES`) only ever warn: events waiting for the records platform's receiver say nothing
about whether this service can take Graph's deliveries, and a load balancer that took it out of
rotation for them would only add to the backlog.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from sqlite_utils import Database

from app.core import app_errors, heartbeats, leases
from app.core.client_certificate import ClientCertificate
from app.core.queue import JobQueue
from app.core.timeutil import iso
from app.records import events
from subscriptions.leader import LEASE_NAME

HEARTBEAT_FRESH_SECONDS = 90.0
QUEUE_LAG_LIMIT_SECONDS = 300.0
EVENTS_LAG_LIMIT_SECONDS = 300.0  # the first retries (5 s, 5 min) fit in it: a lag past it is an outage
SUBSCRIBE_GRACE = timedelta(minutes=10)
EXPIRY_WARNING = timedelta(hours=1)
CERTIFICATE_WARNING = timedelta(days=30)

Check = Callable[[Database, float], tuple[bool, str]]


def database_writable(db: Database, now: float) -> tuple[bool, str]:
    heartbeats.beat(db, heartbeats.PROBE, now)
    return True, "database accepted a write"


def workers_alive(db: Database, now: float) -> tuple[bool, str]:
    beat = heartbeats.latest_worker_beat(db)
    if beat is None:
        return False, "no worker has ever reported a heartbeat"
    age = now - beat
    if age > HEARTBEAT_FRESH_SECONDS:
        return False, f"last worker heartbeat was {age:.0f} s ago"
    return True, f"last worker heartbeat {age:.0f} s ago"


def scheduler_leader(db: Database, now: float) -> tuple[bool, str]:
    owner = leases.holder(db, LEASE_NAME, now)
    if owner is None:
        return False, "no scheduler holds the leader lease"
    return True, f"scheduler leader is {owner}"


def queue_moving(db: Database, now: float) -> tuple[bool, str]:
    stats = JobQueue(db).stats(now)
    age, pending = stats.oldest_pending_age, stats.by_state["queued"]
    if age > QUEUE_LAG_LIMIT_SECONDS:
        return False, f"oldest pending job has waited {age:.0f} s ({pending} queued)"
    return True, f"{pending} queued, oldest ready one waited {age:.0f} s"


def subscriptions_live(db: Database, now: float) -> tuple[bool, str]:
    moment = datetime.fromtimestamp(now, timezone.utc)
    unsubscribed = list(db.query(
        """
        SELECT c.id FROM connections c WHERE c.status = 'active' AND c.created_at < :grace
        AND NOT EXISTS (SELECT 1 FROM subscriptions s WHERE s.connection_id = c.id AND s.status = 'active'
                        AND s.expires_at > :now)
        """, {"grace": iso(moment - SUBSCRIBE_GRACE), "now": iso(moment)}))
    if unsubscribed:
        return False, f"connection(s) {', '.join(str(r['id']) for r in unsubscribed)} have no live subscription"
    expiring = list(db.query(
        "SELECT s.id FROM subscriptions s JOIN connections c ON c.id = s.connection_id "
        "WHERE s.status = 'active' AND c.status = 'active' AND s.expires_at < ?", [iso(moment + EXPIRY_WARNING)]))
    if expiring:
        return False, f"{len(expiring)} subscription(s) expire within an hour unrenewed"
    return True, "every active connection has a live subscription"


def configuration_sound(db: Database, now: float) -> tuple[bool, str]:
    problems = app_errors.current(db)
    if problems:
        return False, f"{problems[0]['code']}: {problems[0]['message']}"
    return True, "no configuration error reported"


def certificate_current(certificate: ClientCertificate, now: float) -> dict[str, object]:
    """The app registration's certificate: failing once expired (Entra refuses assertions it signs), a
    warning in its last 30 days, which is time to upload its successor beside it and switch files."""
    left = certificate.not_after - datetime.fromtimestamp(now, timezone.utc)
    until = iso(certificate.not_after)
    if left <= timedelta():
        return {"ok": False, "reason": f"the client certificate (AZURE_CLIENT_CERTIFICATE_PATH, thumbprint "
                                       f"{certificate.sha1_thumbprint}) expired at {until}"}
    if left <= CERTIFICATE_WARNING:
        return {"ok": True, "warning": True,
                "reason": f"the client certificate (thumbprint {certificate.sha1_thumbprint}) expires in "
                          f"{left.days} day(s), at {until}: upload a new one to the app registration and "
                          "point AZURE_CLIENT_CERTIFICATE_PATH at it"}
    return {"ok": True, "reason": f"the client certificate is valid until {until}"}


def events_delivered(db: Database, now: float) -> tuple[bool, str]:
    stats = events.stats(db, now=now)
    summary = (f"{stats.pending} pending ({stats.failing} after a failed attempt), {stats.dead} dead, "
               f"oldest pending waited {stats.oldest_pending_age:.0f} s")
    problems = [*([f"{stats.dead} event(s) dead after every retry (flask --app wsgi events retry)"] if stats.dead else []),
                *([f"oldest pending event has waited {stats.oldest_pending_age:.0f} s"]
                  if stats.oldest_pending_age > EVENTS_LAG_LIMIT_SECONDS else [])]
    return not problems, "; ".join([*problems, summary]) if problems else summary


CHECKS: dict[str, Check] = {
    "database": database_writable,
    "workers": workers_alive,
    "scheduler": scheduler_leader,
    "queue": queue_moving,
    "subscriptions": subscriptions_live,
    "configuration": configuration_sound,
}


ADVISORIES: dict[str, Check] = {"events": events_delivered}
EVENTS_OFF = "EVENTS_URL is unset: events are not delivered (GET /api/events lists them)"


def run_checks(db: Database, now: float | None = None, *, certificate: ClientCertificate | None = None,
               events_delivery: bool = False) -> dict[str, dict[str, object]]:
    """Every check's ``{"ok", "reason"}``; an advisory's is ``{"ok": true, "warning", "reason"}``.

    ``certificate``: the configured one, if any, which adds its check; ``events_delivery``: whether
    ``EVENTS_URL`` is set (else nothing is delivered, nor late).
    """
    now = time.time() if now is None else now
    results = {name: _run(check, db, now) for name, check in CHECKS.items()}
    for name, check in ADVISORIES.items():
        ok, reason = _run(check, db, now).values() if events_delivery else (True, EVENTS_OFF)
        results[name] = {"ok": True, "warning": not ok, "reason": reason}
    if certificate is not None:
        results["certificate"] = certificate_current(certificate, now)
    return results


def _run(check: Check, db: Database, now: float) -> dict[str, object]:
    try:
        ok, reason = check(db, now)
    except Exception as e:  # a failing check is a result, not a crash of the probe
        ok, reason = False, f"check failed: {type(e).__name__}: {e}"
    return {"ok": ok, "reason": reason}
