"""/readyz says what is wrong, and /metrics exposes the counters and gauges operators graph."""

import re
import time
from datetime import datetime, timedelta, timezone

import pytest

from app import create_app
from app.core.timeutil import iso
from app.web.context import services_of
from subscriptions.leader import LEASE_NAME, acquire_lease
from tests.certificates import make_certificate
from tests.tables import table

pytestmark = pytest.mark.both_engines


@pytest.fixture
def healthy(db):
    """A ready service: a fresh worker heartbeat, a scheduler leader, one connection with a live subscription."""
    now = datetime.now(timezone.utc)
    db.execute("INSERT INTO heartbeats (name, beat_at) VALUES ('host:1:0', ?)", [time.time()])
    acquire_lease(db, LEASE_NAME, "host:1", 60, time.time())
    table(db, "tenants").insert({"id": "t1", "created_at": iso(now), "updated_at": iso(now)})
    table(db, "connections").insert({"id": 1, "tenant_id": "t1", "user_id": "u1", "status": "active",
                              "created_at": iso(now - timedelta(hours=1)), "updated_at": iso(now)})
    table(db, "subscriptions").insert({"id": "s1", "connection_id": 1, "resource": "/users/u1/messages",
                                "change_type": "created", "client_state": b"x", "status": "active",
                                "expires_at": iso(now + timedelta(days=3)), "routable_until": iso(now + timedelta(days=3)),
                                "created_at": iso(now), "updated_at": iso(now)})


def readiness(client):
    rv = client.get("/readyz")
    return rv.status_code, rv.get_json()["checks"]


def test_ready_when_everything_is_healthy(client, healthy):
    status, checks = readiness(client)
    assert status == 200, checks
    assert all(check["ok"] for check in checks.values())


def test_stopped_workers_make_it_unready(client, db, healthy):
    db.execute("UPDATE heartbeats SET beat_at = ?", [time.time() - 600])
    status, checks = readiness(client)
    assert status == 503
    assert not checks["workers"]["ok"] and "heartbeat was 600 s ago" in checks["workers"]["reason"]


def test_no_scheduler_leader_makes_it_unready(client, db, healthy):
    db.execute("DELETE FROM leases")
    status, checks = readiness(client)
    assert status == 503 and not checks["scheduler"]["ok"]


def test_a_lapsed_subscription_makes_it_unready(client, db, healthy):
    db.execute("UPDATE subscriptions SET expires_at = ?", [iso(datetime.now(timezone.utc) - timedelta(minutes=1))])
    status, checks = readiness(client)
    assert status == 503
    assert checks["subscriptions"]["reason"] == "connection(s) 1 have no live subscription"


def test_a_subscription_about_to_expire_unrenewed_makes_it_unready(client, db, healthy):
    db.execute("UPDATE subscriptions SET expires_at = ?", [iso(datetime.now(timezone.utc) + timedelta(minutes=30))])
    status, checks = readiness(client)
    assert status == 503 and "expire within an hour" in checks["subscriptions"]["reason"]


def test_a_stuck_queue_makes_it_unready(app, client, healthy):
    services_of(app).queue.enqueue("reconcile", {"connection_id": 1}, now=time.time() - 900)
    status, checks = readiness(client)
    assert status == 503 and "oldest pending job has waited 900 s" in checks["queue"]["reason"]


def test_an_app_registration_error_makes_it_unready(client, db, healthy):
    table(db, "app_errors").insert({"code": "invalid_client (AADSTS7000222)", "message": "client secret expired",
                             "first_seen_at": iso(datetime.now(timezone.utc)), "last_seen_at": iso(datetime.now(timezone.utc))})
    status, checks = readiness(client)
    assert status == 503 and "AADSTS7000222" in checks["configuration"]["reason"]


def test_metrics_expose_counters_and_database_gauges(client, healthy):
    client.post("/webhooks/graph", json={"value": [{"subscriptionId": "unknown", "tenantId": "any"}]})
    text = client.get("/metrics").get_data(as_text=True)
    assert 'outlook_notifications_rejected_total{reason="unknown_subscription"}' in text
    assert 'outlook_connections{status="active"} 1.0' in text
    assert "outlook_queue_oldest_pending_seconds" in text
    assert "outlook_notification_to_linked_seconds_bucket" in text


@pytest.fixture
def with_certificate(app_config, tmp_path):
    """A test client of the service authenticating with a certificate that expires in ``days``."""
    def make(days: float):
        path = make_certificate(days=days).write(tmp_path / f"app-{days}.pem")
        return create_app({**app_config, "AZURE_CLIENT_CERTIFICATE_PATH": path}).test_client()
    return make


def test_a_certificate_far_from_expiry_is_fine(with_certificate, healthy):
    status, checks = readiness(with_certificate(days=200))
    assert status == 200 and checks["certificate"]["ok"] and "warning" not in checks["certificate"]
    assert checks["certificate"]["reason"].startswith("the client certificate is valid until ")


def test_a_certificate_in_its_last_30_days_warns_but_stays_ready(with_certificate, healthy):
    status, checks = readiness(with_certificate(days=12.5))
    assert status == 200
    assert checks["certificate"]["ok"] and checks["certificate"]["warning"] is True
    assert "expires in 12 day(s)" in checks["certificate"]["reason"]


def test_an_expired_certificate_makes_it_unready(with_certificate, healthy):
    status, checks = readiness(with_certificate(days=-1))
    assert status == 503 and not checks["certificate"]["ok"]
    assert "AZURE_CLIENT_CERTIFICATE_PATH" in checks["certificate"]["reason"] and "expired at" in \
        checks["certificate"]["reason"]


def test_a_secret_has_no_certificate_check(client, healthy):
    assert "certificate" not in readiness(client)[1]


def test_metrics_expose_the_certificate_expiry(app_config, tmp_path, healthy):
    certificate = make_certificate(days=40)
    app = create_app({**app_config, "AZURE_CLIENT_CERTIFICATE_PATH": certificate.write(tmp_path / "app.pem")})
    text = app.test_client().get("/metrics").get_data(as_text=True)
    value = re.search(r"^outlook_client_certificate_expiry_timestamp_seconds (\S+)$", text, re.MULTILINE).group(1)
    assert float(value) == certificate.certificate.not_valid_after_utc.timestamp()
