"""Copy bytes both ways between two sockets (plain or TLS), in one thread, bounded.

Boundary: the byte pump shared by the loopback middleboxes, plus the per-connection record
they keep (`FlowSeen`). One thread drives both directions with select and non-blocking sockets,
because an OpenSSL connection must not be read and written from two threads at once.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

CHUNK = 16384
#: Most bytes buffered per direction before we stop reading from the sender.
BUFFER_LIMIT = 256 * 1024
MAX_HEAD = 64 * 1024


@dataclass
class FlowSeen:
    """What a middlebox saw of one client connection (recorded when it ends)."""

    peer: tuple[str, int]
    target: tuple[str, int] | None = None
    sni: str | None = None
    status: int | None = None  # the proxy's own HTTP answer (CONNECT reply, 502...), if any
    upstream_tls_version: str | None = None
    upstream_error: str | None = None
    client_error: str | None = None
    bytes_up: int = 0
    bytes_down: int = 0


@dataclass
class RelayResult:
    bytes_up: int = 0  # client -> upstream
    bytes_down: int = 0  # upstream -> client
    client_error: str | None = None
    upstream_error: str | None = None


class _Side:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.is_tls = isinstance(sock, ssl.SSLSocket)
        self.eof = False
        self.write_closed = False
        self.out = bytearray()  # bytes waiting to be sent TO this side
        self.error: str | None = None

    def pending(self) -> bool:
        return self.is_tls and not self.eof and self.sock.pending() > 0  # type: ignore[attr-defined]


def error_text(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return f"{exc.reason}: {exc}"
    return f"{type(exc).__name__}: {exc}"


def pump(
    client: socket.socket,
    upstream: socket.socket,
    *,
    stopping: Callable[[], bool],
    idle_timeout: float = 30.0,
    rewrite_response_head: Callable[[bytes], bytes] | None = None,
) -> RelayResult:
    """Relay until both directions end, either side fails, `stopping()`, or idle_timeout.

    A plain side gets a half-close (FIN) when the other side finishes; with a TLS side the relay
    ends once one direction has finished and its bytes are flushed.
    `rewrite_response_head` is applied once to the first upstream->client bytes up to the
    end of the HTTP head.
    """
    a, b = _Side(client), _Side(upstream)
    result = RelayResult()
    head_pending = rewrite_response_head is not None
    head_buf = bytearray()
    for s in (a, b):
        s.sock.setblocking(False)
    last_activity = time.monotonic()
    try:
        while not stopping():
            if _done(a, b):
                break
            readers = [s for s in (a, b) if not s.eof and len(_peer(s, a, b).out) < BUFFER_LIMIT]
            writers = [s for s in (a, b) if s.out and not s.write_closed]
            timeout = 0.0 if any(s.pending() for s in readers) else 0.5
            r, w, _ = select.select(
                [s.sock for s in readers], [s.sock for s in writers], [], timeout
            )
            moved = False
            for side in readers:
                if side.sock in r or side.pending():
                    data = _recv(side)
                    if not data:
                        continue
                    moved = True
                    if side is a:
                        result.bytes_up += len(data)
                    else:
                        result.bytes_down += len(data)
                    if side is b and head_pending:
                        head_buf += data
                    else:
                        a.out += data if side is b else b""
                        b.out += data if side is a else b""
            if head_pending and head_buf:
                end = head_buf.find(b"\r\n\r\n")
                if end >= 0 or len(head_buf) >= MAX_HEAD or b.eof:
                    assert rewrite_response_head is not None
                    split = end + 4 if end >= 0 else len(head_buf)
                    a.out += rewrite_response_head(bytes(head_buf[:split])) + head_buf[split:]
                    head_pending = False
            for side in writers:
                if side.sock in w:
                    moved = _send(side) or moved
            for side in (a, b):
                other = _peer(side, a, b)
                if side.eof and not other.out and not other.write_closed and not other.is_tls:
                    other.write_closed = True
                    with contextlib.suppress(OSError):
                        other.sock.shutdown(socket.SHUT_WR)
            if a.error or b.error:
                _flush(a, b)
                break
            now = time.monotonic()
            if moved:
                last_activity = now
            elif now - last_activity > idle_timeout:
                break
    finally:
        result.client_error, result.upstream_error = a.error, b.error
        for s in (a, b):
            with contextlib.suppress(OSError):
                s.sock.setblocking(True)
    return result


def _peer(side: _Side, a: _Side, b: _Side) -> _Side:
    return b if side is a else a


def _done(a: _Side, b: _Side) -> bool:
    """Both directions finished, or one finished into a TLS side and its bytes are flushed."""
    for side in (a, b):
        other = _peer(side, a, b)
        if side.eof and not other.out and (other.is_tls or side.is_tls):
            return True
    return a.eof and b.eof and not a.out and not b.out


def _recv(side: _Side) -> bytes:
    try:
        data = side.sock.recv(CHUNK)
    except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
        return b""
    except ssl.SSLZeroReturnError:
        side.eof = True
        return b""
    except (OSError, ValueError) as exc:
        side.eof = True
        side.error = error_text(exc)
        return b""
    if not data:
        side.eof = True
    return data


def _send(side: _Side) -> bool:
    try:
        n = side.sock.send(side.out)
    except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
        return False
    except (OSError, ValueError) as exc:
        side.error = side.error or error_text(exc)
        side.out.clear()
        side.write_closed = True
        return False
    del side.out[:n]
    return n > 0


def _flush(a: _Side, b: _Side, limit: float = 2.0) -> None:
    """Best effort: deliver what is buffered toward a side that has not failed."""
    deadline = time.monotonic() + limit
    for side in (a, b):
        if side.error or side.write_closed:
            continue
        while side.out and time.monotonic() < deadline:
            _, w, _ = select.select([], [side.sock], [], 0.2)
            if w and not _send(side) and side.error:
                break
