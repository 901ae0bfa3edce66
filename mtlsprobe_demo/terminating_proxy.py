"""A TLS-terminating reverse proxy / load balancer in front of the real server.

Boundary: loopback middlebox. It holds a certificate issued by the server's OWN root (so the
client sees a perfectly valid chain), does not ask the client for a certificate, and
re-encrypts upstream without one. HTTP passes untouched unless `lb_cookie` is set, in which case
a `Set-Cookie: SERVERID=...` is added to the first response, as LBs do for stickiness. With
`client_ca`/`verify` it asks the client for a certificate itself (an LB "client-SSL profile"),
which still never reaches the server. When the upstream refuses, the client gets a
`502 Bad Gateway`.
"""

from __future__ import annotations

import socket

from mtlsprobe.live import pki
from mtlsprobe.live.tcp_service import TcpService
from mtlsprobe_demo.relay import FlowSeen
from mtlsprobe_demo.tls_contexts import client_context, server_context
from mtlsprobe_demo.upstream import accept_tls, bridge_tls, close_quietly

PRODUCT = "mtlsprobe-lb"


def add_cookie(head: bytes, cookie: str) -> bytes:
    """Insert `Set-Cookie: <cookie>; path=/` after the status line of a response head.

    `cookie` is `name=value`; a bare value becomes `SERVERID=<value>` (haproxy's usual name).
    """
    line_end = head.find(b"\r\n")
    if not head.startswith(b"HTTP/") or line_end < 0:
        return head
    if "=" not in cookie:
        cookie = f"SERVERID={cookie}"
    extra = f"Set-Cookie: {cookie}; path=/\r\n".encode()
    return head[: line_end + 2] + extra + head[line_end + 2 :]


class TerminatingProxy(TcpService):
    """Terminates client TLS with `identity`, opens new TLS to `upstream`, relays plaintext."""

    seen: list[FlowSeen]

    def __init__(
        self,
        identity: pki.Issued,
        upstream: tuple[str, int],
        *,
        lb_cookie: str | None = None,
        upstream_trust: list[pki.CA] | None = None,
        upstream_sni: str | None = None,
        client_ca: pki.CA | None = None,
        verify: str = "none",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host, port)
        self.identity = identity
        self.upstream = upstream
        self.lb_cookie = lb_cookie
        self.upstream_sni = upstream_sni
        self.context = server_context(identity, client_ca=client_ca, verify=verify)
        self.context.sni_callback = _note_sni
        if upstream_trust:
            self._up_ctx = client_context(trust=upstream_trust)
        else:
            self._up_ctx = client_context(verify=False)

    def handle(self, sock: socket.socket, peer: tuple) -> None:
        flow = FlowSeen(peer=(peer[0], peer[1]), target=self.upstream)
        client = up = None
        try:
            client = accept_tls(self, sock, self.context, flow)
            if client is None:
                return
            cookie = self.lb_cookie
            up = bridge_tls(
                self, client, flow, self.upstream, self._up_ctx,
                self.upstream_sni or flow.sni, PRODUCT,
                rewrite_response_head=(lambda h: add_cookie(h, cookie)) if cookie else None,
            )
        finally:
            close_quietly(self, up)
            close_quietly(self, client)
            self.record(flow)


def _note_sni(sslsock: object, name: str | None, _ctx: object) -> None:
    sslsock._mtlsprobe_sni = name  # type: ignore[attr-defined]
    return None
