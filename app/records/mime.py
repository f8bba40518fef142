"""Reading an RFC 5322 / MIME message in linear time: header blocks, header values, the body part.

Why not the standard library's :mod:`email`: on this interpreter (CPython 3.11) its header parsers
are super-linear on hostile values and its feed parser spends Python time on every line and every
part. Measured with 100 KB headers: a ``To:`` of quoted strings over 20 s, 20,000 ``Content-Type``
parameters 13 s, nested comments a ``RecursionError``; 10 MB of empty lines 3.9 s and 300,000
parts over 10 s, even with ``policy.compat32``. Here each step is a C-level regex or bytes search
over the bytes it concerns, and Python loops run once per header field, address, encoded word or
MIME part, each of them capped:

- header blocks (the message's and its parts'): a field over :data:`MAX_HEADER_BYTES`, fields over
  :data:`MAX_HEADERS_BYTES` or :data:`MAX_HEADER_FIELDS` in all raise :class:`HeadersTooLarge`;
- at most :data:`MAX_PARTS` MIME parts are looked at, at most :data:`MAX_DEPTH` multiparts deep;
- at most :data:`MAX_ADDRESSES` addresses are read from one header (Exchange Online accepts at most
  1,000 recipients per message).

The rules otherwise follow the standard library's lenient reading (``policy.default``), so normal
mail reads as it did: a header block ends at the first line that is no header, the first of a
repeated header wins, the body is the first ``text/plain`` part that is no attachment, else the
first ``text/html`` one (``multipart/related`` looks at its first part only).
"""

from __future__ import annotations

import binascii
import codecs
import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field

MAX_HEADER_BYTES = 100 * 1024
MAX_HEADERS_BYTES = 1024 * 1024
MAX_HEADER_FIELDS = 10_000
MAX_PARTS = 500
MAX_DEPTH = 10
MAX_ADDRESSES = 1000
MAX_BOUNDARY_LENGTH = 200  # RFC 2046 allows 70

_FIELD = re.compile(rb"([!-9;-~]+)[ \t]*:([^\r\n]*(?:(?:\r\n|\r|\n)[ \t][^\r\n]*)*)(?:\r\n|\r|\n|\Z)")
_STRAY_CONTINUATIONS = re.compile(rb"(?:[ \t][^\r\n]*(?:\r\n|\r|\n))+")
_LINE_BREAK = re.compile(rb"\r\n|\r|\n")
_ENVELOPE = re.compile(rb"From [^\r\n]*(?:\r\n|\r|\n)")
_FOLD = re.compile(rb"(?:\r\n|\r|\n)(?=[ \t])")
_PARAM = re.compile(rb';\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"?|[^;]*)', re.DOTALL)
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]")
_SLOW_CODECS = frozenset({"punycode", "idna"})  # pure-Python and quadratic or strict-only


class HeadersTooLarge(ValueError):
    """A header block is over a limit; ``reason`` says which, in one sentence."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Budget:
    """What is left of the limits for one message; every header block read draws on it."""

    header_bytes: int = MAX_HEADERS_BYTES
    header_fields: int = MAX_HEADER_FIELDS
    parts: int = MAX_PARTS


@dataclass
class Part:
    """A header block (lower-case names, first occurrence, raw values) and where its content lies."""

    headers: dict[str, bytes]
    start: int
    end: int
    default_type: str = "text/plain"
    budget: Budget = field(default_factory=Budget, repr=False)

    def content_type(self) -> str:
        value = _header_text(self.headers.get("content-type"))
        kind = value.split(";", 1)[0].strip().lower()
        return kind if kind.count("/") == 1 and all(kind.split("/")) else self.default_type

    def param(self, name: str, header: str = "content-type") -> str | None:
        """A parameter of ``header`` (quotes removed), or None."""
        for key, value in _PARAM.findall(self.headers.get(header) or b""):
            if key.lower() == name.encode():
                value = value.strip()
                if value.startswith(b'"'):
                    value = re.sub(rb"\\(.)", rb"\1", value[1:-1] if value.endswith(b'"') and len(value) > 1
                                   else value[1:])
                return value.decode("utf-8", "replace")
        return None

    def disposition(self) -> str:
        return _header_text(self.headers.get("content-disposition")).split(";", 1)[0].strip().lower()

    def is_attachment(self) -> bool:
        return self.disposition() == "attachment"

    def filename(self) -> str | None:
        """The part's file name: ``Content-Disposition``'s ``filename`` (RFC 2231's ``filename*`` of
        one segment included), else ``Content-Type``'s ``name``; encoded words decoded."""
        extended = self.param("filename*", "content-disposition")
        if extended is not None:
            charset, _, rest = extended.partition("'")
            return decode(urllib.parse.unquote_to_bytes(rest.partition("'")[2]), charset or "us-ascii")
        name = self.param("filename", "content-disposition") or self.param("name")
        return decode_words(name) if name is not None else None

    def content_id(self) -> str | None:
        """``Content-ID`` without its angle brackets."""
        value = _header_text(self.headers.get("content-id")).strip()
        return value.strip("<>").strip() or None


