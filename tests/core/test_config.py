from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from app.core.config import ConfigError, load_settings, read_dotenv

PRODUCTION = {
    "AZURE_CLIENT_ID": "11111111-2222-3333-4444-555555555555",
    "AZURE_CLIENT_SECRET": "client-secret",
    "TOKEN_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
    "SECRET_KEY": "s",
    "API_TOKEN": "t",
}


def test_defaults_follow_the_contract(tmp_path):
    settings = load_settings({"DATABASE_PATH": str(tmp_path / "x.db")})
    assert settings["SANDBOX"] is True
    assert settings["AZURE_AUTHORITY_HOST"] == "https://login.microsoftonline.com"
    assert settings["GRAPH_ENDPOINT"] == "https://graph.microsoft.com"
    assert (settings["HOST"], settings["PORT"]) == ("127.0.0.1", 8000)
    assert settings["PUBLIC_BASE_URL"] == "http://127.0.0.1:8000"
    assert settings["RENEWAL_INTERVAL_SECONDS"] == 300
    assert settings["RECONCILE_INTERVAL_SECONDS"] == 3600
    assert settings["ALLOWED_TENANTS"] == ()


def test_public_base_url_follows_port(tmp_path):
    settings = load_settings({"PORT": "9001", "DATABASE_PATH": str(tmp_path / "x.db")})
    assert settings["PUBLIC_BASE_URL"] == "http://127.0.0.1:9001"


@pytest.mark.parametrize("missing", ["TOKEN_ENCRYPTION_KEYS", "SECRET_KEY", "API_TOKEN"])
def test_secrets_are_required_outside_sandbox(missing):
    environ = {key: value for key, value in PRODUCTION.items() if key != missing}
    with pytest.raises(ConfigError, match=f"^{missing} is required outside sandbox mode"):
        load_settings(environ)


def test_sandbox_generates_secrets_once_and_keeps_them(tmp_path):
    environ = {"DATABASE_PATH": str(tmp_path / "var" / "x.db")}
    first = load_settings(environ)
    second = load_settings(environ)
    for name in ("TOKEN_ENCRYPTION_KEYS", "SECRET_KEY", "API_TOKEN"):
        assert first[name] and first[name] == second[name]
    secrets_file = tmp_path / "var" / "sandbox-secrets.json"
    assert secrets_file.stat().st_mode & 0o777 == 0o600


def test_sandbox_honours_values_that_are_set(tmp_path):
    settings = load_settings({"DATABASE_PATH": str(tmp_path / "x.db"), "API_TOKEN": "mine"})
    assert settings["API_TOKEN"] == "mine"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("PORT", "eighty", "PORT must be a whole number"),
        ("PORT", "70000", "PORT must be a TCP port"),
        ("RENEWAL_INTERVAL_SECONDS", "0", "RENEWAL_INTERVAL_SECONDS must be greater than 0"),
        ("GRAPH_ENDPOINT", "graph.local", "GRAPH_ENDPOINT must be an http(s) URL"),
        ("TOKEN_ENCRYPTION_KEYS", "not-a-key", "TOKEN_ENCRYPTION_KEYS key #1 is not 32"),
        ("LOG_FORMAT", "xml", "LOG_FORMAT must be one of text, json"),
        ("JOB_MAX_ATTEMPTS", "0", "JOB_MAX_ATTEMPTS must be greater than 0"),
        ("JOB_RETRY_MAX_DELAY_SECONDS", "1", "JOB_RETRY_MAX_DELAY_SECONDS must be at least 2"),
        ("EVENTS_URL", "hooks.example/events", "EVENTS_URL must be an http(s) URL"),
        ("EVENTS_SECRET", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "EVENTS_SECRET must be whsec_ followed by a base64"),
        ("EVENTS_SECRET", "whsec_not base64!", "EVENTS_SECRET must be whsec_ followed by a base64"),
        ("EVENTS_SECRET", "whsec_", "EVENTS_SECRET must be whsec_ followed by a base64"),
    ],
)
def test_malformed_values_name_the_variable(name, value, message):
    with pytest.raises(ConfigError) as excinfo:
        load_settings({**PRODUCTION, name: value})
    assert str(excinfo.value).startswith(message)


def test_events_need_a_secret_and_keep_their_url_as_given():
    with pytest.raises(ConfigError, match="^EVENTS_SECRET is required when EVENTS_URL is set"):
        load_settings({**PRODUCTION, "EVENTS_URL": "https://platform.example/hooks/"})
    settings = load_settings({**PRODUCTION, "EVENTS_URL": "https://platform.example/hooks/",
                              "EVENTS_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"})
    assert settings["EVENTS_URL"] == "https://platform.example/hooks/"
    assert load_settings(PRODUCTION)["EVENTS_URL"] is None


def test_key_list_keeps_order_newest_first():
    new, old = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings = load_settings({**PRODUCTION, "TOKEN_ENCRYPTION_KEYS": f" {new} , {old} "})
    assert settings["TOKEN_ENCRYPTION_KEYS"] == (new, old)


def test_allowed_tenants_is_a_list():
    settings = load_settings({**PRODUCTION, "ALLOWED_TENANTS": "a, b,,c"})
    assert settings["ALLOWED_TENANTS"] == ("a", "b", "c")


def test_dotenv_is_read(tmp_path: Path):
    (tmp_path / ".env").write_text("# comment\nAPI_TOKEN='quoted'\nexport PORT=9000\nnot a setting\n")
    assert read_dotenv(tmp_path / ".env") == {"API_TOKEN": "quoted", "PORT": "9000"}
    assert read_dotenv(tmp_path / "missing.env") == {}
