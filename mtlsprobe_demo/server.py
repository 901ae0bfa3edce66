"""A reference mTLS server on loopback with scripted behaviours, for the demo and the tests.

Boundary: a threaded Python-`ssl` server that records what each connection showed it
(`ConnectionSeen`). It never crashes on, or prints tracebacks for, odd client handshakes.

Behaviours:
  http                 handshake, read one HTTP request, answer 200 with JSON of what it saw.
  nginx                request a client cert but finish the handshake whatever it is; answer
                       nginx's `400 Bad Request` pages when it is missing or invalid.
  reset_after_hello    read the ClientHello, then close with a TCP RST (no TLS at all).
  silent_after_hello   read the ClientHello, then say nothing until the client goes away.
  post_handshake_auth  TLS 1.3: no cert request in the handshake; after the HTTP request, a
                       post-handshake CertificateRequest, and the cert is required.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import select
import socket
import ssl
import struct
import time
from dataclasses import asdict, dataclass, field

from cryptography import x509

from mtlsprobe.live import openssl_hooks, pki
from mtlsprobe.live.tcp_service import PEER_ERRORS, TcpService
from mtlsprobe_demo.tls_contexts import server_context

BEHAVIOURS = ("http", "nginx", "reset_after_hello", "silent_after_hello", "post_handshake_auth")
MAX_HELLO = 64 * 1024
MAX_REQUEST = 64 * 1024

NGINX_NO_CERT = "No required SSL certificate was sent"
NGINX_BAD_CERT = "The SSL certificate error"


@dataclass
class ConnectionSeen:
    """What the server saw on one accepted connection (recorded when the connection ends)."""

    peer: tuple[str, int]
    behaviour: str
    tls_version: str | None = None
    cipher: str | None = None
    sni: str | None = None
    client_cert_sha256: str | None = None
    client_cert_subject: str | None = None
    client_cert_valid: bool | None = None
    client_hello: bytes | None = None
    request_line: str | None = None
    status: int | None = None
    error: str | None = None
    finished_at: float = field(default=0.0)

    def as_json(self) -> dict:
        d = asdict(self)
        d.pop("client_hello")
        d.pop("finished_at")
        d["peer"] = list(self.peer)
        return d


def read_client_hello(sock: socket.socket) -> bytes:
    """Read whole TLS records until a complete first handshake message (bounded); raw bytes.

    Non-TLS bytes: whatever the first recv returned.
    """
    buf = b""
    need_body: int | None = None
    body = 0
    while len(buf) < MAX_HELLO:
        header = _recv_exact(sock, 5)
        if header is None:
            return buf
        buf += header
        if buf[-5] != 0x16:  # not a handshake record: not TLS, stop here
            return buf
        (length,) = struct.unpack("!H", buf[-2:])
        payload = _recv_exact(sock, length)
        if payload is None:
            return buf
        buf += payload
        if need_body is None and len(payload) >= 4:
            need_body = 4 + int.from_bytes(payload[1:4], "big")
        body += len(payload)
        if need_body is not None and body >= need_body:
            return buf
    return buf


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    """n bytes, or None at EOF."""
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            return None
        out += chunk
    return out


def read_http_request(sock: socket.socket) -> bytes:
    """Bytes up to the end of the request head (or EOF, or MAX_REQUEST)."""
    buf = b""
    while b"\r\n\r\n" not in buf and len(buf) < MAX_REQUEST:
        chunk = sock.recv(4096)
        if not chunk:
            break
        buf += chunk
    return buf


def http_response(status: int, reason: str, body: bytes, content_type: str, server: str) -> bytes:
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        f"Server: {server}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


def nginx_400(message: str) -> bytes:
    body = (
        "<html>\r\n"
        f"<head><title>400 {message}</title></head>\r\n"
        "<body>\r\n"
        "<center><h1>400 Bad Request</h1></center>\r\n"
        f"<center>{message}</center>\r\n"
        "<hr><center>nginx</center>\r\n"
        "</body>\r\n"
        "</html>\r\n"
    ).encode()
    return http_response(400, "Bad Request", body, "text/html", "nginx")


class ReferenceServer(TcpService):
    """A threaded TLS server on loopback with a scripted behaviour; records `seen`."""

    def __init__(
        self,
        identity: pki.Issued,
        *,
        client_ca: pki.CA | None = None,
        verify: str = "required",
        min_version: str | None = None,
        max_version: str | None = None,
        behaviour: str = "http",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host, port)
        if behaviour not in BEHAVIOURS:
            raise ValueError(f"behaviour must be one of {BEHAVIOURS}, not {behaviour!r}")
        self.identity = identity
        self.client_ca = client_ca
        self.verify = verify
        self.behaviour = behaviour
        if behaviour == "post_handshake_auth":
            min_version = min_version or "TLSv1.3"
            max_version = max_version or "TLSv1.3"
        ctx_verify = verify
        if behaviour == "nginx":
            if client_ca is None:
                raise ValueError("behaviour 'nginx' needs a client_ca")
            ctx_verify = "optional"
        self.context = server_context(
            identity,
            client_ca=client_ca,
            verify=ctx_verify,
            min_version=min_version,
            max_version=max_version,
        )
        if behaviour == "nginx":
            openssl_hooks.accept_any_client_cert(self.context)
        if behaviour == "post_handshake_auth":
            if client_ca is None:
                raise ValueError("behaviour 'post_handshake_auth' needs a client_ca")
            self.context.verify_mode = ssl.CERT_REQUIRED
            self.context.post_handshake_auth = True
        self.context.sni_callback = self._on_sni

    seen: list[ConnectionSeen]

    def _record(self, seen: ConnectionSeen) -> None:
        seen.finished_at = time.time()
        self.record(seen)

    @staticmethod
    def _on_sni(sslobj: ssl.SSLObject | ssl.SSLSocket, name: str | None, _ctx: object) -> None:
        with contextlib.suppress(AttributeError, TypeError):
            sslobj._mtlsprobe_sni = name  # type: ignore[union-attr]
        return None

    # -- connection handling -------------------------------------------------------------------

    def handle(self, sock: socket.socket, peer: tuple) -> None:
        seen = ConnectionSeen(peer=(peer[0], peer[1]), behaviour=self.behaviour)
        try:
            if self.behaviour == "reset_after_hello":
                seen.client_hello = read_client_hello(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif self.behaviour == "silent_after_hello":
                seen.client_hello = read_client_hello(sock)
                self._wait_for_close(sock)
            else:
                self._handle_tls(sock, seen)
        except PEER_ERRORS as exc:
            seen.error = seen.error or _error_text(exc)
        finally:
            self._record(seen)

    def _wait_for_close(self, sock: socket.socket, limit: float = 120.0) -> None:
        deadline = time.monotonic() + limit
        while not self.stopping and time.monotonic() < deadline:
            r, _, _ = select.select([sock], [], [], 1.0)
            if r and not sock.recv(4096):
                return

    def _handle_tls(self, sock: socket.socket, seen: ConnectionSeen) -> None:
        ssock = self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        self.track(ssock)
        try:
            try:
                ssock.do_handshake()
            except ssl.SSLError:
                self._linger(ssock)
                raise
            self._note_session(ssock, seen)
            if self.behaviour == "http":
                self._serve_http(ssock, seen)
            elif self.behaviour == "nginx":
                self._serve_nginx(ssock, seen)
            else:
                self._serve_post_handshake(ssock, seen)
        finally:
            self.untrack(ssock)
            with contextlib.suppress(OSError):
                ssock.close()

    def _linger(self, ssock: ssl.SSLSocket, limit: float = 2.0) -> None:
        """After a failed handshake (the alert is sent), half-close and drain what the client
        still sends, as nginx's lingering close does, so it reads our alert instead of an RST."""
        with contextlib.suppress(OSError):
            socket.socket.shutdown(ssock, socket.SHUT_WR)
            deadline = time.monotonic() + limit
            while not self.stopping and time.monotonic() < deadline:
                r, _, _ = select.select([ssock], [], [], 0.2)
                if r and not socket.socket.recv(ssock, 65536):
                    return

    def _note_session(self, ssock: ssl.SSLSocket, seen: ConnectionSeen) -> None:
        seen.tls_version = ssock.version()
        cipher = ssock.cipher()
        seen.cipher = cipher[0] if cipher else None
        seen.sni = getattr(ssock, "_mtlsprobe_sni", None)
        der = ssock.getpeercert(binary_form=True)
        if der:
            seen.client_cert_sha256 = hashlib.sha256(der).hexdigest()
            try:
                cert = x509.load_der_x509_certificate(der)
                seen.client_cert_subject = cert.subject.rfc4514_string()
                seen.client_cert_valid = self._cert_valid(cert)
            except ValueError:
                seen.client_cert_valid = False

    def _cert_valid(self, cert: x509.Certificate) -> bool:
        """Directly issued by client_ca and within its validity (nginx-mode's own check)."""
        if self.client_ca is None:
            return False
        try:
            cert.verify_directly_issued_by(self.client_ca.cert)
        except Exception:  # InvalidSignature, wrong key type, other issuer
            return False
        now = dt.datetime.now(dt.timezone.utc)
        return _not_before(cert) <= now <= _not_after(cert)

    def _answer_json(self, ssock: ssl.SSLSocket, seen: ConnectionSeen) -> None:
        seen.status = 200
        body = json.dumps(seen.as_json(), sort_keys=True).encode()
        ssock.sendall(http_response(200, "OK", body, "application/json", "mtlsprobe-reference"))

    def _read_request(self, ssock: ssl.SSLSocket, seen: ConnectionSeen) -> bytes:
        request = read_http_request(ssock)
        line = request.split(b"\r\n", 1)[0]
        seen.request_line = line.decode("latin-1")[:200] if line else None
        return request

    def _serve_http(self, ssock: ssl.SSLSocket, seen: ConnectionSeen) -> None:
        if self._read_request(ssock, seen):
            self._answer_json(ssock, seen)

    def _serve_nginx(self, ssock: ssl.SSLSocket, seen: ConnectionSeen) -> None:
        if not self._read_request(ssock, seen):
            return
        if seen.client_cert_sha256 is None:
            seen.status = 400
            ssock.sendall(nginx_400(NGINX_NO_CERT))
        elif not seen.client_cert_valid:
            seen.status = 400
            ssock.sendall(nginx_400(NGINX_BAD_CERT))
        else:
            self._answer_json(ssock, seen)

    def _serve_post_handshake(self, ssock: ssl.SSLSocket, seen: ConnectionSeen) -> None:
        if not self._read_request(ssock, seen):
            return
        try:
            ssock.verify_client_post_handshake()
        except ssl.SSLError as exc:  # client did not offer post_handshake_auth
            seen.status = 403
            seen.error = _error_text(exc)
            body = b"client certificate required, but client cannot do post-handshake auth\n"
            ssock.sendall(http_response(403, "Forbidden", body, "text/plain", "mtlsprobe"))
            return
        ssock.do_handshake()  # sends the CertificateRequest
        self._await_client_cert(ssock)
        self._note_session(ssock, seen)
        self._answer_json(ssock, seen)

    def _await_client_cert(self, ssock: ssl.SSLSocket, limit: float = 10.0) -> None:
        """Drive reads until the client's post-handshake Certificate is processed.

        An empty Certificate raises SSLError (OpenSSL sends certificate_required).
        """
        deadline = time.monotonic() + limit
        ssock.setblocking(False)
        try:
            while ssock.getpeercert(binary_form=True) is None:
                left = deadline - time.monotonic()
                if left <= 0 or self.stopping:
                    raise TimeoutError("no post-handshake client certificate")
                try:
                    if not ssock.recv(4096):
                        raise EOFError("client closed during post-handshake auth")
                except ssl.SSLWantReadError:
                    select.select([ssock], [], [], min(left, 1.0))
        finally:
            ssock.setblocking(True)
            ssock.settimeout(self.io_timeout)


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return f"{exc.reason}: {exc}"
    return f"{type(exc).__name__}: {exc}"


def _not_before(cert: x509.Certificate) -> dt.datetime:
    value = getattr(cert, "not_valid_before_utc", None)  # cryptography >= 42
    return value or cert.not_valid_before.replace(tzinfo=dt.timezone.utc)


def _not_after(cert: x509.Certificate) -> dt.datetime:
    value = getattr(cert, "not_valid_after_utc", None)
    return value or cert.not_valid_after.replace(tzinfo=dt.timezone.utc)
