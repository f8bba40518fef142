"""Sender-controlled mail cannot burn CPU or grow storage without bound (uploads and Graph alike).

Uploads go through the API (``api`` fixture, real SQLite); Graph messages through the linking code
the workers run. Times are generous multiples of what the service needs (tens of milliseconds):
the standard library took seconds to minutes on the same inputs.
"""

from __future__ import annotations

import time

import pytest

from app.records.matching import CandidateMessage
from app.records.rfc822 import parse_email
from tests.security.mail_support import email, graph_message, linked, upload  # noqa: F401 (linked: a fixture)
from tests.tables import table

HTML = b"Content-Type: text/html"


def keys_of(db, record_id: int) -> list[str]:
    return [row["message_id"] for row in db.query("SELECT message_id FROM thread_message_ids WHERE record_id = ?",
                                                  [record_id])]


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


@pytest.mark.parametrize(("raw", "named"), [
    (email(b"Subject: " + b"word " * 30_000), "The Subject header is over 100 KB"),
    (email(b"To: " + b"a@b.example, " * 150_000), "The To header is over 100 KB"),
    (email(*[b"X-Filler-%d: " % i + b"x" * 95_000 for i in range(12)]), "headers are over 1 MB in all"),
    (email(b'Content-Type: multipart/mixed; boundary="b"',
           body=b"\r\n--b\r\nContent-Type: text/plain; " + b"a=b; " * 30_000 + b"\r\n\r\nx\r\n--b--\r\n"),
     "The Content-Type header is over 100 KB"),  # a MIME part's header counts too
])
def test_oversized_headers_are_refused_fast_with_the_reason(api, db, raw, named):
    record = api.create_record()
    rv, took = timed(lambda: upload(api, record["id"], raw))
    assert rv.status_code == 422, rv.get_data()[:200]
    assert rv.get_json()["error"]["code"] == "invalid_email"
    assert named in rv.get_json()["error"]["message"]
    assert took < 1.0
    assert table(db, "messages").count == 0


# Inputs within the caps on which the standard library's parsers are super-linear (seconds to
# minutes, or a RecursionError that answered 500), with what the service still reads from them.
HOSTILE = {
    "quoted strings in To": (email(b"To: " + b'"a' * 50_000), lambda p: p.to == ()),
    "nested comments in To": (email(b"To: " + b"(" * 100_000), lambda p: p.to == ()),
    "3,800 addresses in each of From, To and Cc": (
        email(*[name + b": " + b"Dana Buyer <d@x.example>, " * 3800 for name in (b"From", b"To", b"Cc")]),
        lambda p: len(p.to) == 1000 and p.from_.address == "d@x.example"),
    "Content-Type parameters": (email(b"Content-Type: text/plain; " + b"a=b; " * 20_000), lambda p: p.body),
    "unterminated HTML tags": (email(HTML, body=b"\r\n" + b"<a " * 50_000), lambda p: p.body_preview.startswith("<a <a")),
    "HTML comments without end": (email(HTML, body=b"\r\n<p>hi</p>" + b"<!--" * 250_000),
                                  lambda p: p.body_preview == "hi"),
    "nested multiparts": (email(*[b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d' % (i, i)
                                  for i in range(20_000)]), lambda p: p.body is None),
    "300,000 parts": (email(b'Content-Type: multipart/mixed; boundary="b"',
                            body=b"\r\n" + b"--b\r\n\r\n" * 300_000 + b"--b--\r\n"), lambda p: p.body is not None),
    "10 MB of empty lines": (email(body=b"\r\n" * 5_000_000), lambda p: p.body_truncated),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_mail_within_the_caps_is_read_in_linear_time(name):
    raw, check = HOSTILE[name]
    parsed, took = timed(lambda: parse_email(raw))
    assert took < 0.5, f"{name}: {took:.2f} s"
    assert check(parsed)


def test_nested_comments_in_an_address_header_answer_201_not_500(api):
    record = api.create_record()
    rv = upload(api, record["id"], email(b"To: " + b"(" * 50_000, b"Cc: Vera <vera@vendor.example>"))
    assert rv.status_code == 201, rv.get_data()[:200]
    assert rv.get_json()["cc"] == [{"name": "Vera", "address": "vera@vendor.example"}]


def test_an_upload_keeps_the_last_100_references_and_102_thread_keys(api, db):
    ids = [f"<{i}@x.example>" for i in range(5000)]
    raw = email(b"In-Reply-To: <parent@x.example>", b"References: " + " ".join(ids).encode())
    assert len(raw) < 100 * 1024
    record = api.create_record()
    rv = upload(api, record["id"], raw)
    assert rv.status_code == 201, rv.get_data()[:200]
    assert rv.get_json()["references"] == ids[-100:]
    assert sorted(keys_of(db, record["id"])) == sorted([*ids[-100:], "<hostile@sender.example>",
                                                        "<parent@x.example>"])


def test_a_message_id_over_998_characters_is_refused(api, db):
    record = api.create_record()
    rv = upload(api, record["id"], b"Message-ID: <" + b"x" * 990 + b"@x.example>\r\n\r\nhi\r\n")
    assert rv.status_code == 422
    assert "at most 998" in rv.get_json()["error"]["message"]
    long_reference = "<" + "r" * 1000 + "@x.example>"
    rv = upload(api, record["id"], email(f"References: <short@x.example> {long_reference}".encode()))
    assert rv.status_code == 201 and rv.get_json()["references"] == ["<short@x.example>"]
    assert long_reference not in keys_of(db, record["id"])


def test_a_body_over_1_mb_is_stored_cut_and_marked(api, db):
    record = api.create_record()
    rv = upload(api, record["id"], email(b"Content-Type: text/plain; charset=utf-8",
                                         body=b"\r\n" + "é".encode() * 600_000))
    assert rv.status_code == 201
    entry = api.get(f"/api/records/{record['id']}/thread").get_json()["messages"][0]
    assert entry["body_truncated"] is True
    assert entry["body"] == "é" * (1024 * 1024 // 2)
    small = upload(api, record["id"], b"Message-ID: <small@x.example>\r\n\r\nhi\r\n").get_json()
    assert small["body_truncated"] is False


# -- Graph messages are as sender-controlled as uploads: the same bounds apply ---------------------

def test_a_graph_message_keeps_the_last_100_references_and_its_body_is_cut_at_1_mb(linked, api):  # noqa: F811
    ids = [f"<{i}@x.example>" for i in range(5000)]
    message = graph_message(internetMessageHeaders=[{"name": "References", "value": " ".join(ids)}],
                            body={"contentType": "text", "content": "x" * (3 * 1024 * 1024)})
    assert CandidateMessage.from_graph(message, 1).references == tuple(ids[-100:])
    record, row = linked(message)
    assert len(row["body"]) == 1024 * 1024 and row["body_truncated"] == 1
    entry = api.get(f"/api/records/{record['id']}/thread").get_json()["messages"][0]
    assert entry["references"] == ids[-100:] and entry["body_truncated"] is True


def test_a_graph_message_whose_message_id_is_over_998_characters_matches_nothing():
    message = graph_message(internetMessageId="<" + "x" * 1000 + "@vendor.example>")
    assert CandidateMessage.from_graph(message, 1).internet_message_id is None
