"""Liveness (``/healthz``), readiness (``/readyz``) and Prometheus metrics (``/metrics``)."""

from __future__ import annotations

from collections.abc import Iterator

from flask import Blueprint, Response, current_app, jsonify
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import GaugeMetricFamily
from sqlite_utils import Database

from app.core.db import store_location
from app.core.metrics import registry_for
from app.records import events
from app.web.context import get_db
from app.web.readiness import run_checks

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok", "sandbox": current_app.config["SANDBOX"]})


@bp.get("/readyz")
def readyz():
    checks = run_checks(get_db(), certificate=current_app.config["AZURE_CLIENT_CERTIFICATE_PATH"],
                        events_delivery=bool(current_app.config["EVENTS_URL"]))
    ready = all(check["ok"] for check in checks.values())
    warnings = sorted(name for name, check in checks.items() if check.get("warning"))
    return (jsonify({"status": "ready" if ready else "not_ready", "warnings": warnings, "checks": checks}),
            200 if ready else 503)


@bp.get("/metrics")
def metrics():
    return Response(generate_latest(registry_for(store_location(current_app.config), extra=(event_gauges,))),
                    mimetype=CONTENT_TYPE_LATEST)


def event_gauges(db: Database) -> Iterator[GaugeMetricFamily]:
    """Events not yet delivered, and the delivery lag."""
    stats = events.stats(db)
    family = GaugeMetricFamily("outlook_events", "Events not delivered yet, by state (failing: pending after a "
                               "failed attempt).", labels=["state"])
    for state, count in (("pending", stats.pending), ("failing", stats.failing), ("dead", stats.dead)):
        family.add_metric([state], count)
    yield family
    yield GaugeMetricFamily("outlook_events_oldest_pending_seconds", "Delivery lag: age of the oldest pending event.",
                            value=stats.oldest_pending_age)
