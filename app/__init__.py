"""The Outlook Integration service: a Flask application built by :func:`create_app`.

This root wires the layers together and holds no rule of its own: :func:`build_services` makes the one
:class:`~app.records.services.Services` of a process, :func:`create_app` the web app around it;
:mod:`app.runtime` adds the workers and the scheduler, :mod:`app.__main__` the server.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

from app import cli
from app.core.config import SETTINGS_BY_NAME, load_settings, read_dotenv
from app.core.crypto import Cipher
from app.core.db import store_location, thread_db
from app.core.login_sessions import SESSION_LIFETIME
from app.core.mailbox_slots import MailboxSlots
from app.core.migrations import migrate_at_start
from app.core.queue import JobQueue
from app.microsoft.graph import MAILBOX_CONCURRENCY
from app.microsoft.http import Session
from app.microsoft.identity import Identity
from app.records.connections import TokenCacheStore
from app.records.services import Services
from app.web import (
    admin,
    api_events,
    api_mailboxes,
    api_organizations,
    api_outbox,
    api_records,
    auth,
    context,
    health,
    openapi,
    pages,
    receiver,
    security_headers,
)
from app.web.errors import RowIdConverter, register_error_handlers
from app.web.request_ids import init_request_ids

MAX_REQUEST_BYTES = 10 * 1024 * 1024  # every route but a send, which takes its files (MAX_SEND_REQUEST_BYTES)
BLUEPRINTS = (health.bp, openapi.bp, api_records.bp, api_outbox.bp, api_mailboxes.bp, api_organizations.bp,
              api_events.bp, auth.bp, pages.bp, admin.bp)


def build_services(config: Mapping[str, Any]) -> Services:
    """The collaborators of one process, from its settings."""
    verify = config["REQUESTS_CA_BUNDLE"] or True
    cipher = Cipher(config["TOKEN_ENCRYPTION_KEYS"])
    database = store_location(config)
    identity = Identity(
        client_id=config["AZURE_CLIENT_ID"] or "",
        credential=config["AZURE_CLIENT_CERTIFICATE_PATH"] or config["AZURE_CLIENT_SECRET"] or "",
        authority_host=config["AZURE_AUTHORITY_HOST"], verify=verify,
        token_caches=TokenCacheStore(lambda: thread_db(database), cipher), db_factory=lambda: thread_db(database),
    )
    queue = JobQueue(database, max_attempts=config["JOB_MAX_ATTEMPTS"])
    return Services(dict(config), cipher, identity, queue, Session(verify),
                    mailbox_slots=MailboxSlots(lambda: thread_db(database), slots=MAILBOX_CONCURRENCY))


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Create and configure an instance of the service.

    Settings come from the environment (and ``.env``); ``config`` overrides them, which is how
    tests and sandbox mode point the service at a database or an emulator. Nothing starts here:
    the worker and scheduler run from ``python -m app`` or ``flask --app wsgi worker``.
    """
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

    services = build_services(app.config)
    context.install(app, services)
    migrate_at_start(services.db())  # the schema is current before the first request
    register_error_handlers(app)
    headers = security_headers.init_app(app)
    init_request_ids(app)
    app.url_map.converters["id"] = RowIdConverter
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    cli.init_app(app)
    receiver.mount(app, services, headers)
    return app
