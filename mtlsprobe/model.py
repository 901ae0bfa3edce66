"""Value types shared by every layer: what was seen, what was expected, what was judged.

Frozen, slotted, keyword-only dataclasses and ``str`` enums. No I/O, no parsing, no clock.
Enum values and rule ids are public API: they appear in JSON reports and tickets.

Data flows one way::

    adapter (live | capture) -> Transcript -> tls.observer -> Observation
    Observations + Expectations -> Case -> rules -> Findings -> Verdict -> Report
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


class Direction(str, enum.Enum):
    C2S = "client_to_server"
    S2C = "server_to_client"


class Seen(str, enum.Enum):
    """Whether a fact was observed.

    UNKNOWN means we could not have seen it (encrypted without keys, capture gap,
    connection or capture ended first). It is never the same as NO.
    """

    YES = "yes"
    NO = "no"
    UNKNOWN = "unknown"


class StreamEnd(str, enum.Enum):
    """How the TCP connection (or our view of it) ended."""

    FIN = "fin"
    RST = "rst"
    TIMEOUT = "timeout"
    CLOSED_BY_US = "closed_by_us"
    CAPTURE_ENDED = "capture_ended"
    NOT_CONNECTED = "not_connected"


class Stage(str, enum.Enum):
    """How far one connection got before it ended (the furthest stage reached)."""

    DNS = "dns"
    TCP = "tcp"
    PROXY = "proxy"  # CONNECT not answered with 2xx
    HANDSHAKE = "handshake"  # ended before both Finished
    FIRST_READ = "first_read"  # ended right after the handshake (TLS 1.3 late rejection)
    HTTP = "http"  # ended during/after the HTTP exchange
    ESTABLISHED = "established"  # handshake done, nothing went wrong while we looked


class Outcome(str, enum.Enum):
    ESTABLISHED = "established"  # both Finished, no fatal alert before we stopped looking
    REJECTED_BY_SERVER = "rejected_by_server"  # fatal alert from the server side
    REJECTED_BY_CLIENT = "rejected_by_client"  # fatal alert from the client side
    ABORTED = "aborted"  # RST/EOF mid-handshake, no alert
    NO_ANSWER = "no_answer"  # ClientHello sent, nothing came back before timeout
    NOT_TLS = "not_tls"  # the peer answered with something that is not TLS
    INCOMPLETE = "incomplete"  # not enough evidence to tell (capture cut, gap)


class CertKind(str, enum.Enum):
    """Which client credentials an attempt offered."""

    NONE = "none"
    UNTRUSTED = "untrusted"  # throwaway certificate from a CA made on the fly
    AGENT = "agent"  # the operator-supplied agent certificate
    UNKNOWN = "unknown"  # capture: we did not choose


# --- what adapters record ----------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    host: str
    port: int
    ip: str | None = None

    def __str__(self) -> str:
        h = f"[{self.host}]" if ":" in self.host else self.host
        return f"{h}:{self.port}"


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


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    """What a live probe asked for on one connection. Captures have none."""

    name: str  # "tls13-nocert", "tls12-nocert", "untrusted-cert", "agent-cert", "repeat-2"
    max_version: str | None = None  # "TLSv1.3" | "TLSv1.2" | None (library default)
    min_version: str | None = None
    client_cert: CertKind = CertKind.NONE
    client_cert_sha256: str | None = None


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


# --- what the core derives -----------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ReflectorEcho:
    """What an ``mtlsprobe serve`` reflector reported about one of our connections, beside
    what we sent on it, for the MTLS08x comparisons. Filled by ``mtlsprobe.reflector``."""

    status: str  # "ok" | "missing" | "malformed" | "bad_signature"
    signed: bool = False  # HMAC checked with the shared secret
    peer: str | None = None  # the address the reflector saw the connection come from
    hello_sha256: str | None = None  # the ClientHello message the reflector received
    ja3: str | None = None
    offered_versions: tuple[str, ...] = ()
    cipher_suites: tuple[str, ...] = ()
    sni: str | None = None
    alpn_offered: tuple[str, ...] = ()
    version: str | None = None
    cipher_suite: str | None = None
    client_chain_sha256: tuple[str, ...] = ()  # what arrived (leaf first; may be leaf only)
    server_chain_sha256: tuple[str, ...] = ()  # what the reflector presented
    sent_hello_sha256: str | None = None  # the ClientHello we sent (from our transcript)
    sent_ja3: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CertInfo:
    sha256: str  # hex of the DER
    spki_pin: str  # "sha256/BASE64" of SubjectPublicKeyInfo (HPKP style)
    subject: str  # RFC 4514
    issuer: str
    serial: str
    not_before: datetime
    not_after: datetime
    san_dns: tuple[str, ...] = ()
    san_ip: tuple[str, ...] = ()
    eku: tuple[str, ...] | None = None  # None: extension absent (any usage)
    key: str = ""  # "EC P-256", "RSA 2048"
    signature_algorithm: str = ""
    is_ca: bool = False
    self_issued: bool = False
    der: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class CertRequestInfo:
    seen: Seen
    authorities: tuple[str, ...] = ()  # DNs (RFC 4514) from certificate_authorities / CA list
    signature_algorithms: tuple[str, ...] = ()
    where: str | None = None  # "handshake" | "renegotiation" | "post_handshake"


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertInfo:
    sender: Direction
    level: str  # "fatal" | "warning" | "unknown"
    description: str  # "certificate_required", "unknown_ca", ... or "encrypted"
    code: int | None = None
    after_handshake: bool = False
    decrypted: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Observation:
    """Facts about one TLS connection. Built by ``tls.observer.observe(transcript)``."""

    label: str
    client: Endpoint
    server: Endpoint
    route: Route
    observed_at: datetime
    attempt: Attempt | None = None
    history: str = ""  # message letters in order, upper case = client (Zeek ssl_history style)
    offered_versions: tuple[str, ...] = ()
    version: str | None = None  # "TLSv1.3"
    cipher_suite: str | None = None
    sni: str | None = None
    alpn_offered: tuple[str, ...] = ()
    alpn: str | None = None
    ja3: str | None = None  # MD5 JA3 of the ClientHello
    hello_retry: bool = False
    resumed: bool = False
    server_chain: tuple[CertInfo, ...] = ()
    server_chain_seen: Seen = Seen.UNKNOWN
    cert_request: CertRequestInfo = field(
        default_factory=lambda: CertRequestInfo(seen=Seen.UNKNOWN)
    )
    client_chain: tuple[CertInfo, ...] = ()
    client_chain_seen: Seen = Seen.UNKNOWN  # YES with () == client sent an empty Certificate
    alerts: tuple[AlertInfo, ...] = ()
    renegotiation: Seen = Seen.NO
    post_handshake_auth_offered: bool = False
    outcome: Outcome = Outcome.INCOMPLETE
    stage: Stage = Stage.HANDSHAKE
    end: StreamEnd = StreamEnd.CLOSED_BY_US
    decrypted: bool = False
    gaps: tuple[Gap, ...] = ()
    tcp: TcpFacts | None = None
    http: HttpExchange | None = None
    server_hello_ms: float | None = None
    local_error: str | None = None
    notes: tuple[str, ...] = ()
    reflected: ReflectorEcho | None = None  # the far end's echo, when it is a reflector
    # analyze keeps one observation per distinct behaviour of a server: ``repeats`` counts the
    # connections it stands for (itself included), ``last_observed_at`` the last one's start
    repeats: int = 1
    last_observed_at: datetime | None = None
    ja4: str | None = None  # JA4 (FoxIO, TCP) of the ClientHello: stable when extensions shuffle


# --- expectations and judgement ------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class BaselinePort:
    """What the real server showed on one port, from a report taken on the server's LAN."""

    port: int
    chain_sha256: tuple[tuple[str, ...], ...] = ()  # every distinct chain seen (leaf first)
    leaf_pins: tuple[str, ...] = ()
    cert_request: Seen = Seen.UNKNOWN
    cert_request_authorities: tuple[str, ...] = ()
    versions: tuple[str, ...] = ()
    cipher_suites: tuple[str, ...] = ()
    rejects_untrusted_cert: Seen = Seen.UNKNOWN


