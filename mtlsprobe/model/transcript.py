"""What adapters record: endpoints, routes, bytes per direction, TCP facts, one attempt."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from mtlsprobe.model.kinds import CertKind, Direction, Stage, StreamEnd

# --- what adapters record ----------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    host: str
    port: int
    ip: str | None = None

    def __str__(self) -> str:
        h = f"[{self.host}]" if ":" in self.host else self.host
        return f"{h}:{self.port}"


@lru_cache(maxsize=4096)  # a capture's clients repeat: each connection asks again
def address_order(addr: str) -> tuple[int, int, str]:
    """Sort key of client addresses: IPv4 before IPv6, numerically; names last."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return (9, 0, addr)
    return (ip.version, int(ip), "")


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """How the connection reached the target."""

    kind: str  # "direct" | "http_proxy" | "capture"
    proxy: str | None = None  # proxy URL without credentials
    source: str | None = None  # where the route came from: "flag", "env:HTTPS_PROXY", "capture"
    connect_status: int | None = None  # CONNECT status code (200, 407, 403, ...)
    connect_reason: str | None = None
    connect_headers: tuple[tuple[str, str], ...] = ()
    proxy_auth_schemes: tuple[str, ...] = ()  # from Proxy-Authenticate on 407

    @property
    def name(self) -> str:
        return "direct" if self.kind == "direct" else (
            f"proxy {self.proxy}" if self.proxy else self.kind
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Chunk:
    direction: Direction
    at: float  # seconds since the transcript started
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Gap:
    direction: Direction
    offset: int  # stream offset where bytes are missing
    length: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TcpFacts:
    """TCP/IP facts around one connection (capture: from headers; live: timings only)."""

    connect_ms: float | None = None
    syn_ttl: int | None = None
    synack_ttl: int | None = None
    client_ttls: tuple[int, ...] = ()  # distinct TTLs of later client segments
    server_ttls: tuple[int, ...] = ()  # distinct TTLs of later server segments
    rst_from: tuple[Direction, ...] = ()
    rst_ttls: tuple[int, ...] = ()
    retransmissions: int = 0
    synack_options: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpExchange:
    """A GET sent after the handshake, and what came back."""

    path: str
    status: int | None = None
    reason: str | None = None
    headers: tuple[tuple[str, str], ...] = ()  # as received, in order
    body_excerpt: str = ""  # first bytes of the body, decoded leniently
    error: str | None = None


#: The unrelated server name of the probe's "other-name" attempt (RFC 2606 .invalid: never a
#: real host). An interceptor mints a certificate for it; a terminator shows its one certificate.
OTHER_NAME = "other-name.mtlsprobe.invalid"


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    """What a live probe asked for on one connection. Captures have none."""

    name: str  # "tls13-nocert", "tls12-nocert", "untrusted-cert", "agent-cert", "repeat-2"
    max_version: str | None = None  # "TLSv1.3" | "TLSv1.2" | None (library default)
    min_version: str | None = None
    client_cert: CertKind = CertKind.NONE
    client_cert_sha256: str | None = None
    # a server name other than the target's (SNI), asked to see whether the far end mints a
    # certificate for any name (an interceptor) or shows one fixed certificate (a terminator)
    sni: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Transcript:
    """The hinge between adapters and the core: the bytes of one connection, in order."""

    label: str
    client: Endpoint
    server: Endpoint
    route: Route
    started_at: datetime  # UTC; the clock rules use (capture time for pcaps)
    chunks: tuple[Chunk, ...] = ()
    gaps: tuple[Gap, ...] = ()
    end: StreamEnd = StreamEnd.CLOSED_BY_US
    keylog: str | None = None  # NSS key log text; never serialised
    attempt: Attempt | None = None
    tcp: TcpFacts | None = None
    http: HttpExchange | None = None
    local_error: str | None = None  # what our TLS library said, e.g. "TLSV1_ALERT_UNKNOWN_CA"
    failed_stage: Stage | None = None  # set by adapters that failed before TLS (DNS, TCP, PROXY)
    server_hello_ms: float | None = None
    truncated_at_start: bool = False  # capture began mid-connection
    notes: tuple[str, ...] = ()
