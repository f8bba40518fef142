from cryptography.fernet import Fernet

from app import create_app
from app.crypto import Cipher
from app.storage import thread_db


def test_db_upgrade_reports_an_up_to_date_schema(runner):
    result = runner.invoke(args=["db", "upgrade"])
    assert result.exit_code == 0
    assert "schema is up to date" in result.output


def _store_connection(db, cipher) -> None:
    now = "2026-01-01T00:00:00+00:00"
    db["tenants"].insert({"id": "t1", "created_at": now, "updated_at": now})
    db["connections"].insert({"id": 1, "tenant_id": "t1", "user_id": "u1", "token_cache": cipher.encrypt("cache"),
                              "created_at": now, "updated_at": now})


def test_keys_rotate_reencrypts_with_the_newest_key(app_config):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    app = create_app({**app_config, "TOKEN_ENCRYPTION_KEYS": old})
    db = thread_db(app.config["DATABASE_PATH"])
    _store_connection(db, Cipher([old]))

    rotated = create_app({**app_config, "TOKEN_ENCRYPTION_KEYS": f"{new},{old}"})
    result = rotated.test_cli_runner().invoke(args=["keys", "rotate"])
    assert result.exit_code == 0, result.output
    assert "re-encrypted 1 stored secret(s)" in result.output
    stored = db["connections"].get(1)["token_cache"]
    assert Cipher([new]).decrypt_text(stored) == "cache"


def test_keys_rotate_with_a_wrong_key_changes_nothing(app_config):
    old = Fernet.generate_key().decode()
    app = create_app({**app_config, "TOKEN_ENCRYPTION_KEYS": old})
    db = thread_db(app.config["DATABASE_PATH"])
    _store_connection(db, Cipher([old]))
    before = db["connections"].get(1)["token_cache"]

    wrong = create_app({**app_config, "TOKEN_ENCRYPTION_KEYS": Fernet.generate_key().decode()})
    result = wrong.test_cli_runner().invoke(args=["keys", "rotate"])
    assert result.exit_code != 0
    assert "cannot be decrypted" in result.output
    assert db["connections"].get(1)["token_cache"] == before
