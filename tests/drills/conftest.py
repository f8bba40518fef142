"""Fixtures for the fault drills: a fresh emulator per drill, and the service in-thread against it.

Drills that kill the service or time its acknowledgements run it as a process instead
(:class:`tests.drills.harness.ServiceProcess`).
"""

from __future__ import annotations

import pytest
import requests

from app.core.db import store_location, thread_db
from tests.conftest import API_TOKEN
from tests.drills.harness import start_conversation
from tests.e2e.harness import Browser, ServiceServer
from tests.e2e.mail import queue_idle
from tests.e2e.waiting import wait_for


@pytest.fixture
def service(emulator, app_config):
    server = ServiceServer(emulator, app_config, workers=2).start()
    yield server
    server.stop()


class Api:
    """The records platform calling the service over HTTP."""

    def __init__(self, service: ServiceServer) -> None:
        self.service = service
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {API_TOKEN}"

    def get(self, path, **kwargs):
        return self.http.get(self.service.url(path), timeout=30, **kwargs)

    def post(self, path, **kwargs):
        return self.http.post(self.service.url(path), timeout=30, **kwargs)


@pytest.fixture
def api(service) -> Api:
    return Api(service)


@pytest.fixture
def megan(service) -> str:
    return service.demo["users"]["megan"]


@pytest.fixture
def db(service):
    return thread_db(store_location(service.app.config))


@pytest.fixture
def connected(service, api, megan, db) -> dict:
    """A record whose first email is also in Megan's inbox, Megan connected, and the queue quiet again."""
    record = start_conversation(api, service.emulator, megan)
    assert Browser(service).connect(record["id"], "megan").status_code == 302
    wait_for(lambda: list(db.query("SELECT 1 FROM subscriptions WHERE status = 'active'")) and queue_idle(db),
             timeout=20, message="subscribed, backfilled and reconciled")
    [connection] = api.get("/api/connections").json()["connections"]
    return {"record": record, "connection": connection}
