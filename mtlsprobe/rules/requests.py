"""The CertificateRequest: whether the far end asks for a client certificate, where, for which CAs,
and whether that survives the path (MTLS001-002, MTLS020-022, MTLS024, MTLS050).
"""

from __future__ import annotations

from collections.abc import Iterator

from mtlsprobe.model import Case, CertKind, Finding, Observation, Seen, Severity
from mtlsprobe.rules.facts import (
    INSPECT_FIX,
    LB_FIX,
    NGINX_CERT_MARKERS,
    _authorities,
    _baseline,
    _ev,
    _kind,
    _labels,
    _names,
    _target,
)
from mtlsprobe.rules.registry import finding, rule


@rule("MTLS001", "Far end requests a client certificate", Severity.INFO)
def cert_requested(case: Case) -> Iterator[Finding]:
    asked = [o for o in case.observations if o.cert_request.seen is Seen.YES]
    if not asked:
        return
    first = asked[0]
    where = first.cert_request.where or "handshake"
    yield finding(
        "MTLS001",
        f"The far end requests a client certificate ({where}); acceptable CAs: "
        f"{_authorities(first)}.",
        evidence=[_ev(o, "cert_request.authorities", _authorities(o)) for o in asked],
    )


@rule("MTLS002", "No CertificateRequest seen", Severity.INFO)
def cert_not_requested(case: Case) -> Iterator[Finding]:
    seen = {o.cert_request.seen for o in case.observations}
    if Seen.YES in seen or Seen.NO not in seen:
        return
    yield finding(
        "MTLS002",
        "No handshake carried a CertificateRequest: expected while the server does not "
        "enforce client certificates yet; it says nothing about whether this path will carry "
        "them once enforcement starts.",
        evidence=[
            _ev(o, "cert_request.seen", "no")
            for o in case.observations
            if o.cert_request.seen is Seen.NO
        ],
    )


@rule("MTLS020", "CertificateRequest missing on this path", Severity.BREAKS)
def cert_request_vanished(case: Case) -> Iterator[Finding]:
    base = _baseline(case)
    if base is None or base.cert_request is not Seen.YES:
        return
    missing = [o for o in case.observations if o.cert_request.seen is Seen.NO]
    if not missing:
        return
    yield finding(
        "MTLS020",
        f"The real server asks for a client certificate on port {case.target.port} "
        f"(baseline), but on this path no CertificateRequest arrived ({_labels(missing)}): "
        "something else completes the handshake.",
        evidence=[_ev(None, "baseline.cert_request", "yes")]
        + [_ev(o, "cert_request.seen", "no") for o in missing],
        remediation=INSPECT_FIX.format(t=_target(case)) + " Or: " + LB_FIX.format(
            t=_target(case)),
    )


@rule("MTLS021", "CertificateRequest CA names differ from the baseline", Severity.BREAKS)
def cert_request_cas_differ(case: Case) -> Iterator[Finding]:
    base = _baseline(case)
    if base is None or base.cert_request is not Seen.YES:
        return
    want = set(base.cert_request_authorities)
    odd = [
        o for o in case.observations
        if o.cert_request.seen is Seen.YES and set(o.cert_request.authorities) != want
    ]
    if not odd:
        return
    yield finding(
        "MTLS021",
        f"The CertificateRequest on this path lists {_authorities(odd[0])}, but the real "
        f"server lists {_names(base.cert_request_authorities)}: another TLS "
        "endpoint builds its own request.",
        evidence=[_ev(None, "baseline.cert_request_authorities",
                      _names(base.cert_request_authorities))]
        + [_ev(o, "cert_request.authorities", _authorities(o)) for o in odd],
        remediation=LB_FIX.format(t=_target(case)),
    )


@rule("MTLS022", "Agent certificate issuer not among the requested CAs", Severity.WARNING)
def agent_issuer_not_requested(case: Case) -> Iterator[Finding]:
    agent = case.expect.agent_cert
    if agent is None:
        return
    # The issuer or any CA of the supplied agent chain may be the one the server names.
    names = {agent.issuer} | {c.subject for c in case.expect.agent_chain} | {
        c.issuer for c in case.expect.agent_chain
    }
    for obs in case.observations:
        listed = obs.cert_request.authorities
        if obs.cert_request.seen is Seen.YES and listed and not names & set(listed):
            yield finding(
                "MTLS022",
                f"The agent certificate is issued by {agent.issuer}, which is not among the "
                f"CAs the far end asks for ({_authorities(obs)}); the TLS client may send no "
                "certificate.",
                evidence=[
                    _ev(None, "expect.agent_cert.issuer", agent.issuer),
                    _ev(obs, "cert_request.authorities", _authorities(obs)),
                ],
                remediation="Use an agent certificate issued by one of the requested CAs, or "
                "add its CA to the server's client-CA list.",
            )
            return


def _demands_cert_over_http(obs: Observation) -> str | None:
    """The nginx-style page saying no client certificate arrived, if this is one."""
    http = obs.http
    if http is None or http.status not in (400, 496):
        return None
    if http.status == 496 or NGINX_CERT_MARKERS[0] in http.body_excerpt:
        return f"HTTP {http.status} {NGINX_CERT_MARKERS[0]!r}"
    return None


@rule("MTLS024", "Server behind the path wants a certificate the path never asked for",
      Severity.BREAKS)
def cert_demanded_behind_path(case: Case) -> Iterator[Finding]:
    for obs in case.observations:
        page = _demands_cert_over_http(obs)
        if page is None or obs.cert_request.seen is not Seen.NO:
            continue
        if _kind(obs) not in (CertKind.AGENT, CertKind.UNTRUSTED):
            continue  # only meaningful when we had a certificate ready to send
        yield finding(
            "MTLS024",
            f"The server behind {_target(case)} answered {page}, yet no CertificateRequest "
            "reached us although we had a certificate ready: a device on the path terminates "
            "TLS and opens its own session to the server.",
            evidence=[
                _ev(obs, "http.status", obs.http.status if obs.http else "-"),
                _ev(obs, "cert_request.seen", "no"),
                _ev(obs, "attempt.client_cert", _kind(obs).value),
            ],
            remediation=LB_FIX.format(t=_target(case))
            + " If it is an inspecting proxy, exempt the target from TLS inspection instead.",
        )
        return


@rule("MTLS050", "Client certificate requested after the handshake", Severity.WARNING)
def late_cert_request(case: Case) -> Iterator[Finding]:
    late = [
        o for o in case.observations
        if o.cert_request.seen is Seen.YES
        and o.cert_request.where in ("renegotiation", "post_handshake")
    ]
    if late:
        yield finding(
            "MTLS050",
            f"The client certificate is requested only via {late[0].cert_request.where} "
            "(TLS 1.2 renegotiation / TLS 1.3 post-handshake auth): fragile, and impossible "
            "over HTTP/2 (RFC 8740).",
            evidence=[_ev(o, "cert_request.where", o.cert_request.where) for o in late],
            remediation="Configure the server to request the certificate in the initial "
            "handshake, or keep the agent on HTTP/1.1.",
        )
