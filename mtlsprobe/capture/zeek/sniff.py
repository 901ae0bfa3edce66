"""Tell a Zeek log from a capture by its first bytes (gzip looked through).

A Zeek ASCII log starts with ``#separator`` (Zeek's ``Log::WRITER_ASCII``; the regression
baselines in ../shared add a ``### BTest`` line first); a JSON log with ``{"`` and a row
holding ``"ts":`` or ``"_path":``. Captures start with their magic numbers and are left to
``mtlsprobe.capture``.
"""

from __future__ import annotations

import sys
import zlib

from mtlsprobe.capture.zeek.zeek_format import GZIP_MAGIC

HEAD = 4096


def head_bytes(path: str) -> bytes:
    """The first ``HEAD`` bytes of the file (``"-"``: of standard input, peeked, not
    consumed, so a capture there is still read whole), gunzipped when gzip (b"" when
    unreadable)."""
    if path == "-":
        peek = getattr(sys.stdin.buffer, "peek", None)
        raw = peek(HEAD)[:HEAD] if peek is not None else b""
    else:
        try:
            with open(path, "rb") as f:
                raw = f.read(HEAD)
        except OSError:
            return b""
    if raw.startswith(GZIP_MAGIC):
        try:
            return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(raw, HEAD)
        except zlib.error:
            return b""
    return raw


def zeek_kind(head: bytes) -> str | None:
    """"tsv" or "json" when ``head`` starts a Zeek log, else None."""
    lines = [line for line in head.split(b"\n") if not line.startswith(b"##")]
    first = next((line.strip() for line in lines if line.strip()), b"")
    if first.startswith(b"#separator"):
        return "tsv"
    if first.startswith(b'{"') and (b'"ts":' in first or b'"_path":' in first):
        return "json"
    return None
