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
    """At least one handshake carried a CertificateRequest: the far end asks the client for a
    certificate. The finding says where it asked (in the initial handshake, by TLS 1.2
    renegotiation or by TLS 1.3 post-handshake authentication) and lists the CA names it
    accepts.

    Only context; it does not move the verdict. A request is good news only when the far end is
    the real Endpoint Central server: a load balancer that checks client certificates itself
    also asks, which the chain findings and MTLS021 reveal.

    Nothing to do. Check that the CA names include the CA that issued the agent certificates.
    """
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
    """No handshake carried a CertificateRequest (where the handshake could be seen): whatever
    answered did not ask for a client certificate.

    Only context. This is expected while client-certificate authentication is not yet enabled on
    the Endpoint Central server, and it says nothing about whether the path will carry the
    agent's certificate later: an SSL-inspecting proxy never asks either.

    To test the path before enforcement, run `mtlsprobe serve` next to the server and `mtlsprobe
    probe --reflector`. Once enforcement is on, every agent port (8383, and 8384 on a
    distribution server) should show MTLS001 instead.
    """
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
    """The baseline, taken next to the server, shows that the real server asks for a client
    certificate on this port and server name, but on this path at least one handshake arrived
    without a CertificateRequest.

    Breaks client-certificate authentication: something other than the server completed the
    handshake. An SSL-inspecting proxy or firewall has no use for the agent's certificate and
    does not ask for it; a load balancer that terminates TLS without its own client check does
    not ask either. The agent's certificate never reaches the server.

    Exempt the server name and port from TLS inspection (decryption exclusion, Do-Not-Inspect or
    splice list), or, for a load balancer, pass TCP through (L4) instead of terminating TLS.
    """
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
    """The far end asks for a client certificate, but the CA names in its CertificateRequest
    differ from those the real server lists in the baseline.

    Breaks client-certificate authentication: another TLS endpoint builds its own request,
    typically a load balancer or reverse proxy checking client certificates itself (AWS ALB or
    Azure Application Gateway mutual TLS, an F5 client-SSL profile, nginx or HAProxy with client
    verification). The agent's certificate ends at that box. Endpoint Central checks the
    certificate in the TLS handshake itself, so a copy forwarded in an HTTP header does not
    help.

    Configure the load balancer for TCP (L4) pass-through of this port (an NLB TCP listener, F5
    without a client-SSL profile, HAProxy mode tcp, nginx stream) so the server runs the
    handshake itself.
    """
    base = _baseline(case)
    if base is None or base.cert_request is not Seen.YES:
        return
    want = set(base.cert_request_authorities)
    odd = [
        o for o in case.observations
        if o.cert_request.seen is Seen.YES and o.cert_request.authorities_seen
        and set(o.cert_request.authorities) != want
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
    """The agent's credentials were given, and the far end's CertificateRequest names CAs, but
    neither the issuer of the agent certificate nor any CA in the supplied chain is among them.

    A warning that the agent may send no certificate: many TLS clients pick the certificate to
    send by these names and send an empty Certificate when none fits, and a server that requires
    one then refuses the handshake. It can also mean the wrong agent certificate was given, or
    that a middlebox builds its own request (see MTLS021).

    Use an agent certificate issued by one of the requested CAs, or add the agent's CA to the
    server's list of client CAs.
    """
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
    """We had a certificate ready to send (the throwaway one or the agent's), no
    CertificateRequest reached us, and yet the HTTP answer is nginx's "400 No required SSL
    certificate was sent" (or status 496). The server behind the path wants a certificate that
    the device we actually talked to never asked for.

    Breaks client-certificate authentication: a device on the path terminates TLS and opens its
    own session to the server, so the agent's certificate cannot get there. nginx, the web
    server in front of Endpoint Central, answers this way when it wants a certificate and none
    came.

    For a load balancer or reverse proxy, pass TCP through (L4) instead of terminating TLS; for
    an inspecting proxy or firewall, exempt the server name and port from TLS inspection.
    """
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
    """A CertificateRequest arrived after the initial handshake: by TLS 1.2 renegotiation or by
    TLS 1.3 post-handshake authentication (F5 APM's on-demand certificate authentication asks by
    renegotiation, for example).

    A warning: it works today but is fragile. Many TLS stacks and proxies do not support
    post-handshake authentication, and HTTP/2 forbids both renegotiation and post-handshake
    authentication (RFC 8740), so the agent's certificate may never be sent.

    Configure the server (or the device that asks) to request the client certificate in the
    initial handshake, or keep the agent on HTTP/1.1.
    """
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
