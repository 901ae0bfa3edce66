"""Opening a middlebox's own connection to its upstream, and answering when that fails.

Boundary: shared by the loopback middleboxes; the service tracks each upstream socket so that
`stop()` cuts it.
"""

from __future__ import annotations

import contextlib
import socket
import ssl

from mtlsprobe.loopback.proxy_protocol import response
from mtlsprobe.loopback.relay import error_text
from mtlsprobe.loopback.tcp_service import TcpService

CONNECT_TIMEOUT = 5.0


def connect_tcp(service: TcpService, target: tuple[str, int]) -> socket.socket:
    sock = socket.create_connection(target, timeout=CONNECT_TIMEOUT)
    sock.settimeout(service.io_timeout)
    service.track(sock)
    return sock


def connect_tls(
    service: TcpService,
    target: tuple[str, int],
    context: ssl.SSLContext,
    server_hostname: str | None,
) -> ssl.SSLSocket:
    """TCP then a TLS handshake to `target`; raises OSError/SSLError on failure."""
    raw = connect_tcp(service, target)
    try:
        tls = context.wrap_socket(
            raw, server_hostname=server_hostname, do_handshake_on_connect=False
        )
    except (OSError, ValueError):
        service.untrack(raw)
        raw.close()
        raise
    service.untrack(raw)
    service.track(tls)
    try:
        tls.do_handshake()
    except (OSError, ValueError):
        close_quietly(service, tls)
        raise
    return tls


def close_quietly(service: TcpService, sock: socket.socket | None) -> None:
    if sock is None:
        return
    service.untrack(sock)
    with contextlib.suppress(OSError):
        sock.close()


def drain_request_head(sock: socket.socket, limit: int = 64 * 1024, timeout: float = 2.0) -> None:
    """Read (and drop) the client's request head so closing after our answer sends no RST."""
    buf = b""
    with contextlib.suppress(OSError, ValueError):
        sock.settimeout(timeout)
        while b"\r\n\r\n" not in buf and len(buf) < limit:
            chunk = sock.recv(4096)
            if not chunk:
                break
            buf += chunk


def answer_bad_gateway(sock: socket.socket, product: str, what: str, exc_text: str) -> None:
    """A proxy-style 502 page naming the product and the upstream failure."""
    body = f"{product}: {what}: {exc_text}\n".encode()
    with contextlib.suppress(OSError, ValueError):
        sock.settimeout(5.0)
        sock.sendall(
            response(
                502,
                "Bad Gateway",
                headers={"Server": product, "Content-Type": "text/plain", "Connection": "close"},
                body=body,
            )
        )


__all__ = [
    "answer_bad_gateway",
    "close_quietly",
    "connect_tcp",
    "connect_tls",
    "drain_request_head",
    "error_text",
]
