"""Shared fixtures, after flaskr's: ``app`` on a temporary database, ``client``, ``runner``, ``api``;
``db_path`` for the queue and worker tests, which need a migrated database but no app."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from app import create_app
from app.core.db import close_thread_dbs, open_db, thread_db
from app.core.migrations import migrate
from emulator import Emulator

API_TOKEN = "test-api-token"


@pytest.fixture
def app_config(tmp_path: Path) -> dict:
    return {
        "TESTING": True,
        "DATABASE_PATH": str(tmp_path / "service.db"),
        "TOKEN_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "SECRET_KEY": "test-secret-key",
        "API_TOKEN": API_TOKEN,
    }


@pytest.fixture(autouse=True)
def _close_databases():
    yield
    close_thread_dbs()


@pytest.fixture
def app(app_config: dict, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.chdir(tmp_path)  # no stray .env from the developer's checkout
    return create_app(app_config)


@pytest.fixture
def db(app):
    """The test thread's connection to the app's database."""
    return thread_db(app.config["DATABASE_PATH"])


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "queue.db"
    with open_db(path) as db:
        migrate(db)
    return path


@pytest.fixture
def emulator():
    """A running emulator of the identity platform and Graph on a free loopback port."""
    emu = Emulator()
    emu.start()
    yield emu
    emu.stop()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


class ApiClient:
    """Calls ``/api`` with the bearer token, as the records platform does."""

    def __init__(self, client) -> None:
        self._client = client
        self.headers = {"Authorization": f"Bearer {API_TOKEN}"}

    def get(self, path: str, **kwargs):
        return self._client.get(path, headers={**self.headers, **kwargs.pop("headers", {})}, **kwargs)

    def post(self, path: str, **kwargs):
        return self._client.post(path, headers={**self.headers, **kwargs.pop("headers", {})}, **kwargs)

    def delete(self, path: str, **kwargs):
        return self._client.delete(path, headers={**self.headers, **kwargs.pop("headers", {})}, **kwargs)

    def patch(self, path: str, **kwargs):
        return self._client.patch(path, headers={**self.headers, **kwargs.pop("headers", {})}, **kwargs)

    def create_record(self, title: str = "Acme vendor file", **fields) -> dict:
        rv = self.post("/api/records", json={"title": title, **fields})
        assert rv.status_code == 201, rv.get_json()
        return rv.get_json()


@pytest.fixture
def api(client) -> ApiClient:
    return ApiClient(client)
