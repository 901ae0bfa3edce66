"""Text from the network or from other machines' files, made safe for where it is shown.

Certificate names, HTTP headers, server names and agents' reports are written by others. On a
terminal, control characters can move the cursor, set the title (OSC) or worse; in a ticket,
Markdown and inline HTML change what the admin reads. Every renderer passes every value
through one of these two functions. JSON needs neither (``json.dumps`` escapes controls).
"""

from __future__ import annotations

import re

# C0 and C1 controls, DEL, and the bidirectional overrides/isolates/marks that reorder text
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# inline Markdown that changes meaning: escapes, code spans, emphasis, links/images, table
# cells, strikethrough (block syntax cannot start mid-line, where these values go)
# (an underscore between letters or digits never makes emphasis, so it is left alone)
_MARKDOWN = re.compile(r"([\\`*\[\]|~]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z]))")
_HTML = {"<": "&lt;", ">": "&gt;", "&": "&amp;"}


def _escaped(ch: str) -> str:
    code = ord(ch)
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(ch) or (
        f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def terminal(text: str, *, keep_newlines: bool = False) -> str:
    """`text` with every control character shown escaped (``\\x1b``, ``\\u202e``)."""
    if keep_newlines:
        return "\n".join(terminal(line) for line in text.split("\n"))
    return _CONTROLS.sub(lambda m: _escaped(m.group(0)), text)


def markdown(text: str) -> str:
    """`text` as literal Markdown inline text: controls escaped, no emphasis, link, code
    span, table cell break or inline HTML can come out of it."""
    text = terminal(text)
    text = _MARKDOWN.sub(r"\\\1", text)
    return re.sub("[<>&]", lambda m: _HTML[m.group(0)], text)


# what json.dumps(ensure_ascii=False) leaves raw that a terminal acts on (C0 it escapes itself)
_JSON_RAW = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2028\u2029\u2066-\u2069]")


def json_text(dumped: str) -> str:
    """JSON text from ``json.dumps(..., ensure_ascii=False)`` with C1 controls, DEL and the
    bidirectional overrides written as ``\\uXXXX``: the same value for a parser, inert on a
    terminal (reports in JSON are read there too)."""
    return _JSON_RAW.sub(lambda m: f"\\u{ord(m.group(0)):04x}", dumped)


def code_span(text: str) -> str:
    """`text` as a Markdown code span (controls escaped, never closed early)."""
    text = terminal(text)
    fence = "`" * (max((len(r) for r in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def spreadsheet(text: str) -> str:
    """A CSV cell that a spreadsheet will not run as a formula (=, +, -, @ first)."""
    text = terminal(text)
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text
