"""Baselines: what the real server showed, read back from a JSON report.

``--save-baseline`` is just a report taken next to the server. Its observations are decoded
back into the model's Observations (``report.jsonin``), so the chains, the CertificateRequest
and the behaviour facts (``rules.behaviour_facts``) come from the same code that judges a
live probe. One BaselinePort per port and server name (SNI): agents reach the server by
name through a VIP, so the baseline is never matched by address.
Raises ValueError/KeyError/TypeError for documents that are not v1 reports.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mtlsprobe.model import (
    BaselinePort,
    CertInfo,
    CertKind,
    Observation,
    Outcome,
    Seen,
)
from mtlsprobe.report.jsonin import from_jsonable
from mtlsprobe.rules.behaviour_facts import behaviour_facts
from mtlsprobe.rules.facts import late_rejection

_CERT_HTTP_REJECT = (495, 496)
_NGINX_MARKERS = ("No required SSL certificate was sent", "The SSL certificate error")


@dataclass
class _Port:
    chains: list[tuple[str, ...]] = field(default_factory=list)
    pins: list[str] = field(default_factory=list)
    leaves: list[CertInfo] = field(default_factory=list)
    cert_request: set[Seen] = field(default_factory=set)
    authorities: list[str] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)
    ciphers: list[str] = field(default_factory=list)
    untrusted: set[str] = field(default_factory=set)  # "rejected" | "accepted"
    behaviour: dict[str, list[str]] = field(default_factory=dict)


def _add(seq: list[Any], items: Iterable[Any]) -> None:
    for item in items:
        if item not in seq:
            seq.append(item)


def _untrusted_outcome(obs: Observation) -> str | None:
    """'rejected' / 'accepted' for an untrusted-certificate attempt, None otherwise."""
    if obs.attempt is None or obs.attempt.client_cert is not CertKind.UNTRUSTED:
        return None
    status = obs.http.status if obs.http is not None else None
    body = obs.http.body_excerpt if obs.http is not None else ""
    if (
        obs.outcome is Outcome.REJECTED_BY_SERVER
        or late_rejection(obs)
        or status in _CERT_HTTP_REJECT
        or (status == 400 and any(m in body for m in _NGINX_MARKERS))
    ):
        return "rejected"
    if obs.outcome is Outcome.ESTABLISHED and status != 400:
        return "accepted"
    return None


def _seen(values: set[Seen]) -> Seen:
    if Seen.YES in values:
        return Seen.YES
    if Seen.NO in values:
        return Seen.NO
    return Seen.UNKNOWN


def _server_name(observations: list[Observation]) -> str | None:
    return next((o.sni for o in observations if o.sni), None)


def _fold(acc: _Port, obs: Observation) -> None:
    chain = obs.server_chain
    if obs.server_chain_seen is Seen.YES and chain:
        _add(acc.chains, [tuple(c.sha256 for c in chain)])
        _add(acc.pins, [chain[0].spki_pin] if chain[0].spki_pin else [])
        if all(leaf.sha256 != chain[0].sha256 for leaf in acc.leaves):
            acc.leaves.append(chain[0])
    acc.cert_request.add(obs.cert_request.seen)
    if obs.cert_request.seen is Seen.YES:
        _add(acc.authorities, obs.cert_request.authorities)
    _add(acc.versions, [obs.version] if obs.version else [])
    _add(acc.ciphers, [obs.cipher_suite] if obs.cipher_suite else [])
    verdict = _untrusted_outcome(obs)
    if verdict:
        acc.untrusted.add(verdict)
    for key, value in behaviour_facts(obs).items():
        _add(acc.behaviour.setdefault(key, []), [value])


def _port(value: object) -> int:
    """A result's target port: an integer 0-65535 (as our reports write it), else ValueError
    (``int()`` took 1e400 and raised OverflowError, which no caller expects)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise ValueError(f"target port {str(value)[:20]!r} is not a port number")
    return value


def load_baseline(report_json: Any) -> tuple[BaselinePort, ...]:
    """Per-port (and server name) facts of the real server from a v1 report, by port."""
    if not isinstance(report_json, dict):
        raise TypeError("a report is a JSON object")
    if report_json.get("schema_version") != 1:
        raise ValueError(f"unsupported schema_version {report_json.get('schema_version')!r}")
    ports: dict[tuple[int, str | None], _Port] = {}
    for result in report_json["results"]:
        port = _port(result["target"]["port"])
        observations = [from_jsonable(Observation, o) for o in result.get("observations", ())]
        own = [o for o in observations if not o.asks_other_name]
        acc = ports.setdefault((port, _server_name(own)), _Port())
        rules = {f["rule"] for f in result.get("findings", ())}
        if "MTLS032" in rules:
            acc.untrusted.add("rejected")
        if rules & {"MTLS030", "MTLS031"}:
            acc.untrusted.add("accepted")
        for obs in own:
            _fold(acc, obs)
    out = []
    for (port, name), acc in sorted(ports.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        if not acc.chains and Seen.YES not in acc.cert_request:
            continue  # nothing completed on this port: no baseline to speak of
        if "rejected" in acc.untrusted and "accepted" not in acc.untrusted:
            rejects = Seen.YES
        elif "accepted" in acc.untrusted and "rejected" not in acc.untrusted:
            rejects = Seen.NO
        else:
            rejects = Seen.UNKNOWN
        out.append(BaselinePort(
            port=port,
            server_name=name,
            chain_sha256=tuple(acc.chains),
            leaf_pins=tuple(acc.pins),
            cert_request=_seen(acc.cert_request),
            cert_request_authorities=tuple(acc.authorities),
            versions=tuple(acc.versions),
            cipher_suites=tuple(acc.ciphers),
            rejects_untrusted_cert=rejects,
            behaviour=tuple((k, tuple(v)) for k, v in acc.behaviour.items()),
            leaves=tuple(acc.leaves),
        ))
    return tuple(out)
