"""Settings: one table of every variable the service reads, parsed once at start-up.

Each setting names its environment variable, default and meaning (the README's configuration
table mirrors this list, and a test keeps the two in step). :func:`load_settings` turns the raw
environment (plus an optional ``.env`` file and the test mapping) into typed values, or raises
:class:`ConfigError` with one sentence naming the variable at fault.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from cryptography.fernet import Fernet

from app.core.client_certificate import ClientCertificate, load_client_certificate
from app.core.db import is_postgres

WEBHOOK_SECRET_PREFIX = "whsec_"


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable."""


class Setting(NamedTuple):
    name: str
    default: Any
    help: str
    parse: Callable[[str, Any], Any] = lambda name, raw: raw
    required_outside_sandbox: bool = False


def _text(name: str, raw: Any) -> str:
    return str(raw).strip()


def _endpoint(name: str, raw: Any) -> str:
    """An http(s) URL used as it is (a receiver may tell ``/hook`` from ``/hook/``)."""
    value = str(raw).strip()
    if not value.startswith(("http://", "https://")):
        raise ConfigError(f"{name} must be an http(s) URL, got {value!r}")
    return value


def _url(name: str, raw: Any) -> str:
    """A base URL, which paths are appended to: without its trailing slash."""
    return _endpoint(name, raw).rstrip("/")


def _postgres_url(name: str, raw: Any) -> str | None:
    value = str(raw).strip()
    if not value:
        return None
    if not is_postgres(value):
        raise ConfigError(f"{name} must be a postgresql:// URL, got a value starting {value[:12]!r}")
    return value


def _client_certificate(name: str, raw: Any) -> ClientCertificate | None:
    path = str(raw).strip()
    if not path:
        return None
    try:
        return load_client_certificate(path)
    except ValueError as e:
        raise ConfigError(f"{name}: {e}") from None


def _positive_int(name: str, raw: Any) -> int:
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be greater than 0, got {value}")
    return value


def _at_least(minimum: int) -> Callable[[str, Any], int]:
    def parse(name: str, raw: Any) -> int:
        value = _positive_int(name, raw)
        if value < minimum:
            raise ConfigError(f"{name} must be at least {minimum}, got {value}")
        return value

    return parse


def _port(name: str, raw: Any) -> int:
    value = _positive_int(name, raw)
    if value > 65535:
        raise ConfigError(f"{name} must be a TCP port (1-65535), got {value}")
    return value


def _csv(name: str, raw: Any) -> tuple[str, ...]:
    if isinstance(raw, (list, tuple)):
        return tuple(str(item).strip() for item in raw if str(item).strip())
    return tuple(item.strip() for item in str(raw).split(",") if item.strip())


def _fernet_keys(name: str, raw: Any) -> tuple[str, ...]:
    keys = _csv(name, raw)
    if not keys:
        raise ConfigError(f"{name} must hold at least one key")
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise ConfigError(
                f"{name} key #{position} is not 32 url-safe base64-encoded bytes "
                "(generate one with: python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())')"
            ) from None
    return keys


