"""Does the far end behave like the real server? Every fact seen against the baseline's
(MTLS027-029), a baseline that has nothing for this port or name (MTLS093), and a pin with
no baseline to compare behaviour with (MTLS094).

A certificate and key can be copied onto a load balancer (SSL offload); its TLS stack still
answers differently: another ALPN choice, another reaction to an untrusted certificate,
other session tickets, another HTTP head. Facts come from ``rules.behaviour_facts``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from mtlsprobe.model import Case, Finding, Observation, Severity
from mtlsprobe.rules.behaviour_facts import HTTP, TCP, TLS, behaviour_facts, layer_of
from mtlsprobe.rules.facts import (
    LB_FIX,
    _baseline,
    _confirmed,
    _ev,
    _server_name,
    _target,
)
from mtlsprobe.rules.products import name_product
from mtlsprobe.rules.registry import finding, rule


@dataclass(frozen=True)
class Difference:
    obs: Observation
    key: str
    value: str
    expected: tuple[str, ...]


def differences(case: Case) -> list[Difference]:
    """Facts seen on this path that the real server never showed in the baseline."""
    base = _baseline(case)
    if base is None or not base.behaviour:
        return []
    known = dict(base.behaviour)
    seen: set[tuple[str, str]] = set()
    out: list[Difference] = []
    for obs in case.observations:
        for key, value in behaviour_facts(obs).items():
            if key in known and value not in known[key] and (key, value) not in seen:
                seen.add((key, value))
                out.append(Difference(obs, key, value, known[key]))
    return out


def _evidence(diffs: list[Difference]) -> list:
    return [_ev(d.obs, d.key, f"{d.value} (the real server: {' | '.join(d.expected)})")
            for d in diffs]


def _genuine(case: Case) -> bool:
    """Every chain seen is the real server's (by --pin or the baseline)."""
    chains = [o.server_chain for o in case.observations if o.server_chain]
    return bool(chains) and all(_confirmed(case, c) for c in chains)


def _facts(diffs: list[Difference]) -> str:
    return ", ".join(dict.fromkeys(d.key.split("[")[0] for d in diffs))


@rule("MTLS027", "The real certificate on another TLS stack", Severity.BREAKS)
def behaves_unlike_baseline(case: Case) -> Iterator[Finding]:
    """The far end presents the real server's certificate (--pin or the baseline match), but its
    TLS stack answers unlike the real server in the baseline: another ServerHello for the same
    ClientHello, another ALPN choice, other session tickets, or another reaction to no
    certificate, an untrusted one or the agent's.

    Breaks client-certificate authentication: a load balancer holding a copy of the server's
    certificate and key (SSL offload) terminates TLS. The agent's certificate ends there,
    however genuine the server certificate looks.

    Configure TCP (L4) pass-through on the load balancer for the Endpoint Central ports. Copying
    the server's key onto the load balancer does not carry the agent's certificate to the
    server.
    """
    diffs = differences(case)
    tls = [d for d in diffs if layer_of(d.key) == TLS]
    if not tls or not _genuine(case):
        return  # a foreign chain is the identity rules' finding
    named = name_product(case)
    yield finding(
        "MTLS027",
        f"{_target(case)} presents the real server's certificate, but its TLS stack answers "
        f"unlike the real server ({_facts(tls)}): a TLS terminator holding the server's own "
        "certificate and key (SSL offload) answers instead of the server.",
        evidence=_evidence([d for d in diffs if layer_of(d.key) != TCP]),
        remediation=LB_FIX.format(t=_target(case)) + " Copying the server's key onto the "
        "load balancer does not carry the agent's certificate to the server.",
        product=named[0] if named else None,
    )


