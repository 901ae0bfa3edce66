"""The HTTP bits a forward proxy speaks: reading a CONNECT request and answering it.

Boundary: parsing and formatting only, plus the loopback guard on targets (our proxies are
test/demo fixtures and must never open connections off this machine).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import socket
from dataclasses import dataclass, field

MAX_HEAD = 16 * 1024


class ProxyRequestError(ValueError):
    """A request we cannot parse; answered with 400."""


@dataclass
class ProxyRequest:
    method: str
    target: str
    version: str
    headers: dict[str, str] = field(default_factory=dict)  # lower-cased names

    def connect_target(self) -> tuple[str, int]:
        """`host:port` (or `[v6]:port`) of a CONNECT request."""
        host, sep, port = self.target.rpartition(":")
        if not sep or not port.isdigit() or not host:
            raise ProxyRequestError(f"bad CONNECT target {self.target!r}")
        host = host.strip("[]")
        n = int(port)
        if not 0 < n < 65536:
            raise ProxyRequestError(f"bad CONNECT port {port!r}")
        return host, n


def read_head(sock: socket.socket) -> bytes:
    """Read up to and including the blank line, one byte at a time so nothing after it
    (such as a ClientHello sent right behind a CONNECT) is consumed."""
    buf = bytearray()
    while not buf.endswith(b"\r\n\r\n") and not buf.endswith(b"\n\n"):
        if len(buf) >= MAX_HEAD:
            raise ProxyRequestError("request head too long")
        b = sock.recv(1)
        if not b:
            raise EOFError("client closed before finishing the request head")
        buf += b
    return bytes(buf)


def parse_head(head: bytes) -> ProxyRequest:
    lines = head.decode("latin-1").split("\n")
    parts = lines[0].strip().split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise ProxyRequestError(f"bad request line {lines[0].strip()[:100]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.strip().partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return ProxyRequest(method=parts[0].upper(), target=parts[1], version=parts[2], headers=headers)


def basic_credentials(req: ProxyRequest) -> tuple[str, str] | None:
    """The (user, password) of a `Proxy-Authorization: Basic` header, if well-formed."""
    value = req.headers.get("proxy-authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(token.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def is_loopback_target(host: str) -> bool:
    """True when every address `host` resolves to is a loopback address."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return False
    addrs = {str(info[4][0]) for info in infos}  # AF_INET/AF_INET6: always a str
    return bool(addrs) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addrs)


def response(
    status: int, reason: str, *, headers: dict[str, str] | None = None, body: bytes = b""
) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if status != 200 or body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
