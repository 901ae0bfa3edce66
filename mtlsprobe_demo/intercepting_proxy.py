"""A re-signing TLS interception proxy ("SSL inspection"): the middlebox that breaks mTLS.

Boundary: loopback middlebox. It completes TLS with the client using a leaf minted on the fly
by its own CA for the requested name, then opens its OWN TLS connection upstream WITHOUT the
client's certificate, and relays the plaintext. Transparent (fixed `upstream`) or explicit
(HTTP CONNECT, then bump). When the upstream refuses (e.g. it requires a client cert), the
client gets a product-style `502 Bad Gateway` page.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading

from cryptography.x509.oid import ExtendedKeyUsageOID

from mtlsprobe.live import pki
from mtlsprobe.live.tcp_service import TcpService
from mtlsprobe_demo.proxy_protocol import (
    ProxyRequestError,
    is_loopback_target,
    parse_head,
    read_head,
    response,
)
from mtlsprobe_demo.relay import FlowSeen
from mtlsprobe_demo.tls_contexts import client_context, load_identity
from mtlsprobe_demo.upstream import accept_tls, bridge_tls, close_quietly

PRODUCT = "mtlsprobe Demo Inspection"


def inspection_ca(
    name: str = "mtlsprobe Demo Inspection CA", org: str | None = "mtlsprobe Demo Security"
) -> pki.CA:
    """A CA named the way an inspection product names the one it deploys to endpoints."""
    return pki.CA(name, org=org)


class InterceptingProxy(TcpService):
    """TLS-bumping proxy; `minted` holds the leaves it made, by name."""

    seen: list[FlowSeen]

    def __init__(
        self,
        ca: pki.CA | None = None,
        *,
        upstream: tuple[str, int] | None = None,
        org: str | None = PRODUCT,
        upstream_trust: list[pki.CA] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host, port)
        self.ca = ca or inspection_ca()
        self.upstream = upstream
        self.org = org
        self.upstream_trust = upstream_trust
        self.minted: dict[str, pki.Issued] = {}
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._mint_lock = threading.Lock()

    @property
    def mode(self) -> str:
        return "transparent" if self.upstream else "explicit"

    # -- certificates --------------------------------------------------------------------------

    def context_for(self, name: str) -> ssl.SSLContext:
        """A server context with a leaf for `name` from our CA (minted once, then cached)."""
        with self._mint_lock:
            ctx = self._contexts.get(name)
            if ctx is None:
                leaf = self.ca.issue(
                    name, sans=(name,), eku=(ExtendedKeyUsageOID.SERVER_AUTH,), org=self.org
                )
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                load_identity(ctx, leaf)
                ctx.sni_callback = self._on_sni
                self.minted[name] = leaf
                self._contexts[name] = ctx
            return ctx

    def _on_sni(
        self, sslsock: ssl.SSLSocket | ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext
    ) -> None:
        sslsock._mtlsprobe_sni = name  # type: ignore[union-attr]
        default = getattr(sslsock, "_mtlsprobe_default", None)
        chosen = name or default
        if chosen and chosen != default:
            sslsock.context = self.context_for(chosen)
        return None

    def _upstream_context(self) -> ssl.SSLContext:
        if self.upstream_trust:
            return client_context(trust=self.upstream_trust)
        return client_context(verify=False)

    # -- connections ---------------------------------------------------------------------------

    def handle(self, sock: socket.socket, peer: tuple) -> None:
        flow = FlowSeen(peer=(peer[0], peer[1]))
        client = up = None
        try:
            target = self._target(sock, flow)
            if target is None:
                return
            flow.target = target
            client = accept_tls(self, sock, self.context_for(target[0]), flow,
                                default_name=target[0])
            if client is None:
                return
            name = flow.sni or (None if _is_ip(target[0]) else target[0])
            up = bridge_tls(self, client, flow, target, self._upstream_context(), name, PRODUCT)
        finally:
            close_quietly(self, up)
            if client is not None:
                close_quietly(self, client)
            self.record(flow)

    def _target(self, sock: socket.socket, flow: FlowSeen) -> tuple[str, int] | None:
        """The fixed upstream, or the target of the client's CONNECT (answered 200)."""
        if self.upstream is not None:
            return self.upstream
        try:
            req = parse_head(read_head(sock))
            if req.method != "CONNECT":
                raise ProxyRequestError("only CONNECT is supported")
            host, port = req.connect_target()
        except ProxyRequestError as exc:
            flow.status = 400
            sock.sendall(response(400, "Bad Request", body=f"{exc}\n".encode()))
            return None
        if not is_loopback_target(host):
            flow.status = 403
            sock.sendall(response(403, "Forbidden", body=b"loopback targets only\n"))
            return None
        flow.status = 200
        sock.sendall(response(200, "Connection established", headers={"Proxy-Agent": PRODUCT}))
        return host, port


def _is_ip(host: str) -> bool:
    import ipaddress

    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host)
        return True
    return False
