"""A send request's attachments are checked before anything is queued: base64 bytes, at most 20 files,
and no more together than Exchange Online accepts in one message."""

from __future__ import annotations

import base64

import pytest

from app.web import validation
from app.web.validation import parse_send_request
from tests.web.test_pages import connected, megan_signed_in, record  # noqa: F401  (fixtures)

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
    import io
    import json

    from tests.tables import table
    from tests.web.test_pages import open_form, post

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
    import io
    import json

    from tests.tables import table
    from tests.web.test_pages import open_form, post

    form = open_form(client, connected["id"])
    assert post(client, connected["id"], form, attachments=(io.BytesIO(b""), "")).status_code == 303
    [send] = list(table(db, "outbox").rows)
    assert "attachments" not in json.loads(send["request"])
