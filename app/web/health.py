"""Liveness (``/healthz``), readiness (``/readyz``) and Prometheus metrics (``/metrics``)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.core.db import store_location
from app.core.metrics import registry_for
from app.web.context import get_db
from app.web.readiness import run_checks

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok", "sandbox": current_app.config["SANDBOX"]})


@bp.get("/readyz")
def readyz():
    checks = run_checks(get_db(), certificate=current_app.config["AZURE_CLIENT_CERTIFICATE_PATH"])
    ready = all(check["ok"] for check in checks.values())
    return jsonify({"status": "ready" if ready else "not_ready", "checks": checks}), 200 if ready else 503


@bp.get("/metrics")
def metrics():
    return Response(generate_latest(registry_for(store_location(current_app.config))),
                    mimetype=CONTENT_TYPE_LATEST)
