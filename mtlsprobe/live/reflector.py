"""The reference listener (`mtlsprobe serve`): an mTLS server that echoes each connection.

Boundary: the listener requests (and accepts) any client certificate and answers every
connection with a JSON echo of what arrived: the raw ClientHello's digest, JA3 and offered
parameters, the client chain (SHA-256), the TLS version and cipher, the peer address, and
the chain it presented; optionally HMAC-signed with a shared secret so a middlebox cannot
forge it. The echo format (and its signing) is ``live.reflector_echo``; the probe side that
reads it is ``run.reflector``. Bounded: connection limit, per-connection deadline, no file
writes (keys are loaded through an anonymous memory file where the OS has one).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from mtlsprobe.live import openssl_hooks, pki
from mtlsprobe.live.credentials import PasswordSource, load_credentials
from mtlsprobe.live.reflector_echo import (
    ECHO_HEADER,
    HMAC_HEADER,
    build_echo,
    encode_echo,
    first_client_hello,
    sign,
)
from mtlsprobe.live.tcp_service import PEER_ERRORS, TcpService
from mtlsprobe.model import certs
from mtlsprobe.model.errors import EnvironmentProblem, InputError
from mtlsprobe.tls.hellos import ClientHello

MAX_REQUEST = 16 * 1024
MAX_HELLO = 64 * 1024
_HTTP_METHODS = (b"GET ", b"HEAD ", b"POST ", b"PUT ", b"OPTIONS ", b"DELETE ", b"PATCH ")


# --- its identity --------------------------------------------------------------------------


def _load_identity(ctx: ssl.SSLContext, chain_pem: bytes, key_pem: bytes) -> None:
    """load_cert_chain from memory: a memfd where the OS has one (no file system write),
    else a 0600 file in a private temp dir removed at once."""
    data = chain_pem + key_pem
    if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
        fd = os.memfd_create("mtlsprobe-reflector-identity")
        try:
            os.write(fd, data)
            ctx.load_cert_chain(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="mtlsprobe-reflector-") as tmp:
        path = os.path.join(tmp, "identity.pem")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        ctx.load_cert_chain(path)


def generated_identity(names: Sequence[str] = ("localhost",)) -> tuple[bytes, bytes]:
    """A throwaway self-made CA and server certificate: (chain PEM, key PEM). In memory."""
    ca = pki.CA("mtlsprobe reflector CA", org="mtlsprobe reflector")
    # Backdated past the rules' "freshly minted" window (MTLS015), which is about middleboxes.
    since = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=7)
    leaf = ca.issue(names[0], sans=tuple(names), eku=(pki.SERVER_AUTH,), not_before=since)
    return leaf.chain_pem + ca.cert_pem, leaf.key_pem()


def identity_from_files(
    cert: Path, key: Path | None, password: PasswordSource = None
) -> tuple[bytes, bytes]:
    """(chain PEM, key PEM) in memory from operator files (PEM or DER, maybe encrypted)."""
    creds = load_credentials(cert=cert, key=key, pkcs12=None, password=password)
    chain = b"".join(
        certs.parse_der(d).public_bytes(serialization.Encoding.PEM) for d in creds.chain_der
    )
    key_pem = creds.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return chain, key_pem


# --- the listener --------------------------------------------------------------------------


class Reflector(TcpService):
    """An mTLS listener that echoes what each connection showed it (see module docstring)."""

    def __init__(
        self,
        *,
        chain_pem: bytes,
        key_pem: bytes,
        host: str = "127.0.0.1",
        port: int = 0,
        client_ca_pem: bytes | None = None,
        secret: bytes | None = None,
        max_connections: int = 16,
        timeout: float = 10.0,
        on_answer: Callable[[dict[str, object]], None] | None = None,
    ) -> None:
        super().__init__(host, port)
        self.on_answer = on_answer
        self.answered = 0  # connections answered with an echo (nothing else is kept)
        self._answered_cond = threading.Condition()
        self.max_connections = max_connections
        self.io_timeout = timeout
        self.timeout = timeout
        self.secret = secret
        try:
            self.chain = [certs.to_der(c) for c in certs.load_certificates(chain_pem)]
        except ValueError as exc:
            raise InputError(f"server certificate: {exc}") from None
        if not self.chain:
            raise InputError("server certificate: no certificate found")
        self.chain_sha256 = [hashlib.sha256(d).hexdigest() for d in self.chain]
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            _load_identity(ctx, chain_pem, key_pem)
        except ssl.SSLError as exc:
            raise InputError(f"server certificate/key do not load: {exc.reason or exc}") from None
        ca_ders: list[bytes] = []
        if client_ca_pem:
            try:
                ca_ders = [certs.to_der(c) for c in certs.load_certificates(client_ca_pem)]
            except ValueError as exc:
                raise InputError(f"--client-ca: {exc}") from None
            ctx.load_verify_locations(cadata=client_ca_pem.decode("ascii", "replace"))
        ctx.verify_mode = ssl.CERT_OPTIONAL  # ask; a connection without a cert is echoed too
        if not openssl_hooks.accept_any_client_cert(ctx):
            raise EnvironmentProblem("this Python's ssl module cannot be told to accept any "
                                     "client certificate (OpenSSL hook unavailable)")
        if ca_ders and not openssl_hooks.set_client_ca_names(ctx, ca_ders):
            raise EnvironmentProblem("cannot set the CA names of the CertificateRequest")
        self.client_ca_names = [certs.cert_info(d).subject for d in ca_ders]
        self.context = ctx

    # -- one connection ------------------------------------------------------------------------

    def handle(self, sock: socket.socket, peer: tuple) -> None:
        deadline = time.monotonic() + self.timeout
        hello_bytes = _read_hello(sock, deadline)
        parsed = first_client_hello(hello_bytes)
        if parsed is None:
            if hello_bytes.startswith(_HTTP_METHODS):
                text = b"This is an mTLS reflector: connect with TLS."
                sock.sendall(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(text), text))
            return
        hello, digest = parsed
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        sslobj = self.context.wrap_bio(incoming, outgoing, server_side=True)
        incoming.write(hello_bytes)
        pump = _Pump(sock, sslobj, incoming, outgoing, deadline)
        if not pump.handshake():
            return
        request = pump.read_request()
        echo = self.echo(sslobj, hello, digest, peer, request)
        pump.write(self.answer(echo, request))
        pump.close()
        with self._answered_cond:
            self.answered += 1
            self._answered_cond.notify_all()
        if self.on_answer is not None:
            self.on_answer(json.loads(echo))

    def wait_answered(self, count: int, timeout: float | None = None) -> bool:
        """Block until `count` connections were answered (False on timeout)."""
        with self._answered_cond:
            return self._answered_cond.wait_for(lambda: self.answered >= count, timeout)

    def echo(
        self, sslobj: ssl.SSLObject, hello: ClientHello, digest: str, peer: tuple, request: bytes
    ) -> bytes:
        """The canonical echo bytes of this connection (see ``reflector_echo.build_echo``)."""
        cipher = sslobj.cipher()
        return build_echo(
            peer=peer,
            hello=hello,
            digest=digest,
            version=sslobj.version(),
            cipher=cipher[0] if cipher else None,
            client_chain_sha256=_client_chain(sslobj),
            server_chain_sha256=self.chain_sha256,
            client_ca_names=self.client_ca_names,
            request=request,
            at=dt.datetime.now(dt.timezone.utc),
        )

    def answer(self, echo: bytes, request: bytes) -> bytes:
        mac = sign(echo, self.secret) if self.secret else None
        if not request.startswith(_HTTP_METHODS):  # raw: the echo line (and its HMAC line)
            return echo + b"\n" + (f"hmac={mac}\n".encode() if mac else b"")
        body = json.dumps(json.loads(echo), indent=2, sort_keys=True).encode() + b"\n"
        head = [
            "HTTP/1.1 200 OK",
            "Server: mtlsprobe-reflector",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            "Cache-Control: no-store",
            f"{ECHO_HEADER}: {encode_echo(echo)}",
        ]
        if mac:
            head.append(f"{HMAC_HEADER}: {mac}")
        head.append("Connection: close")
        return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def _read_hello(sock: socket.socket, deadline: float) -> bytes:
    """Whole records until the first handshake message is complete (bounded in size and
    time); non-TLS bytes: whatever arrived first."""
    buf = b""
    while len(buf) < MAX_HELLO:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no ClientHello before the deadline")
        sock.settimeout(left)
        data = sock.recv(MAX_HELLO - len(buf))
        if not data:
            return buf
        buf += data
        if buf[0] != 22:  # not a TLS handshake record
            return buf
        pos, body, need = 0, 0, None
        while pos + 5 <= len(buf):
            length = int.from_bytes(buf[pos + 3 : pos + 5], "big")
            if pos + 5 + length > len(buf):
                break
            payload = buf[pos + 5 : pos + 5 + length]
            if need is None and len(payload) >= 4:
                need = 4 + int.from_bytes(payload[1:4], "big")
            body += length
            pos += 5 + length
            if need is not None and body >= need:
                return buf
    return buf




def _client_chain(sslobj: ssl.SSLObject) -> list[str]:
    """SHA-256 of the client chain as received (Python 3.13+), else of the leaf alone."""
    getter = getattr(sslobj, "get_unverified_chain", None)
    if getter is not None:
        with contextlib.suppress(ssl.SSLError, ValueError):
            ders = [c for c in (getter() or []) if isinstance(c, bytes)]
            if ders:
                return [hashlib.sha256(d).hexdigest() for d in ders]
    leaf = sslobj.getpeercert(binary_form=True)
    return [hashlib.sha256(leaf).hexdigest()] if leaf else []


class _Pump:
    """Socket <-> MemoryBIO for one server-side connection, under one deadline."""

    def __init__(self, sock: socket.socket, sslobj: ssl.SSLObject, incoming: ssl.MemoryBIO,
                 outgoing: ssl.MemoryBIO, deadline: float) -> None:
        self.sock, self.sslobj, self.incoming, self.outgoing = sock, sslobj, incoming, outgoing
        self.deadline = deadline

    def _left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("reflector connection deadline")
        return left

    def flush(self) -> None:
        data = self.outgoing.read()
        if data:
            self.sock.settimeout(self._left())
            self.sock.sendall(data)

    def fill(self) -> bool:
        self.sock.settimeout(self._left())
        data = self.sock.recv(65536)
        if not data:
            self.incoming.write_eof()
            return False
        self.incoming.write(data)
        return True

    def handshake(self) -> bool:
        while True:
            try:
                self.sslobj.do_handshake()
                self.flush()
                return True
            except ssl.SSLWantReadError:
                self.flush()
                if not self.fill():
                    return False
            except ssl.SSLError:
                with contextlib.suppress(*PEER_ERRORS):
                    self.flush()  # our alert
                return False

    def read_request(self) -> bytes:
        """An HTTP request head, or any raw bytes up to a newline; b"" on EOF/timeout."""
        buf = b""
        while len(buf) < MAX_REQUEST:
            try:
                data = self.sslobj.read(65536)
            except ssl.SSLWantReadError:
                self.flush()
                try:
                    if not self.fill():
                        break
                except TimeoutError:
                    break
                continue
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                break
            if not data:
                break
            buf += data
            if _request_complete(buf):
                break
        return buf

    def write(self, data: bytes) -> None:
        self.sslobj.write(data)
        self.flush()

    def close(self) -> None:
        with contextlib.suppress(ssl.SSLError, *PEER_ERRORS):
            self.sslobj.unwrap()
        with contextlib.suppress(*PEER_ERRORS):
            self.flush()


def _request_complete(buf: bytes) -> bool:
    if any(m.startswith(buf[: len(m)]) for m in _HTTP_METHODS) and len(buf) < 8:
        return False  # could still become an HTTP request line
    if buf.startswith(_HTTP_METHODS):
        return b"\r\n\r\n" in buf
    return b"\n" in buf or len(buf) >= 1024
