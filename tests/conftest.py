"""Shared fixtures, after flaskr's: ``app`` on a temporary database, ``client``, ``runner``, ``api``;
``db_path`` for the queue and worker tests, which need a migrated database but no app.

The store is SQLite unless a test is marked ``both_engines``: it then runs twice, the second time on a
database of its own on a real PostgreSQL server (:mod:`tests.postgres`), and ``engine`` says which."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from app import create_app
from app.core.db import close_pools, close_thread_dbs, open_db, store_location, thread_db
from app.core.migrations import migrate
from emulator import Emulator
from tests.postgres import PostgresServer, test_server

API_TOKEN = "test-api-token"
ENGINES = ("sqlite", "postgresql")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "engine" in metafunc.fixturenames and metafunc.definition.get_closest_marker("both_engines"):
        metafunc.parametrize("engine", ENGINES, indirect=True)


@pytest.fixture
def engine(request: pytest.FixtureRequest) -> str:
    """``sqlite``, or ``postgresql`` for the second run of a ``both_engines`` test."""
    return getattr(request, "param", "sqlite")


@pytest.fixture(scope="session")
def postgres_server():
    server = test_server()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(engine: str, request: pytest.FixtureRequest) -> Iterator[str | None]:
    """A new migrated PostgreSQL database when the engine is PostgreSQL, else None."""
    if engine != "postgresql":
        yield None
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    url = server.fresh_database()
    yield url
    close_pools()
    server.drop(url)


@pytest.fixture
def app_config(tmp_path: Path, postgres_url: str | None) -> dict:
    return {
        "TESTING": True,
        "DATABASE_PATH": str(tmp_path / "service.db"),
        "DATABASE_URL": postgres_url,
        "TOKEN_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "SECRET_KEY": "test-secret-key",
        "API_TOKEN": API_TOKEN,
    }


@pytest.fixture(autouse=True)
def _close_databases():
    yield
    close_thread_dbs()
    close_pools()


@pytest.fixture
def app(app_config: dict, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.chdir(tmp_path)  # no stray .env from the developer's checkout
    return create_app(app_config)


@pytest.fixture
def db(app):
    """The test thread's connection to the app's database."""
    return thread_db(store_location(app.config))


@pytest.fixture
def db_path(tmp_path: Path, postgres_url: str | None) -> Path | str:
    """Where a migrated store is: a SQLite file, or the PostgreSQL database's URL."""
    if postgres_url is not None:
        return postgres_url
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
