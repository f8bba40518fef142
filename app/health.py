"""Liveness: ``GET /healthz`` answers as long as the process serves requests."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok", "sandbox": current_app.config["SANDBOX"]})
