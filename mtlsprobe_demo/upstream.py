"""Opening a middlebox's own connection to its upstream, and answering when that fails.

Boundary: shared by the loopback middleboxes; the service tracks each upstream socket so that
`stop()` cuts it.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Callable

from mtlsprobe.live.tcp_service import TcpService
from mtlsprobe_demo.proxy_protocol import response
from mtlsprobe_demo.relay import FlowSeen, error_text, pump

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


def accept_tls(
    service: TcpService,
    sock: socket.socket,
    context: ssl.SSLContext,
    flow: FlowSeen,
    *,
    default_name: str | None = None,
) -> ssl.SSLSocket | None:
    """A terminating middlebox's first half: the client's TLS handshake, ended here.

    Records the SNI the client sent (the contexts' sni_callback stores it on the socket) or
    the handshake error in `flow`; returns None when the handshake failed.
    `default_name` is the name to mint for when the client sends no SNI.
    """
    client = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
    if default_name is not None:
        client._mtlsprobe_default = default_name  # type: ignore[attr-defined]
    service.track(client)
    try:
        client.do_handshake()
    except (OSError, ValueError) as exc:
        flow.client_error = error_text(exc)
        close_quietly(service, client)
        return None
    flow.sni = getattr(client, "_mtlsprobe_sni", None)
    return client


def bridge_tls(
    service: TcpService,
    client: ssl.SSLSocket,
    flow: FlowSeen,
    target: tuple[str, int],
    context: ssl.SSLContext,
    server_hostname: str | None,
    product: str,
    rewrite_response_head: Callable[[bytes], bytes] | None = None,
) -> ssl.SSLSocket | None:
    """A terminating middlebox's second half: its own TLS session to `target`, then relay.

    The client's certificate (if any) stays on the client side: that is the point. On an
    upstream failure the client gets a 502 naming `product`. Returns the upstream socket
    (for the caller to close), or None when it could not be opened.
    """
    try:
        up = connect_tls(service, target, context, server_hostname)
    except (OSError, ValueError) as exc:
        flow.upstream_error = error_text(exc)
        flow.status = 502
        drain_request_head(client)
        answer_bad_gateway(client, product, "upstream TLS handshake failed", flow.upstream_error)
        return None
    flow.upstream_tls_version = up.version()
    result = pump(
        client, up, stopping=lambda: service.stopping, rewrite_response_head=rewrite_response_head
    )
    flow.bytes_up, flow.bytes_down = result.bytes_up, result.bytes_down
    flow.client_error, flow.upstream_error = result.client_error, result.upstream_error
    if result.upstream_error and result.bytes_down == 0 and not result.client_error:
        flow.status = 502
        answer_bad_gateway(client, product, "upstream closed the connection", result.upstream_error)
    return up


__all__ = [
    "accept_tls",
    "answer_bad_gateway",
    "bridge_tls",
    "close_quietly",
    "connect_tcp",
    "connect_tls",
    "drain_request_head",
    "error_text",
]
