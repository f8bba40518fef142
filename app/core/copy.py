"""Moving a SQLite deployment's rows into PostgreSQL as they are: ``flask --app wsgi db copy --to …``.

Like the migrations, this is the schema's own business, not a domain write: every row of every table
moves unchanged, so it is the one module besides :mod:`app.core.migrations` that names tables at run
time (``tests/test_architecture.py`` says so). Encrypted tokens and client states move as the same bytes:
no key is needed, nobody consents again, and Graph keeps delivering to the same subscriptions.
"""

from __future__ import annotations

from typing import Any

from sqlite_utils import Database

from app.core.dialects import dialect_of
from app.core.migrations import migrate
from app.core.postgres import PostgresDatabase

BATCH_ROWS = 1000
# Rows the migrations themselves insert (the default organization): the source's copy replaces them.
SEEDED = {"organizations": "id = 1"}


class CopyRefused(Exception):
    """The target is not an empty store of this schema; nothing was changed."""


def copy_store(source: Database, target: PostgresDatabase) -> dict[str, int]:
    """Copy every row of ``source`` into ``target`` in one transaction; return the rows copied per table.

    Both are migrated to the current schema first. A target that holds rows of its own is refused.
    """
    migrate(source)
    migrate(target)
    tables = _parents_first(source)
    held = [table for table in tables if _count(target, table, SEEDED.get(table)) > 0]
    if held:
        raise CopyRefused(f"the target already holds rows in {', '.join(held)}; copy into an empty database")
    copied = {}
    with target.atomic():
        for table, where in SEEDED.items():
            target.execute(f"DELETE FROM {table} WHERE {where}")
        for table in tables:
            copied[table] = _copy_table(source, target, table)
        dialect_of(target).after_bulk_insert(target)
    return copied


def _copy_table(source: Database, target: PostgresDatabase, table: str) -> int:
    cursor = source.execute(f"SELECT * FROM {table} ORDER BY rowid")
    columns = [column[0] for column in cursor.description]
    insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    total = 0
    while rows := cursor.fetchmany(BATCH_ROWS):
        target.executemany(insert, rows)
        total += len(rows)
    return total


def _count(db: Any, table: str, except_where: str | None) -> int:
    where = f" WHERE NOT ({except_where})" if except_where else ""
    return db.execute(f"SELECT count(*) FROM {table}{where}").fetchone()[0]


def _parents_first(source: Database) -> list[str]:
    """The schema's tables, each after the tables its foreign keys name."""
    names = [row["name"] for row in source.query(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND substr(name, 1, 1) != '_'"
        " AND name NOT LIKE 'sqlite%' ORDER BY name")]
    parents = {name: {row["table"] for row in source.query("SELECT * FROM pragma_foreign_key_list(?)", [name])}
               - {name} for name in names}
    ordered: list[str] = []
    while parents:
        ready = sorted(name for name, needs in parents.items() if needs <= set(ordered))
        if not ready:
            raise CopyRefused(f"the foreign keys of {sorted(parents)} form a cycle")
        ordered += ready
        for name in ready:
            del parents[name]
    return ordered