@dataclass(frozen=True, slots=True, kw_only=True)
class Expectations:
    """What 'the real server' looks like, supplied by the operator."""

    roots: tuple[CertInfo, ...] = ()  # --ca
    pins: tuple[str, ...] = ()  # --pin sha256/BASE64
    baseline: tuple[BaselinePort, ...] = ()  # --baseline
    agent_cert: CertInfo | None = None  # --cert / --pkcs12 (public part only)
    agent_chain: tuple[CertInfo, ...] = ()

    @property
    def any(self) -> bool:
        return bool(self.roots or self.pins or self.baseline)

    def baseline_for(self, port: int) -> BaselinePort | None:
        return next((b for b in self.baseline if b.port == port), None)


class Severity(str, enum.Enum):
    """How much a finding weighs. Only BREAKS/BLOCKS/REJECTS/UNKNOWN move the verdict."""

    BREAKS = "breaks"  # the path breaks client-certificate authentication
    BLOCKS = "blocks"  # the path does not carry the connection at all
    REJECTS = "rejects"  # the real server refuses the agent's certificate
    UNKNOWN = "unknown"  # a decisive fact could not be established
    WARNING = "warning"  # works now, fragile or suspicious
    INFO = "info"  # context, including positive evidence


@dataclass(frozen=True, slots=True, kw_only=True)
class Evidence:
    observation: str  # Observation.label ("" for case-level evidence)
    field: str  # "server_chain[0].issuer", "route.connect_status", ...
    value: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    rule: str  # stable id "MTLS011"; never reused
    title: str
    severity: Severity
    summary: str  # one ticket-ready sentence
    evidence: tuple[Evidence, ...] = ()
    remediation: str | None = None
    product: str | None = None  # named middlebox, when a signature matched


