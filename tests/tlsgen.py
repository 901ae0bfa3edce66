"""Real TLS bytes for tests: an in-memory Python ssl client and server -> model.Transcript.

No sockets: two ``ssl.SSLObject``s over ``ssl.MemoryBIO``s (as mitmproxy's tests do), with
every byte each side writes recorded as a Chunk in order. The client's key log goes to a
0600 file in a private temp dir, is read back into ``Transcript.keylog`` (or dropped), and
is deleted. Other test modules may import :func:`run` and :func:`pki`.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import ssl
import tempfile
from dataclasses import dataclass

from mtlsprobe.live import pki as pkimod
from mtlsprobe.live.openssl_hooks import set_client_ca_names
from mtlsprobe.model import (
    Chunk,
    Direction,
    Endpoint,
    Route,
    StreamEnd,
    Transcript,
)

# The certificates are made now, so the transcripts are dated now too (judged at that time).
STARTED = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


@dataclass(frozen=True)
class Pki:
    server_ca: pkimod.CA
    client_ca: pkimod.CA
    other_ca: pkimod.CA
    server: pkimod.Issued
    client_good: pkimod.Issued
    client_other: pkimod.Issued


@functools.lru_cache(maxsize=1)
def pki() -> Pki:
    server_ca = pkimod.CA("tlsgen Server CA", org="Example Servers")
    client_ca = pkimod.CA("tlsgen Client CA", org="Example Agents")
    other_ca = pkimod.CA("tlsgen Other CA")
    return Pki(
        server_ca=server_ca,
        client_ca=client_ca,
        other_ca=other_ca,
        server=server_ca.issue("server.test", sans=("server.test",)),
        client_good=client_ca.issue("agent-1"),
        client_other=other_ca.issue("stranger"),
    )


def _write(directory: str, name: str, data: bytes) -> str:
    path = os.path.join(directory, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


def _error_text(exc: ssl.SSLError) -> str:
    return exc.reason or type(exc).__name__


def run(
    *,
    version: str = "TLSv1.3",
    verify: ssl.VerifyMode = ssl.CERT_REQUIRED,
    client_ca_list: bool = True,
    client_cert: str | pkimod.Issued | None = "good",  # "good" | "other" | None | its own
    post_handshake_auth: bool = False,  # client offers PHA
    request_pha: bool = False,  # server calls verify_client_post_handshake()
    alpn: tuple[str, ...] = (),
    server_alpn: tuple[str, ...] = (),
    sni: str | None = "server.test",
    keylog: bool = True,
    server_says: bytes = b"",  # application data the server writes after the handshake
    label: str = "tlsgen",
) -> Transcript:
    """One connection, pumped to completion. Returns the Transcript (never raises on TLS)."""
    p = pki()
    with tempfile.TemporaryDirectory(prefix="tlsgen-") as tmp:
        os.chmod(tmp, 0o700)
        sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        sctx.load_cert_chain(
            _write(tmp, "server.pem", p.server.chain_pem),
            _write(tmp, "server.key", p.server.key_pem()),
        )
        sctx.verify_mode = verify
        if verify != ssl.CERT_NONE:
            ca_pem = _write(tmp, "client-ca.pem", p.client_ca.cert_pem)
            sctx.load_verify_locations(cafile=ca_pem)
            if client_ca_list and not set_client_ca_names(sctx, [p.client_ca.der]):
                raise RuntimeError("cannot set the server's client CA list on this Python")
        if server_alpn:
            sctx.set_alpn_protocols(list(server_alpn))
        if request_pha:
            sctx.post_handshake_auth = True

        cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        cctx.load_verify_locations(cadata=p.server_ca.cert_pem.decode())
        if sni is None:
            cctx.check_hostname = False
        cctx.maximum_version = ssl.TLSVersion[version.replace(".", "_")]
        issued = client_cert if isinstance(client_cert, pkimod.Issued) else {
            "good": p.client_good, "other": p.client_other}.get(client_cert or "")
        if issued is not None:
            cctx.load_cert_chain(
                _write(tmp, "client.pem", issued.chain_pem),
                _write(tmp, "client.key", issued.key_pem()),
            )
        if post_handshake_auth:
            cctx.post_handshake_auth = True
        if alpn:
            cctx.set_alpn_protocols(list(alpn))
        keylog_path = os.path.join(tmp, "keylog.txt")
        if keylog:
            _write(tmp, "keylog.txt", b"")
            cctx.keylog_filename = keylog_path

        pump = _Pump(cctx, sctx, sni)
        pump.handshake()
        if pump.ok and request_pha and pump.server_ok:
            pump.post_handshake_auth()
        if pump.ok and server_says and pump.server_ok:
            pump.server_write(server_says)
        if pump.ok:
            pump.client_read()
        text = None
        if keylog:
            with open(keylog_path, encoding="ascii") as f:
                text = f.read()
    end = StreamEnd.FIN if pump.server_error or pump.client_error else StreamEnd.CLOSED_BY_US
    return Transcript(
        label=label,
        client=Endpoint(host="client.test", port=40000, ip="127.0.0.1"),
        server=Endpoint(host=sni or "127.0.0.1", port=443, ip="127.0.0.1"),
        route=Route(kind="direct"),
        started_at=STARTED,
        chunks=tuple(pump.chunks),
        end=end,
        keylog=text,
        local_error=pump.client_error,
    )


class _Pump:
    def __init__(self, cctx: ssl.SSLContext, sctx: ssl.SSLContext, sni: str | None) -> None:
        self.c_in, self.c_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.s_in, self.s_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.client = cctx.wrap_bio(self.c_in, self.c_out, server_hostname=sni)
        self.server = sctx.wrap_bio(self.s_in, self.s_out, server_side=True)
        self.chunks: list[Chunk] = []
        self.client_error: str | None = None
        self.server_error: str | None = None
        self.client_done = self.server_done = False

    @property
    def ok(self) -> bool:
        return self.client_error is None

    @property
    def server_ok(self) -> bool:
        return self.server_error is None

    def _move(self) -> bool:
        moved = False
        for src, dst, direction in (
            (self.c_out, self.s_in, Direction.C2S),
            (self.s_out, self.c_in, Direction.S2C),
        ):
            data = src.read()
            if data:
                self.chunks.append(
                    Chunk(direction=direction, at=len(self.chunks) / 1000, data=data)
                )
                dst.write(data)
                moved = True
        return moved

    def _step(self, fn, who: str) -> None:  # type: ignore[no-untyped-def]
        try:
            fn()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return
        except ssl.SSLError as exc:
            if who == "client":
                self.client_error = self.client_error or _error_text(exc)
            else:
                self.server_error = self.server_error or _error_text(exc)
            return
        if fn == self.client.do_handshake:
            self.client_done = True
        elif fn == self.server.do_handshake:
            self.server_done = True

    def handshake(self) -> None:
        for _ in range(20):
            if self.client_error is None and not self.client_done:
                self._step(self.client.do_handshake, "client")
            self._move()
            if self.server_error is None and not self.server_done:
                self._step(self.server.do_handshake, "server")
            moved = self._move()
            if (
                (self.client_done or self.client_error)
                and (self.server_done or self.server_error)
                and not moved
            ):
                break

    def post_handshake_auth(self) -> None:
        self.server.verify_client_post_handshake()
        self._step(lambda: self.server.write(b"pha?"), "server")
        self._move()
        self.client_read()
        self._step(lambda: self.server.read(1024), "server")
        self._move()

    def server_write(self, data: bytes) -> None:
        self._step(lambda: self.server.write(data), "server")
        self._move()

    def client_read(self) -> None:
        # "Read first" after the handshake, as the live prober does (TLS 1.3 late rejection).
        for _ in range(3):
            self._step(lambda: self.client.read(65536), "client")
            self._move()
            if self.server_error is None:
                self._step(lambda: self.server.read(65536), "server")
            if not self._move():
                break
