"""The database and its -wal and -shm files hold mail and tokens: readable by the service's user only."""

import os
import stat

import pytest

from app import create_app


@pytest.fixture
def open_umask():
    previous = os.umask(0o022)  # the usual default: new files readable by everyone
    yield
    os.umask(previous)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_new_database_and_its_journal_files_are_private(app_config, tmp_path, monkeypatch, open_umask):
    monkeypatch.chdir(tmp_path)
    database = tmp_path / "var" / "service.db"
    app = create_app({**app_config, "DATABASE_PATH": str(database)})
    app.test_client().post("/api/records", json={"title": "Acme"},
                           headers={"Authorization": f"Bearer {app_config['API_TOKEN']}"})
    files = [database, database.with_name("service.db-wal"), database.with_name("service.db-shm")]
    assert {path.name: mode(path) for path in files} == {path.name: 0o600 for path in files}
    assert mode(database.parent) == 0o700


def test_an_existing_readable_database_is_made_private(app_config, tmp_path, monkeypatch, open_umask):
    monkeypatch.chdir(tmp_path)
    database = tmp_path / "service.db"
    database.touch(mode=0o644)
    create_app({**app_config, "DATABASE_PATH": str(database)})
    assert mode(database) == 0o600
