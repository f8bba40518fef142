import os
import signal
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

from app import create_app
from app.core.crypto import Cipher
from app.core.db import store_location, thread_db
from app.web.context import services_of
from tests.tables import table


def test_db_upgrade_reports_an_up_to_date_schema(runner):
    result = runner.invoke(args=["db", "upgrade"])
    assert result.exit_code == 0
    assert "schema is up to date" in result.output


def _store_connection(db, cipher) -> None:
    now = "2026-01-01T00:00:00+00:00"
    table(db, "tenants").insert({"id": "t1", "created_at": now, "updated_at": now})
    table(db, "connections").insert({"id": 1, "tenant_id": "t1", "user_id": "u1", "token_cache": cipher.encrypt("cache"),
                              "created_at": now, "updated_at": now})


def test_keys_rotate_reencrypts_with_the_newest_key(app_config):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    app = create_app({**app_config, "TOKEN_ENCRYPTION_KEYS": old})
    db = thread_db(store_location(app.config))
    _store_connection(db, Cipher([old]))

    rotated = create_app({**app_config, "TOKEN_ENCRYPTION_KEYS": f"{new},{old}"})
    result = rotated.test_cli_runner().invoke(args=["keys", "rotate"])
    assert result.exit_code == 0, result.output
    assert "re-encrypted 1 stored secret(s)" in result.output
    stored = table(db, "connections").get(1)["token_cache"]
    assert Cipher([new]).decrypt_text(stored) == "cache"


def test_keys_rotate_with_a_wrong_key_changes_nothing(app_config):
    old = Fernet.generate_key().decode()
    app = create_app({**app_config, "TOKEN_ENCRYPTION_KEYS": old})
    db = thread_db(store_location(app.config))
    _store_connection(db, Cipher([old]))
    before = table(db, "connections").get(1)["token_cache"]

    wrong = create_app({**app_config, "TOKEN_ENCRYPTION_KEYS": Fernet.generate_key().decode()})
    result = wrong.test_cli_runner().invoke(args=["keys", "rotate"])
    assert result.exit_code != 0
    assert "cannot be decrypted" in result.output
    assert table(db, "connections").get(1)["token_cache"] == before


def _seed(app) -> None:
    db = thread_db(store_location(app.config))
    now = "2026-01-01T00:00:00+00:00"
    table(db, "tenants").insert({"id": "t1", "created_at": now, "updated_at": now})
    table(db, "connections").insert({"id": 1, "tenant_id": "t1", "user_id": "u1", "email": "megan@contoso.example",
                              "status": "reconnect_required", "status_reason": "invalid_grant (AADSTS50173)",
                              "created_at": now, "updated_at": now})
    table(db, "subscriptions").insert({"id": "sub-1", "connection_id": 1, "resource": "/users/u1/messages",
                                "change_type": "created", "client_state": b"x", "expires_at": "2030-01-01",
                                "routable_until": "2030-01-01", "created_at": now, "updated_at": now})


def test_connections_list_shows_status_and_reason(app, runner):
    _seed(app)
    result = runner.invoke(args=["connections", "list"])
    assert result.exit_code == 0
    assert "reconnect_required" in result.output and "megan@contoso.example" in result.output
    assert "AADSTS50173" in result.output


def test_queue_stats_and_retry_dead(app, runner):
    queue = services_of(app).queue
    job_id = queue.enqueue("reconcile", {"connection_id": 1})
    claimed = queue.claim("w", 60)
    queue.dead_letter(claimed.id, "w", "reconnect_required")
    stats = runner.invoke(args=["queue", "stats"])
    assert stats.exit_code == 0 and "dead=1" in stats.output
    retried = runner.invoke(args=["queue", "retry-dead"])
    assert retried.exit_code == 0
    assert f"job {job_id} (reconcile): reconnect_required" in retried.output
    assert "re-queued 1 dead job(s)" in retried.output
    assert queue.stats().by_state["queued"] == 1


def test_subscriptions_list_and_filters(app, runner):
    _seed(app)
    assert "sub-1" in runner.invoke(args=["subscriptions", "list"]).output
    assert "no subscriptions" in runner.invoke(args=["subscriptions", "list", "--connection", "2"]).output


def test_subscriptions_renew_and_resync_skip_inactive_connections(app, runner):
    _seed(app)
    app_db = thread_db(store_location(app.config))
    app_db.execute("UPDATE subscriptions SET status = 'replaced'")
    assert "nothing to renew" in runner.invoke(args=["subscriptions", "renew"]).output
    result = runner.invoke(args=["subscriptions", "resync"])
    assert result.exit_code == 0 and "across 0 connection(s)" in result.output


def _commands(group, prefix=()):
    for name, command in group.commands.items():
        yield (*prefix, name), command
        if hasattr(command, "commands"):
            yield from _commands(command, (*prefix, name))


def test_every_operator_command_has_help(app, runner):
    ours = {"db", "keys", "connections", "queue", "subscriptions", "worker"}
    for path, command in _commands(app.cli):
        if path[0] not in ours:
            continue
        result = runner.invoke(args=[*path, "--help"])
        assert result.exit_code == 0, path
        assert (command.help or "").strip(), f"{' '.join(path)} has no help text"


def test_worker_command_runs_until_sigterm(tmp_path):
    env = {**os.environ, "DATABASE_PATH": str(tmp_path / "w.db"), "LOG_LEVEL": "INFO"}
    env.pop("AZURE_CLIENT_ID", None)
    process = subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "worker", "--threads", "1"],
                               cwd=Path(__file__).resolve().parents[1], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        for line in process.stdout:  # wait until the signal handlers are in place
            lines.append(line)
            if "worker running" in line:
                break
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, "".join(lines) + output
    assert "Runtime: stopped" in output
