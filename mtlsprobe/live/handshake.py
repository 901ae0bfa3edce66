"""One recorded TLS connection: drive ``ssl.SSLObject`` over memory BIOs, keep every byte.

Boundary: this module never parses TLS. It pumps bytes between a connected socket and
OpenSSL, records them as ``model.Chunk`` values with the NSS key log, and notes what
OpenSSL itself said (``local_error``). Decoding is ``tls.observer``'s job.

After the handshake it READS FIRST: a TLS 1.3 server rejects a client certificate only
after the client's Finished (``certificate_required``/``unknown_ca``), so writing first
risks an RST instead of the alert. The first read stops early when the server has sent a
session ticket (TLS 1.3 servers send tickets only after accepting the client's Finished);
otherwise it waits a short window. In TLS 1.2 the server's Finished already proves it
accepted the client, so the first read only takes what has arrived.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from mtlsprobe import __version__
from mtlsprobe.live import pki
from mtlsprobe.live.connect import Connection
from mtlsprobe.live.credentials import Credentials
from mtlsprobe.model import (
    Attempt,
    CertKind,
    Chunk,
    Direction,
    HttpExchange,
    StreamEnd,
    TcpFacts,
    Transcript,
)
from mtlsprobe.tls.http_head import redact_key_material

log = logging.getLogger(__name__)

FIRST_READ_WINDOW = 1.0  # seconds to wait for a late TLS 1.3 rejection
BODY_EXCERPT = 512
MAX_HTTP_HEAD = 64 * 1024
_VERSIONS = {
    "TLSv1": ssl.TLSVersion.TLSv1,
    "TLSv1.1": ssl.TLSVersion.TLSv1_1,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}

# read-loop results
_DATA, _EOF, _RST, _TIMEOUT, _ERROR, _ENOUGH, _CLOSE_NOTIFY = (
    "data", "eof", "rst", "timeout", "error", "enough", "close_notify"
)



#: Folders holding a handshake's key log and, for the agent attempt, its private key (0700,
#: removed after each handshake). An interrupted probe removes what is still there.
_PRIVATE_DIRS: set[Path] = set()
_PRIVATE_LOCK = threading.RLock()  # re-entrant: the Ctrl-C handler runs on any thread state
_CLOSING: list[bool] = []


def _private_dir() -> Path:
    """A new 0700 folder for one handshake's files, registered for removal."""
    with _PRIVATE_LOCK:
        if _CLOSING:
            raise InterruptedError("the probe is being interrupted")
        workdir = Path(tempfile.mkdtemp(prefix="mtlsprobe-"))
        _PRIVATE_DIRS.add(workdir)
        return workdir


def remove_private_files() -> None:
    """Refuse new handshake folders and remove every one still on disk (key logs, the
    agent's key copy): called by an interrupted process before it exits."""
    with _PRIVATE_LOCK:
        _CLOSING.append(True)
        for _ in range(50):  # a worker may still write a file into a folder being removed
            left = [d for d in _PRIVATE_DIRS if d.exists()]
            if not left:
                break
            for workdir in left:
                shutil.rmtree(workdir, ignore_errors=True)
        _PRIVATE_DIRS.clear()

def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    if isinstance(exc, OSError) and exc.errno:
        return errno.errorcode.get(exc.errno, str(exc))
    return type(exc).__name__


