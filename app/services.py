"""The collaborators background work needs, built once per process from the app's settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flask import Flask
from sqlite_utils import Database

from app import metrics
from app.crypto import Cipher
from app.graph import GraphClient
from app.http import Session
from app.identity import Identity
from app.storage import thread_db
from app.timeutil import utcnow
from handlers.queue import SqliteQueue
from handlers.retry import Retry, job_retry


@dataclass
class Services:
    """Shared by the web app, the workers and the scheduler of one process."""

    config: dict[str, Any]
    cipher: Cipher
    identity: Identity
    queue: SqliteQueue
    retry: Retry  # how often, and how long apart, the workers try a job
    session: Session = field(default_factory=Session)
    clock: Callable[[], datetime] = utcnow  # tests move time forward by replacing it

    def db(self) -> Database:
        """This thread's database connection."""
        return thread_db(self.config["DATABASE_PATH"])

    def graph_for(self, connection_id: int) -> GraphClient:
        """A Graph client acting as the user of ``connection_id``."""
        return GraphClient(
            f"{self.config['GRAPH_ENDPOINT']}/v1.0",
            lambda force_refresh=False: self.identity.access_token(connection_id, force_refresh=force_refresh),
            self.session, mailbox=str(connection_id),
            observe=metrics.observe_graph,
        )


def build_services(app: Flask) -> Services:
    config = app.config
    verify = config["REQUESTS_CA_BUNDLE"] or True
    cipher = app.extensions["cipher"]
    database = config["DATABASE_PATH"]
    identity = Identity(
        client_id=config["AZURE_CLIENT_ID"] or "", client_secret=config["AZURE_CLIENT_SECRET"] or "",
        authority_host=config["AZURE_AUTHORITY_HOST"], verify=verify, cipher=cipher,
        db_factory=lambda: thread_db(database),
    )
    retry = job_retry(config["JOB_MAX_ATTEMPTS"], config["JOB_RETRY_MAX_DELAY_SECONDS"])
    return Services(dict(config), cipher, identity, SqliteQueue(database, max_attempts=retry.max_attempts), retry,
                    Session(verify))