@rule("MTLS029", "HTTP answer unlike the real server's", Severity.UNKNOWN)
def http_unlike_baseline(case: Case) -> Iterator[Finding]:
    """The HTTP answer on this path differs from the real server's in the baseline: status,
    header names, their order or case, the Server or Via header. Reported when MTLS027 does not
    already say more.

    Hides the answer: an HTTP-aware box (reverse proxy, web application firewall, inspecting
    proxy) may answer instead of the server, so end to end cannot be confirmed and the verdict
    is unknown. A software update on the server changes these too.

    Take the baseline the same way (the same --http-path) next to the server and compare again;
    if the server's software changed, take a new baseline.
    """
    diffs = differences(case)
    http = [d for d in diffs if layer_of(d.key) == HTTP]
    if not http or (_genuine(case) and any(layer_of(d.key) == TLS for d in diffs)):
        return  # MTLS027 already says more
    yield finding(
        "MTLS029",
        f"The HTTP answer from {_target(case)} differs from the real server's ({_facts(http)}): "
        "an HTTP-aware box may answer instead of the server, so end to end cannot be "
        "confirmed.",
        evidence=_evidence(http),
        remediation="Compare with a baseline taken the same way (same --http-path) next to the "
        "server; if the server's software changed, take a new baseline.",
    )


@rule("MTLS028", "TCP answered by another stack than in the baseline", Severity.INFO)
def tcp_unlike_baseline(case: Case) -> Iterator[Finding]:
    """The TCP handshake is answered by another TCP stack than the real server's in the
    baseline: a different initial TTL class or other TCP options in the SYN-ACK.

    Only context: an L4 load balancer or a SYN proxy answers TCP itself and still passes TLS
    through untouched, which keeps client-certificate authentication working; a different host
    answering looks the same.

    Nothing to do unless other findings point at the same box.
    """
    diffs = [d for d in differences(case) if layer_of(d.key) == TCP]
    if diffs:
        yield finding(
            "MTLS028",
            f"The TCP connection to {_target(case)} is answered by another TCP stack than the "
            "real server's (an L4 proxy or load balancer, or a different host): not a "
            "problem for client certificates by itself.",
            evidence=_evidence(diffs),
        )


@rule("MTLS093", "No baseline for this port and name", Severity.UNKNOWN)
def baseline_missing(case: Case) -> Iterator[Finding]:
    """A baseline was given, but it holds nothing for this server name and port (baselines are
    matched by name and port, never by address), while something here answered TLS.

    Hides the answer: what answers cannot be compared with the real server, so the verdict stays
    unknown rather than a pass.

    Take the baseline on the server's LAN against every name and port the agents use (8383,
    8027, 8443, 8031, and 8384 for a distribution server): `mtlsprobe probe NAME:PORT ...
    --save-baseline FILE`.
    """
    if not case.expect.baseline or _baseline(case) is not None:
        return
    if not any(o.version for o in case.observations):
        return  # nothing answered TLS: other rules say why
    name = _server_name(case)
    have = ", ".join(
        f"{b.server_name or '(no name)'}:{b.port}" for b in case.expect.baseline
    )
    yield finding(
        "MTLS093",
        f"The baseline has nothing for {name or 'this target'} on port {case.target.port}, so "
        "what answers here cannot be compared with the real server.",
        evidence=[_ev(None, "baseline", have), _ev(None, "server_name", name or "-")],
        remediation="Take the baseline on the server's LAN against every port and server "
        "name the agents use (mtlsprobe probe NAME:PORT ... --save-baseline FILE).",
    )


@rule("MTLS094", "The real certificate, but no behaviour baseline", Severity.WARNING)
def pin_without_baseline(case: Case) -> Iterator[Finding]:
    """The far end presents the real server's certificate by --pin, but no --baseline was given,
    so its behaviour could not be compared with the real server's.

    Does not move the verdict, but a pass is only as strong as the pin: a load balancer holding
    a copy of the server's certificate and key (SSL offload) presents the same certificate and
    still terminates TLS, and only its behaviour (ALPN, session tickets, how it answers an
    untrusted certificate, the HTTP head) tells it apart.

    Take a baseline on the server's LAN (`mtlsprobe probe NAME:PORT --save-baseline FILE`) and
    probe with `--baseline FILE`, or probe a reflector (`mtlsprobe serve`) behind the same path.
    """
    if case.expect.baseline or not case.expect.pins or not _genuine(case):
        return
    yield finding(
        "MTLS094",
        f"{_target(case)} presents the real server's certificate (pinned), but without a "
        "baseline its behaviour was not compared with the real server's: a load balancer "
        "holding a copy of the server's certificate and key (SSL offload) would look the same.",
        evidence=[_ev(None, "expectations", "--pin given, no --baseline")],
        remediation="Take a baseline on the server's LAN (mtlsprobe probe NAME:PORT "
        "--save-baseline FILE) and probe again with --baseline FILE.",
    )
