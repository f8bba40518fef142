"""Parsing uploaded emails: the fields the thread shows, lenient headers, and clear rejections."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.records.rfc822 import Address, InvalidEmail, message_ids, normalize_message_id, parse_email

PLAIN = b"""\
Message-ID: <po-4711@contoso.example>
In-Reply-To: <rfq-12@vendor.example>
References: <rfq-11@vendor.example>
 <rfq-12@vendor.example>
From: "Dana Buyer" <dana@contoso.example>
To: Vera Vendor <vera@vendor.example>, ap@vendor.example
Cc: =?utf-8?q?J=C3=B6rg_K=C3=BChn?= <joerg@contoso.example>
Date: Tue, 30 Apr 2024 11:15:00 +0200
Subject: =?utf-8?b?UHVyY2hhc2Ugb3JkZXIgNDcxMSDigJMgY29uZmlybWVk?=
Content-Type: text/plain; charset=utf-8

Hello Vera,

please confirm   the order.
"""


def mime(body_parts: str, headers: str = "Message-ID: <m@x>\nSubject: s\n") -> bytes:
    return (headers + body_parts).encode()


def test_a_plain_email():
    parsed = parse_email(PLAIN)
    assert parsed.message_id == "<po-4711@contoso.example>"
    assert parsed.in_reply_to == "<rfq-12@vendor.example>"
    assert parsed.references == ("<rfq-11@vendor.example>", "<rfq-12@vendor.example>")
    assert parsed.from_ == Address("Dana Buyer", "dana@contoso.example")
    assert parsed.to == (Address("Vera Vendor", "vera@vendor.example"), Address("", "ap@vendor.example"))
    assert parsed.cc == (Address("Jörg Kühn", "joerg@contoso.example"),)
    assert parsed.sent_at == "2024-04-30T09:15:00.000000+00:00"
    assert parsed.subject == "Purchase order 4711 – confirmed"
    assert (parsed.body, parsed.body_type) == ("Hello Vera,\n\nplease confirm   the order.\n", "text")
    assert parsed.body_preview == "Hello Vera, please confirm the order."


def test_crlf_line_endings_parse_the_same():
    assert parse_email(PLAIN.replace(b"\n", b"\r\n")).references == parse_email(PLAIN).references


def test_text_plain_is_preferred_over_html():
    parsed = parse_email(mime(
        'Content-Type: multipart/alternative; boundary="b"\n\n'
        "--b\nContent-Type: text/html\n\n<p>the <b>html</b> part</p>\n"
        "--b\nContent-Type: text/plain\n\nthe plain part\n--b--\n"))
    assert (parsed.body, parsed.body_type) == ("the plain part", "text")


def test_an_html_only_email_keeps_its_html_and_previews_text():
    parsed = parse_email(mime(
        "Content-Type: text/html; charset=utf-8\n\n"
        "<html><head><style>p {color: red}</style><title>t</title></head>"
        "<body><p>Hello&nbsp;<b>Vera</b>,</p><p>see&#160;below &amp; reply.</p>"
        "<script>alert(1)</script></body></html>\n"))
    assert parsed.body_type == "html"
    assert parsed.body.startswith("<html>")
    assert parsed.body_preview == "Hello Vera, see below & reply."


def test_html_inside_a_multipart_mixed_with_an_attachment():
    parsed = parse_email(mime(
        'Content-Type: multipart/mixed; boundary="m"\n\n'
        '--m\nContent-Type: multipart/alternative; boundary="a"\n\n'
        "--a\nContent-Type: text/html\n\n<div>Invoice attached</div>\n--a--\n"
        '--m\nContent-Type: text/plain\nContent-Disposition: attachment; filename="notes.txt"\n\nnot the body\n'
        "--m--\n"))
    assert (parsed.body_type, parsed.body_preview) == ("html", "Invoice attached")


def test_the_preview_is_cut_at_255_characters():
    parsed = parse_email(mime("\n" + "word " * 100))
    assert len(parsed.body_preview) == 255 and parsed.body_preview.startswith("word word")


def test_an_email_without_a_body():
    parsed = parse_email(b"Message-ID: <m@x>\n\n")
    assert (parsed.body, parsed.body_type, parsed.body_preview, parsed.subject) == ("", "text", "", "")
    only_attachment = parse_email(mime(
        'Content-Type: multipart/mixed; boundary="m"\n\n'
        '--m\nContent-Type: application/pdf\nContent-Transfer-Encoding: base64\n\nJVBERi0=\n--m--\n'))
    assert only_attachment.body is None


def test_optional_headers_may_be_missing():
    parsed = parse_email(b"Message-ID: <m@x>\n\nhi\n")
    assert (parsed.in_reply_to, parsed.references, parsed.from_, parsed.to, parsed.cc, parsed.sent_at) == \
        (None, (), None, (), (), None)


@pytest.mark.parametrize(
    ("date", "expected"),
    [
        ("Tue, 30 Apr 2024 23:30:00 -0200", "2024-05-01T01:30:00.000000+00:00"),
        ("30 Apr 2024 09:15:00 -0000", "2024-04-30T09:15:00.000000+00:00"),  # no zone: taken as UTC
        ("yesterday", None),
        ("Tue, 31 Feb 2024 10:00:00 +0000", None),
    ],
)
def test_dates_become_iso_utc_or_none(date, expected):
    assert parse_email(f"Message-ID: <m@x>\nDate: {date}\n\n".encode()).sent_at == expected


def test_a_message_id_without_brackets_is_normalised():
    assert parse_email(b"Message-ID:  m@x \n\n").message_id == "<m@x>"


def test_header_names_are_case_insensitive():
    parsed = parse_email(b"MESSAGE-ID: <m@x>\nreferences: <r@x>\nIN-REPLY-TO: <r@x>\n\n")
    assert (parsed.message_id, parsed.references, parsed.in_reply_to) == ("<m@x>", ("<r@x>",), "<r@x>")


def test_malformed_headers_are_left_out_not_fatal():
    raw = b"Message-ID: <m@x>\nFrom: @@@\nTo: ,,,, <not-an-address>\nSubject: \xff\xfe raw bytes\n\nbody \xff\n"
    parsed = parse_email(raw)
    assert (parsed.from_, parsed.to) == (None, ())
    assert parsed.subject == "\ufffd\ufffd raw bytes"
    assert parsed.body.startswith("body")


def test_raw_utf8_headers_are_decoded():
    parsed = parse_email("Message-ID: <m@x>\nSubject: Grüße\n\n".encode())
    assert parsed.subject == "Grüße"


def test_an_unknown_charset_is_read_leniently():
    parsed = parse_email(b"Message-ID: <m@x>\nContent-Type: text/plain; charset=x-no-such\n\nhello\n")
    assert parsed.body == "hello\n"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("not bytes", "raw bytes"),
        (b"", "empty"),
        (b"   \r\n ", "empty"),
        (b"\x00\x01\x02 binary garbage \xff", "no email headers"),
        (b"Just a sentence, not an email.", "no email headers"),
        (b"From: someone@example.com\nSubject: hi\n\nbody\n", "no Message-ID"),
        (b"Message-ID: <>\n\n", "no Message-ID"),
    ],
)
def test_bad_uploads_are_rejected_with_a_reason(raw, reason):
    with pytest.raises(InvalidEmail, match=reason) as excinfo:
        parse_email(raw)
    assert excinfo.value.reason.endswith(".")


# Email-shaped bytes: real header names, and values built from the tokens parsers trip over.
_TOKENS = [b"<", b">", b"@", b'"', b"(", b")", b",", b";", b":", b"\\", b"=?utf-8?b?", b"=?x-bad?q?", b"?=",
           b"\r\n ", b"\xff", b"\xc3\xa9", b"multipart/mixed; boundary=b", b"text/html", b"charset=bogus",
           b"base64", b"quoted-printable", b"--b", b"<![", b"&#x110000;", b"Mon, 1 Jan 2024 10:00:00 +0000"]
_NAMES = [b"Message-ID", b"From", b"To", b"Cc", b"Date", b"Subject", b"References", b"In-Reply-To",
          b"Content-Type", b"Content-Transfer-Encoding", b"Content-Disposition"]
_MIME_LINES = [b"Content-Type: text/html", b'Content-Type: multipart/alternative; boundary="b"', b"--b", b""]
_value = st.lists(st.sampled_from(_TOKENS) | st.binary(max_size=4), max_size=10).map(b"".join)
_header = st.builds(lambda name, value: name + b": " + value, st.sampled_from(_NAMES), _value)
_headers = st.lists(_header | st.sampled_from(_MIME_LINES[:2]), max_size=8).map(b"\r\n".join)
_body = st.lists(_value | st.sampled_from(_MIME_LINES), max_size=6).map(b"\r\n".join)
_email_like = st.builds(lambda head, body: b"Message-ID: <m@x>\r\n" + head + b"\r\n\r\n" + body, _headers, _body)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=400) | _email_like)
def test_arbitrary_bytes_raise_nothing_but_invalid_email(raw):
    try:
        parsed = parse_email(raw)
    except InvalidEmail:
        return
    for text in (parsed.message_id, parsed.subject, parsed.body or "", parsed.body_preview):
        text.encode("utf-8")  # no lone surrogates: storable and servable as JSON


def test_html_the_html_parser_gives_up_on_still_gets_a_preview():
    parsed = parse_email(b"Message-ID: <m@x>\nContent-Type: text/html\n\n<p>Hello</p><![ broken\n")
    assert parsed.body_preview == "Hello <![ broken"


def test_message_id_helpers():
    assert normalize_message_id(" <a@x> ") == "<a@x>"
    assert normalize_message_id("   ") is None
    assert message_ids("<a@x>\r\n\t<b@x> <a@x>") == ["<a@x>", "<b@x>"]
    assert message_ids(None) == []
