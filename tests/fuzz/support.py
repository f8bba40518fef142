"""What the property-based tests share: one app per module on a fresh database, and row counts."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from flask import Flask

from app import create_app
from app.core.db import store_location, thread_db


def fuzz_app(path: Path, api_token: str) -> Flask:
    """An app on a new database in ``path`` (and with ``path`` as working directory: no stray .env)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(path)
        return create_app({
            "TESTING": True, "DATABASE_PATH": str(path / "service.db"),
            "TOKEN_ENCRYPTION_KEYS": Fernet.generate_key().decode(), "SECRET_KEY": "fuzz", "API_TOKEN": api_token,
        })


def row_counts(app: Flask, tables: tuple[str, ...]) -> dict[str, int]:
    """How many rows each table holds: input that is rejected must leave these unchanged."""
    db = thread_db(store_location(app.config))
    return {table: db[table].count for table in tables}

