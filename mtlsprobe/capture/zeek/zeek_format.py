"""Zeek's log formats, read one row at a time: the ASCII (TSV) writer and JSON lines.

The TSV format is Zeek's ``Log::WRITER_ASCII`` (src/logging/writers/ascii/Ascii.cc): header
lines ``#separator \\x09``, ``#set_separator``, ``#empty_field``, ``#unset_field``, ``#path``,
``#open``, ``#fields``, ``#types``, ``#close``; a file may hold several header blocks (a
restarted writer, logs of two Zeek versions concatenated), each applying to the rows after it.
Values escape the separators and non-printable bytes as ``\\xNN`` and a backslash as ``\\\\``;
a container (set, vector) is its elements joined by the set separator; ``-`` is unset and
``(empty)`` an empty container. JSON lines (``LogAscii::use_json``) hold one object per row
with flat dotted keys (``id.orig_h``); unset fields are left out.

Rows come out as ``dict[str, Value]``: ``None`` unset, ``list[str]`` a container, ``bool``,
else the text. Damage is a note, never an exception: an overlong line (``MAX_LINE``), a row
with the wrong number of fields, an undecodable JSON line, a bad escape (kept literally), a
truncated gzip stream. Standard library only; memory is one line.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import sys
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

Value = str | bool | list[str] | None
Row = dict[str, Value]

MAX_LINE = 512 * 1024  # bytes; a base64 certificate row is a few KiB, a 1 MB line is damage
GZIP_MAGIC = b"\x1f\x8b"
_ESCAPE = re.compile(rb"\\(x[0-9a-fA-F]{2}|\\)")
_CONTAINER = ("set[", "vector[", "table[")


def open_binary(path: str) -> BinaryIO:
    """The file's bytes (``"-"``: standard input's), un-gzipped when it starts with gzip's
    magic bytes."""
    if path == "-":
        stdin = sys.stdin.buffer
        peek = getattr(stdin, "peek", None)
        if peek is not None and peek(2)[:2] == GZIP_MAGIC:
            return gzip.GzipFile(fileobj=stdin, mode="rb")  # type: ignore[return-value]
        return stdin
    raw = open(path, "rb")  # noqa: SIM115 - returned to the caller, who closes it
    if raw.read(2) == GZIP_MAGIC:
        raw.seek(0)
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    raw.seek(0)
    return raw


def unescape(data: bytes) -> tuple[str, bool]:
    """Zeek's ``\\xNN`` and ``\\\\`` escapes undone; (text, whether a bad escape was kept)."""
    if b"\\" not in data:
        return data.decode("utf-8", "replace"), False
    text = _ESCAPE.sub(lambda m: b"\\" if m.group(1) == b"\\" else bytes(
        [int(m.group(1)[1:], 16)]), data)
    bad = b"\\" in _ESCAPE.sub(b"", data)
    return text.decode("utf-8", "replace"), bad


@dataclass
class Header:
    """One TSV header block."""

    separator: bytes = b"\t"
    set_separator: bytes = b","
    empty: bytes = b"(empty)"
    unset: bytes = b"-"
    path: str = ""
    fields: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)

    def kinds(self) -> list[str]:
        """Per field: "c" container, "b" bool (also T/F without #types), "s" anything else."""
        types = self.types if len(self.types) == len(self.fields) else [""] * len(self.fields)
        return ["c" if t.startswith(_CONTAINER) else "b" if t in ("bool", "") else "s"
                for t in types]


def _separator_value(text: bytes) -> bytes:
    """``#separator \\x09`` -> b"\\t" (the value is written with Zeek's escapes)."""
    value = text.strip(b" \r\n")
    out, bad = unescape(value)
    return out.encode("latin-1", "replace") if not bad and out else b"\t"


