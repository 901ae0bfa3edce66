"""Consistency across handshakes: the same chain and the same behaviour on every repeat,
and the TLS parameters the baseline saw (MTLS040-042).
"""

from __future__ import annotations

from collections.abc import Iterator

from mtlsprobe.model import Case, CertKind, Evidence, Finding, Observation, Seen, Severity
from mtlsprobe.rules.facts import EXPECT_FIX, _baseline, _chains, _confirmed, _ev, _target
from mtlsprobe.rules.registry import finding, rule


@rule("MTLS040", "Server chain differs between handshakes", Severity.UNKNOWN,
      also=(Severity.WARNING,))
def chain_varies(case: Case) -> Iterator[Finding]:
    """Handshakes to the same target showed different server certificates, and not all of them
    are confirmed as the real server's.

    Without --ca, --pin or --baseline this hides the answer (unknown); with them it is a warning
    beside the chain findings. A pool of terminators, a load balancer over differently
    configured members, or selective interception each give this, and agents then fail on some
    connections only.

    Give --pin or --baseline so each certificate is judged, and exempt the target from
    inspection on every path and pool member.
    """
    chains = _chains(case)
    leaves = {c[0].sha256 for c, _ in chains}
    if len(leaves) < 2 or all(_confirmed(case, c) for c, _ in chains):
        return
    severity = Severity.WARNING if case.expect.any else Severity.UNKNOWN
    yield finding(
        "MTLS040",
        f"{_target(case)} presented {len(leaves)} different server certificates across "
        "handshakes: a pool of terminators or selective interception.",
        evidence=[_ev(o, "server_chain[0].sha256", c[0].sha256) for c, seen in chains
                  for o in seen],
        remediation=EXPECT_FIX if severity is Severity.UNKNOWN else
        "Check each chain's finding; exempt the target from inspection on every path.",
        severity=severity,
    )


@rule("MTLS041", "Behaviour changes between repeats", Severity.WARNING)
def behaviour_varies(case: Case) -> Iterator[Finding]:
    """Identical attempts (same certificate choice, same TLS version) were treated differently:
    a CertificateRequest on some handshakes and not on others, or a different outcome.

    A warning that agents will fail some of the time: selective or cached inspection (Palo
    Alto's local decryption exclusion cache holds a server for 12 hours after client
    authentication, FortiGate can bypass client-certificate sessions) or a pool of differently
    configured terminators.

    Make the exemption explicit for the server name and ports rather than relying on a learned
    exclusion cache; `--repeat` shows whether the behaviour flips.
    """
    evidence: list[Evidence] = []
    reqs = [o for o in case.observations if o.cert_request.seen in (Seen.YES, Seen.NO)]
    if len({o.cert_request.seen for o in reqs}) > 1:
        evidence += [_ev(o, "cert_request.seen", o.cert_request.seen.value) for o in reqs]
    groups: dict[tuple[CertKind, str | None], list[Observation]] = {}
    for o in case.observations:
        if o.attempt is not None:
            key = (o.attempt.client_cert, o.attempt.max_version)
            groups.setdefault(key, []).append(o)
    for same in groups.values():
        if len({o.outcome for o in same}) > 1:
            evidence += [_ev(o, "outcome", o.outcome.value) for o in same]
    if evidence:
        yield finding(
            "MTLS041",
            f"Identical attempts to {_target(case)} were treated differently (CertificateRequest "
            "or outcome changed): selective or cached inspection (e.g. a decryption exclusion "
            "cache) or a pool of differently configured terminators.",
            evidence=evidence,
            remediation="Make the exemption explicit for " + _target(case)
            + " rather than relying on a learned exclusion cache.",
        )


@rule("MTLS042", "TLS version or cipher differs from the baseline", Severity.WARNING)
def parameters_differ(case: Case) -> Iterator[Finding]:
    """The negotiated TLS version or cipher suite is not one the real server chose in the
    baseline.

    A warning: another TLS stack may be answering (a terminator holding the server's
    certificate), or the server's configuration changed since the baseline.

    Compare the chains; if they match, look for a TLS-terminating device holding the server's
    certificate, or take a new baseline after a server change.
    """
    base = _baseline(case)
    if base is None:
        return
    evidence: list[Evidence] = []
    for o in case.observations:
        if o.version and base.versions and o.version not in base.versions:
            evidence.append(_ev(o, "version", o.version))
        if o.cipher_suite and base.cipher_suites and o.cipher_suite not in base.cipher_suites:
            evidence.append(_ev(o, "cipher_suite", o.cipher_suite))
    if evidence:
        evidence.append(_ev(None, "baseline.versions", ", ".join(base.versions) or "-"))
        evidence.append(_ev(None, "baseline.cipher_suites", ", ".join(base.cipher_suites) or "-"))
        yield finding(
            "MTLS042",
            "The negotiated TLS version or cipher differs from what the real server chose "
            "(baseline): another TLS stack may be answering.",
            evidence=evidence,
            remediation="Compare the chains; if they match, check for a TLS-terminating device "
            "holding the server's certificate.",
        )
