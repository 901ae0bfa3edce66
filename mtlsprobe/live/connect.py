"""Open the byte stream a TLS attempt runs over: a TCP connection or an HTTP CONNECT tunnel.

Boundary: DNS, TCP and the CONNECT exchange; no TLS. Network failures are evidence:
:func:`open_connection` returns a :class:`ConnectFailure` (which becomes a Transcript
with ``failed_stage`` DNS/TCP/PROXY), never raises for them. Everything obeys one
absolute ``deadline`` (``time.monotonic()`` seconds).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import socket
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone

from mtlsprobe import __version__
from mtlsprobe.live.proxy import RoutePlan
from mtlsprobe.model import Attempt, Endpoint, Route, Stage, StreamEnd, TcpFacts, Transcript

MAX_CONNECT_RESPONSE = 64 * 1024
USER_AGENT = f"mtlsprobe/{__version__}"
_NO_CLIENT = Endpoint(host="0.0.0.0", port=0)


@dataclass
class Connection:
    """A connected stream ready for TLS. `leftover` holds server bytes that arrived after
    the CONNECT response headers; they belong to TLS and must be fed first."""

    sock: socket.socket
    route: Route
    client: Endpoint
    server: Endpoint
    started_at: datetime
    started: float  # time.monotonic() when connecting began
    connect_ms: float
    leftover: bytes = b""

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


@dataclass(frozen=True)
class ConnectFailure:
    """Why no stream could be opened, as evidence."""

    stage: Stage
    error: str
    end: StreamEnd
    route: Route
    server: Endpoint
    started_at: datetime
    client: Endpoint = _NO_CLIENT
    connect_ms: float | None = None

    def transcript(self, attempt: Attempt | None, label: str) -> Transcript:
        return Transcript(
            label=label,
            client=self.client,
            server=self.server,
            route=self.route,
            started_at=self.started_at,
            end=self.end,
            attempt=attempt,
            tcp=TcpFacts(connect_ms=self.connect_ms),
            local_error=self.error,
            failed_stage=self.stage,
        )


def _remaining(deadline: float) -> float:
    return deadline - time.monotonic()


def _errname(exc: OSError) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "ETIMEDOUT"
    return errno.errorcode.get(exc.errno or 0, "") or exc.strerror or type(exc).__name__


def resolve(host: str, port: int, deadline: float) -> list[tuple] | str:
    """getaddrinfo() bounded by the deadline: the address list, or an error string."""
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except ValueError:
        pass
    except socket.gaierror as exc:
        return f"DNS: {exc.strerror}"
    result: list[object] = []
    done = threading.Event()

    def lookup() -> None:
        try:
            result.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except (socket.gaierror, UnicodeError, OSError) as exc:
            result.append(f"DNS: {getattr(exc, 'strerror', None) or exc}")
        finally:
            done.set()

    threading.Thread(target=lookup, name=f"dns {host}", daemon=True).start()
    if not done.wait(max(0.0, _remaining(deadline))):
        return f"DNS: no answer for {host} before the deadline"
    return result[0]  # type: ignore[return-value]


def _endpoint(sockaddr: tuple, name: str | None = None) -> Endpoint:
    ip, port = sockaddr[0], sockaddr[1]
    return Endpoint(host=name or ip, port=port, ip=ip)


def _tcp(
    host: str, port: int, deadline: float
) -> tuple[socket.socket, float] | tuple[Stage, str, StreamEnd]:
    """Connect to each resolved address in order until one answers or the deadline."""
    t0 = time.monotonic()
    addrs = resolve(host, port, deadline)
    if isinstance(addrs, str):
        return Stage.DNS, addrs, StreamEnd.NOT_CONNECTED
    if not addrs:
        return Stage.DNS, f"DNS: no address for {host}", StreamEnd.NOT_CONNECTED
    errors: list[str] = []
    end = StreamEnd.NOT_CONNECTED
    for family, kind, proto, _, sockaddr in addrs:
        left = _remaining(deadline)
        if left <= 0:
            end = StreamEnd.TIMEOUT
            errors.append("ETIMEDOUT")
            break
        sock = socket.socket(family, kind, proto)
        sock.settimeout(left)
        try:
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            name = _errname(exc)
            end = {"ECONNREFUSED": StreamEnd.RST, "ETIMEDOUT": StreamEnd.TIMEOUT}.get(
                name, StreamEnd.NOT_CONNECTED
            )
            errors.append(f"{name} ({sockaddr[0]} port {sockaddr[1]})")
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, (time.monotonic() - t0) * 1000.0
    return Stage.TCP, "; ".join(errors), end


def open_connection(
    target: Endpoint, plan: RoutePlan, *, deadline: float
) -> Connection | ConnectFailure:
    """Connect to `target` directly or through `plan.proxy` (CONNECT).

    Returns a Connection, or a ConnectFailure (DNS/TCP/PROXY stage) as evidence.
    """
    started_at = datetime.now(timezone.utc)
    started = time.monotonic()
    route = plan.route()
    server = Endpoint(host=target.host, port=target.port, ip=target.ip)
    if plan.proxy is None:
        got = _tcp(target.ip or target.host, target.port, deadline)
    else:
        got = _tcp(plan.proxy.host, plan.proxy.port, deadline)
    if len(got) == 3:
        stage, error, end = got
        if plan.proxy is not None:
            error = f"proxy {plan.proxy.host}:{plan.proxy.port}: {error}"
        return ConnectFailure(
            stage=stage, error=error, end=end, route=route, server=server, started_at=started_at
        )
    sock, connect_ms = got
    client = _endpoint(sock.getsockname())
    if plan.proxy is None:
        server = _endpoint(sock.getpeername(), target.host)
        return Connection(sock, route, client, server, started_at, started, connect_ms)
    tunnel = _connect_tunnel(sock, target, plan, deadline)
    route = replace(
        route,
        connect_status=tunnel.status,
        connect_reason=tunnel.reason,
        connect_headers=tunnel.headers,
        proxy_auth_schemes=tunnel.auth_schemes,
    )
    if tunnel.error is not None or tunnel.status is None or not 200 <= tunnel.status < 300:
        sock.close()
        error = tunnel.error or f"proxy answered CONNECT with {tunnel.status} {tunnel.reason}"
        return ConnectFailure(
            stage=Stage.PROXY,
            error=error,
            end=tunnel.end,
            route=route,
            server=server,
            started_at=started_at,
            client=client,
            connect_ms=connect_ms,
        )
    return Connection(
        sock, route, client, server, started_at, started, connect_ms, leftover=tunnel.leftover
    )


@dataclass
class _Tunnel:
    status: int | None = None
    reason: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    auth_schemes: tuple[str, ...] = ()
    leftover: bytes = b""
    error: str | None = None
    end: StreamEnd = StreamEnd.CLOSED_BY_US


def connect_request(target: Endpoint, authorization: str | None) -> bytes:
    """The CONNECT request for `target` (IPv6 hosts bracketed)."""
    host = f"[{target.host}]" if ":" in target.host else target.host
    authority = f"{host}:{target.port}"
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}", f"User-Agent: {USER_AGENT}"]
    if authorization:
        lines.append(f"Proxy-Authorization: {authorization}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _connect_tunnel(
    sock: socket.socket, target: Endpoint, plan: RoutePlan, deadline: float
) -> _Tunnel:
    assert plan.proxy is not None
    try:
        sock.settimeout(max(0.001, _remaining(deadline)))
        sock.sendall(connect_request(target, plan.proxy.authorization))
    except OSError as exc:
        return _Tunnel(error=f"sending CONNECT: {_errname(exc)}", end=_end_for(exc))
    buf = b""
    while b"\r\n\r\n" not in buf:
        if len(buf) > MAX_CONNECT_RESPONSE:
            return _Tunnel(error=f"CONNECT response headers exceed {MAX_CONNECT_RESPONSE} bytes")
        left = _remaining(deadline)
        if left <= 0:
            return _Tunnel(error="no CONNECT answer before the deadline", end=StreamEnd.TIMEOUT)
        sock.settimeout(left)
        try:
            data = sock.recv(16384)
        except OSError as exc:
            return _Tunnel(error=f"reading CONNECT answer: {_errname(exc)}", end=_end_for(exc))
        if not data:
            end = StreamEnd.FIN
            if not buf:
                return _Tunnel(error="proxy closed the connection without answering CONNECT",
                               end=end)
            break
        buf += data
    head, _, leftover = buf.partition(b"\r\n\r\n")
    return _parse_connect_response(head, leftover)


def _end_for(exc: OSError) -> StreamEnd:
    if isinstance(exc, socket.timeout | TimeoutError):
        return StreamEnd.TIMEOUT
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return StreamEnd.RST
    return StreamEnd.CLOSED_BY_US


def _parse_connect_response(head: bytes, leftover: bytes) -> _Tunnel:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    status_ok = len(parts) >= 2 and parts[1].isascii() and parts[1].isdigit()  # not "2³"
    if not status_ok or not parts[0].startswith("HTTP/"):
        return _Tunnel(error=f"malformed CONNECT answer: {lines[0][:80]!r}")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers.append((name.strip(), value.strip()))
    status = int(parts[1])
    # Proxy-Authenticate on 407; some proxies (tinyproxy 1.11) answer 401 + WWW-Authenticate.
    wanted = {"proxy-authenticate"} | ({"www-authenticate"} if status == 401 else set())
    schemes = tuple(v.split(None, 1)[0] for n, v in headers if n.lower() in wanted and v)
    return _Tunnel(
        status=status,
        reason=parts[2] if len(parts) > 2 else "",
        headers=tuple(headers),
        auth_schemes=schemes,
        leftover=leftover,
    )