def read_headers(raw: bytes, start: int, budget: Budget, *, envelope: bool = False) -> tuple[dict[str, bytes], int]:
    """The header block at ``start``: its fields and where the content after it begins.

    Raises :class:`HeadersTooLarge` as soon as a field or the message's fields pass a limit, so a
    hostile block costs no more than the limits' worth of scanning.
    """
    pos = start
    if envelope and (line := _ENVELOPE.match(raw, pos)):  # an mbox "From " line
        pos = line.end()
    if stray := _STRAY_CONTINUATIONS.match(raw, pos, pos + budget.header_bytes + 1):  # no field to continue
        pos += _spend(budget, stray.end() - pos, "leading continuation")
    headers: dict[str, bytes] = {}
    while found := _FIELD.match(raw, pos, pos + min(MAX_HEADER_BYTES, budget.header_bytes) + 1):
        name = found.group(1).decode("ascii")
        pos += _spend(budget, found.end() - pos, name)
        headers.setdefault(name.lower(), found.group(2))
    if blank := _LINE_BREAK.match(raw, pos):
        pos = blank.end()
    return headers, pos


def _spend(budget: Budget, size: int, name: str) -> int:
    """Charge one header field of ``size`` bytes to ``budget``; return ``size``."""
    if size > MAX_HEADER_BYTES:
        raise HeadersTooLarge(f"The {name} header is over {MAX_HEADER_BYTES // 1024} KB; "
                              f"a header may be at most {MAX_HEADER_BYTES // 1024} KB.")
    budget.header_bytes -= size
    budget.header_fields -= 1
    if budget.header_bytes < 0:
        raise HeadersTooLarge(f"The email's headers are over {MAX_HEADERS_BYTES // (1024 * 1024)} MB in all; "
                              f"they may be at most {MAX_HEADERS_BYTES // (1024 * 1024)} MB.")
    if budget.header_fields < 0:
        raise HeadersTooLarge(f"The email has over {MAX_HEADER_FIELDS:,} header fields; "
                              f"it may have at most {MAX_HEADER_FIELDS:,}.")
    return size


def header_value(value: bytes | None) -> str | None:
    """A raw header value as text: unfolded, trimmed, bytes read as UTF-8 (what is not, replaced)."""
    if value is None:
        return None
    return _FOLD.sub(b"", value).strip().decode("utf-8", "replace")


def _header_text(value: bytes | None) -> str:
    return header_value(value) or ""


def find_body(raw: bytes, message: Part) -> Part | None:
    """The part the message's body is: the first text/plain that is no attachment, else the first text/html."""
    html = None
    for part in _leaves(raw, message, 0):
        kind = part.content_type()
        if kind == "text/plain":
            return part
        if kind == "text/html" and html is None:
            html = part
    return html


