"""Property-based tests of uploaded emails (``POST /api/records/{id}/emails``, raw RFC 822).

Any bytes get a 201 or a 4xx, never a 5xx; a rejected upload changes nothing; an email with a usable
Message-ID is always accepted whatever else is wrong with it (broken dates, addresses, encodings,
charsets, MIME structure), shows up on the thread once, and uploading it again adds nothing.
"""

from __future__ import annotations

import base64
import quopri
from datetime import datetime, timezone
from email.header import Header

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.core.db import store_location, thread_db
from app.core.timeutil import iso
from tests.fuzz.support import fuzz_app, row_counts
from tests.tables import table

TOKEN = "fuzz-upload-token"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "message/rfc822"}
RECORD, MISSING_RECORD = 1, 424_242
STATE_TABLES = ("records", "messages", "outbox", "jobs", "thread_message_ids", "thread_conversations")

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    application = fuzz_app(tmp_path_factory.mktemp("fuzz-uploads"), TOKEN)
    table(thread_db(store_location(application.config)), "records").insert(
        {"id": RECORD, "title": "Acme vendor file", "created_at": iso(datetime.now(timezone.utc))})
    return application


def counts(app) -> dict[str, int]:
    return row_counts(app, STATE_TABLES)


def upload(client, raw: bytes, record: int = RECORD):
    return client.post(f"/api/records/{record}/emails", data=raw, headers=AUTH)


def new_record(client) -> int:
    rv = client.post("/api/records", json={"title": "fuzzed upload"}, headers={"Authorization": AUTH["Authorization"]})
    assert rv.status_code == 201
    return rv.get_json()["id"]


def thread(client, record: int) -> list[dict]:
    rv = client.get(f"/api/records/{record}/thread", headers={"Authorization": AUTH["Authorization"]})
    assert rv.status_code == 200
    return rv.get_json()["messages"]


# -- strategies ---------------------------------------------------------------------------------

atoms = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.-_+=$", min_size=1, max_size=20)
message_id_values = st.builds(lambda local, domain, pad: f"{pad}<{local}@{domain}>{pad}".encode(), atoms, atoms,
                              st.sampled_from(["", " ", "  "]))
unicode_text = st.text(max_size=60)
raw_values = st.binary(max_size=80).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))


def _encoded_word(value: str, charset: str) -> bytes:
    value = value.encode(charset, "replace").decode(charset)  # what the charset can carry
    return Header(value, charset).encode().encode("ascii")


header_values = st.one_of(
    unicode_text.map(lambda s: s.encode("utf-8", "replace").replace(b"\r", b"").replace(b"\n", b"")),  # 8-bit headers
    st.builds(_encoded_word, unicode_text, st.sampled_from(["utf-8", "iso-8859-1"])).filter(lambda b: b"\n" not in b),
    st.sampled_from([b"=?utf-8?B?not-base64!?=", b"=?x-unknown?Q?abc?=", b"=?utf-8?Q?=ZZ?=", b"=?", b"<", b"\"", b"(",
                     b"\"unterminated <a@x.example>", b"a@", b"@b", b"<<a@x.example>>", b",,,", b"undisclosed:;"]),
    raw_values,
)
address_values = st.one_of(
    st.builds(lambda name, local, domain: f"{name} <{local}@{domain}.example>".encode("utf-8"),
              st.text(alphabet=st.characters(blacklist_characters="\r\n<>\"", blacklist_categories=("Cs", "Cc")),
                      max_size=20), atoms, atoms),
    st.lists(st.builds(lambda a, b: f"{a}@{b}.example".encode(), atoms, atoms), min_size=1, max_size=3)
    .map(lambda xs: b", ".join(xs)),
    header_values,
)
dates = st.one_of(st.sampled_from([b"Tue, 03 Nov 2026 09:00:00 +0000", b"3 Nov 2026 09:00 GMT", b"Tue, 03 Nov 2026",
                                   b"Fri, 31 Feb 2026 25:61:61 +9999", b"yesterday", b"Mon, 01 Jan 0001 00:00:00 -2400",
                                   b"Sat, 01 Jan 10000 00:00:00 +0000", b""]), header_values)
references = st.lists(st.builds(lambda a, b: f"<{a}@{b}>".encode(), atoms, atoms), max_size=4).map(b" ".join)

# utf-7 bodies can decode to lone surrogates (see test_a_utf_7_body_...).
charsets = st.sampled_from(["utf-8", "iso-8859-1", "windows-1252", "us-ascii", "x-unknown-charset", "utf-16",
                            "utf-7", ""])
encodings = st.sampled_from(["7bit", "8bit", "base64", "quoted-printable", "x-uuencode", "bogus"])


