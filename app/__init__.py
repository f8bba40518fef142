"""The Outlook Integration service: a Flask application built by :func:`create_app`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

MAX_REQUEST_BYTES = 10 * 1024 * 1024  # uploaded emails are the largest bodies we accept


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Create and configure an instance of the service.

    Settings come from the environment (and ``.env``); ``config`` overrides them, which is how
    tests and sandbox mode point the service at a database or an emulator. Nothing starts here:
    the worker and scheduler run from ``python -m app`` or ``flask --app wsgi worker``.
    """
    from app import admin, api, auth, cli, health, pages, security_headers, storage, webhooks
    from app import api_mailboxes, api_outbox  # noqa: F401  (their routes live on api.bp)
    from app.config import SETTINGS_BY_NAME, load_settings, read_dotenv
    from app.crypto import Cipher
    from app.errors import RowIdConverter, register_error_handlers
    from app.login_sessions import SESSION_LIFETIME
    from app.logs import init_request_ids
    from app.services import build_services

    config = dict(config or {})
    environ = {**read_dotenv(Path(".env")), **os.environ}
    app = Flask(__name__)
    app.config.update(load_settings(environ, overrides=config))
    app.config.update({key: value for key, value in config.items() if key not in SETTINGS_BY_NAME})
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"  # a second layer against cross-site posts
    app.config["SESSION_COOKIE_SECURE"] = app.config["PUBLIC_BASE_URL"].startswith("https://")
    app.config["PERMANENT_SESSION_LIFETIME"] = SESSION_LIFETIME  # a session cookie signed longer ago is refused
    app.secret_key = app.config["SECRET_KEY"]
    app.extensions["cipher"] = Cipher(app.config["TOKEN_ENCRYPTION_KEYS"])

    services = build_services(app)
    app.extensions.update(services=services, identity=services.identity, queue=services.queue,
                          wake_workers=lambda: None)

    storage.init_app(app)
    register_error_handlers(app)
    security_headers.init_app(app)
    init_request_ids(app)
    app.url_map.converters["id"] = RowIdConverter
    for blueprint in (health.bp, api.bp, auth.bp, pages.bp, admin.bp):
        app.register_blueprint(blueprint)
    cli.init_app(app)
    webhooks.mount(app)
    return app
