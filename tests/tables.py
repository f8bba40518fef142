"""The few calls of sqlite-utils' ``Table`` the tests make to set up and inspect rows, over either engine:
``table(db, "jobs").get(7)``, ``.insert({...})``, ``.count``, ``.rows``, ``.rows_where(...)``, ``.update(...)``.

The service itself writes only through its domain modules; these are the tests' shortcuts around them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from app.core.dialects import dialect_of


class Table:
    def __init__(self, db: Any, name: str) -> None:
        self.db, self.name = db, name

    @property
    def count(self) -> int:
        return self.db.execute(f"SELECT count(*) FROM {self.name}").fetchone()[0]

    @property
    def rows(self) -> Iterator[dict[str, Any]]:
        return self.rows_where()

    def rows_where(self, where: str | None = None, args: Sequence[Any] | Mapping[str, Any] = (), *,
                   order_by: str | None = None) -> Iterator[dict[str, Any]]:
        sql = f"SELECT * FROM {self.name}" + (f" WHERE {where}" if where else "")
        return iter(self.db.query(sql + (f" ORDER BY {order_by}" if order_by else ""), args))

    def get(self, key: Any, *, pk: str = "id") -> dict[str, Any]:
        rows = list(self.db.query(f"SELECT * FROM {self.name} WHERE {pk} = ?", [key]))
        if not rows:
            raise LookupError(f"no row of {self.name} has {pk} = {key!r}")
        return rows[0]

    def insert(self, row: Mapping[str, Any], *, ignore: bool = False) -> Table:
        columns = ", ".join(row)
        marks = ", ".join("?" * len(row))
        conflict = " ON CONFLICT DO NOTHING" if ignore else ""
        self.db.execute(f"INSERT INTO {self.name} ({columns}) VALUES ({marks}){conflict}", list(row.values()))
        if "id" in row:
            dialect_of(self.db).after_bulk_insert(self.db)
        return self

    def update(self, key: Any, values: Mapping[str, Any], *, pk: str = "id") -> Table:
        assignments = ", ".join(f"{column} = ?" for column in values)
        self.db.execute(f"UPDATE {self.name} SET {assignments} WHERE {pk} = ?", [*values.values(), key])
        return self


def table(db: Any, name: str) -> Table:
    return Table(db, name)


def table_names(db: Any) -> list[str]:
    """The names of the schema's tables."""
    if dialect_of(db).name == "sqlite":
        sql = "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
    else:
        sql = ("SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema()"
               " ORDER BY table_name")
    return [row["name"] for row in db.query(sql)]


def everything_stored(db: Any, config: Mapping[str, Any]) -> bytes:
    """Every byte the store holds, to check that something is stored nowhere: on SQLite the database
    files themselves (after a checkpoint, so free pages and the WAL count too); on PostgreSQL every
    value of every row, bytes as they are."""
    if dialect_of(db).name == "sqlite":
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        path = Path(config["DATABASE_PATH"])
        return b"".join(file.read_bytes() for file in path.parent.glob(path.name + "*"))
    values = (value for name in table_names(db) for row in table(db, name).rows for value in row.values())
    return b"\n".join(value if isinstance(value, bytes) else str(value).encode() for value in values)
