"""The reference listener (`mtlsprobe serve`) and the probe side of `probe --reflector`.

Boundary: the listener requests (and accepts) any client certificate and answers every
connection with a JSON echo of what arrived: the raw ClientHello's digest, JA3 and offered
parameters, the client chain (SHA-256), the TLS version and cipher, the peer address, and
the chain it presented; optionally HMAC-signed with a shared secret so a middlebox cannot
forge it. The probe side runs the usual attempts against it, reads each echo and attaches
it (with the digest of the ClientHello we sent) to the Observation; rules MTLS080-MTLS084
compare. Bounded: connection limit, per-connection deadline, no file writes (keys are loaded
through an anonymous memory file where the OS has one).

Why the ClientHello digest: JA3 only summarises the offer; the ClientHello bytes include our
random, so a digest match proves the far end received *our* ClientHello, not a re-made one.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import datetime as dt
import hashlib
import hmac
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
from mtlsprobe.live.probe import ProbeOptions, probe_target
from mtlsprobe.live.tcp_service import PEER_ERRORS, TcpService
from mtlsprobe.model import (
    CaseResult,
    Direction,
    Endpoint,
    Expectations,
    Observation,
    ReflectorEcho,
    Transcript,
    certs,
)
from mtlsprobe.model.errors import EnvironmentProblem, InputError
from mtlsprobe.tls import fingerprint
from mtlsprobe.tls.constants import HandshakeType, cipher_suite_name, version_name
from mtlsprobe.tls.handshake_framing import HandshakeAssembler
from mtlsprobe.tls.hellos import ClientHello, parse_client_hello
from mtlsprobe.tls.reader import DecodeError
from mtlsprobe.tls.records import RecordSplitter

ECHO_PATH = "/mtlsprobe/echo"
ECHO_HEADER = "X-Mtlsprobe-Echo"
HMAC_HEADER = "X-Mtlsprobe-Echo-Hmac"
SECRET_ENV = "MTLSPROBE_REFLECTOR_SECRET"
ECHO_VERSION = 1
MAX_REQUEST = 16 * 1024
MAX_HELLO = 64 * 1024
_HTTP_METHODS = (b"GET ", b"HEAD ", b"POST ", b"PUT ", b"OPTIONS ", b"DELETE ", b"PATCH ")


# --- the ClientHello, from raw bytes (both sides use this) --------------------------------


def first_client_hello(stream: bytes) -> tuple[ClientHello, str] | None:
    """The first ClientHello in a client->server byte stream and the SHA-256 (hex) of the
    whole handshake message (header + body); None when the bytes do not hold one."""
    splitter = RecordSplitter()
    assembler = HandshakeAssembler()
    try:
        for rec in splitter.feed(stream):
            if rec.content_type != 22:  # handshake
                return None
            for msg in assembler.feed(rec.payload):
                if msg.msg_type != HandshakeType.CLIENT_HELLO:
                    return None
                raw = bytes([msg.msg_type]) + len(msg.body).to_bytes(3, "big") + msg.body
                return parse_client_hello(msg.body), hashlib.sha256(raw).hexdigest()
    except DecodeError:
        return None
    return None


def hello_facts(hello: ClientHello, digest: str) -> dict[str, object]:
    return {
        "sha256": digest,
        "ja3": fingerprint.ja3(hello),
        "ja3_string": fingerprint.ja3_string(hello),
        "versions": [version_name(v) for v in hello.offered_versions],
        "cipher_suites": [cipher_suite_name(c) for c in hello.cipher_suites],
        "sni": hello.sni,
        "alpn": list(hello.alpn),
    }


# --- signing -------------------------------------------------------------------------------


def sign(echo: bytes, secret: bytes) -> str:
    return hmac.new(secret, echo, hashlib.sha256).hexdigest()


def read_secret(path: Path | None, environ: dict[str, str] | None = None) -> bytes | None:
    """The shared secret from FILE (first line, stripped), else $MTLSPROBE_REFLECTOR_SECRET."""
    env = os.environ if environ is None else environ
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read secret file {path}: "
                             f"{getattr(exc, 'strerror', None) or exc}") from None
        secret = text[0].strip() if text else ""
        if not secret:
            raise InputError(f"secret file {path} is empty")
        return secret.encode()
    value = env.get(SECRET_ENV, "").strip()
    return value.encode() if value else None


# --- the listener --------------------------------------------------------------------------


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
        """The canonical echo bytes (compact JSON, sorted keys): what gets signed."""
        cipher = sslobj.cipher()
        line = request.split(b"\r\n", 1)[0][:200].decode("latin-1") if request else None
        body = {
            "mtlsprobe_reflector": ECHO_VERSION,
            "peer": _address(peer),
            "client_hello": hello_facts(hello, digest),
            "tls": {"version": sslobj.version(), "cipher": cipher[0] if cipher else None},
            "client_chain_sha256": _client_chain(sslobj),
            "server_chain_sha256": self.chain_sha256,
            "client_ca_names": self.client_ca_names,
            "request": line,
            "at": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

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
            f"{ECHO_HEADER}: {base64.urlsafe_b64encode(echo).decode().rstrip('=')}",
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


def _address(peer: tuple) -> str:
    host = str(peer[0])
    return f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}"


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


# --- the probe side --------------------------------------------------------------------------


def sent_hello(transcript: Transcript) -> tuple[ClientHello, str] | None:
    """Our own first ClientHello, from the transcript's client->server bytes."""
    stream = b"".join(c.data for c in transcript.chunks if c.direction is Direction.C2S)
    return first_client_hello(stream)


