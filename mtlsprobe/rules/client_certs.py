"""What the far end does with client certificates: our untrusted and agent attempts
(MTLS030-035) and a captured client's certificate (MTLS070-071).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from mtlsprobe.model import (
    Case,
    CertKind,
    Direction,
    Finding,
    Observation,
    Outcome,
    Seen,
    Severity,
    Stage,
    address_order,
)
from mtlsprobe.rules.facts import (
    LB_FIX,
    _accepted,
    _authorities,
    _baseline,
    _chains,
    _ev,
    _kind,
    _no_server_hello,
    _rejection,
    _sent_cert,
    _sent_empty,
    _server_alerts,
    _target,
)
from mtlsprobe.rules.registry import finding, rule


def _attempts(case: Case, kind: CertKind) -> list[Observation]:
    return [o for o in case.observations if _kind(o) is kind]


@rule("MTLS030", "Untrusted certificate accepted where the server rejects it", Severity.BREAKS)
def untrusted_accepted_vs_baseline(case: Case) -> Iterator[Finding]:
    """The baseline shows that the real server rejects a certificate from an unknown CA, but on
    this path the probe's throwaway certificate was accepted, or the handshake completed without
    anyone asking for it.

    Breaks client-certificate authentication: something other than the server completed the
    handshake, most often a load balancer or proxy that terminates TLS and does not check client
    certificates.

    Configure TCP (L4) pass-through on the load balancer for this port, or exempt it from
    inspection, so the server runs the handshake itself.
    """
    base = _baseline(case)
    if base is None or base.rejects_untrusted_cert is not Seen.YES:
        return
    for obs in _attempts(case, CertKind.UNTRUSTED):
        if not _accepted(obs):
            continue
        how = ("accepted a throwaway certificate from an unknown CA" if _sent_cert(obs)
               else "completed the handshake without asking for the certificate")
        yield finding(
            "MTLS030",
            f"The far end {how}, but the real server rejects untrusted certificates "
            "(baseline): something other than the server completed the handshake.",
            evidence=[
                _ev(None, "baseline.rejects_untrusted_cert", "yes"),
                _ev(obs, "outcome", obs.outcome.value),
                _ev(obs, "http.status", obs.http.status if obs.http else "-"),
            ],
            remediation=LB_FIX.format(t=_target(case)),
        )
        return


@rule("MTLS031", "Untrusted certificate accepted (no enforcement)", Severity.INFO)
def untrusted_accepted(case: Case) -> Iterator[Finding]:
    """The probe sent a throwaway certificate from a CA nobody trusts, and the far end accepted
    it.

    Only context: the far end does not enforce client certificates (yet), which is normal before
    client-certificate authentication is enabled on the Endpoint Central server.

    Nothing to do before enforcement. Once enforcement is on, the real server should reject this
    certificate; if it is still accepted, compare with a baseline (MTLS030).
    """
    base = _baseline(case)
    if base is not None and base.rejects_untrusted_cert is Seen.YES:
        return
    for obs in _attempts(case, CertKind.UNTRUSTED):
        if _sent_cert(obs) and _accepted(obs):  # never asked for: nothing was accepted
            yield finding(
                "MTLS031",
                "The far end accepted a throwaway certificate from an unknown CA: it does not "
                "enforce client certificates (yet).",
                evidence=[_ev(obs, "outcome", obs.outcome.value),
                          _ev(obs, "client_chain_seen", obs.client_chain_seen.value)],
            )
            return


@rule("MTLS032", "Untrusted certificate rejected", Severity.INFO)
def untrusted_rejected(case: Case) -> Iterator[Finding]:
    """The far end rejected the probe's throwaway certificate from an unknown CA: with a TLS
    alert, nginx's HTTP 400/495/496 certificate error page, a refused connection, or a TLS 1.3
    close right after the handshake.

    Only context, and a good sign: whatever answers validates client certificates. Whether that
    is the real server is what the chain findings say.

    Nothing to do.
    """
    for obs in _attempts(case, CertKind.UNTRUSTED):
        how = _rejection(obs)
        if how is None:
            continue
        yield finding(
            "MTLS032",
            f"The far end rejected a throwaway certificate from an unknown CA ({how[1]}): it "
            "validates client certificates.",
            evidence=[_ev(obs, how[0], how[1])],
        )
        return


@rule("MTLS033", "Agent certificate rejected", Severity.REJECTS)
def agent_rejected(case: Case) -> Iterator[Finding]:
    """The probe offered the agent's certificate, and the far end refused it: a TLS alert
    (unknown_ca, bad_certificate, certificate_expired, certificate_required...), nginx's HTTP
    400 "The SSL certificate error" or 495/496, or a TLS 1.3 close right after the handshake.

    Rejects: the agent would be cut off even where the path carries TLS end to end. When chain
    findings show a middlebox, that verdict comes first, and the refusal may be the middlebox's.

    Run `mtlsprobe check-cert` on the agent's credentials. The agent certificate must be issued
    by a CA the server trusts, valid now, and allow clientAuth; re-issue it from the server's CA
    if not.
    """
    for obs in _attempts(case, CertKind.AGENT):
        how = _rejection(obs)
        if how is None or _sent_empty(obs) or _no_server_hello(obs):
            continue
        if obs.client_chain_seen is Seen.NO:
            continue  # never asked, never sent: not a judgement on it (see MTLS024)
        note = "" if _sent_cert(obs) else " (whether the certificate was sent is unknown)"
        yield finding(
            "MTLS033",
            f"The far end rejected the agent certificate ({how[1]}){note}.",
            evidence=[
                _ev(obs, how[0], how[1]),
                _ev(obs, "client_chain[0].subject",
                    obs.client_chain[0].subject if obs.client_chain else "-"),
                _ev(obs, "cert_request.authorities", _authorities(obs)),
            ],
            remediation="Check that the agent certificate is issued by a CA the server trusts, "
            "is valid now and has clientAuth; re-issue it from the server's CA if not.",
        )
        return


@rule("MTLS034", "Agent sent no certificate", Severity.REJECTS)
def agent_sent_empty(case: Case) -> Iterator[Finding]:
    """The probe had the agent's credentials, but its TLS client answered the CertificateRequest
    with an empty Certificate: the agent certificate did not fit the requested CA names or could
    not be used.

    Rejects: a server that requires a client certificate refuses the agent.

    Use an agent certificate, with its chain, issued by one of the requested CAs, with the
    matching private key and clientAuth usage; `mtlsprobe check-cert` checks the credentials.
    """
    for obs in _attempts(case, CertKind.AGENT):
        if not _sent_empty(obs):
            continue
        yield finding(
            "MTLS034",
            "The TLS client sent an empty Certificate with the agent credentials: the agent "
            f"certificate does not match the requested CAs ({_authorities(obs)}) or could not "
            "be used.",
            evidence=[
                _ev(obs, "client_chain_seen", "yes (empty)"),
                _ev(obs, "cert_request.authorities", _authorities(obs)),
            ],
            remediation="Use an agent certificate (with its chain) issued by one of the "
            "requested CAs, with a matching private key and clientAuth usage.",
        )
        return


@rule("MTLS035", "Agent certificate accepted", Severity.INFO)
def agent_accepted(case: Case) -> Iterator[Finding]:
    """The agent's certificate was sent and the far end accepted it.

    Only context, and a good sign. Together with a chain confirmed as the real server's (--pin,
    --baseline or a reflector), it shows the agent authenticates end to end.

    Nothing to do.
    """
    for obs in _attempts(case, CertKind.AGENT):
        if _sent_cert(obs) and _accepted(obs):
            yield finding(
                "MTLS035",
                "The far end accepted the agent certificate.",
                evidence=[_ev(obs, "client_chain[0].subject", obs.client_chain[0].subject),
                          _ev(obs, "outcome", obs.outcome.value)],
            )
            return


CERT_ALERTS = frozenset({
    "no_certificate", "bad_certificate", "unsupported_certificate", "certificate_revoked",
    "certificate_expired", "certificate_unknown", "unknown_ca", "access_denied",
    "certificate_required",
})


def _captured(case: Case) -> list[Observation]:
    """Observations of captured traffic: no attempt of ours, so the client's choices."""
    return [o for o in case.observations if o.attempt is None]