@dataclass
class ZeekReader:
    """Rows of one Zeek log (TSV or JSON lines), streamed; ``notes`` after iterating.

    ``kind`` is "tsv" or "json" (see ``logs.sniff``). ``header`` is the TSV block in force
    (its ``path`` and ``fields`` tell an ssl.log from an x509.log); ``on_header`` is called
    with each new block before its rows, and may raise to refuse a log.
    """

    name: str
    stream: BinaryIO
    kind: str
    header: Header = field(default_factory=Header)
    notes: list[str] = field(default_factory=list)
    line_no: int = 0
    rows: int = 0
    on_header: Callable[[ZeekReader, Header], None] | None = None
    _counts: dict[str, int] = field(default_factory=dict)

    def _count(self, what: str) -> None:
        self._counts[what] = self._counts.get(what, 0) + 1

    def lines(self) -> Iterator[bytes]:
        """Lines without their end; an overlong one is skipped (read on in bounded pieces)."""
        read = self.stream.readline
        while True:
            try:
                line = read(MAX_LINE + 1)
            except (EOFError, OSError, zlib.error) as exc:  # truncated or corrupt gzip
                self.notes.append(f"{self.name}: the file ends early or is damaged after line "
                                  f"{self.line_no:,} ({type(exc).__name__}): rows before it read")
                return
            if not line:
                return
            self.line_no += 1
            if len(line) > MAX_LINE and not line.endswith(b"\n"):
                self._count("overlong")
                try:
                    while (more := read(MAX_LINE)) and not more.endswith(b"\n"):
                        pass
                except (EOFError, OSError, zlib.error):
                    pass
                continue
            yield line.rstrip(b"\r\n")

    def __iter__(self) -> Iterator[Row]:
        try:
            yield from (self._json() if self.kind == "json" else self._tsv())
        finally:
            self._close_notes()

    def _close_notes(self) -> None:
        texts = {
            "overlong": f"line(s) over {MAX_LINE // 1024} KiB skipped",
            "width": "row(s) with the wrong number of fields for their #fields header skipped",
            "escape": "value(s) with a bad \\x escape kept as written",
            "json": "line(s) that are not a JSON object skipped",
            "headerless": "row(s) before any #fields header skipped",
        }
        for key, text in texts.items():
            if self._counts.get(key):
                self.notes.append(f"{self.name}: {self._counts[key]:,} {text}")
        self._counts.clear()

    # --- TSV ------------------------------------------------------------------------------

    def _tsv(self) -> Iterator[Row]:
        header = self.header
        fields: list[str] = []
        kinds: list[str] = []
        pending = False  # a new #fields/#types block not yet announced to on_header
        for line in self.lines():
            if not line:
                continue
            if line.startswith(b"#"):
                new = self._header_line(line, header)
                if new is not None:
                    header = self.header = new
                    fields = []
                if line.startswith((b"#fields", b"#types")):
                    fields, kinds, pending = header.fields, header.kinds(), True
                continue
            if not fields:
                self._count("headerless")
                continue
            if pending:
                pending = False
                if self.on_header is not None:
                    self.on_header(self, header)
            parts = line.split(header.separator)
            if len(parts) != len(fields):
                self._count("width")
                continue
            self.rows += 1
            yield self._row(parts, fields, kinds, header)

    def _header_line(self, line: bytes, header: Header) -> Header | None:
        """Apply a header line; a ``#separator`` starts a new block (returned)."""
        if line.startswith(b"#separator"):
            return Header(separator=_separator_value(line[len(b"#separator"):]))
        key, _, value = line[1:].partition(header.separator)
        if key == b"set_separator":
            header.set_separator = value or b","
        elif key == b"empty_field":
            header.empty = value
        elif key == b"unset_field":
            header.unset = value
        elif key == b"path":
            header.path = unescape(value)[0]
        elif key == b"fields":
            header.fields = [unescape(f)[0] for f in value.split(header.separator)]
            header.types = []
        elif key == b"types":
            header.types = [t.decode("ascii", "replace") for t in value.split(header.separator)]
        return None

    def _row(self, parts: list[bytes], fields: list[str], kinds: list[str],
             header: Header) -> Row:
        row: Row = {}
        unset, empty, set_sep = header.unset, header.empty, header.set_separator
        for name, raw, kind in zip(fields, parts, kinds, strict=False):
            if raw == unset:
                row[name] = None
            elif kind == "c":
                if raw == empty:
                    row[name] = []
                else:
                    row[name] = [self._text(item) for item in raw.split(set_sep)]
            elif kind == "b" and (raw == b"T" or raw == b"F"):
                row[name] = raw == b"T"
            else:
                row[name] = self._text(raw)
        return row

    def _text(self, raw: bytes) -> str:
        if b"\\" not in raw:
            return raw.decode("utf-8", "replace")
        text, bad = unescape(raw)
        if bad:
            self._count("escape")
        return text

    # --- JSON lines -----------------------------------------------------------------------

    def _json(self) -> Iterator[Row]:
        announced = False
        for line in self.lines():
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except (ValueError, RecursionError):
                self._count("json")
                continue
            if not isinstance(obj, dict):
                self._count("json")
                continue
            row = {str(k): _json_value(v) for k, v in _flatten(obj)}
            if not announced:
                announced = True
                self.header = Header(path="", fields=list(row))
                if self.on_header is not None:
                    self.on_header(self, self.header)
            self.rows += 1
            yield row


def _flatten(obj: dict[str, object], prefix: str = "") -> Iterator[tuple[str, object]]:
    """Nested records (``{"id": {"orig_h": ...}}``, an older JSON style) as dotted keys."""
    for key, value in obj.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _json_value(value: object) -> Value:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, list):
        return [v if isinstance(v, str) else json.dumps(v) for v in value]
    return json.dumps(value) if not isinstance(value, (int, float)) else repr(value)


def text_stream(data: bytes) -> BinaryIO:
    """Bytes as a stream (tests, stdin)."""
    return io.BytesIO(data)
