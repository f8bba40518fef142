"""``flask --app wsgi db copy --to postgresql://…``: a SQLite deployment moves to PostgreSQL as it is."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from app import create_app
from app.core.db import open_db
from app.web.context import services_of
from tests.conftest import ApiClient
from tests.tables import table

NOW = "2026-01-01T00:00:00+00:00"


@pytest.fixture
def target(postgres_server):
    url = postgres_server.fresh_database()
    yield url
    postgres_server.drop(url)


def upload(api: ApiClient, record_id: int) -> None:
    email = EmailMessage()
    email["Message-ID"], email["From"], email["To"] = "<first.1@acme.example>", "dana@acme.example", "m@contoso.example"
    email["Subject"] = "Onboarding documents"
    email.set_content("Attached are our W-9 and banking details.")
    rv = api.post(f"/api/records/{record_id}/emails", data=bytes(email), headers={"Content-Type": "message/rfc822"})
    assert rv.status_code == 201, rv.get_json()


def test_a_sqlite_deployment_moves_with_its_mail_tokens_and_subscriptions(app, api, db, runner, target, app_config):
    record = api.create_record()
    upload(api, record["id"])
    cipher = services_of(app).cipher
    table(db, "tenants").insert({"id": "t1", "created_at": NOW, "updated_at": NOW})
    table(db, "connections").insert({"id": 5, "tenant_id": "t1", "user_id": "u1",
                                     "token_cache": cipher.encrypt("cache"), "created_at": NOW, "updated_at": NOW})
    table(db, "subscriptions").insert({"id": "sub-1", "connection_id": 5, "resource": "/users/u1/messages",
                                       "change_type": "created", "client_state": cipher.encrypt("secret-state"),
                                       "expires_at": "2099-01-01", "routable_until": "2099-01-01",
                                       "created_at": NOW, "updated_at": NOW})

    result = runner.invoke(args=["db", "copy", "--to", target.replace("postgres@", "postgres:hunter2@")])
    assert result.exit_code == 0, result.output
    assert "messages: 1" in result.output and "connections: 1" in result.output
    assert "hunter2" not in result.output and "postgres:***@" in result.output

    moved = create_app({**app_config, "DATABASE_URL": target})
    moved_api = ApiClient(moved.test_client())
    [entry] = moved_api.get(f"/api/records/{record['id']}/thread").get_json()["messages"]
    assert entry["internet_message_id"] == "<first.1@acme.example>"
    with open_db(target) as store:
        assert cipher.decrypt_text(table(store, "connections").get(5)["token_cache"]) == "cache"
        assert cipher.decrypt_text(table(store, "subscriptions").get("sub-1")["client_state"]) == "secret-state"
    assert moved_api.create_record()["id"] > record["id"]  # the ids go on after the copied ones


def test_a_target_with_data_of_its_own_is_refused_and_left_as_it_was(api, runner, target):
    with open_db(target) as store:
        table(store, "records").insert({"title": "already here", "created_at": NOW})
    api.create_record()
    result = runner.invoke(args=["db", "copy", "--to", target])
    assert result.exit_code != 0 and "already holds rows in records" in result.output
    with open_db(target) as store:
        assert [row["title"] for row in table(store, "records").rows] == ["already here"]


def test_only_a_postgresql_url_is_a_target(runner):
    result = runner.invoke(args=["db", "copy", "--to", "/tmp/other.db"])
    assert result.exit_code != 0 and "postgresql://" in result.output
