"""Operator commands under ``flask --app wsgi``."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from app import cli_ops
from app.core.backup import backup, pg_dump_command
from app.core.copy import CopyRefused, copy_store
from app.core.crypto import DecryptionError
from app.core.db import is_postgres, open_db, store_location, write_transaction
from app.core.migrations import migrate
from app.records.connections import reencrypt_tokens
from app.records.subscription_rows import reencrypt_client_states
from app.web.context import get_db, services_of

db_group = AppGroup("db", help="Database commands: schema upgrade, copy to PostgreSQL, backup.")
keys_group = AppGroup("keys", help="Token-encryption key commands.")


@db_group.command("upgrade")
def db_upgrade_command() -> None:
    """Apply pending schema migrations."""
    applied = migrate(get_db())
    click.echo(f"applied: {', '.join(applied)}" if applied else "schema is up to date")


@db_group.command("copy")
@click.option("--to", "url", required=True, help="The PostgreSQL database to fill: postgresql://user:pass@host/db")
def db_copy_command(url: str) -> None:
    """Copy this SQLite deployment's data into an empty PostgreSQL database (then set DATABASE_URL to it)."""
    if not is_postgres(url):
        raise click.BadParameter("must be a postgresql:// URL", param_hint="--to")
    if current_app.config.get("DATABASE_URL"):
        raise click.ClickException("the service already uses PostgreSQL (DATABASE_URL is set): nothing to copy")
    shown = re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)
    try:
        with open_db(url) as target:
            copied = copy_store(get_db(), target)
    except CopyRefused as e:
        raise click.ClickException(f"{e}; nothing was changed") from None
    for table, rows in copied.items():
        click.echo(f"{table}: {rows}")
    click.echo(f"copied {sum(copied.values())} rows to {shown}; set DATABASE_URL to it and restart the service"
               " (tokens and subscriptions moved encrypted as they were: keep TOKEN_ENCRYPTION_KEYS)")


@db_group.command("backup")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace PATH if it exists.")
def db_backup_command(path: Path, force: bool) -> None:
    """Write a consistent copy of the SQLite database to PATH, safely while the service runs.

    Restore by stopping the service and putting the copy in place of DATABASE_PATH; then run
    `subscriptions resync`. On PostgreSQL use pg_dump (the command says how).
    """
    if is_postgres(store_location(current_app.config)):
        raise click.ClickException("the service stores its data in PostgreSQL (DATABASE_URL): back it up with "
                                   + pg_dump_command(str(path)))
    try:
        size = backup(get_db(), path, replace=force)
    except FileExistsError:
        raise click.ClickException(f"{path} exists; nothing was written (--force replaces it)") from None
    except (OSError, sqlite3.Error) as e:
        raise click.ClickException(f"cannot write {path}: {getattr(e, 'strerror', None) or e}; nothing was written"
                                   ) from None
    click.echo(f"backed up {store_location(current_app.config)} to {path} ({size:,} bytes)")


@keys_group.command("rotate")
def keys_rotate_command() -> None:
    """Re-encrypt every stored secret with the newest key of TOKEN_ENCRYPTION_KEYS.

    Add the new key in front of the list, run this, then remove the old key.
    """
    cipher, db = services_of(current_app).cipher, get_db()
    try:
        with write_transaction(db):
            total = reencrypt_tokens(db, cipher) + reencrypt_client_states(db, cipher)
    except DecryptionError as e:
        raise click.ClickException(f"{e}; nothing was changed") from None
    click.echo(f"re-encrypted {total} stored secret(s) with the newest key")


def init_app(app: Flask) -> None:
    app.cli.add_command(db_group)
    app.cli.add_command(keys_group)
    cli_ops.init_app(app)