def attachment_parts(raw: bytes, message: Part) -> Iterator[Part]:
    """Every part of the message that is not a multipart and not its text: files (``attachment``),
    inline images and other non-text parts, attached emails (``message/rfc822``), and text parts
    marked as attachments or named as files (a plain or HTML part that is neither is ``body`` or
    another rendering of it). Within the same caps as the body's search."""
    for part in _all_leaves(raw, message, 0):
        if (part.content_type() in ("text/plain", "text/html") and not part.is_attachment()
                and part.filename() is None):
            continue
        yield part


def _all_leaves(raw: bytes, part: Part, depth: int) -> Iterator[Part]:
    kind = part.content_type()
    boundary = part.param("boundary") if kind.startswith("multipart/") else None
    if boundary is None:
        if part.start < part.end or part.headers:
            yield part
        return
    if len(boundary) > MAX_BOUNDARY_LENGTH or depth >= MAX_DEPTH:
        return
    default = "message/rfc822" if kind == "multipart/digest" else "text/plain"
    for child in _children(raw, part, boundary.encode("utf-8", "replace"), default):
        yield from _all_leaves(raw, child, depth + 1)


def _leaves(raw: bytes, part: Part, depth: int) -> Iterator[Part]:
    """The text parts that may be the body, depth first (attachments and non-text parts skipped)."""
    if part.is_attachment():
        return
    kind = part.content_type()
    if kind.startswith("text/"):
        yield part
        return
    boundary = part.param("boundary") if kind.startswith("multipart/") else None
    if boundary is None or len(boundary) > MAX_BOUNDARY_LENGTH or depth >= MAX_DEPTH:
        return
    default = "message/rfc822" if kind == "multipart/digest" else "text/plain"
    for child in _children(raw, part, boundary.encode("utf-8", "replace"), default):
        yield from _leaves(raw, child, depth + 1)
        if kind == "multipart/related":  # its root is the first part (a "start" parameter is not honoured)
            return


def _children(raw: bytes, part: Part, boundary: bytes, default_type: str) -> Iterator[Part]:
    """The parts of a multipart, between its delimiter lines (RFC 2046), until the close or the end."""
    delimiter = re.compile(re.escape(b"--" + boundary) + rb"(?<![^\r\n]" + re.escape(b"--" + boundary)
                           + rb")(--)?[ \t]*(?:\r\n|\r|\n|\Z)")
    found = delimiter.search(raw, part.start, part.end)
    while found is not None and not found.group(1) and part.budget.parts > 0:
        part.budget.parts -= 1
        start = found.end()
        found = delimiter.search(raw, start, part.end)
        end = part.end if found is None else _before_line_break(raw, found.start(), start)
        headers, content = read_headers(raw, start, part.budget)
        yield Part(headers, min(content, end), end, default_type, part.budget)


def _before_line_break(raw: bytes, pos: int, floor: int) -> int:
    """``pos`` moved before the line break that precedes it (it belongs to the delimiter)."""
    if pos > floor and raw[pos - 1:pos] == b"\n":
        pos -= 1
    if pos > floor and raw[pos - 1:pos] == b"\r":
        pos -= 1
    return pos


def payload(raw: bytes, part: Part) -> bytes:
    """A part's content with its transfer encoding undone (leniently)."""
    data = raw[part.start:part.end]
    encoding = _header_text(part.headers.get("content-transfer-encoding")).lower()
    if encoding == "base64":
        clean = _NOT_BASE64.sub(b"", data)
        clean = clean[:len(clean) - (len(clean) % 4 == 1)]  # a lone last character encodes no byte
        return binascii.a2b_base64(clean + b"=" * (-len(clean) % 4))
    if encoding == "quoted-printable":
        return binascii.a2b_qp(data)
    return data


def content(raw: bytes, part: Part) -> str:
    """A text part's content, its transfer encoding undone and its charset decoded (leniently)."""
    return decode(payload(raw, part), part.param("charset") or "us-ascii")


