"""Value types shared by every layer: what was seen, what was expected, what was judged.

Frozen, slotted, keyword-only dataclasses and ``str`` enums. No I/O, no parsing, no clock.
Enum values and rule ids are public API: they appear in JSON reports and tickets.

Data flows one way::

    adapter (live | capture) -> Transcript -> tls.observer -> Observation
    Observations + Expectations -> Case -> rules -> Findings -> Verdict -> Report

The value types live in ``kinds``, ``transcript``, ``observation``, ``judgement`` and
``hops``; this package re-exports them so callers write ``from mtlsprobe.model import X``.
``errors`` (operator errors with exit codes) and ``certs`` (X.509 facts over DER, with
``cryptography``) are imported by name where needed.
"""

from mtlsprobe.model.hops import (
    HopProbe,
    HopTrace,
)
from mtlsprobe.model.judgement import (
    BaselinePort,
    Case,
    CaseResult,
    Evidence,
    Expectations,
    Finding,
    Report,
    Severity,
    Verdict,
)
from mtlsprobe.model.kinds import (
    CertKind,
    Direction,
    Outcome,
    Seen,
    Stage,
    StreamEnd,
)
from mtlsprobe.model.observation import (
    AlertInfo,
    CertInfo,
    CertRequestInfo,
    Observation,
    ReflectorEcho,
)
from mtlsprobe.model.transcript import (
    OTHER_NAME,
    Attempt,
    Chunk,
    Endpoint,
    Gap,
    HttpExchange,
    Route,
    TcpFacts,
    Transcript,
    address_order,
)

__all__ = [
    "OTHER_NAME",
    "AlertInfo",
    "Attempt",
    "BaselinePort",
    "Case",
    "CaseResult",
    "CertInfo",
    "CertKind",
    "CertRequestInfo",
    "Chunk",
    "Direction",
    "Endpoint",
    "Evidence",
    "Expectations",
    "Finding",
    "Gap",
    "HopProbe",
    "HopTrace",
    "HttpExchange",
    "Observation",
    "Outcome",
    "ReflectorEcho",
    "Report",
    "Route",
    "Seen",
    "Severity",
    "Stage",
    "StreamEnd",
    "TcpFacts",
    "Transcript",
    "Verdict",
    "address_order",
]