def _connections(observations: Iterable[Observation]) -> int:
    """Connections behind ``observations`` (analyze keeps one per behaviour, with repeats)."""
    return sum(o.repeats for o in observations)


def _client_closed(obs: Observation) -> bool:
    """The client ended the connection itself (its close_notify came first)."""
    after = [a for a in obs.alerts if a.after_handshake]
    return bool(after) and after[0].sender is Direction.C2S and (
        after[0].description == "close_notify"
    )


def _cert_refusal(obs: Observation) -> tuple[str, str] | None:
    """How the far end refused the client's certificate (or its absence), or None.

    Decisive: a certificate-related fatal alert from the server, or any server refusal of a
    connection whose client answered a CertificateRequest (empty or not).
    """
    if _no_server_hello(obs):
        return None
    for description in _server_alerts(obs):
        if description in CERT_ALERTS:
            return "alerts", description
    how = _rejection(obs)
    if how is None or (how[0] == "stage" and _client_closed(obs)):
        return None
    if obs.cert_request.seen is Seen.YES and obs.client_chain_seen is Seen.YES:
        return how
    return None


def _captured_accepted(obs: Observation) -> bool:
    return _sent_cert(obs) and (
        _accepted(obs) or (obs.outcome is Outcome.ESTABLISHED and _client_closed(obs))
    )


