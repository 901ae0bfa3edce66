"""A plain HTTP CONNECT tunnel (no inspection): the control case that should pass mTLS intact.

Boundary: loopback middlebox. Answers 407 (with `Proxy-Authenticate: Basic`) when auth is
required and missing or wrong, 403 for denied or non-loopback targets, 405 for other methods,
502 when the target is unreachable, and otherwise `200 Connection established` then relays.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable

from mtlsprobe.live.tcp_service import TcpService
from mtlsprobe_demo.proxy_protocol import (
    ProxyRequestError,
    basic_credentials,
    is_loopback_target,
    parse_head,
    read_head,
    response,
)
from mtlsprobe_demo.relay import FlowSeen, error_text, pump
from mtlsprobe_demo.upstream import close_quietly, connect_tcp

PRODUCT = "mtlsprobe-connect-proxy"


class ConnectProxy(TcpService):
    """An explicit forward proxy that only tunnels (`CONNECT host:port`)."""

    seen: list[FlowSeen]

    def __init__(
        self,
        *,
        require_auth: tuple[str, str] | None = None,
        deny: Iterable[str] = (),
        realm: str = "mtlsprobe",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host, port)
        self.require_auth = require_auth
        self.deny = frozenset(deny)  # "host" or "host:port"
        self.realm = realm

    def _answer(self, sock: socket.socket, flow: FlowSeen, status: int, reason: str, **kw) -> None:
        flow.status = status
        headers = {"Proxy-Agent": PRODUCT, **kw.pop("headers", {})}
        if status != 200:
            headers.setdefault("Connection", "close")
        sock.sendall(response(status, reason, headers=headers, **kw))

    def handle(self, sock: socket.socket, peer: tuple) -> None:
        flow = FlowSeen(peer=(peer[0], peer[1]))
        up = None
        try:
            try:
                req = parse_head(read_head(sock))
                if req.method != "CONNECT":
                    self._answer(
                        sock, flow, 405, "Method Not Allowed", headers={"Allow": "CONNECT"}
                    )
                    return
                host, port = req.connect_target()
            except ProxyRequestError as exc:
                self._answer(sock, flow, 400, "Bad Request", body=f"{exc}\n".encode())
                return
            flow.target = (host, port)
            if self.require_auth is not None and basic_credentials(req) != self.require_auth:
                self._answer(
                    sock,
                    flow,
                    407,
                    "Proxy Authentication Required",
                    headers={"Proxy-Authenticate": f'Basic realm="{self.realm}"'},
                )
                return
            if host in self.deny or f"{host}:{port}" in self.deny or not is_loopback_target(host):
                self._answer(sock, flow, 403, "Forbidden", body=b"target denied by policy\n")
                return
            try:
                up = connect_tcp(self, (host, port))
            except OSError as exc:
                flow.upstream_error = error_text(exc)
                self._answer(sock, flow, 502, "Bad Gateway", body=f"{exc}\n".encode())
                return
            self._answer(sock, flow, 200, "Connection established")
            result = pump(sock, up, stopping=lambda: self.stopping)
            flow.bytes_up, flow.bytes_down = result.bytes_up, result.bytes_down
            flow.client_error, flow.upstream_error = result.client_error, result.upstream_error
        finally:
            close_quietly(self, up)
            self.record(flow)
