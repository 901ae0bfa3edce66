"""The path itself: where on it something answers (hop trace, TTLs, injected RSTs; MTLS051-055)
and whether it carries the connection at all (proxy answers, resets, no TLS; MTLS060-066).
"""

from __future__ import annotations

from collections.abc import Iterator

from mtlsprobe.model import (
    Case,
    Direction,
    Evidence,
    Finding,
    Observation,
    Outcome,
    Severity,
    Stage,
)
from mtlsprobe.rules.facts import (
    _PRE_TLS,
    _all,
    _baseline,
    _connect_status,
    _dedupe,
    _ev,
    _labels,
    _not_tls,
    _proxy_auth,
    _proxy_refused,
    _signature_evidence,
    _silenced,
    _target,
    _unreachable,
)
from mtlsprobe.rules.registry import finding, rule
from mtlsprobe.rules.signatures import Match, match_http

_INITIAL_TTLS = (32, 64, 128, 255)


def _hops_back(ttl: int) -> tuple[int, int]:
    """(assumed initial TTL, routers between the sender and us) for a received TTL."""
    initial = next(i for i in _INITIAL_TTLS if i >= ttl)
    return initial, initial - ttl


def _sender(ttl: int) -> str:
    initial, back = _hops_back(ttl)
    return f"TTL {ttl} (initial {initial}, {back} hop{'s' if back != 1 else ''} back)"


def _middlebox(case: Case, answers: tuple[str, ...]) -> Iterator[tuple[str, str, str]]:
    """(rule-ready 'hop N (addr)', what it did, evidence list) when the trace located one."""
    t = case.hops
    if t is None or t.middlebox_hop is None or (t.middlebox_answer or "tls") not in answers:
        return
    where = f"hop {t.middlebox_hop}" + (f" ({t.middlebox_addr})" if t.middlebox_addr else "")
    what = {"tcp": "terminates TCP and answers the ClientHello",
            "rst": "resets the connection after the ClientHello",
            "fin": "closes the connection after the ClientHello"}.get(
        t.middlebox_answer or "", "answers the ClientHello")
    yield where, what, f"{t.ip_distance or t.tcp_distance}"


def _hop_evidence(case: Case) -> list[Evidence]:
    t = case.hops
    assert t is not None
    return [
        Evidence(observation="", field="hops.middlebox_hop", value=str(t.middlebox_hop)),
        Evidence(observation="", field="hops.middlebox_addr", value=t.middlebox_addr or "?"),
        Evidence(observation="", field="hops.middlebox_reason", value=t.middlebox_reason or "-"),
        Evidence(observation="", field="hops.distances",
                 value=f"ip {t.ip_distance}, tcp {t.tcp_distance}, tls {t.tls_distance}"),
    ]


@rule("MTLS051", "Early hop answers the ClientHello", Severity.WARNING)
def early_hop_answers(case: Case) -> Iterator[Finding]:
    """The hop trace (`probe --trace` or `mtlsprobe trace`, TTL-limited SYNs and ClientHellos)
    found a hop before the server that answers the SYN, the ClientHello or data itself.

    A warning that locates a middlebox (transparent proxy, inspecting firewall); whether it
    breaks client-certificate authentication is what the chain findings say.

    Give the network team the hop number and address: exempt the server from TLS interception
    there, or route around it.
    """
    for where, what, server in _middlebox(case, ("tcp", "tls", "data")):
        yield finding(
            "MTLS051",
            f"Middlebox at {where}: it {what} instead of {_target(case)}, which is {server} "
            "hops away.",
            evidence=_hop_evidence(case),
            remediation=f"Give the network team {where}: exempt {_target(case)} from TLS "
            "interception there, or route around it. Whether it breaks client certificates "
            "is what the chain findings say.",
        )


def _server_ttls(obs: Observation) -> tuple[int | None, tuple[int, ...]]:
    tcp = obs.tcp
    if tcp is None:
        return None, ()
    return tcp.synack_ttl, tcp.server_ttls


@rule("MTLS052", "TTL discontinuity: TLS answered by a different machine than TCP",
      Severity.WARNING)