def parse_echo(
    headers: Sequence[tuple[str, str]], secret: bytes | None
) -> tuple[str, dict[str, object] | None, bool, str | None]:
    """(status, echo, signed, error) from the HTTP response headers of one connection."""
    found = {n.lower(): v for n, v in headers}
    encoded = found.get(ECHO_HEADER.lower())
    if encoded is None:
        return "missing", None, False, "no echo in the answer"
    try:
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        echo = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        return "malformed", None, False, f"echo does not decode: {exc}"
    if not isinstance(echo, dict) or echo.get("mtlsprobe_reflector") != ECHO_VERSION:
        return "malformed", None, False, "not an mtlsprobe reflector echo (version 1)"
    if secret is None:
        return "ok", echo, False, None
    mac = found.get(HMAC_HEADER.lower())
    if mac is None:
        return "bad_signature", echo, False, "the echo is not signed, but a secret was given"
    if not hmac.compare_digest(mac.strip().lower(), sign(raw, secret)):
        return "bad_signature", echo, False, "HMAC mismatch: echo altered, or another secret"
    return "ok", echo, True, None


def _strings(value: object) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def _opt(value: object) -> str | None:
    return value if isinstance(value, str) else None


def reflected(transcript: Transcript, obs: Observation, secret: bytes | None) -> ReflectorEcho:
    """The ReflectorEcho for one connection: the far end's report beside what we sent."""
    ours = sent_hello(transcript)
    sent = dict(sent_hello_sha256=ours[1] if ours else None,
                sent_ja3=fingerprint.ja3(ours[0]) if ours else None)
    if obs.http is None or obs.http.status is None:
        why = (obs.http.error if obs.http is not None else None) or "no HTTP answer"
        return ReflectorEcho(status="missing", error=why, **sent)
    status, echo, signed, error = parse_echo(obs.http.headers, secret)
    if echo is None or status == "bad_signature":
        return ReflectorEcho(status=status, error=error, **sent)
    hello = echo.get("client_hello") if isinstance(echo.get("client_hello"), dict) else {}
    tls = echo.get("tls") if isinstance(echo.get("tls"), dict) else {}
    assert isinstance(hello, dict) and isinstance(tls, dict)
    return ReflectorEcho(
        status=status,
        signed=signed,
        peer=_opt(echo.get("peer")),
        hello_sha256=_opt(hello.get("sha256")),
        ja3=_opt(hello.get("ja3")),
        offered_versions=_strings(hello.get("versions")),
        cipher_suites=_strings(hello.get("cipher_suites")),
        sni=_opt(hello.get("sni")),
        alpn_offered=_strings(hello.get("alpn")),
        version=_opt(tls.get("version")),
        cipher_suite=_opt(tls.get("cipher")),
        client_chain_sha256=_strings(echo.get("client_chain_sha256")),
        server_chain_sha256=_strings(echo.get("server_chain_sha256")),
        error=error,
        **sent,
    )


def probe_reflector(
    target: Endpoint,
    options: ProbeOptions,
    expect: Expectations,
    secret: bytes | None = None,
    source: str = "reflector",
) -> list[CaseResult]:
    """Run the usual attempts against a reflector (each fetching the echo) and judge them.

    Only the agent's own certificate carries over from `expect`: the reflector is not the
    real server, so --ca/--pin/--baseline do not apply to it; its echo does.
    """
    from mtlsprobe.run import pipeline  # pipeline -> rules; imported on use
    from mtlsprobe.tls.observer import observe

    opts = dataclasses.replace(options, http_path=ECHO_PATH)
    own = Expectations(agent_cert=expect.agent_cert, agent_chain=expect.agent_chain)
    results = []
    for route, transcripts in probe_target(target, opts):
        observations = []
        for t in transcripts:
            obs = observe(t)
            observations.append(dataclasses.replace(obs, reflected=reflected(t, obs, secret)))
        results.append(pipeline.judge(target, route, observations, own, source))
    return results


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


#: Where `mtlsprobe serve` listens by default (a spare port; see commands/serve.py).
DEFAULT_PORT = 18383


def probe_reflectors(
    texts: Sequence[str],
    options: ProbeOptions,
    expect: Expectations,
    secret_file: Path | None = None,
) -> list[CaseResult]:
    """`probe --reflector HOST[:PORT]` (repeatable): each reflector in turn, source
    "reflector". Raises InputError for a bad address or secret file."""
    from mtlsprobe.live.targets import parse_target

    secret = read_secret(secret_file)
    results: list[CaseResult] = []
    for text in texts:
        host, port = parse_target(text)
        target = Endpoint(host=host, port=port or DEFAULT_PORT)
        results.extend(probe_reflector(target, options, expect, secret))
    return results
