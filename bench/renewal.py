"""Renewal of 10,000 due subscriptions: wall time, Graph writes, list calls and memory.

Connections are real: 100 users in 50 tenants go through Connect Outlook (the service's own views,
driven in this process by Flask's test client), so their tokens come from the emulator. The
subscriptions are seeded directly, 100 per connection, all due (12 hours left): rows in the
service's database, and the same subscriptions in the emulator through
``SubscriptionService.add(validate=False)``, so no validation handshakes are needed. Copies of one
mailbox's subscription differ only in their notification URL, which Graph's duplicate check allows.

Why 50 tenants: ``renew_due`` keeps each tenant under 450 subscription writes per 20 s (Graph allows
500); 200 per tenant fit in one window, so the wall time measures the renewal work. One tenant with
10,000 mailboxes would take at least 10,000 / 450 × 20 s ≈ 7.4 minutes by that design.

``renew_due`` runs in a fresh process built like the service's (``create_app``), so its memory and
CPU are its own. The emulator adds no latency here: the wall time is the service's and the
emulator's own cost per call.
"""

from __future__ import annotations

import ipaddress
import multiprocessing
import secrets
import tempfile
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from app import create_app
from app.core.db import close_thread_dbs, store_location, thread_db
from app.core.timeutil import iso
from app.web.context import services_of
from bench.measure import free_port, peak_rss_mb, reset_peak_rss, rss_mb
from bench.stack import API_TOKEN, Mailbox, add_users, connect_form, service_config, start_emulator
from emulator import Emulator
from emulator.subscriptions import Subscription

SUBSCRIPTIONS = 10_000
TENANTS = 50
USERS_PER_TENANT = 2
DUE_IN = timedelta(hours=12)
CHANGE_TYPE = "created,updated,deleted"


def connect_users(app, emulator: Emulator, mailboxes: list[Mailbox]) -> None:
    """Connect Outlook for each user through the service's views (Flask test client, real tokens)."""
    base_url = app.config["PUBLIC_BASE_URL"]
    client = app.test_client()
    rv = client.post("/api/records", json={"title": "Renewal bench"}, headers={"Authorization": f"Bearer {API_TOKEN}"},
                     base_url=base_url)
    record_id = rv.get_json()["id"]
    for mailbox in mailboxes:
        # Each user from their own address, as in life (one address would meet the sign-in rate limit).
        user = {"REMOTE_ADDR": str(ipaddress.IPv4Address((10 << 24) + uuid.UUID(mailbox.user_id).int % 2**24))}
        page_path = f"/connect/outlook?record_id={record_id}"
        client = app.test_client()  # each person's own browser, cookies and all
        # Only a signed-in person may connect: sign in first, then press the page's button.
        started = client.get("/login", query_string={"next": page_path}, base_url=base_url, environ_base=user)
        _through_emulator(client, emulator, started, mailbox, user)
        page = client.get(page_path, base_url=base_url, environ_base=user)
        rv = client.post("/connect/outlook", data=connect_form(page.text), base_url=base_url, environ_base=user)
        _through_emulator(client, emulator, rv, mailbox, user)


def _through_emulator(client, emulator: Emulator, started, mailbox: Mailbox, user: dict[str, str]) -> None:
    """From the service's redirect to the authorize endpoint, through the emulator's decision, to the callback."""
    if started.status_code != 302:
        raise RuntimeError(f"the sign-in start answered {started.status_code}")
    rv = client.get(emulator.authorize(started.headers["Location"], mailbox.user_id), environ_base=user)
    if rv.status_code != 302:
        raise RuntimeError(f"the sign-in callback answered {rv.status_code}")


