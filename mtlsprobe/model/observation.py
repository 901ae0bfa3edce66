"""What the core derives from one transcript: certificates, requests, alerts, the observation."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from mtlsprobe.model.kinds import Direction, Outcome, Seen, Stage, StreamEnd
from mtlsprobe.model.transcript import (
    OTHER_NAME,
    Attempt,
    Endpoint,
    Gap,
    HttpExchange,
    Route,
    TcpFacts,
)

# --- what the core derives -----------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ReflectorEcho:
    """What an ``mtlsprobe serve`` reflector reported about one of our connections, beside
    what we sent on it, for the MTLS08x comparisons. Filled by ``mtlsprobe.run.reflector``."""

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
    # how much of the certificate is known: "der" (all of it), "names" (a Zeek x509.log row
    # without the certificate: names, dates, SAN, no key, so no pin and no signature check;
    # from ssl.log's subject/issuer columns alone, names only, dates placeholders),
    # "fingerprint" (its SHA-256 alone: a Zeek chain entry with no x509.log row; its names
    # are empty and its dates placeholders that no rule may read)
    known_by: str = "der"


@dataclass(frozen=True, slots=True, kw_only=True)
class CertRequestInfo:
    seen: Seen
    authorities: tuple[str, ...] = ()  # DNs (RFC 4514) from certificate_authorities / CA list
    signature_algorithms: tuple[str, ...] = ()
    where: str | None = None  # "handshake" | "renegotiation" | "post_handshake"
    # False: the request was seen but not its CA list (a Zeek log without the
    # certificate-request-info policy); ``authorities`` is then empty and means nothing
    authorities_seen: bool = True


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
    # ... and the client addresses behind them (the lowest few), with whether there were more
    clients: tuple[str, ...] = ()
    more_clients: bool = False
    ja4: str | None = None  # JA4 (FoxIO, TCP) of the ClientHello: stable when extensions shuffle
    server_extensions: tuple[int, ...] = ()  # ServerHello extension types, in wire order

    @property
    def asks_other_name(self) -> bool:
        """The probe's other-name handshake (live, or recognised by its SNI in a capture)."""
        return self.sni == OTHER_NAME or (self.attempt is not None and bool(self.attempt.sni))
