"""The store's connections: opening one never undermines the others; statements mean the same on either engine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from app.core.db import open_db

# Another process reads and closes its connection, as `sqlite3` on the command line or a backup does.
READ_AND_CLOSE = "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute('SELECT count(*) FROM t').fetchone(); c.close()"


def test_a_new_connection_keeps_the_live_ones_locks_so_another_process_leaves_the_wal_alone(tmp_path: Path):
    path = tmp_path / "service.db"
    live = open_db(path)
    live.execute("CREATE TABLE t (x)")
    live.execute("INSERT INTO t VALUES (1)")  # in the WAL, not yet checkpointed
    open_db(path).close()  # a new worker thread's connection comes and goes
    subprocess.run([sys.executable, "-c", READ_AND_CLOSE, str(path)], check=True)
    # Had this process's locks been dropped, the other process would have taken itself for the last
    # connection and checkpointed and deleted the WAL under the live one.
    assert path.with_name("service.db-wal").exists()
    assert live.execute("SELECT count(*) FROM t").fetchone()[0] == 1


@pytest.mark.both_engines
def test_a_percent_sign_in_the_sql_is_text_on_either_engine(db_path):
    """``LIKE`` patterns written into a statement mean the same on PostgreSQL as on SQLite, with
    parameters beside them or without."""
    with open_db(db_path) as db:
        db.execute("INSERT INTO records (title, created_at) VALUES (?, ?), (?, ?)",
                   ["50% done", "2026-12-03T00:00:00Z", "plain", "2026-12-03T00:00:00Z"])
        assert [r["title"] for r in db.query("SELECT title FROM records WHERE title LIKE '%\\%%' ESCAPE '\\'")] \
            == ["50% done"]
        assert [r["title"] for r in db.query("SELECT title FROM records WHERE title LIKE '%' || ? AND title <> ?",
                                             ["done", "x"])] == ["50% done"]


