"""Expectations (what the real server looks like), findings, verdicts, cases and reports."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

from mtlsprobe.model.hops import HopTrace
from mtlsprobe.model.kinds import Seen
from mtlsprobe.model.observation import CertInfo, Observation
from mtlsprobe.model.transcript import Endpoint, Route

# --- expectations and judgement ------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class BaselinePort:
    """What the real server showed on one port (and server name), from a report taken on the
    server's LAN: its chains, its CertificateRequest, and how it behaves (``behaviour``: fact
    name -> every value the real server showed, see ``rules.behaviour``)."""

    port: int
    server_name: str | None = None  # the SNI the baseline was taken with (None: no SNI)
    chain_sha256: tuple[tuple[str, ...], ...] = ()  # every distinct chain seen (leaf first)
    leaf_pins: tuple[str, ...] = ()
    cert_request: Seen = Seen.UNKNOWN
    cert_request_authorities: tuple[str, ...] = ()
    versions: tuple[str, ...] = ()
    cipher_suites: tuple[str, ...] = ()
    rejects_untrusted_cert: Seen = Seen.UNKNOWN
    behaviour: tuple[tuple[str, tuple[str, ...]], ...] = ()
    leaves: tuple[CertInfo, ...] = ()  # the real server's leaf certificates, as seen


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

    def baseline_for(self, port: int, server_name: str | None = None) -> BaselinePort | None:
        """The baseline of this port and server name; by port alone when either has no name.

        Matched by name and port, never by address: agents reach a VIP, the baseline is
        taken on the server's LAN.
        """
        same_port = [b for b in self.baseline if b.port == port]
        if server_name is not None:
            named = [b for b in same_port if b.server_name is not None]
            exact = [b for b in named if (b.server_name or "").lower() == server_name.lower()]
            if exact or named:
                return exact[0] if exact else None
        return same_port[0] if same_port else None


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
    # handshakes that asked for an unrelated server name over the same route: evidence of the
    # kind of middlebox only (mints for any name, or one fixed certificate), never of identity
    other_name: tuple[Observation, ...] = ()


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
