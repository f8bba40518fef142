"""A send request's attachments are checked before anything is queued: base64 bytes, at most 20 files,
and no more together than Exchange Online accepts in one message."""

from __future__ import annotations

import base64
import io
import json

import pytest
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from app.web import validation
from app.web.validation import parse_send_request
from tests.tables import table
from tests.web.test_pages import connected, megan_signed_in, open_form, post, record  # noqa: F401  (fixtures)

REQUEST = {"connection_id": 1, "to": ["dana@acme.example"], "body": "Attached."}


def test_files_are_decoded_and_their_names_made_safe():
    parsed = parse_send_request({**REQUEST, "attachments": [
        {"name": "../W-9.pdf", "content_type": "application/pdf", "content_base64": base64.b64encode(b"%PDF").decode()},
        {"name": "notes.txt", "content_base64": ""}]})
    assert parsed["attachments"] == [{"name": "W-9.pdf", "content_type": "application/pdf", "content": b"%PDF"},
                                     {"name": "notes.txt", "content_type": "application/octet-stream", "content": b""}]


@pytest.mark.parametrize(("attachments", "code"), [
    ("not a list", "invalid_field"),
    ([{"name": "a.pdf", "content_base64": "not base64!"}], "invalid_field"),
    ([{"name": "a.pdf"}], "invalid_field"),
    ([{"content_base64": "AAAA"}], "missing_field"),
    (["a.pdf"], "invalid_field"),
    ([{"name": f"{n}.txt", "content_base64": ""} for n in range(21)], "invalid_field"),
])
def test_malformed_attachments_are_refused_naming_the_field(attachments, code):
    with pytest.raises(validation.APIError) as refused:
        parse_send_request({**REQUEST, "attachments": attachments})
    assert refused.value.code == code and refused.value.status == 422


def test_files_over_exchanges_message_size_limit_together_are_refused(monkeypatch):
    monkeypatch.setattr(validation, "MAX_MESSAGE_BYTES", 10)
    six = base64.b64encode(b"123456").decode()
    with pytest.raises(validation.APIError) as refused:
        parse_send_request({**REQUEST, "attachments": [{"name": "a", "content_base64": six}] * 2})
    assert refused.value.code == "message_too_large"


def test_the_compose_form_sends_the_chosen_files(client, db, connected):
    form = open_form(client, connected["id"])
    rv = post(client, connected["id"], form, attachments=[(io.BytesIO(b"%PDF-1.4 W-9"), "W-9.pdf", "application/pdf"),
                                                          (io.BytesIO(b"IBAN"), "bank.txt", "text/plain")])
    assert rv.status_code == 303
    [send] = list(table(db, "outbox").rows)
    assert [(a["name"], a["content_type"], a["size"]) for a in json.loads(send["request"])["attachments"]] == [
        ("W-9.pdf", "application/pdf", 12), ("bank.txt", "text/plain", 4)]
    stored = [bytes(row["content"]) for row in db.query("SELECT content FROM outbox_attachments ORDER BY position")]
    assert stored == [b"%PDF-1.4 W-9", b"IBAN"]


def test_the_compose_form_without_files_sends_none(client, db, connected):
    form = open_form(client, connected["id"])
    assert post(client, connected["id"], form, attachments=(io.BytesIO(b""), "")).status_code == 303
    [send] = list(table(db, "outbox").rows)
    assert "attachments" not in json.loads(send["request"])


TWELVE_MB = bytes(range(256)) * (12 * 4096)  # over the 10 MiB every other route accepts, even before base64


def test_a_send_may_be_larger_than_other_requests_so_its_files_fit(api, connected):
    rv = api.post(f"/api/records/{connected['id']}/messages", headers={"Idempotency-Key": "large-1"}, json={
        **REQUEST, "connection_id": 3, "attachments": [
            {"name": "scan.tif", "content_base64": base64.b64encode(TWELVE_MB).decode()}]})
    assert rv.status_code == 202, rv.get_json()
    uploaded = api.post(f"/api/records/{connected['id']}/emails", data=TWELVE_MB,
                        headers={"Content-Type": "message/rfc822"})
    assert uploaded.status_code == 413


def test_the_compose_form_takes_a_large_file_and_a_long_message(client, db, connected):
    form = open_form(client, connected["id"])
    # Encoded in memory: the test client would spool so large a form to a file it never closes.
    boundary, body = encode_multipart({**form, "mode": "new", "to": "vendor@acme.example", "subject": "Scan",
                                       "body": "Long letter. " * 50_000,
                                       "attachments": FileStorage(io.BytesIO(TWELVE_MB), "scan.tif",
                                                                  content_type="image/tiff")})
    rv = client.post(f"/records/{connected['id']}/compose", data=body,
                     content_type=f"multipart/form-data; boundary={boundary}")
    assert rv.status_code == 303
    [stored] = [bytes(row["content"]) for row in db.query("SELECT content FROM outbox_attachments")]
    assert stored == TWELVE_MB


def test_a_send_over_the_largest_a_message_may_be_is_refused_before_it_is_read(api, connected, monkeypatch):
    monkeypatch.setattr(validation, "MAX_SEND_REQUEST_BYTES", 1000)
    rv = api.post(f"/api/records/{connected['id']}/messages", headers={"Idempotency-Key": "huge-1"}, json={
        **REQUEST, "connection_id": 3, "attachments": [{"name": "a.bin", "content_base64": "A" * 2000}]})
    assert rv.status_code == 413 and rv.get_json()["error"]["code"]