def ttl_discontinuity(case: Case) -> Iterator[Finding]:
    """The SYN-ACK and the later TLS segments from the server arrive with TTLs of different
    senders (another initial TTL or hop count), on the probe's own connection or in the hop
    trace.

    A warning: one machine answered TCP and another answers TLS, as a SYN proxy, load balancer
    or inspecting firewall in front of the server does. Whether it breaks client certificates is
    what the chain findings say.

    Look for such a device in front of the server; the TTLs say how many hops back each sender
    is.
    """
    odd: list[Evidence] = []
    for o in case.observations:
        synack, later = _server_ttls(o)
        if synack is None or not later:
            continue
        differ = [ttl for ttl in later if _hops_back(ttl) != _hops_back(synack)]
        if differ:
            odd.append(_ev(o, "tcp.synack_ttl", _sender(synack)))
            odd.extend(_ev(o, "tcp.server_ttls", _sender(ttl)) for ttl in differ)
    t = case.hops
    if t is not None:
        synack_probe = next((p for p in t.probes if p.phase == "tcp" and p.answer == "synack"
                             and p.ttl == t.tcp_distance and p.reply_ttl), None)
        hello = next((p for p in t.probes if p.phase == "tls" and p.ttl == t.tls_distance
                      and p.answer in ("tls", "rst", "fin") and p.reply_ttl), None)
        # Both were chosen with a reply_ttl; testing it again lets the type checker see it.
        if (synack_probe and hello and synack_probe.reply_ttl and hello.reply_ttl
                and _hops_back(synack_probe.reply_ttl) != _hops_back(hello.reply_ttl)):
            odd.append(Evidence(observation="", field="hops.synack_reply_ttl",
                                value=_sender(synack_probe.reply_ttl)))
            odd.append(Evidence(observation="", field=f"hops.{hello.answer}_reply_ttl",
                                value=_sender(hello.reply_ttl)))
    if odd:
        yield finding(
            "MTLS052",
            f"The SYN-ACK from {_target(case)} and the later TLS segments arrive with TTLs of "
            "different senders: one machine answered TCP and another one answers TLS.",
            evidence=odd,
            remediation="Look for a SYN proxy, load balancer or inspecting firewall in front "
            "of the server (the TTLs say how many hops back each sender is).",
        )


@rule("MTLS053", "Injected RST", Severity.WARNING)
def injected_rst(case: Case) -> Iterator[Finding]:
    """A TCP reset that seems to come from the server carries a TTL unlike every other segment
    the server sent.

    A warning: something on the path (a firewall or IPS) forged the reset, which cuts the
    agent's connection whenever it fires.

    Find the device (`probe --trace` names its hop) and exempt the Endpoint Central server
    there.
    """
    for o in case.observations:
        tcp = o.tcp
        if tcp is None or tuple(tcp.rst_from) != (Direction.S2C,) or not tcp.rst_ttls:
            continue  # only when every RST came from the server's side
        known = [x for x in (tcp.synack_ttl, *tcp.server_ttls) if x is not None]
        if not known:
            continue
        senders = {_hops_back(x) for x in known}
        foreign = [x for x in tcp.rst_ttls if _hops_back(x) not in senders]
        if not foreign:
            continue
        yield finding(
            "MTLS053",
            f"A reset on {o.label} carries {_sender(foreign[0])}, unlike every other segment "
            f"from {_target(case)} ({', '.join(_sender(x) for x in sorted(set(known)))}): "
            "something on the path injected it.",
            evidence=[_ev(o, "tcp.rst_ttls", _sender(x)) for x in foreign]
            + [_ev(o, "tcp.synack_ttl", tcp.synack_ttl)],
            remediation="Find the device that resets TLS to this server (probe --trace names "
            "its hop) and exempt the server there.",
        )
        return


@rule("MTLS054", "TCP/IP headers rewritten on the path", Severity.WARNING)
def headers_rewritten(case: Case) -> Iterator[Finding]:
    """The hop trace's ICMP quotes show the probe's packets arriving changed: destination
    address, TTL, TCP window, TCP options (MSS clamped, an option removed or added) or payload.
    Source address and port rewriting by NAT is ignored.

    A warning: a device before that hop rewrites packets. MSS clamping is usually harmless;
    other rewriting marks a middlebox that may also touch TLS.

    Ask the device's owner what it does to traffic to the Endpoint Central server.
    """
    t = case.hops
    if t is None:
        return
    first: dict[str, int] = {}
    evidence: list[Evidence] = []
    for p in sorted(t.probes, key=lambda p: (p.ttl, p.phase)):
        for change in p.rewritten:
            if change.startswith(("src ", "ports ")):
                continue  # NAT: everywhere, and harmless to TLS
            what = change.split(" ", 1)[0] if "->" in change else change
            if what in first:
                continue
            first[what] = p.ttl
            evidence.append(Evidence(observation="", field=f"hops[{p.phase} ttl {p.ttl}]",
                                     value=f"{change} (quoted by {p.addr or '?'})"))
    if evidence:
        hop = min(first.values())
        yield finding(
            "MTLS054",
            f"The probe's packets arrive changed at hop {hop} ({', '.join(sorted(first))}): "
            f"a device before hop {hop} rewrites them.",
            evidence=evidence,
            remediation="MSS clamping is often benign; other rewriting (options stripped, "
            "payload or addresses changed) marks a middlebox: ask its owner what it does.",
        )


