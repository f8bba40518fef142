"""End-to-end fixtures: the emulator and the service as real HTTP servers on loopback."""

from __future__ import annotations

import pytest
import requests

from tests.conftest import API_TOKEN
from tests.e2e.harness import Browser, ServiceServer


@pytest.fixture
def service(emulator, app_config):
    server = ServiceServer(emulator, app_config).start()
    yield server
    server.stop()


@pytest.fixture
def browser(service) -> Browser:
    return Browser(service)


@pytest.fixture
def api(service):
    """The records platform calling the service's API over HTTP."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {API_TOKEN}"

    class Api:
        def get(self, path, **kwargs):
            return session.get(service.url(path), timeout=30, **kwargs)

        def post(self, path, **kwargs):
            return session.post(service.url(path), timeout=30, **kwargs)

        def delete(self, path, **kwargs):
            return session.delete(service.url(path), timeout=30, **kwargs)

        def create_record(self, title="Acme vendor file"):
            rv = self.post("/api/records", json={"title": title})
            assert rv.status_code == 201, rv.text
            return rv.json()

    return Api()