def _maybe_accepted(obs: Observation) -> bool:
    """Completed with its client certificate hidden (TLS 1.3 without keys): may carry one."""
    return (
        obs.client_chain_seen is Seen.UNKNOWN
        and (obs.outcome is Outcome.ESTABLISHED or obs.stage is Stage.ESTABLISHED)
        and _cert_refusal(obs) is None
    )


@rule("MTLS070", "Client certificate rejected in the capture", Severity.REJECTS)
def captured_cert_rejected(case: Case) -> Iterator[Finding]:
    """In a capture (mtlsprobe analyze), the far end refused the client's certificate, or its
    empty Certificate, on at least one connection, and no connection shows (or may hide) an
    accepted one. A refusal is a certificate-related alert, or any refusal after the client
    answered a CertificateRequest.

    Rejects: the captured client is cut off. When the identity findings show a middlebox, that
    comes first, and the refusal may be the middlebox's.

    Give the client a certificate issued by one of the requested CAs, valid now and with
    clientAuth, and make sure it sends it; `mtlsprobe check-cert` checks the credentials.
    """
    captured = _captured(case)
    refused = [(o, how) for o in captured if (how := _cert_refusal(o)) is not None]
    if not refused or any(_captured_accepted(o) or _maybe_accepted(o) for o in captured):
        return  # a certificate got (or may have got) through elsewhere: the server validates
    obs, how = refused[0]
    sent = (
        f"its certificate ({obs.client_chain[0].subject})" if _sent_cert(obs)
        else "an empty Certificate" if _sent_empty(obs)
        else "a certificate that could not be seen"
    )
    yield finding(
        "MTLS070",
        f"The far end refused the captured client, which sent {sent}, on "
        f"{_connections(o for o, _ in refused)} of {_connections(captured)} connection(s) "
        f"({how[1]}), and accepted a client "
        "certificate on none.",
        evidence=[_ev(o, h[0], h[1]) for o, h in refused]
        + [_ev(obs, "client_chain_seen",
               f"{obs.client_chain_seen.value} ({len(obs.client_chain)} certificate(s))"),
           _ev(obs, "cert_request.authorities", _authorities(obs))],
        remediation="Give the client a certificate issued by one of the requested CAs "
        f"({_authorities(obs)}), valid now, with clientAuth, and configure it to send it.",
    )


