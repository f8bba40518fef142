"""HTML mail bodies: their visible text (for previews) and a sanitized copy that is safe to render.

Both take time linear in the body, whatever a sender puts in it. The standard library's
``HTMLParser`` is quadratic on unterminated tags on this interpreter (75 KB of ``<a `` took 47 s),
and HTML5 tree builders, nh3's html5ever and lexbor alike, are super-linear on hostile structure.
Measured in nh3: 20,000 nested ``<div>`` (100 KB) 1.6 s; 2,000 misnested ``<b>`` re-opened in
1,000 paragraphs 1.6 s; one text of 320,000 ``&`` 5 s. So:

- :func:`html_text` builds no tree: a few C-level regex passes drop comments, hidden elements
  (``script``, ``style``, ``title``, ``head`` and the other raw-text ones) and tags, block tags
  separating words; a ``<`` that no ``>`` closes is text, as the old parser had it.
- :func:`sanitized_html` first rewrites the body into markup html5ever handles in linear time
  (:func:`_balanced`: allowed tags only, explicitly closed, at most :data:`MAX_DEPTH` deep, never
  re-opened or foster-parented, texts in short runs), then lets nh3 (Ammonia's allow-list
  sanitizer) decide what is safe; the rewrite shapes structure only, nh3 is the security boundary.
  A body with over :data:`MAX_RICH_MARKUP` ``<`` (a rare 1 MB newsletter, or a hostile one) is
  returned as its visible text with line breaks instead, which needs no sanitizer.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping

import nh3

MAX_RICH_MARKUP = 10_000
MAX_DEPTH = 100
_MAX_TEXT_RUN = 1000
_MAX_ATTRIBUTES = 50

_HIDDEN_ELEMENTS = r"script|style|title|head|textarea|xmp|iframe|noembed|noframes|noscript|template|plaintext"
_HIDDEN = re.compile(rf"""
    <(?=[!a-zA-Z])(?:
        !--.*?(?:-->|\Z)                                                    # comments (to the end if unterminated)
      | ({_HIDDEN_ELEMENTS})(?=[\s/>])[^<>]*>.*?(?:</\1\s*>|\Z)          # elements whose text is not shown
    )""", re.IGNORECASE | re.DOTALL | re.VERBOSE)
_BLOCK_TAG = re.compile(r"</?(?=[bBpPdDlLtTuUoOhH])(?:br|p|div|li|tr|td|th|table|ul|ol|blockquote|hr|h[1-6])"
                        r"(?=[\s/>])[^<>]*>", re.IGNORECASE)
_OTHER_TAG = re.compile(r"</?[a-zA-Z][^<>]*>|<[!?][^<>]*>")
_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9]*+)([^<>]*)>|<[!?/][^<>]*>")  # *+: no backtracking
_ATTRIBUTE = re.compile(r"""([^\s"'<>/=]+)(?:\s*=\s*("[^"]*"|'[^']*'|[^\s>]+))?""")

_ALLOWED = frozenset(nh3.ALLOWED_TAGS)
_VOID = frozenset({"br", "hr", "img", "wbr", "area", "col"})
_CLOSES_P = frozenset({"article", "aside", "blockquote", "center", "details", "dl", "div", "figure", "figcaption",
                       "footer", "header", "hgroup", "nav", "ol", "p", "pre", "summary", "ul", "h1", "h2", "h3",
                       "h4", "h5", "h6", "hr", "table", "li", "dd", "dt"})
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_CELL_BOUNDARIES = frozenset({"table", "td", "th", "caption"})
_TABLE = frozenset({"table"})
# A start tag that closes an open element of these names, looking no further out than these.
_CLOSES_OPEN = {"li": ({"li"}, {"ul", "ol"}), "dd": ({"dd", "dt"}, {"dl"}), "dt": ({"dd", "dt"}, {"dl"}),
                "a": ({"a"}, set())}
# The table parts between a table and each part: a missing one is added, as a parser would.
_TABLE_WRAPPERS = {"caption": (), "colgroup": (), "thead": (), "tbody": (), "tr": ("tbody",),
                   "td": ("tbody", "tr"), "th": ("tbody", "tr"), "col": ("colgroup",)}
_WRAPPER_STAND_INS = {"tbody": {"tbody", "thead"}, "tr": {"tr"}, "colgroup": {"colgroup"}}
_TABLE_CONTEXT = frozenset({"table", "thead", "tbody", "tr", "colgroup"})
_ATTRIBUTES = {tag: names | {"lang", "title"} for tag, names in nh3.ALLOWED_ATTRIBUTES.items()}
_GENERIC_ATTRIBUTES = frozenset({"lang", "title"})

# What a rendered body may load by itself: nothing remote. Images keep only cid: sources (the
# message's own attachments); links need a click, and nh3 gives them rel="noopener noreferrer".
_URL_SCHEMES = nh3.ALLOWED_URL_SCHEMES | {"cid"}


# An img tag's attributes stop at the next "<", as _TAG's do, so each tag is scanned once: linear.
_IMG_TAG = re.compile(r"<img\b([^<>]*)", re.IGNORECASE)
_REMOTE_SOURCE = re.compile(r"\bsrc\s*=\s*[\"']?\s*(?:https?:)?//", re.IGNORECASE)
_CID_SOURCE = re.compile(r'(<img\b[^>]*?\s)src="cid:([^"]*)"', re.IGNORECASE)
_BLOCKQUOTE_TAG = re.compile(r"<(/?)blockquote\b[^>]*>", re.IGNORECASE)
_QUOTE_START = re.compile(r"^(?:>|-{2,}\s*Original Message\s*-{2,}|From: .*\n(?:Sent|Date): |On .{1,200} wrote:\s*$)",
                          re.MULTILINE | re.IGNORECASE)


def html_text(markup: str, limit: int | None = None) -> str:
    """The visible text of ``markup``, entities decoded; enough for ``limit`` characters if given."""
    text = _visible(markup)
    if limit is not None:  # an entity decodes to one character or more, from at most 32 + 3
        text = " ".join(text.split())[:limit * 35]
    return html.unescape(text)


def sanitized_html(markup: str, *, remote_images: bool = False) -> str:
    """``markup`` safe to render: no script, event handler, ``javascript:`` URL or form, and no
    remote image unless ``remote_images`` (a person asked to see them: they tell the sender the mail
    was opened, and from where)."""
    if markup.count("<") > MAX_RICH_MARKUP:
        return _text_as_html(_visible(markup))
    return nh3.clean(_balanced(markup), url_schemes=_URL_SCHEMES,
                     attribute_filter=None if remote_images else _local_images_only)


def has_remote_images(markup: str) -> bool:
    """Whether ``markup`` names an image on the network (so a "show images" switch is worth offering).
    A body rendered as text (:data:`MAX_RICH_MARKUP`) shows no images at all."""
    if markup.count("<") > MAX_RICH_MARKUP:
        return False
    return any(_REMOTE_SOURCE.search(tag.group(1)) for tag in _IMG_TAG.finditer(markup))


def resolve_cids(sanitized: str, urls: Mapping[str, str]) -> str:
    """Sanitized markup with each ``<img src="cid:…">`` pointing at ``urls[content id]`` (the
    message's stored inline attachment); an image whose attachment is not kept loses its source."""
    def resolve(found: re.Match[str]) -> str:
        url = urls.get(html.unescape(found.group(2)).strip("<>"))
        return f'{found.group(1)}src="{html.escape(url)}"' if url else found.group(1).rstrip()
    return _CID_SOURCE.sub(resolve, sanitized)


def fold_quotes(sanitized: str) -> str:
    """Sanitized markup with each outermost ``<blockquote>`` (the quoted history replies carry)
    folded into a ``<details>`` the reader can open. One pass over the blockquote tags."""
    out, depth, pos = [], 0, 0
    for tag in _BLOCKQUOTE_TAG.finditer(sanitized):
        closing = tag.group(1) == "/"
        if not closing and depth == 0:
            out.append(sanitized[pos:tag.start()] + "<details class=\"quoted\"><summary>Quoted text</summary>")
            pos = tag.start()
        depth = max(0, depth - 1) if closing else depth + 1
        if closing and depth == 0:
            out.append(sanitized[pos:tag.end()] + "</details>")
            pos = tag.end()
    if depth:  # unbalanced (nh3 always closes them): leave the rest as it is
        out.append("</details>")
    out.append(sanitized[pos:])
    return "".join(out)


def split_quoted_text(text: str) -> tuple[str, str]:
    """A plain-text body as (what the sender wrote, the quoted history after it): the history starts
    at the first line quoted with ``>``, or at Outlook's ``-----Original Message-----`` or
    ``From:`` header block, or at an ``On … wrote:`` line."""
    found = _QUOTE_START.search(text)
    return (text, "") if found is None else (text[:found.start()].rstrip(), text[found.start():])


def _visible(markup: str) -> str:
    """``markup`` without hidden elements, comments and tags; block tags become line breaks."""
    return _OTHER_TAG.sub("", _BLOCK_TAG.sub("\n", _HIDDEN.sub("", markup)))


def _text_as_html(text: str) -> str:
    """Visible text as HTML lines. Its entities stay as they are: a browser shows them as text."""
    lines = (_escape_text(" ".join(line.split())) for line in text.splitlines())
    return "<br>".join(line for line in lines if line)


def _escape_text(text: str) -> str:
    return text.replace("<", "&lt;").replace(">", "&gt;")


class _Builder:
    """The open elements and the output of :func:`_balanced`."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self.open: list[str] = []

    def close_to(self, index: int) -> None:
        """Close the open elements from the innermost down to ``open[index]``."""
        while len(self.open) > index:
            self.out.append(f"</{self.open.pop()}>")

    def find(self, names: set[str] | frozenset[str], boundaries: set[str] | frozenset[str] = _CELL_BOUNDARIES,
             floor: int = 0) -> int | None:
        """Index of the innermost open element named in ``names``, not looking past a boundary or ``floor``."""
        for index in range(len(self.open) - 1, floor - 1, -1):
            if self.open[index] in names:
                return index
            if self.open[index] in boundaries:
                return None
        return None

    def push(self, name: str, attributes: str = "") -> None:
        self.out.append(f"<{name}{attributes}>")
        if name not in _VOID:
            self.open.append(name)

    def text(self, text: str) -> None:
        if self.open and self.open[-1] in _TABLE_CONTEXT and text.strip():
            return  # text between table rows or cells: a parser would move it before the table
        start = 0
        while start < len(text):  # in short runs: html5ever is quadratic in "&" within one text
            end = start + _MAX_TEXT_RUN
            if end < len(text) and (amp := text.rfind("&", max(start + 1, end - 40), end)) != -1:
                end = amp  # a character reference is not split
            self.out.append(("<span></span>" if start else "") + _escape_text(text[start:end]))
            start = end

    def start(self, name: str, attributes: str) -> None:
        if name in _TABLE_WRAPPERS:
            if not self._make_room_in_table(name):
                return  # a table part outside any table is ignored, as a parser does
        elif self.open and self.open[-1] in _TABLE_CONTEXT:
            return  # anything else between table parts would be foster-parented
        if name in _CLOSES_P and (index := self.find({"p"})) is not None:
            self.close_to(index)
        if name in _HEADINGS and self.open and self.open[-1] in _HEADINGS:
            self.close_to(len(self.open) - 1)
        if name in _CLOSES_OPEN:
            names, boundaries = _CLOSES_OPEN[name]
            if (index := self.find(names, _CELL_BOUNDARIES | boundaries)) is not None:
                self.close_to(index)
        if name in _VOID or len(self.open) < MAX_DEPTH:
            self.push(name, _attributes(name, attributes))

    def _make_room_in_table(self, name: str) -> bool:
        """Close or add table parts so that ``name`` stands where it may; False if no table is open."""
        level = self.find(_TABLE, frozenset())
        if level is None:
            return False
        for wrapper in _TABLE_WRAPPERS[name]:
            index = self.find(_WRAPPER_STAND_INS[wrapper], _TABLE, level + 1)
            if index is None:
                self.close_to(level + 1)
                self.push(wrapper)
                index = len(self.open) - 1
            level = index
        self.close_to(level + 1)
        return True

    def end(self, name: str) -> None:
        boundaries = (frozenset() if name == "table" else _TABLE if name in _TABLE_WRAPPERS
                      else _CELL_BOUNDARIES - {name})
        if (index := self.find({name}, boundaries)) is not None:
            self.close_to(index)


def _balanced(markup: str) -> str:
    """``markup`` as allowed elements, each explicitly closed, in a tree html5ever builds in linear time."""
    builder = _Builder()
    shown = _HIDDEN.sub("", markup)
    pos = 0
    for tag in _TAG.finditer(shown):
        builder.text(shown[pos:tag.start()])
        pos = tag.end()
        name = (tag.group(2) or "").lower()
        if name in _ALLOWED:
            builder.end(name) if tag.group(1) else builder.start(name, tag.group(3))
    builder.text(shown[pos:])
    builder.close_to(0)
    return "".join(builder.out)


def _attributes(tag: str, text: str) -> str:
    """The attributes nh3 may keep, the first of each name, re-quoted so every parser reads them alike."""
    allowed = _ATTRIBUTES.get(tag, _GENERIC_ATTRIBUTES)
    kept: dict[str, str] = {}
    for count, attribute in enumerate(_ATTRIBUTE.finditer(text)):
        if count == _MAX_ATTRIBUTES:
            break
        name, value = attribute.group(1).lower(), attribute.group(2) or ""
        if name in allowed and name not in kept:
            value = value[1:-1] if value[:1] in ("'", '"') else value
            kept[name] = value.replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")
    return "".join(f' {name}="{value}"' for name, value in kept.items())


def _local_images_only(tag: str, attribute: str, value: str) -> str | None:
    if tag == "img" and attribute == "src" and not value.strip().lower().startswith("cid:"):
        return None
    return value