class _Recorder:
    """Socket <-> MemoryBIO pump that records every byte with its time."""

    def __init__(self, conn: Connection, sslobj: ssl.SSLObject, incoming: ssl.MemoryBIO,
                 outgoing: ssl.MemoryBIO) -> None:
        self.sock = conn.sock
        self.sslobj = sslobj
        self.incoming = incoming
        self.outgoing = outgoing
        self.t0 = time.monotonic()
        self.chunks: list[Chunk] = []
        self.end: StreamEnd | None = None
        self.local_error: str | None = None
        self.first_sent: float | None = None
        self.first_received: float | None = None
        if conn.leftover:  # TLS bytes that arrived with the CONNECT answer
            self._received(conn.leftover)

    def _received(self, data: bytes) -> None:
        now = time.monotonic()
        if self.first_received is None:
            self.first_received = now
        self.chunks.append(Chunk(direction=Direction.S2C, at=now - self.t0, data=data))
        self.incoming.write(data)

    @property
    def closed(self) -> bool:
        return self.end in (StreamEnd.FIN, StreamEnd.RST)

    def flush(self, deadline: float) -> bool:
        """Send what OpenSSL wrote. False when the socket refused it."""
        data = self.outgoing.read()
        if not data:
            return True
        now = time.monotonic()
        if self.first_sent is None:
            self.first_sent = now
        self.chunks.append(Chunk(direction=Direction.C2S, at=now - self.t0, data=data))
        if self.end == StreamEnd.RST:
            return False
        try:
            self.sock.settimeout(max(0.001, deadline - now))
            self.sock.sendall(data)
        except TimeoutError:
            self.end = StreamEnd.TIMEOUT
            return False
        except OSError as exc:
            if isinstance(exc, ConnectionResetError | BrokenPipeError):
                self.end = StreamEnd.RST
            self.local_error = self.local_error or _reason(exc)
            return False
        return True

    def fill(self, until: float) -> str:
        """Wait until `until` for server bytes and feed them to OpenSSL."""
        if self.closed:
            return _EOF if self.end == StreamEnd.FIN else _RST
        left = until - time.monotonic()
        try:
            self.sock.settimeout(max(0.0, left))  # 0.0: just poll
            data = self.sock.recv(65536)
        except (TimeoutError, BlockingIOError):
            return _TIMEOUT
        except OSError as exc:  # ECONNRESET and friends
            self.end = StreamEnd.RST
            self.local_error = self.local_error or _reason(exc)
            self.incoming.write_eof()
            return _RST
        if not data:
            self.end = StreamEnd.FIN
            self.incoming.write_eof()
            return _EOF
        self._received(data)
        return _DATA

    def ssl_error(self, exc: ssl.SSLError) -> None:
        """What OpenSSL said; an alert reason beats a socket error noted earlier."""
        reason = _reason(exc)
        if self.local_error is None or "ALERT" in reason:
            self.local_error = reason

    def handshake(self, deadline: float) -> bool:
        while True:
            try:
                self.sslobj.do_handshake()
                self.flush(deadline)
                return True
            except ssl.SSLWantReadError:
                if not self.flush(deadline):
                    return False
                got = self.fill(deadline)
                if got == _TIMEOUT:
                    self.end = StreamEnd.TIMEOUT
                    return False
                if got == _RST and not self.incoming.pending:
                    return False
            except ssl.SSLError as exc:
                self.flush(deadline)
                self.ssl_error(exc)
                return False

    def read(self, until: float, *, enough: Callable[[bytes], bool], buf: bytearray) -> str:
        """Read application data into `buf` until `enough(buf)`, EOF, error or `until`.

        Post-handshake messages (tickets, PHA CertificateRequest, TLS 1.2 HelloRequest)
        are handled by OpenSSL inside read(); their answers are flushed here.
        """
        while True:
            try:
                data = self.sslobj.read(65536)
            except ssl.SSLWantReadError:
                if not self.flush(until):
                    return _ERROR
                if enough(bytes(buf)):
                    return _ENOUGH
                got = self.fill(until)
                if got == _TIMEOUT:
                    return _TIMEOUT
                if got == _RST and not self.incoming.pending:
                    return _RST
                continue
            except ssl.SSLZeroReturnError:
                self.flush(until)
                return _CLOSE_NOTIFY
            except ssl.SSLError as exc:
                self.flush(until)
                self.ssl_error(exc)
                return _ERROR
            self.flush(until)
            if not data:
                return _CLOSE_NOTIFY
            buf += data
            if enough(bytes(buf)):
                return _ENOUGH

    def write(self, data: bytes, deadline: float) -> bool:
        while True:
            try:
                self.sslobj.write(data)
                return self.flush(deadline)
            except ssl.SSLWantReadError:
                if not self.flush(deadline) or self.fill(deadline) != _DATA:
                    return False
            except ssl.SSLError as exc:
                self.flush(deadline)
                self.ssl_error(exc)
                return False

    def close(self) -> None:
        if self.end is None:
            with contextlib.suppress(ssl.SSLError, OSError, ValueError):
                self.sslobj.unwrap()
            with contextlib.suppress(OSError):
                self.flush(time.monotonic() + 0.2)
            self.end = StreamEnd.CLOSED_BY_US


