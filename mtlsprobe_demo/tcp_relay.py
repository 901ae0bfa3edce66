"""A plain layer-4 relay: what a NAT or TCP load balancer does to an mTLS connection (nothing).

Boundary: loopback middlebox; bytes pass untouched both ways, so client certificates get through.
"""

from __future__ import annotations

import socket

from mtlsprobe.live.tcp_service import TcpService
from mtlsprobe_demo.relay import FlowSeen, error_text, pump
from mtlsprobe_demo.upstream import close_quietly, connect_tcp


class TcpRelay(TcpService):
    """Listens on `host:port` and pipes each connection to `upstream`."""

    seen: list[FlowSeen]

    def __init__(self, upstream: tuple[str, int], *, host: str = "127.0.0.1", port: int = 0):
        super().__init__(host, port)
        self.upstream = upstream

    def pick_upstream(self) -> tuple[str, int]:
        """Where the next connection goes (a pool overrides this)."""
        return self.upstream

    def handle(self, sock: socket.socket, peer: tuple) -> None:
        upstream = self.pick_upstream()
        flow = FlowSeen(peer=(peer[0], peer[1]), target=upstream)
        up = None
        try:
            up = connect_tcp(self, upstream)
            result = pump(sock, up, stopping=lambda: self.stopping)
            flow.bytes_up, flow.bytes_down = result.bytes_up, result.bytes_down
            flow.client_error, flow.upstream_error = result.client_error, result.upstream_error
        except OSError as exc:
            flow.upstream_error = error_text(exc)
        finally:
            close_quietly(self, up)
            self.record(flow)
