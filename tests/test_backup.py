"""``flask --app wsgi db backup PATH``: a live SQLite database copied consistently, and a service that
works on the restored copy; on PostgreSQL, the pg_dump command to use instead."""

from __future__ import annotations

import shutil
import sqlite3
import stat
import threading
import time
from email.message import EmailMessage

from app import create_app
from app.core.db import open_db
from app.records.records import create_record
from app.records.threads import store_upload
from tests.conftest import ApiClient

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB of every byte value


def email(n: int, attachment: bytes = b"") -> bytes:
    message = EmailMessage()
    message["Message-ID"] = f"<backup.{n}@acme.example>"
    message["From"] = "Dana Whitfield <dana@acme.example>"
    message["To"] = "megan@contoso.example"
    message["Subject"] = f"Invoice {n}"
    message["Date"] = "Tue, 03 Nov 2026 09:00:00 +0000"
    message.set_content(f"Invoice number {n} is attached.")
    if attachment:
        message.add_attachment(attachment, maintype="application", subtype="octet-stream", filename=f"invoice-{n}.bin")
    return bytes(message)


class Writer(threading.Thread):
    """Another connection writing records with an upload each, one transaction apiece, until stopped."""

    def __init__(self, path: str) -> None:
        super().__init__(daemon=True)
        self.path, self.commits, self.stop = path, 0, threading.Event()

    def run(self) -> None:
        with open_db(self.path) as db:
            n = 1000
            while not self.stop.is_set():
                record = create_record(db, f"Live {n}")
                store_upload(db, record["id"], email(n, b"live bytes %d" % n))
                self.commits += 1
                n += 1


def test_a_backup_of_a_live_database_restores_to_a_working_service(app, api, app_config, tmp_path):
    record = api.create_record("Acme vendor file")
    for n in range(12):  # some megabytes, so the copy takes a while the writer keeps writing through
        rv = api.post(f"/api/records/{record['id']}/emails", data=email(n, PAYLOAD),
                      headers={"Content-Type": "message/rfc822"})
        assert rv.status_code == 201, rv.get_json()
    writer = Writer(app_config["DATABASE_PATH"])
    writer.start()
    while writer.commits < 5:
        time.sleep(0.01)
    target = tmp_path / "backups" / "service-backup.db"
    target.parent.mkdir()
    before = writer.commits
    result = app.test_cli_runner().invoke(args=["db", "backup", str(target)])
    during = writer.commits - before
    writer.stop.set()
    writer.join(10)

    assert result.exit_code == 0, result.output
    assert str(target) in result.output and f"{target.stat().st_size:,} bytes" in result.output
    assert during > 0, "the writer was held up while the backup ran"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no temporary file or -wal left
    with sqlite3.connect(target) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        # One snapshot: every upload the copy holds came with its thread key and its attachment's bytes.
        assert copy.execute("SELECT count(*) FROM messages m WHERE NOT EXISTS (SELECT 1 FROM thread_message_ids k"
                            " WHERE k.record_id = m.record_id AND k.message_id = m.internet_message_id)").fetchone()[0] == 0
        assert copy.execute("SELECT count(*) FROM attachments a LEFT JOIN attachment_content c"
                            " ON c.attachment_id = a.id WHERE c.attachment_id IS NULL").fetchone()[0] == 0
    copy.close()

    restored = tmp_path / "restored" / "service.db"
    restored.parent.mkdir(mode=0o700)
    shutil.copy(target, restored)
    service = ApiClient(create_app({**app_config, "DATABASE_PATH": str(restored)}).test_client())
    assert service.get(f"/api/records/{record['id']}").get_json()["title"] == "Acme vendor file"
    messages = service.get(f"/api/records/{record['id']}/thread").get_json()["messages"]
    assert [m["subject"] for m in messages] == [f"Invoice {n}" for n in range(12)]
    attachment = messages[3]["attachments"][0]
    assert service.get(f"/api/records/{record['id']}/attachments/{attachment['id']}").data == PAYLOAD
    assert service.post("/api/records", json={"title": "After the restore"}).status_code == 201


def test_an_existing_file_is_kept_unless_forced(app, api, tmp_path):
    target = tmp_path / "backup.db"
    target.write_bytes(b"an older backup")
    refused = app.test_cli_runner().invoke(args=["db", "backup", str(target)])
    assert refused.exit_code != 0 and "exists" in refused.output and "--force" in refused.output
    assert target.read_bytes() == b"an older backup"
    api.create_record("Kept")
    forced = app.test_cli_runner().invoke(args=["db", "backup", "--force", str(target)])
    assert forced.exit_code == 0, forced.output
    with sqlite3.connect(target) as copy:
        assert copy.execute("SELECT title FROM records").fetchall() == [("Kept",)]
    copy.close()


def test_a_folder_that_does_not_exist_is_one_clear_line(app, tmp_path):
    result = app.test_cli_runner().invoke(args=["db", "backup", str(tmp_path / "missing" / "backup.db")])
    assert result.exit_code != 0 and "cannot write" in result.output and "Traceback" not in result.output


def test_on_postgresql_it_names_pg_dump_and_writes_nothing(app, tmp_path):
    app.config["DATABASE_URL"] = "postgresql://service@db.internal/outlook"  # read before any connection
    target = tmp_path / "backup.dump"
    result = app.test_cli_runner().invoke(args=["db", "backup", str(target)])
    assert result.exit_code != 0
    assert result.output.strip().splitlines() == [
        f'Error: the service stores its data in PostgreSQL (DATABASE_URL): back it up with '
        f'pg_dump --format=custom --file={target} "$DATABASE_URL"']
    assert not target.exists()