def _webhook_secret(name: str, raw: Any) -> str:
    """A Standard Webhooks secret: ``whsec_`` and the key in base64 (as Svix and the spec print them)."""
    value = str(raw).strip()
    key = value.removeprefix(WEBHOOK_SECRET_PREFIX)
    try:
        decoded = base64.b64decode(key + "=" * (-len(key) % 4), validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if not value.startswith(WEBHOOK_SECRET_PREFIX) or not decoded:
        raise ConfigError(f"{name} must be {WEBHOOK_SECRET_PREFIX} followed by a base64-encoded key (generate one "
                          "with: python -c 'import base64, secrets; "
                          "print(\"whsec_\" + base64.b64encode(secrets.token_bytes(32)).decode())')")
    return value


def _choice(*allowed: str) -> Callable[[str, Any], str]:
    def parse(name: str, raw: Any) -> str:
        value = str(raw).strip().lower()
        if value not in allowed:
            raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {raw!r}")
        return value

    return parse


SETTINGS: tuple[Setting, ...] = (
    Setting("AZURE_CLIENT_ID", None, "The Entra ID app registration's client id. When unset the service "
            "runs in sandbox mode against the embedded emulator.", _text),
    Setting("AZURE_CLIENT_SECRET", None, "The app registration's client secret.", _text),
    Setting("AZURE_CLIENT_CERTIFICATE_PATH", None, "A PEM file with the app registration's certificate and its "
            "unencrypted private key, used instead of `AZURE_CLIENT_SECRET` (Microsoft's recommendation for "
            "production).", _client_certificate),
    Setting("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.com",
            "Identity platform base URL; the authority is `{host}/organizations`.", _url),
    Setting("GRAPH_ENDPOINT", "https://graph.microsoft.com",
            "Graph base URL; the service calls `{GRAPH_ENDPOINT}/v1.0/...`.", _url),
    Setting("PUBLIC_BASE_URL", None, "The service's externally reachable base URL; notification URLs and "
            "the OAuth redirect URI are built from it. Default `http://127.0.0.1:{PORT}`.", _url),
    Setting("HOST", "127.0.0.1", "Where `python -m app` listens.", _text),
    Setting("PORT", 8000, "The port `python -m app` listens on.", _port),
    Setting("DATABASE_PATH", "var/outlook-integration.db", "The SQLite database file.", _text),
    Setting("DATABASE_URL", None, "`postgresql://…` puts the store and the queue on PostgreSQL (any number of web "
            "and worker processes on any number of hosts); unset: SQLite at `DATABASE_PATH`.", _postgres_url),
    Setting("TOKEN_ENCRYPTION_KEYS", None, "Comma-separated Fernet keys, newest first; add a new key in front "
            "to rotate, then run `flask --app wsgi keys rotate`.", _fernet_keys, True),
    Setting("SECRET_KEY", None, "Signs the browser session cookie.", _text, True),
    Setting("API_TOKEN", None, "Bearer token required on every `/api/*` call.", _text, True),
    Setting("ADMIN_PASSWORD", None, "Optional password for the `/admin` page (the `API_TOKEN` always works too).",
            _text),
    Setting("ALLOWED_TENANTS", (), "Optional comma-separated tenant ids allowed to connect; empty means all.",
            _csv),
    Setting("RENEWAL_INTERVAL_SECONDS", 300, "How often the subscription renewal job runs.", _positive_int),
    Setting("RECONCILE_INTERVAL_SECONDS", 3600, "How often the delta reconcile runs per connection.",
            _positive_int),
    Setting("REQUESTS_CA_BUNDLE", None, "CA bundle for msal and Graph calls (standard requests variable).",
            _text),
    Setting("ATTACHMENT_MAX_BYTES", 25 * 1024 * 1024, "The largest attachment whose bytes are kept on a record; a "
            "larger one is listed with its name and size and marked as not kept.", _positive_int),
    Setting("WORKER_THREADS", 32, "Most worker threads that process the queue (`python -m app`, `flask --app wsgi "
            "worker`): one more starts whenever all are busy, an idle one beyond the first retires.", _positive_int),
    Setting("WEB_THREADS", 8, "Request threads of the WSGI server in `python -m app` (under gunicorn, set it to "
            "`--threads`). A quarter of them, at least 2, are kept for Graph's deliveries; other requests get `503` "
            "when the rest are busy.", _positive_int),
    Setting("WEB_MAX_CONNECTIONS", 10_000, "The most connections `python -m app` holds open at once; fewer if "
            "the process's hard open-file limit cannot fit them plus 256 other files (it logs a warning then).",
            _positive_int),
    Setting("WEB_CLIENT_TIMEOUT_SECONDS", 75, "`python -m app` closes a connection idle this long, or one whose "
            "request head is still incomplete this long after its first byte.", _positive_int),
    Setting("JOB_MAX_ATTEMPTS", 12, "Attempts a queued job (a notification, a send, a subscribe) gets before it "
            "is dead-lettered; a pause Graph asked for (429 with Retry-After) does not count.", _positive_int),
    Setting("JOB_RETRY_MAX_DELAY_SECONDS", 900, "The longest wait between a job's attempts; waits double from 2 s "
            "up to it. With the defaults a failing job is retried for up to 47 minutes.", _at_least(2)),
    Setting("EVENTS_URL", None, "Where the service POSTs events for the records platform (Standard Webhooks, "
            "signed with `EVENTS_SECRET`); unset: nothing is delivered, `GET /api/events` still lists them.", _endpoint),
    Setting("EVENTS_SECRET", None, "The Standard Webhooks secret (`whsec_` and a base64 key) that signs each event "
            "delivery; required with `EVENTS_URL`.", _webhook_secret),
    Setting("LOG_LEVEL", "INFO", "Logging level: DEBUG, INFO, WARNING or ERROR.",
            lambda name, raw: _choice("debug", "info", "warning", "error")(name, raw).upper()),
    Setting("LOG_FORMAT", "text", "`text` for readable lines, `json` for one JSON object per line.",
            _choice("text", "json")),
)

SANDBOX_SECRETS_FILE = "sandbox-secrets.json"


def read_dotenv(path: Path) -> dict[str, str]:
    """Read ``KEY=VALUE`` lines (``#`` comments, optional quotes); a missing file is empty."""
    if not path.is_file():
        return {}
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        values[key.strip()] = value.strip().strip("'\"")
    return values


def load_settings(environ: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Parse every setting from ``environ`` (then ``overrides``) into a typed dict.

    Outside sandbox mode a missing required setting is a :class:`ConfigError`. In sandbox mode
    (no ``AZURE_CLIENT_ID``) missing secrets are generated once and kept beside the database,
    so tokens encrypted in one run still decrypt in the next.
    """
    raw = {key: value for key, value in environ.items() if value not in (None, "")}
    raw.update({key: value for key, value in (overrides or {}).items() if value is not None})
    settings: dict[str, Any] = {}
    for setting in SETTINGS:
        value = raw.get(setting.name, setting.default)
        settings[setting.name] = setting.parse(setting.name, value) if value is not None else None
    settings["SANDBOX"] = not settings["AZURE_CLIENT_ID"]
    missing = [s.name for s in SETTINGS if s.required_outside_sandbox and settings[s.name] is None]
    if missing and not settings["SANDBOX"]:
        raise ConfigError(f"{missing[0]} is required outside sandbox mode (AZURE_CLIENT_ID is set)")
    _check_one_credential(settings)
    if settings["EVENTS_URL"] and not settings["EVENTS_SECRET"]:
        raise ConfigError("EVENTS_SECRET is required when EVENTS_URL is set")
    if missing:
        generated = _sandbox_secrets(Path(settings["DATABASE_PATH"]).parent)
        for name in missing:
            settings[name] = SETTINGS_BY_NAME[name].parse(name, generated[name])
    if settings["PUBLIC_BASE_URL"] is None:
        settings["PUBLIC_BASE_URL"] = f"http://127.0.0.1:{settings['PORT']}"
    return settings


def _check_one_credential(settings: dict[str, Any]) -> None:
    """The app registration authenticates with a secret or with a certificate: exactly one outside sandbox."""
    secret, certificate = settings["AZURE_CLIENT_SECRET"], settings["AZURE_CLIENT_CERTIFICATE_PATH"]
    if secret and certificate:
        raise ConfigError("AZURE_CLIENT_SECRET and AZURE_CLIENT_CERTIFICATE_PATH are both set; set only one "
                          "(the certificate is the one Microsoft recommends)")
    if not settings["SANDBOX"] and not (secret or certificate):
        raise ConfigError("AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH is required when AZURE_CLIENT_ID "
                          "is set")


def _sandbox_secrets(directory: Path) -> dict[str, str]:
    """Generated secrets for sandbox mode, created on first use and reused afterwards."""
    path = directory / SANDBOX_SECRETS_FILE
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    values = {
        "TOKEN_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "SECRET_KEY": secrets.token_urlsafe(32),
        "API_TOKEN": secrets.token_urlsafe(24),
    }
    directory.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process of this service won the race
        return json.loads(path.read_text(encoding="utf-8"))
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(values, handle)
    return values


SETTINGS_BY_NAME = {setting.name: setting for setting in SETTINGS}
