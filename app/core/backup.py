"""A consistent copy of the SQLite database while the service runs: ``flask --app wsgi db backup PATH``.

SQLite's online backup (``sqlite3.Connection.backup``) copies the pages of one read transaction: in WAL
mode that snapshot is consistent, and the service's writers go on meanwhile (only checkpoints wait for it).
It is taken in one step: a backup in several steps starts over whenever another connection writes
between two of them, so under a busy service it might never end. Copying the files instead could
catch the database between a commit in the WAL and its checkpoint.

PostgreSQL has its own tool for this, ``pg_dump``; the command names it instead of pretending.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sqlite3
import tempfile
from pathlib import Path

from sqlite_utils import Database

from app.core.db import FILE_MODE


def pg_dump_command(path: str) -> str:
    """The command that backs up a PostgreSQL deployment to ``path``."""
    return f'pg_dump --format=custom --file={shlex.quote(path)} "$DATABASE_URL"'


def backup(db: Database, target: Path, *, replace: bool = False) -> int:
    """Write the SQLite database ``db`` to ``target`` as one self-contained file (mode 0600, like the
    database: it holds mail and encrypted tokens); return its size in bytes.

    The copy is written to a temporary file beside ``target`` and renamed into place once complete and
    on disk, so ``target`` is never half a backup. An existing ``target`` is kept (:class:`FileExistsError`)
    unless ``replace``.
    """
    if target.exists() and not replace:
        raise FileExistsError(f"{target} exists")
    descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    os.close(descriptor)  # mkstemp makes it readable by this user only
    try:
        copy = sqlite3.connect(temporary, isolation_level=None)
        try:
            db.conn.backup(copy)
            copy.execute("PRAGMA journal_mode=DELETE")  # one file: no -wal beside it to forget
        finally:
            copy.close()
        os.chmod(temporary, FILE_MODE)
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        if replace:
            os.replace(temporary, target)
        else:
            os.link(temporary, target)  # fails if target appeared meanwhile: never overwritten unasked
        _sync_directory(target.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    return target.stat().st_size


def _sync_directory(path: Path) -> None:
    """Make a rename in ``path`` durable (POSIX: the directory entry is flushed with the directory)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