def _encode_body(text: str, charset: str, encoding: str, corrupt: bool) -> bytes:
    data = text.encode(charset if charset in ("utf-8", "iso-8859-1") else "utf-8", "replace")
    if encoding == "base64":
        data = base64.encodebytes(data)
        return data[: len(data) // 2] + b"!!" if corrupt else data
    if encoding == "quoted-printable":
        return quopri.encodestring(data) + (b"=Z" if corrupt else b"")
    return data


@st.composite
def bodies(draw) -> tuple[list[bytes], bytes]:
    """(Content-* header lines, body bytes): plain, html or multipart, with any charset and encoding."""
    def part(subtype: str) -> tuple[list[bytes], bytes]:
        charset, encoding, corrupt = draw(charsets), draw(encodings), draw(st.booleans())
        text = draw(st.text(max_size=200))
        if subtype == "html":
            text = draw(st.sampled_from(["<p>{}</p>", "<html><head><title>t</title></head><body>{}</body>",
                                         "<![{}", "<script>{}</script>x", "<!DOCTYPE{}"])).format(text)
        content_type = f"text/{subtype}" + (f"; charset={charset}" if charset else "")
        return ([f"Content-Type: {content_type}".encode(), f"Content-Transfer-Encoding: {encoding}".encode()],
                _encode_body(text, charset, encoding, corrupt))

    kind = draw(st.sampled_from(["none", "plain", "html", "alternative", "broken-multipart", "non-text"]))
    if kind == "none":
        return [], draw(st.binary(max_size=200))
    if kind in ("plain", "html"):
        return part(kind)
    if kind == "non-text":
        return [b"Content-Type: application/pdf", b"Content-Transfer-Encoding: base64"], b"JVBERi0xLjQK"
    boundary = draw(atoms)
    parts = [part("plain"), part("html")]
    chunks = [b"--" + boundary.encode() + b"\r\n" + b"\r\n".join(headers) + b"\r\n\r\n" + body for headers, body in parts]
    closing = b"" if kind == "broken-multipart" else b"--" + boundary.encode() + b"--\r\n"
    declared = boundary if kind == "alternative" else draw(st.sampled_from([boundary + "x", "", '"']))
    return ([b"MIME-Version: 1.0", f'Content-Type: multipart/alternative; boundary="{declared}"'.encode()],
            b"\r\n".join(chunks) + b"\r\n" + closing)


@st.composite
def emails(draw, *, with_message_id: bool = True) -> tuple[bytes, bytes | None]:
    """(raw email, the Message-ID value it carries or None)."""
    message_id = draw(message_id_values) if with_message_id else None
    headers = [(b"Message-ID", message_id)] if message_id is not None else []
    for name, values in ((b"From", address_values), (b"To", address_values), (b"Cc", address_values),
                         (b"Subject", header_values), (b"Date", dates), (b"In-Reply-To", references | header_values),
                         (b"References", references | header_values), (b"X-Custom", header_values)):
        if draw(st.booleans()):
            headers.append((name, draw(values)))
    headers = draw(st.permutations(headers))
    content_headers, body = draw(bodies())
    newline = draw(st.sampled_from([b"\r\n", b"\n"]))
    lines = [name + b": " + value for name, value in headers] + content_headers
    if draw(st.booleans()) and lines:  # fold one header
        index = draw(st.integers(0, len(lines) - 1))
        lines[index] = lines[index].replace(b" ", newline + b"\t", 1)
    return newline.join(lines) + newline + newline + body, message_id


def normalized(message_id: bytes) -> str:
    return message_id.decode().strip()


# -- properties ---------------------------------------------------------------------------------

@FUZZ
@given(raw=st.binary(max_size=2000))
def test_arbitrary_bytes_are_accepted_or_refused_without_a_trace(app, client, raw):
    before = counts(app)
    rv = upload(client, raw)
    if rv.status_code == 201:
        assert rv.get_json()["internet_message_id"]
    else:
        assert rv.status_code == 422 and rv.get_json()["error"]["code"] == "invalid_email"
        assert counts(app) == before


@FUZZ
@given(email=emails())
def test_an_email_with_a_message_id_is_attached_once_however_broken_the_rest(app, client, email):
    raw, message_id = email
    record = new_record(client)  # a short thread per example keeps the thread call cheap
    rv = upload(client, raw, record)
    assert rv.status_code == 201, rv.get_data()[:300]
    entry = rv.get_json()
    assert entry["internet_message_id"] == normalized(message_id)
    assert entry["source"] == "upload"
    before = counts(app)
    again = upload(client, raw, record)
    assert again.status_code == 201 and again.get_json()["id"] == entry["id"]
    assert counts(app) == before
    assert [m["internet_message_id"] for m in thread(client, record)] == [entry["internet_message_id"]]


@FUZZ
@given(email=emails(with_message_id=False))
def test_an_email_without_a_message_id_is_refused_and_changes_nothing(app, client, email):
    raw, _ = email
    before = counts(app)
    rv = upload(client, raw)
    assert rv.status_code == 422, rv.get_data()[:300]
    assert counts(app) == before


@FUZZ
@given(email=emails(), content_type=st.sampled_from(["text/plain", "application/octet-stream", "message/rfc822x", ""]),
       record=st.sampled_from([RECORD, MISSING_RECORD]))
def test_wrong_record_or_content_type_changes_nothing(app, client, email, content_type, record):
    raw, _ = email
    before = counts(app)
    rv = client.post(f"/api/records/{record}/emails", data=raw,
                     headers={"Authorization": AUTH["Authorization"], "Content-Type": content_type})
    assert rv.status_code == (404 if record == MISSING_RECORD else 415)
    assert counts(app) == before


@pytest.mark.parametrize("subtype, body", [("plain", b"+2AA-"), ("html", b"<p>hello +2AA- world</p>")])
def test_a_utf_7_body_with_a_lone_surrogate_is_attached(app, client, subtype, body):
    raw = (b"Message-ID: <utf7." + subtype.encode() + b"@acme.example>\r\nContent-Type: text/" + subtype.encode()
           + b"; charset=utf-7\r\n\r\n" + body)
    record = new_record(client)
    rv = upload(client, raw, record)
    assert rv.status_code == 201, rv.get_data()[:300]
    assert [m["internet_message_id"] for m in thread(client, record)] == [f"<utf7.{subtype}@acme.example>"]