def seed_subscriptions(app, emulator: Emulator, client_id: str) -> int:
    """Spread ``SUBSCRIPTIONS`` due subscriptions over every connection, in the database and the emulator."""
    db = thread_db(store_location(app.config))
    cipher = services_of(app).cipher
    base_url = app.config["PUBLIC_BASE_URL"]
    connections = list(db.query("SELECT id, tenant_id, user_id FROM connections ORDER BY id"))
    now = datetime.now(timezone.utc)
    expires, created = now + DUE_IN, now - timedelta(days=6)
    rows = []
    for n in range(SUBSCRIPTIONS):
        connection = connections[n % len(connections)]
        subscription_id, client_state = str(uuid.uuid4()), secrets.token_urlsafe(48)
        # A mailbox holds ~100 of them, each on a folder of its own: Graph refuses two subscriptions of one
        # app to the same resource and change types (409), whatever their notification URLs.
        resource = f"/users/{connection['user_id']}/mailFolders/bench-{n}/messages"
        emulator.subscriptions.add(Subscription(
            id=subscription_id, application_id=client_id, creator_id=connection["user_id"],
            tenant_id=connection["tenant_id"], user_id=connection["user_id"], folder_id=f"bench-{n}", resource=resource,
            change_type=CHANGE_TYPE, notification_url=f"{base_url}/webhooks/graph?copy={n}",
            lifecycle_url=f"{base_url}/webhooks/graph/lifecycle", client_state=client_state, expires=expires,
            immutable_ids=True), validate=False)
        rows.append({"id": subscription_id, "connection_id": connection["id"], "resource": resource,
                     "change_type": CHANGE_TYPE, "client_state": cipher.encrypt(client_state), "status": "active",
                     "expires_at": iso(expires), "routable_until": iso(expires), "created_at": iso(created),
                     "updated_at": iso(created)})
    db["subscriptions"].insert_all(rows, batch_size=500)
    return len(connections)


def renew_in_child(config: dict[str, Any], pipe) -> None:
    """Process entry point: build the app, run ``renew_due`` once, report time and memory."""
    import time

    from subscriptions.renewal import renew_due

    services = services_of(create_app(config))
    reset = reset_peak_rss()
    before = rss_mb()
    started = time.perf_counter()
    outcomes = renew_due(services)
    wall = time.perf_counter() - started
    pipe.send({"wall": wall, "outcomes": outcomes, "rss_before": before, "peak": peak_rss_mb(),
               "peak_since_start": not reset})


def renew(config: dict[str, Any]) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=renew_in_child, args=(config, child), daemon=True)
    process.start()
    try:
        if not parent.poll(600):
            raise RuntimeError("renew_due did not finish within 10 minutes")
        return parent.recv()
    finally:
        process.join(30)


def graph_writes(emulator: Emulator) -> dict[str, int]:
    """Subscription writes (by kind) and list calls the emulator received."""
    requests = [r for r in emulator.requests() if r["path"].startswith("/v1.0/subscriptions")]
    patched = [r["path"] for r in requests if r["method"] == "PATCH"]
    return {
        "patch": len(patched), "patched_unique": len(set(patched)),
        "other_writes": sum(1 for r in requests if r["method"] in ("POST", "DELETE")),
        "list": sum(1 for r in requests if r["method"] == "GET" and r["path"].rstrip("/") == "/v1.0/subscriptions"),
    }


def run(results_dir: Path) -> dict[str, Any]:
    emulator = start_emulator()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-renewal-") as tmp:
            port = free_port()
            client_id, client_secret = emulator.register_app(
                redirect_uris=[f"http://127.0.0.1:{port}/auth/callback"])
            config = service_config(emulator, Path(tmp), client_id, client_secret, port, "renewal.db")
            app = create_app(config)
            for t in range(TENANTS):
                tenant_id = emulator.add_tenant(f"Renewal tenant {t}")
                connect_users(app, emulator, add_users(emulator, tenant_id, USERS_PER_TENANT, f"t{t}.example"))
            connections = seed_subscriptions(app, emulator, client_id)
            close_thread_dbs()
            emulator.clear_requests()
            result = renew(config)
            writes = graph_writes(emulator)
    finally:
        emulator.stop()
    return {
        "renew_subscriptions": SUBSCRIPTIONS, "renew_connections": connections, "renew_tenants": TENANTS,
        "renew_wall_s": result["wall"], "renew_per_s": SUBSCRIPTIONS / result["wall"],
        "renew_outcomes": result["outcomes"],
        "renew_graph_writes": writes["patch"] + writes["other_writes"], "renew_patched_unique": writes["patched_unique"],
        "renew_list_calls": writes["list"],
        "renew_peak_mb": result["peak"] - result["rss_before"], "renew_process_peak_rss_mb": result["peak"],
    }