def _context(
    attempt: Attempt, identity: Credentials | None, workdir: Path, alpn: Sequence[str] | None
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the chain is judged later, from the transcript
    ctx.post_handshake_auth = True
    if attempt.min_version:
        ctx.minimum_version = _VERSIONS[attempt.min_version]
    if attempt.max_version:
        ctx.maximum_version = _VERSIONS[attempt.max_version]
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    keylog = workdir / "keylog.txt"
    os.close(os.open(keylog, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    ctx.keylog_filename = str(keylog)
    if identity is not None:
        cert_path, key_path = identity.write_pem_pair(workdir)
        try:
            ctx.load_cert_chain(cert_path, key_path)
        finally:
            cert_path.unlink(missing_ok=True)
            key_path.unlink(missing_ok=True)
    return ctx


def _http_request(path: str, host: str, port: int) -> bytes:
    host_header = f"[{host}]" if ":" in host else host
    if port != 443:
        host_header += f":{port}"
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: mtlsprobe/{__version__}\r\n"
        "Accept: */*\r\nConnection: close\r\n\r\n"
    ).encode("latin-1")


def _response_complete(buf: bytes) -> bool:
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return len(buf) > MAX_HTTP_HEAD
    body = buf[head_end + 4 :]
    if len(body) >= BODY_EXCERPT:
        return True
    head = buf[:head_end].lower()
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip() == b"content-length" and value.strip().isdigit():
            return len(body) >= int(value.strip())
    return b"transfer-encoding: chunked" in head and body.endswith(b"0\r\n\r\n")


def parse_http_response(path: str, buf: bytes, error: str | None) -> HttpExchange:
    """Status, headers (in order) and the first bytes of the body from raw response bytes."""
    head, sep, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2) if lines and lines[0] else []
    status_ok = len(parts) >= 2 and parts[1].isascii() and parts[1].isdigit()  # not "2³"
    if not status_ok or not parts[0].startswith("HTTP/"):
        why = error or ("no HTTP response" if not buf else "not an HTTP response")
        excerpt = buf[:BODY_EXCERPT].decode("utf-8", "replace")
        return HttpExchange(path=path, error=why, body_excerpt=redact_key_material(excerpt))
    headers = tuple(
        (n.strip(), redact_key_material(v.strip()))
        for n, s, v in (line.partition(":") for line in lines[1:]) if s
    )
    return HttpExchange(
        path=path,
        status=int(parts[1]),
        reason=parts[2] if len(parts) > 2 else "",
        headers=headers,
        body_excerpt=redact_key_material(body[:BODY_EXCERPT].decode("utf-8", "replace")),
        error=None if sep else (error or "response headers incomplete"),
    )


def run_attempt(
    conn: Connection,
    attempt: Attempt,
    *,
    sni: str | None,
    credentials: Credentials | None = None,
    untrusted: pki.Issued | None = None,
    deadline: float,
    http_path: str | None = None,
    alpn: Sequence[str] | None = ("http/1.1",),
    label: str | None = None,
    first_read_window: float = FIRST_READ_WINDOW,
) -> Transcript:
    """Run one TLS attempt over the connected `conn` and return its Transcript.

    Presents `credentials` for AGENT attempts and `untrusted` for UNTRUSTED ones. Sends
    ``GET http_path`` after the handshake when given, and always for certificate attempts
    (path "/" by default). Network behaviour is recorded, never raised. Closes `conn`.
    """
    identity: Credentials | None = None
    if attempt.client_cert == CertKind.AGENT and credentials is not None:
        identity = credentials
    elif attempt.client_cert == CertKind.UNTRUSTED and untrusted is not None:
        identity = Credentials.from_issued(untrusted)
    workdir = _private_dir()
    try:
        ctx = _context(attempt, identity, workdir, alpn)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        sslobj = ctx.wrap_bio(incoming, outgoing, server_hostname=sni or None)
        rec = _Recorder(conn, sslobj, incoming, outgoing)
        http = _drive(rec, attempt, conn, sni, deadline, http_path, first_read_window)
        rec.close()
        conn.close()
        del sslobj
        keylog = (workdir / "keylog.txt").read_text(encoding="ascii", errors="replace")
    finally:
        conn.close()
        with _PRIVATE_LOCK:
            shutil.rmtree(workdir, ignore_errors=True)
            _PRIVATE_DIRS.discard(workdir)
    log.debug("%s %s: end=%s error=%s", conn.server, attempt.name, rec.end, rec.local_error)
    server_hello_ms = None
    if rec.first_sent is not None and rec.first_received is not None:
        server_hello_ms = max(0.0, (rec.first_received - rec.first_sent) * 1000.0)
    return Transcript(
        label=label or _label(attempt, conn),
        client=conn.client,
        server=conn.server,
        route=conn.route,
        started_at=conn.started_at,
        chunks=tuple(rec.chunks),
        end=rec.end or StreamEnd.CLOSED_BY_US,
        keylog=keylog or None,
        attempt=attempt,
        tcp=TcpFacts(connect_ms=round(conn.connect_ms, 3)),
        http=http,
        local_error=rec.local_error,
        server_hello_ms=server_hello_ms,
    )


def _label(attempt: Attempt, conn: Connection) -> str:
    return attempt.name if conn.route.kind == "direct" else f"{attempt.name} via {conn.route.name}"


def _drive(
    rec: _Recorder,
    attempt: Attempt,
    conn: Connection,
    sni: str | None,
    deadline: float,
    http_path: str | None,
    first_read_window: float,
) -> HttpExchange | None:
    """Handshake, first read, optional GET. Returns the HTTP exchange, if any."""
    if not rec.flush(deadline) or not rec.handshake(deadline):
        return None
    sslobj = rec.sslobj
    app = bytearray()
    if sslobj.version() == "TLSv1.3":
        window_end = min(deadline, time.monotonic() + first_read_window)

        def ticket_seen(_: bytes) -> bool:
            session = sslobj.session
            return bool(app) or (session is not None and session.has_ticket)

        result = rec.read(window_end, enough=ticket_seen, buf=app)
    else:
        result = rec.read(time.monotonic(), enough=lambda b: bool(b), buf=app)
    if result in (_ERROR, _EOF, _RST, _CLOSE_NOTIFY):
        return None
    wants_get = http_path is not None or attempt.client_cert != CertKind.NONE
    if not wants_get:
        return None
    path = http_path or "/"
    if not rec.write(_http_request(path, sni or conn.server.host, conn.server.port), deadline):
        return HttpExchange(path=path, error=rec.local_error or "could not send the request")
    result = rec.read(deadline, enough=_response_complete, buf=app)
    error = None
    if result == _TIMEOUT:
        rec.end = StreamEnd.TIMEOUT
        error = "timed out waiting for the response"
    elif result in (_ERROR, _RST) and not _response_complete(bytes(app)):
        error = rec.local_error
    return parse_http_response(path, bytes(app), error)