def decode(data: bytes, charset: str) -> str:
    """``data`` in ``charset``, undecodable bytes replaced; an unknown charset is read as UTF-8."""
    try:
        codec = codecs.lookup(charset.strip().split("*", 1)[0])
    except (LookupError, ValueError):
        codec = None
    if codec is None or codec.name in _SLOW_CODECS:
        codec = codecs.lookup("utf-8")
    try:
        text = data.decode(codec.name, "replace")
    except (LookupError, UnicodeError, TypeError):  # a codec that is no text encoding, or strict only
        text = data.decode("utf-8", "replace")
    return without_lone_surrogates(text)


def without_lone_surrogates(text: str) -> str:
    """``text`` with lone surrogates (a UTF-7 body can decode to one) replaced, so it can be stored."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text


_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?]*)\?=")


def decode_words(text: str) -> str:
    """``text`` with its RFC 2047 encoded words decoded.

    Whitespace between two encoded words is dropped, and adjacent words of one charset are decoded
    together (a character may be split across them); a word that does not decode stays as it is.
    """
    out: list[str] = []
    run: list[bytes] = []
    run_charset = ""
    pos = 0
    for word in _ENCODED_WORD.finditer(text):
        charset, kind, payload = word.group(1).lower(), word.group(2).lower(), word.group(3)
        try:
            data = (binascii.a2b_base64(payload + "=" * (-len(payload) % 4)) if kind == "b"
                    else binascii.a2b_qp(payload.encode("utf-8"), header=True))
        except (binascii.Error, ValueError):
            continue  # stays in the text as it is
        gap = text[pos:word.start()]
        joined = bool(run) and not gap.strip()
        if run and not (joined and charset == run_charset):
            out.append(decode(b"".join(run), run_charset))
            run = []
        if not joined:
            out.append(gap)
        run.append(data)
        run_charset, pos = charset, word.end()
    if run:
        out.append(decode(b"".join(run), run_charset))
    out.append(text[pos:])
    return without_lone_surrogates("".join(out))


_ADDRESS_TOKEN = re.compile(r"""
    "(?:[^"\\]|\\.)*"?        # a quoted string (to the end if unterminated)
  | \((?:[^()\\]|\\.)*\)?     # a comment (nesting is not followed)
  | <[^<>]*>?                 # an angle address
  | [,;:]                     # separators: between addresses, and around groups
  | [^\s",;:<>()]+            # words: display-name words, or a bare addr-spec
""", re.VERBOSE | re.DOTALL)


def addresses(value: str) -> list[tuple[str, str]]:
    """The (display name, address) pairs of an address-list header, malformed ones left out.

    Groups (``Team: a@x, b@y;``) contribute their members. Names are unquoted and RFC 2047 decoded;
    comments are ignored. At most :data:`MAX_ADDRESSES` are read, from the first
    ``10 * MAX_ADDRESSES`` tokens.
    """
    found: list[tuple[str, str]] = []
    words: list[str] = []
    angle: str | None = None
    for count, token in enumerate(_ADDRESS_TOKEN.finditer(value)):
        if count == 10 * MAX_ADDRESSES:
            break
        text = token.group()
        if text in (",", ";"):
            _add_address(found, words, angle)
            words, angle = [], None
            if len(found) >= MAX_ADDRESSES:
                return found
        elif text == ":":  # the words so far named a group
            words, angle = [], None
        elif text.startswith("<"):
            angle = text.strip("<>")
        elif text.startswith('"'):
            words.append(re.sub(r"\\(.)", r"\1", text[1:-1] if text.endswith('"') and len(text) > 1 else text[1:]))
        elif not text.startswith("("):
            words.append(text)
    _add_address(found, words, angle)
    return found[:MAX_ADDRESSES]


def _add_address(found: list[tuple[str, str]], words: list[str], angle: str | None) -> None:
    if angle is not None:
        address, name = angle.rpartition(":")[2].strip(), decode_words(" ".join(words)).strip()  # drop a route
    elif len(words) == 1:
        address, name = words[0], ""
    else:
        return
    local, at, domain = address.rpartition("@")
    if at and local and domain and "@" not in domain and not any(c.isspace() for c in address):
        found.append((name, address))