@rule("MTLS055", "Early hop resets the ClientHello", Severity.BLOCKS)
def early_hop_resets(case: Case) -> Iterator[Finding]:
    """The hop trace found a hop before the server that resets or closes the connection after
    the ClientHello.

    Blocks: a firewall or IPS at that hop refuses TLS to this server, often by server name
    (SNI), so the agent cannot connect at all.

    Give the network team the hop number and address and have TLS to the Endpoint Central server
    name and ports allowed there.
    """
    for where, what, server in _middlebox(case, ("rst", "fin")):
        yield finding(
            "MTLS055",
            f"Middlebox at {where}: it {what} to {_target(case)}, which is {server} hops "
            "away.",
            evidence=_hop_evidence(case),
            remediation=f"Give the network team {where}: allow TLS to {_target(case)} "
            "through that firewall/IPS.",
        )


@rule("MTLS060", "Proxy requires authentication", Severity.BLOCKS)
def proxy_auth_required(case: Case) -> Iterator[Finding]:
    """The proxy answered the probe's CONNECT request with 407 Proxy Authentication Required;
    the finding lists the schemes it offers (Basic, NTLM, Negotiate).

    Blocks: an agent that cannot authenticate to the proxy does not get through at all. Even
    with credentials, client certificates work only if the proxy tunnels the connection without
    inspecting it.

    Give the agent the proxy credentials (Endpoint Central sets the agents' proxy per remote
    office) or exempt the server from proxy authentication.
    """
    hits = _proxy_auth(case)
    if hits:
        schemes = hits[0].route.proxy_auth_schemes or case.route.proxy_auth_schemes
        yield finding(
            "MTLS060",
            f"The proxy {hits[0].route.proxy or ''} answered CONNECT {_target(case)} with 407 "
            f"(schemes: {', '.join(schemes) or 'none given'}).",
            evidence=[_ev(hits[0], "route.connect_status", 407),
                      _ev(hits[0], "route.proxy_auth_schemes", ", ".join(schemes) or "-")],
            remediation=f"Give the proxy credentials or exempt the agent ({_target(case)}) "
            "from proxy authentication.",
        )


@rule("MTLS061", "Proxy refused CONNECT", Severity.BLOCKS)
def proxy_refused(case: Case) -> Iterator[Finding]:
    """The proxy refused the CONNECT request with an error status (403 Forbidden, for example);
    407 is MTLS060 and 502/504 are MTLS062.

    Blocks: the proxy's policy forbids this destination or port. Many proxies allow CONNECT to
    port 443 only by default (squid's SSL_ports), while the agent uses 8383, 8027, 8443 and
    8031.

    Allow CONNECT to the Endpoint Central server name and ports on the proxy.
    """
    hits = _proxy_refused(case)
    if hits:
        o = hits[0]
        status = _connect_status(case, o)
        yield finding(
            "MTLS061",
            f"The proxy refused CONNECT {_target(case)} with {status} "
            f"{o.route.connect_reason or ''}".rstrip() + ".",
            evidence=[_ev(h, "route.connect_status", _connect_status(case, h)) for h in hits],
            remediation=f"Allow CONNECT to {_target(case)} on the proxy.",
        )


def _failed_step(case: Case) -> str:
    """Which step failed, in words, and whose fault it is (the proxy's, when it was)."""
    obs = case.observations[0]
    error = f" ({obs.local_error})" if obs.local_error else ""
    via = case.route.proxy
    status = _connect_status(case, obs)
    if status in (502, 504):
        return (f"the proxy {via} answered CONNECT with {status}: the proxy could not reach "
                "the server")
    if obs.stage is Stage.DNS:
        where = f"on the way to the proxy {via}" if via else "for the server's name"
        return f"name resolution failed {where}{error}"
    text = (obs.local_error or "").upper()
    what = ("timed out" if "TIMEDOUT" in text or "TIMEOUT" in text or "deadline" in text
            else "was refused" if "REFUSED" in text else "failed")
    if via:
        return (f"the TCP connection to the proxy {via} {what}{error} (the proxy is down or "
                "its address is wrong)")
    return f"the TCP connection {what}{error}"


@rule("MTLS062", "Target unreachable", Severity.BLOCKS)
def unreachable(case: Case) -> Iterator[Finding]:
    """No attempt reached the target: the name did not resolve, the TCP connection failed, or
    the proxy answered CONNECT with 502 or 504 (it could not reach the server itself).

    Blocks: the agent cannot connect at all, so there is nothing to authenticate.

    Check DNS, routing and firewall rules from this host to the server and port, and that the
    Endpoint Central server listens on that port.
    """
    if _all(case, _unreachable):
        yield finding(
            "MTLS062",
            f"{_target(case)} could not be reached on any attempt: {_failed_step(case)}.",
            evidence=[
                _ev(o, "stage", o.stage.value) if o.stage in (Stage.DNS, Stage.TCP)
                else _ev(o, "route.connect_status", o.route.connect_status)
                for o in case.observations
            ] + [_ev(o, "local_error", o.local_error) for o in case.observations[:1]
                 if o.local_error],
            remediation=f"Check DNS, routing and firewall rules for {_target(case)} from "
            "this host.",
        )


