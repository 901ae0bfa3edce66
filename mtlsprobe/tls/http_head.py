"""Decrypted application data -> the first HTTP/1.x exchange (``model.HttpExchange``).

Boundary: plaintext bytes of each direction in, at most one request line and one response
head out. Sans-IO, bounded and lenient: a head longer than ``HEAD_LIMIT`` or bytes that do
not look like HTTP/1.x (HTTP/2, another protocol) end collection for that side, never an
error. The observer feeds it only the application data it already decrypts.

What counts:

- client: the first request line ``METHOD SP target SP HTTP/1.x`` (target is the path);
- server: the first final response head (1xx interim responses are skipped): status,
  reason, header fields in order, and the first ``BODY_EXCERPT`` bytes of the body.

An exchange exists only once both a request line and a response status line were seen: a
request without a readable answer is not evidence of anything (the capture may just end).
"""

from __future__ import annotations

import re

from mtlsprobe.model import Direction, HttpExchange

HEAD_LIMIT = 16 * 1024
BODY_EXCERPT = 512  # like the live prober's excerpt

# Key material a server may serve in a body or header (a PEM private key, key log lines):
# reports are attached to tickets, so it is replaced before it reaches any Observation.
_PEM_KEY = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE "
                      r"KEY-----|\Z)", re.DOTALL)
_KEYLOG_LINE = re.compile(r"\b(CLIENT_RANDOM|\w*_SECRET\w*)\s+[0-9A-Fa-f]{4,}\s+[0-9A-Fa-f]{4,}")
_REQUEST_LINE = re.compile(rb"([A-Z][A-Z0-9_-]{0,19}) (\S{1,8192}) HTTP/1\.[0-9]")
_STATUS_LINE = re.compile(rb"HTTP/1\.[0-9] ([0-9]{3})(?: (.*))?")


class HttpHeads:
    """Collects the first HTTP/1.x request line and response head of one connection."""

    def __init__(self) -> None:
        self._buf = {Direction.C2S: bytearray(), Direction.S2C: bytearray()}
        self._done = {Direction.C2S: False, Direction.S2C: False}
        self.method: str | None = None
        self.path: str | None = None
        self.status: int | None = None
        self.reason: str | None = None
        self.headers: tuple[tuple[str, str], ...] = ()
        self.head_complete = False
        self._body_at: int | None = None  # offset of the body in the server buffer

    def wants(self, direction: Direction) -> bool:
        """Whether more plaintext of ``direction`` could still change the result."""
        return not self._done[direction]

    def feed(self, direction: Direction, data: bytes) -> None:
        """Plaintext application data one side sent, in order."""
        if self._done[direction] or not data:
            return
        buf = self._buf[direction]
        buf += data
        if direction is Direction.C2S:
            self._request(buf)
        else:
            self._response(buf)

    def exchange(self) -> HttpExchange | None:
        """The exchange, once a request line and a response status line were seen."""
        if self.path is None or self.status is None:
            return None
        body = b""
        if self._body_at is not None:
            body = bytes(self._buf[Direction.S2C][self._body_at : self._body_at + BODY_EXCERPT])
        return HttpExchange(
            path=self.path,
            status=self.status,
            reason=self.reason,
            headers=tuple((n, redact_key_material(v)) for n, v in self.headers),
            body_excerpt=redact_key_material(body.decode("utf-8", "replace")),
        )

    # --- parsing ---------------------------------------------------------------------

    def _stop(self, direction: Direction) -> None:
        self._done[direction] = True
        if direction is Direction.C2S or self._body_at is None:
            self._buf[direction] = bytearray()

    def _request(self, buf: bytearray) -> None:
        end = buf.find(b"\r\n")
        if end < 0:
            if len(buf) >= HEAD_LIMIT or not _could_be_request(buf):
                self._stop(Direction.C2S)
            return
        m = _REQUEST_LINE.fullmatch(bytes(buf[:end]))
        if m is not None:
            self.method = m.group(1).decode("ascii")
            self.path = m.group(2).decode("latin-1")
        self._stop(Direction.C2S)

    def _response(self, buf: bytearray) -> None:
        while self._body_at is None:
            if len(buf) < 7 and b"HTTP/1.".startswith(buf):
                return  # too short to tell yet
            if not buf.startswith(b"HTTP/1."):
                self._stop(Direction.S2C)
                return
            end = buf.find(b"\r\n\r\n")
            if end < 0 or end + 4 > HEAD_LIMIT:
                readable = self._read_head(bytes(buf[:HEAD_LIMIT]), complete=False)
                if not readable or len(buf) >= HEAD_LIMIT:
                    self._stop(Direction.S2C)
                return
            if not self._read_head(bytes(buf[:end]), complete=True):
                self._stop(Direction.S2C)
                return
            if 100 <= (self.status or 0) < 200:  # interim response: the final one follows
                del buf[: end + 4]
                self.status = self.reason = None
                self.headers = ()
                self.head_complete = False
                continue
            self._body_at = end + 4
        if len(buf) - self._body_at >= BODY_EXCERPT:
            del buf[self._body_at + BODY_EXCERPT :]
            self._done[Direction.S2C] = True

    def _read_head(self, head: bytes, *, complete: bool) -> bool:
        """Status line and the complete header lines of ``head``; False if not HTTP/1.x."""
        lines = head.split(b"\r\n")
        if not complete:
            lines = lines[:-1]  # the last line may be cut
        if not lines:
            return True  # the status line is not complete yet
        m = _STATUS_LINE.fullmatch(lines[0])
        if m is None:
            return False
        self.status = int(m.group(1))
        self.reason = (m.group(2) or b"").decode("latin-1")
        self.headers = tuple(
            (name.strip().decode("latin-1"), value.strip().decode("latin-1"))
            for name, sep, value in (line.partition(b":") for line in lines[1:])
            if sep
        )
        self.head_complete = complete
        return True


def redact_key_material(text: str) -> str:
    """`text` with PEM private keys and key log secrets replaced by a marker."""
    if "PRIVATE KEY" not in text and "_SECRET" not in text and "CLIENT_RANDOM" not in text:
        return text
    text = _PEM_KEY.sub("[private key redacted by mtlsprobe]", text)
    return _KEYLOG_LINE.sub(r"\1 [secret redacted by mtlsprobe]", text)


def _could_be_request(buf: bytearray) -> bool:
    """Whether an unfinished first line can still become an HTTP/1.x request line."""
    method, sp, _rest = bytes(buf[:21]).partition(b" ")
    if not sp:
        return len(method) <= 20 and method.isalpha() and method.isupper()
    return method.isupper()