@rule("MTLS071", "Connections in the capture", Severity.INFO)
def captured_summary(case: Case) -> Iterator[Finding]:
    """A count of the captured TLS connections to this server: how many, how many different
    server chains, on how many the client sent a certificate (and had it accepted) or an empty
    one, and on how many its certificate could not be seen (TLS 1.3 without a key log, for
    example).

    Only context: it shows whether the captured agent presents a certificate at all and whether
    the far end is consistent.

    Nothing to do; for TLS 1.3 traffic give --keylog so the certificates become visible.
    """
    captured = _captured(case)
    if not captured:
        return
    chains = _chains(case)
    total = _connections(captured)
    sent = _connections(o for o in captured if _sent_cert(o))
    empty = _connections(o for o in captured if _sent_empty(o))
    hidden = _connections(o for o in captured if o.client_chain_seen is Seen.UNKNOWN)
    accepted = _connections(o for o in captured if _captured_accepted(o))
    last_seen = max(o.last_observed_at or o.observed_at for o in captured)
    chain_text = (
        "no server chain visible" if not chains
        else "the same server chain on every connection that showed one" if len(chains) == 1
        else f"{len(chains)} different server chains"
    )
    yield finding(
        "MTLS071",
        f"{total} TLS connection(s) to {_target(case)} in the capture: {chain_text}; "
        f"client certificate sent on {sent} (accepted on {accepted}), empty on {empty}, "
        f"not visible on {hidden}.",
        evidence=[_ev(None, "connections", total),
                  _ev(None, "distinct_server_chains", len(chains)),
                  _ev(None, "first_seen", min(o.observed_at for o in captured).isoformat()),
                  _ev(None, "last_seen", last_seen.isoformat())],
    )


def _chain_label(obs: Observation) -> str:
    """Which server chain a connection showed, for MTLS072's evidence."""
    if obs.server_chain_seen is Seen.YES and obs.server_chain:
        leaf = obs.server_chain[0]
        return f"leaf {leaf.sha256[:16]} issued by {leaf.issuer or '?'}"
    if obs.version is None:
        return "no TLS answer"
    return "server chain not visible"


@rule("MTLS072", "Client addresses behind each server chain", Severity.INFO)
def clients_per_chain(case: Case) -> Iterator[Finding]:
    """Which client addresses (agents) reached this server with which server chain, from a
    capture or Zeek logs: the lowest 16 addresses of each group, and how many connections.
    Said when more than one client address is in the capture.

    Only context: when some agents see a foreign chain and others the real one, it shows
    which agents sit behind the box (a site, a VLAN, a VPN pool).

    Nothing to do by itself; follow the other findings for the agents they name.
    """
    groups: dict[str, tuple[int, set[str], bool]] = {}
    for obs in _captured(case):
        label = _chain_label(obs)
        count, addrs, more = groups.get(label, (0, set(), False))
        addrs.update(obs.clients or (obs.client.ip or obs.client.host,))
        groups[label] = (count + obs.repeats, addrs, more or obs.more_clients)
    listed, more = _lowest(set().union(*(a for _, a, _ in groups.values())),
                           any(m for _, _, m in groups.values()))
    if len(listed) < 2:
        return
    yield finding(
        "MTLS072",
        f"{len(listed)}{' or more' if more else ''} client addresses reached "
        f"{_target(case)} in the capture, in {len(groups)} group(s) by the server chain "
        "they saw.",
        evidence=[_ev(None, f"clients[{label}]", _clients_text(count, addrs, more_))
                  for label, (count, addrs, more_) in groups.items()],
    )


def _lowest(addrs: set[str], more: bool) -> tuple[list[str], bool]:
    """The 16 lowest addresses, and whether there were more: the same whether the tallies
    folded or not (each behaviour keeps its own lowest 16)."""
    ordered = sorted(addrs, key=address_order)
    return ordered[:16], more or len(ordered) > 16


def _clients_text(count: int, addrs: set[str], more: bool) -> str:
    listed, more = _lowest(addrs, more)
    return f"{count} connection(s) from {', '.join(listed)}" + (" and more" if more else "")