@rule("MTLS063", "Reset or silence after ClientHello", Severity.BLOCKS)
def hello_blocked(case: Case) -> Iterator[Finding]:
    """Every TLS attempt was reset or went unanswered right after the ClientHello, with no
    ServerHello.

    Blocks: a firewall, IPS or web filter stops TLS to this server, often by the server name
    (SNI) or its URL category, so the agent cannot connect at all.

    Allow TLS to the server name and port on that firewall; `probe --trace` locates the hop that
    resets.
    """
    if _all(case, _silenced):
        yield finding(
            "MTLS063",
            f"Every TLS attempt to {_target(case)} was reset or went unanswered right after "
            "the ClientHello: a firewall blocks it (often by SNI).",
            evidence=[_ev(o, "outcome", o.outcome.value) for o in case.observations]
            + [_ev(o, "sni", o.sni) for o in case.observations[:1] if o.sni],
            remediation=f"Allow TLS to {_target(case)} (SNI {case.observations[0].sni or '-'})"
            " on the firewall.",
        )


@rule("MTLS064", "Some attempts reset after ClientHello", Severity.WARNING)
def hello_partly_blocked(case: Case) -> Iterator[Finding]:
    """Some attempts were reset right after the ClientHello while others got an answer; the
    finding lists the TLS version each cut attempt offered.

    A warning: a filter treats some TLS versions or offers differently, so an agent that offers
    the blocked kind fails.

    Allow every TLS version the agent may offer to this server.
    """
    tls = [o for o in case.observations if o.stage not in _PRE_TLS]
    cut = [o for o in tls if _silenced(o)]
    if cut and len(cut) < len(tls):
        yield finding(
            "MTLS064",
            f"Some attempts were reset right after the ClientHello ({_labels(cut)}) while "
            "others got an answer: a filter treats some TLS versions or offers differently.",
            evidence=[
                _ev(o, "outcome",
                    f"{o.outcome.value} (max {o.attempt.max_version if o.attempt else '-'})")
                for o in cut
            ],
            remediation="Allow every TLS version the agent may offer to " + _target(case) + ".",
        )


@rule("MTLS065", "HTTP proxy visible in the response", Severity.WARNING)
def proxy_headers(case: Case) -> Iterator[Finding]:
    """The HTTP answer inside TLS carries proxy headers (Via, X-Cache, X-Squid...) that the real
    server does not send in the baseline.

    A warning: something HTTP-aware handled the request inside TLS, which means it decrypted the
    session, unless the server itself adds these headers.

    Confirm whether the server adds these headers; if not, exempt the server name and port from
    inspection.
    """
    base = _baseline(case)
    own = {v for k, values in base.behaviour if k.startswith("http.via[") for v in values} if (
        base is not None) else set()
    hits: list[tuple[Match, Observation]] = []
    for obs in case.observations:
        hits.extend((m, obs) for m in match_http(obs.http, kinds=("proxy",)) if m.value not in own)
    hits = _dedupe(hits)
    if hits:
        first = hits[0][0]
        yield finding(
            "MTLS065",
            f"The HTTP response shows a proxy ({first.field}: {first.value}): something "
            "HTTP-aware handled the request inside TLS.",
            evidence=_signature_evidence(hits),
            remediation="Confirm the server itself adds these headers; otherwise exempt "
            + _target(case) + " from inspection.",
        )


@rule("MTLS066", "Far end does not speak TLS", Severity.UNKNOWN)
def not_tls(case: Case) -> Iterator[Finding]:
    """Every attempt got an answer that is not TLS: a port that speaks something else (plain
    HTTP, SMTP), an HTTP block page, or a captive portal.

    Hides the answer: there is no TLS here to judge, so whether client certificates would get
    through is unknown; it is no sign of a TLS middlebox either.

    Allow TLS to the server and check the port: 8383 is Endpoint Central's HTTPS port, 8020 its
    plain HTTP one.
    """
    if _not_tls(case):
        yield finding(
            "MTLS066",
            f"{_target(case)} answered with something that is not TLS (a plain-text service on "
            "this port, a block page or a captive portal): there is no TLS to judge.",
            evidence=[_ev(o, "outcome", o.outcome.value) for o in case.observations
                      if o.outcome is Outcome.NOT_TLS],
            remediation=f"Allow TLS to {_target(case)} and check the port.",
        )
