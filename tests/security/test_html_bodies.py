"""HTML bodies the thread API returns are safe to render, whoever sent them and however they were stored."""

from __future__ import annotations

import time
from html.parser import HTMLParser

from hypothesis import given, settings
from hypothesis import strategies as st

from app.records.mail_html import has_remote_images, sanitized_html
from tests.security.mail_support import graph_message, linked, upload  # noqa: F401 (linked: a fixture)

HOSTILE_HTML = (
    '<p onclick="steal()">Dear <b>Dana</b>,</p><script>alert(1)</script>'
    '<img src="https://tracker.example/pixel.gif" onerror="alert(2)"><img src="cid:logo@vendor" alt="logo">'
    '<a href="javascript:alert(3)">pay</a> <a href="https://vendor.example/invoice">invoice</a>'
    '<a href=" jav&#x09;ascript:alert(4)">obfuscated</a><iframe src="https://evil.example"></iframe>'
    '<form action="https://evil.example"><input name="password"></form><style>body{background:url(x)}</style>'
    '<div style="background:url(https://tracker.example/css.gif)">styled</div><svg onload="alert(5)"></svg>'
    '<meta http-equiv="refresh" content="0;url=https://evil.example"><base href="https://evil.example/">'
    '<link rel="stylesheet" href="https://tracker.example/s.css"><object data="x"></object>'
)


class _Elements(HTMLParser):
    """What a browser would build from the markup: the elements and their attributes."""

    def __init__(self, markup: str) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []
        self.feed(markup)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, dict(attrs)))


def unsafe_parts(markup: str) -> list[str]:
    """Everything in ``markup`` that could run script or load something by itself."""
    problems = []
    for tag, attrs in _Elements(markup).found:
        if tag in ("script", "style", "iframe", "object", "embed", "form", "input", "meta", "base", "link", "svg"):
            problems.append(tag)
        for name, value in attrs.items():
            url = "".join((value or "").split()).lower()
            if name.startswith("on") or name in ("style", "srcset", "background", "action", "formaction"):
                problems.append(f"{tag} {name}")
            if url.startswith(("javascript:", "vbscript:", "data:")):
                problems.append(f"{tag} {name}={url}")
            if tag == "img" and name == "src" and not url.startswith("cid:"):
                problems.append(f"img src={url}")
    return problems


def thread_bodies(api, record_id: int) -> list[str]:
    return [m["body"] for m in api.get(f"/api/records/{record_id}/thread").get_json()["messages"]]


def test_uploaded_html_bodies_come_back_sanitized_with_their_formatting(api):
    record = api.create_record()
    raw = b"Message-ID: <html@vendor.example>\r\nContent-Type: text/html\r\n\r\n" + HOSTILE_HTML.encode()
    rv = upload(api, record["id"], raw)
    assert rv.status_code == 201
    for body in (rv.get_json()["body"], *thread_bodies(api, record["id"])):
        assert unsafe_parts(body) == []
        assert "<b>Dana</b>" in body and "styled" in body
        assert '<a href="https://vendor.example/invoice" rel="noopener noreferrer">invoice</a>' in body
        assert '<img src="cid:logo@vendor" alt="logo">' in body


def test_html_bodies_linked_from_graph_come_back_sanitized(linked, api):  # noqa: F811 (pytest fixture)
    record, _ = linked(graph_message(body={"contentType": "html", "content": HOSTILE_HTML}))
    [body] = thread_bodies(api, record["id"])
    assert unsafe_parts(body) == [] and "<b>Dana</b>" in body


def test_text_bodies_are_returned_as_they_are(api):
    record = api.create_record()
    upload(api, record["id"], b"Message-ID: <t@vendor.example>\r\n\r\n<script>alert(1)</script> & <b>\r\n")
    assert thread_bodies(api, record["id"]) == ["<script>alert(1)</script> & <b>\r\n"]


def test_sanitizing_hostile_structure_takes_linear_time():
    """html5ever alone takes seconds on these (1 MB is the stored body's cap)."""
    size = 1024 * 1024
    for markup in ("<div>" * 9_000 + "x" * (size - 45_000), "a & " * (size // 4),
                   "<p>" + "".join(f"<b id={i}>" for i in range(3000)) + "</p>" + "<p>x</p>" * 3000,
                   "<div>" * (size // 5)):
        start = time.perf_counter()
        out = sanitized_html(markup)
        assert time.perf_counter() - start < 1.0
        assert unsafe_parts(out) == []


def test_looking_for_remote_images_takes_linear_time():
    """Every thread listing asks it of each HTML body; unclosed img tags once made it quadratic (a
    100 KB body took 15 s)."""
    size = 1024 * 1024
    for markup in ("<img " * (size // 5), "<img " * 9_000 + "x" * (size - 45_000),
                   "<img alt=" + "a" * size, '<img src="cid:logo">' * 9_000 + "x" * 800_000):
        start = time.perf_counter()
        assert has_remote_images(markup) is False
        assert time.perf_counter() - start < 1.0
    assert has_remote_images('<p>Hi</p><img alt="pixel" src="https://tracker.example/p.gif">')


_html_pieces = st.sampled_from([
    "<script>alert(1)</script>", "<script", "</script>", "<img src=x onerror=alert(1)>", '<a href="javascript:x">',
    "<a href='https://ok.example'>", "<svg><script>x</script></svg>", "<iframe src=//x>", "<!--", "-->", "<![CDATA[",
    "]]>", '"', "'", "<", ">", "&", "&lt;script&gt;", "<p>", "</p>", "<b>", "</b>", "<table>", "<td>", "<tr>",
    "</table>", "<ul><li>", "<style>", "</style>", "<textarea>", "</textarea>", "<noscript>", "<title>", "<math>",
    "<mi xlink:href=javascript:x>", "<form>", "<input onfocus=x autofocus>", "<base href=//x>", "<img src=cid:a>",
    "<a href=\"jav&#x61;script:x\">", "<div style=x:expression(alert(1))>", "<meta http-equiv=refresh>", "text ",
])


@settings(max_examples=300, deadline=None)
@given(st.lists(_html_pieces, max_size=30).map("".join))
def test_no_mix_of_hostile_markup_survives_sanitizing(markup):
    assert unsafe_parts(sanitized_html(markup)) == []
