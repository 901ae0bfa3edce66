"""Baselines: what the real server showed, read back from a JSON report.

``--save-baseline`` is just a report (``to_jsonable``) taken next to the server; this
module extracts per-port facts from it. Pure: a decoded JSON value in, BaselinePorts out.
Raises ValueError/KeyError/TypeError for documents that are not v1 reports.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mtlsprobe.model import BaselinePort, Seen

_CERT_HTTP_REJECT = (495, 496)
_NGINX_MARKERS = ("No required SSL certificate was sent", "The SSL certificate error")


@dataclass
class _Port:
    chains: list[tuple[str, ...]] = field(default_factory=list)
    pins: list[str] = field(default_factory=list)
    cert_request: set[str] = field(default_factory=set)
    authorities: list[str] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)
    ciphers: list[str] = field(default_factory=list)
    untrusted: set[str] = field(default_factory=set)  # "rejected" | "accepted"


def _add(seq: list[Any], items: Iterable[Any]) -> None:
    for item in items:
        if item not in seq:
            seq.append(item)


def _untrusted_outcome(obs: dict[str, Any]) -> str | None:
    """'rejected' / 'accepted' for an untrusted-certificate attempt, None otherwise."""
    attempt = obs.get("attempt") or {}
    if attempt.get("client_cert") != "untrusted":
        return None
    http = obs.get("http") or {}
    status = http.get("status")
    body = http.get("body_excerpt") or ""
    if (
        obs.get("outcome") == "rejected_by_server"
        or obs.get("stage") == "first_read"
        or status in _CERT_HTTP_REJECT
        or (status == 400 and any(m in body for m in _NGINX_MARKERS))
    ):
        return "rejected"
    if obs.get("outcome") == "established" and status != 400:
        return "accepted"
    return None


def _seen(values: set[str]) -> Seen:
    if "yes" in values:
        return Seen.YES
    if "no" in values:
        return Seen.NO
    return Seen.UNKNOWN


def load_baseline(report_json: Any) -> tuple[BaselinePort, ...]:
    """Per-port facts of the real server from a v1 report, ordered by port."""
    if not isinstance(report_json, dict):
        raise TypeError("a report is a JSON object")
    if report_json.get("schema_version") != 1:
        raise ValueError(f"unsupported schema_version {report_json.get('schema_version')!r}")
    ports: dict[int, _Port] = {}
    for result in report_json["results"]:
        port = int(result["target"]["port"])
        acc = ports.setdefault(port, _Port())
        rules = {f["rule"] for f in result.get("findings", ())}
        if "MTLS032" in rules:
            acc.untrusted.add("rejected")
        if rules & {"MTLS030", "MTLS031"}:
            acc.untrusted.add("accepted")
        for obs in result.get("observations", ()):
            chain = obs.get("server_chain") or []
            if obs.get("server_chain_seen") == "yes" and chain:
                _add(acc.chains, [tuple(c["sha256"] for c in chain)])
                _add(acc.pins, [chain[0]["spki_pin"]] if chain[0].get("spki_pin") else [])
            req = obs.get("cert_request") or {}
            acc.cert_request.add(req.get("seen", "unknown"))
            if req.get("seen") == "yes":
                _add(acc.authorities, req.get("authorities", ()))
            _add(acc.versions, [obs["version"]] if obs.get("version") else [])
            _add(acc.ciphers, [obs["cipher_suite"]] if obs.get("cipher_suite") else [])
            verdict = _untrusted_outcome(obs)
            if verdict:
                acc.untrusted.add(verdict)
    out = []
    for port, acc in sorted(ports.items()):
        if not acc.chains and "yes" not in acc.cert_request:
            continue  # nothing completed on this port: no baseline to speak of
        if "rejected" in acc.untrusted and "accepted" not in acc.untrusted:
            rejects = Seen.YES
        elif "accepted" in acc.untrusted and "rejected" not in acc.untrusted:
            rejects = Seen.NO
        else:
            rejects = Seen.UNKNOWN
        out.append(BaselinePort(
            port=port,
            chain_sha256=tuple(acc.chains),
            leaf_pins=tuple(acc.pins),
            cert_request=_seen(acc.cert_request),
            cert_request_authorities=tuple(acc.authorities),
            versions=tuple(acc.versions),
            cipher_suites=tuple(acc.ciphers),
            rejects_untrusted_cert=rejects,
        ))
    return tuple(out)