class Verdict(str, enum.Enum):
    PASS_END_TO_END = "pass_end_to_end"
    INSPECTED = "inspected"
    TERMINATED_BY_LB = "terminated_by_lb"
    CLIENT_CERT_REJECTED = "client_cert_rejected"
    PROXY_AUTH_REQUIRED = "proxy_auth_required"
    BLOCKED = "blocked"
    UNREACHABLE = "unreachable"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    """Everything the rules may look at for one target and route."""

    target: Endpoint
    route: Route
    observations: tuple[Observation, ...]
    expect: Expectations = field(default_factory=Expectations)
    source: str | None = None  # where the target came from: "flag", "file:...", "capture"
    hops: HopTrace | None = None  # probe --trace: where on the path things answered


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseResult:
    target: Endpoint
    route: Route
    verdict: Verdict
    reason: str  # one line: why this verdict
    product: str | None
    findings: tuple[Finding, ...]
    observations: tuple[Observation, ...]
    source: str | None = None
    hops: HopTrace | None = None  # the Case's hop trace, for the report


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    schema_version: int
    tool_version: str
    generated_at: datetime
    command: str  # "probe" | "analyze" | "check-cert" | "demo"
    host: dict[str, str]  # hostname, os, python: who measured
    inputs: dict[str, object]  # redacted arguments, never key material
    results: tuple[CaseResult, ...]
    verdict: Verdict
    exit_code: int
    notes: tuple[str, ...] = ()


# --- where on the path (probe --trace, mtlsprobe trace) ------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class HopProbe:
    """One TTL-limited probe of a hop trace and the first answer it got."""

    phase: str  # "ip" (ICMP echo to the server's address) | "tcp" (SYN) | "tls" (ClientHello)
    ttl: int  # the TTL (hop limit) the probe was sent with
    answer: str  # "time_exceeded" | "unreachable" | "echo_reply" | "synack" | "rst" | "tls"
    #              | "fin" | "data" | "none" (nothing before the per-probe timeout)
    addr: str | None = None  # who answered: the ICMP sender, or the segment's source address
    reply_ttl: int | None = None  # TTL of the answer as it arrived
    rtt_ms: float | None = None
    rewritten: tuple[str, ...] = ()  # differences between the ICMP-quoted probe and what we sent


@dataclass(frozen=True, slots=True, kw_only=True)
class HopTrace:
    """TTL-limited probing toward one target (tracebox / tlsmiddlebox style).

    Distances are the smallest TTL that got an answer other than ICMP time-exceeded.
    ``middlebox_*`` name the hop that answered (or reset) before the server's distance.
    """

    target: Endpoint
    probes: tuple[HopProbe, ...] = ()
    ip_distance: int | None = None  # the server's address answered an ICMP echo at this TTL
    tcp_distance: int | None = None  # the SYN was answered (SYN-ACK or RST) at this TTL
    tls_distance: int | None = None  # the ClientHello was answered at this TTL
    tls_answer: str | None = None  # what answered the ClientHello first: "tls" | "rst" | "fin"
    middlebox_hop: int | None = None
    middlebox_addr: str | None = None
    middlebox_answer: str | None = None  # "tcp" (answered the SYN) | "tls" | "rst" | "fin"
    middlebox_reason: str | None = None  # one sentence: how the hop was located
    notes: tuple[str, ...] = ()
    error: str | None = None  # why no trace ran (no raw sockets, IPv6, ...)
