"""Decoded JSON documents -> compact rows, one per target x route result. Pure.

Two shapes are ours: a full v1 report (``results`` list) and a JSON Lines record
(``record: "result"``). Anything else raises :class:`Foreign`. Missing or malformed fields
never raise: they become ``unknown`` values and are named in ``Row.missing``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from mtlsprobe.model import Verdict

_VERDICTS = {v.value: v for v in Verdict}
_DECIDING = ("breaks", "blocks", "rejects", "unknown")


EXAMPLES = 5  # examples kept per kind of bad input


@dataclass
class InputStats:
    """What reading saw; counts are exact, examples are capped at EXAMPLES each."""

    streams: int = 0
    documents: int = 0
    malformed: int = 0
    foreign: int = 0
    unreadable: list[str] = field(default_factory=list)
    malformed_examples: list[str] = field(default_factory=list)
    foreign_examples: list[str] = field(default_factory=list)

    def bad_line(self, where: str, why: str) -> None:
        self.malformed += 1
        if len(self.malformed_examples) < EXAMPLES:
            self.malformed_examples.append(f"{where}: {why}")

    def foreign_document(self, where: str, why: str) -> None:
        self.foreign += 1
        if len(self.foreign_examples) < EXAMPLES:
            self.foreign_examples.append(f"{where}: {why}")


class Foreign(ValueError):
    """A JSON document that is not an mtlsprobe v1 report or report line."""


@dataclass(frozen=True, slots=True)
class Row:
    """What the roll-up keeps of one result (strings only; no observations)."""

    agent: str
    generated_at: datetime | None
    command: str
    target: str
    port: int | None
    route: str
    verdict: Verdict
    cause: str | None
    product: str | None
    reason: str
    remediation: str | None
    addresses: tuple[str, ...] = ()
    agent_version: str | None = None
    agent_cert: str | None = None
    missing: tuple[str, ...] = ()


def parse_time(text: object) -> datetime | None:
    """RFC 3339 (with 'Z' or an offset) -> aware UTC datetime; None when unparsable."""
    if not isinstance(text, str) or not text:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc)


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _verdict(value: object) -> Verdict | None:
    """A verdict's value, else None (a list or an object is no key: it must not raise)."""
    return _VERDICTS.get(value) if isinstance(value, str) else None


def _addresses(host: Mapping[str, Any]) -> tuple[str, ...]:
    value = host.get("addresses")
    if isinstance(value, str):
        return tuple(a for a in value.replace(",", " ").split() if a)
    if isinstance(value, list):
        return tuple(a for a in value if isinstance(a, str) and a)
    return ()


def _target(value: object) -> tuple[str, int | None]:
    if not isinstance(value, Mapping):
        return "-", None
    host = value.get("host")
    port = value.get("port")
    port = port if isinstance(port, int) and not isinstance(port, bool) else None
    if not isinstance(host, str):
        return "-", port
    h = f"[{host}]" if ":" in host else host
    return (f"{h}:{port}" if port is not None else h), port


def _route(value: object) -> str:
    if not isinstance(value, Mapping):
        return "-"
    kind = value.get("kind")
    proxy = value.get("proxy")
    if kind == "direct":
        return "direct"
    if isinstance(proxy, str) and proxy:
        return f"proxy {proxy}"
    return kind if isinstance(kind, str) else "-"


def _cause(result: Mapping[str, Any], verdict: Verdict) -> tuple[str | None, str | None]:
    """(rule id, remediation) of the finding that decided a full report's result."""
    if verdict is Verdict.PASS_END_TO_END:
        return None, None
    given = result.get("findings")
    findings = [f for f in given if isinstance(f, Mapping)  # a list, else none (never raise)
                and f.get("severity") in _DECIDING] if isinstance(given, list) else []
    reason = result.get("reason")
    pick = next((f for f in findings if f.get("summary") == reason),
                findings[0] if findings else None)
    if pick is None:
        return None, None
    return _str(pick.get("rule")), _str(pick.get("remediation"))


class _Head:
    """The per-document part of every row: who, when, which command."""

    __slots__ = ("addresses", "agent", "agent_cert", "agent_version", "command", "missing",
                 "when")

    def __init__(self, doc: Mapping[str, Any], agent_cert: object) -> None:
        host = doc.get("host")
        missing: list[str] = []
        if not isinstance(host, Mapping):
            host = {}
            missing.append("host")
        name = _str(host.get("hostname"))
        cert = _str(agent_cert)
        if name is None:
            missing.append("host.hostname")
            name = f"(no hostname, cert {cert[:12]})" if cert else "(no hostname)"
        self.agent = name
        self.when = parse_time(doc.get("generated_at"))
        if self.when is None:
            missing.append("generated_at")
        self.command = _str(doc.get("command")) or "?"
        self.addresses = _addresses(host)
        self.agent_version = _str(host.get("agent_version"))
        self.agent_cert = cert
        self.missing = missing

    def row(self, result: Mapping[str, Any], cause: str | None, remediation: str | None,
            extra_missing: list[str]) -> Row:
        target, port = _target(result.get("target"))
        verdict = _verdict(result.get("verdict"))
        missing = [*self.missing, *extra_missing]
        if verdict is None:
            missing.append("verdict")
            verdict = Verdict.UNKNOWN
        if target == "-" and result.get("target", 0) is not None:
            missing.append("target")
        return Row(
            agent=self.agent, generated_at=self.when, command=self.command, target=target,
            port=port, route=_route(result.get("route")), verdict=verdict, cause=cause,
            product=_str(result.get("product")), reason=_str(result.get("reason")) or "",
            remediation=remediation, addresses=self.addresses,
            agent_version=self.agent_version, agent_cert=self.agent_cert,
            missing=tuple(missing),
        )


def rows_of(doc: object) -> Iterator[Row]:
    """The rows of one document. Raises Foreign for documents that are not ours."""
    if not isinstance(doc, Mapping):
        raise Foreign(f"a JSON {type(doc).__name__}, not an object")
    if doc.get("schema_version") != 1:
        raise Foreign(f"schema_version {doc.get('schema_version')!r} (expected 1)")
    if doc.get("record") == "result":
        head = _Head(doc, doc.get("agent_cert"))
        cause = _str(doc.get("cause"))
        yield head.row(doc, cause, _str(doc.get("remediation")) if cause else None, [])
        return
    results = doc.get("results")
    if not isinstance(results, list):
        raise Foreign("neither a report (results) nor a report line (record)")
    inputs = doc.get("inputs") if isinstance(doc.get("inputs"), Mapping) else {}
    head = _Head(doc, inputs.get("agent_cert"))  # type: ignore[union-attr]
    if not results:
        overall = {"target": None, "route": None, "verdict": doc.get("verdict"),
                   "reason": "no targets were judged"}
        yield head.row(overall, None, None, [])
        return
    for result in results:
        if not isinstance(result, Mapping):
            yield head.row({}, None, None, ["result"])
            continue
        verdict = _verdict(result.get("verdict")) or Verdict.UNKNOWN
        cause, remediation = _cause(result, verdict)
        yield head.row(result, cause, remediation, [])
