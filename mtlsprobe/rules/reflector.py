"""An `mtlsprobe serve` reflector: what the far end received against what we sent (MTLS080-084).
"""

from __future__ import annotations

from collections.abc import Iterator

from mtlsprobe.model import Case, Finding, Observation, Outcome, Seen, Severity
from mtlsprobe.rules.facts import INSPECT_FIX, _ev, _target
from mtlsprobe.rules.registry import finding, rule


# The echo is attached by mtlsprobe.run.reflector; only echoes with status "ok" (decoded, and
# HMAC-verified when a secret was given) are compared.
def _echoed(case: Case) -> list[Observation]:
    return [o for o in case.observations if o.reflected is not None and o.reflected.status == "ok"]


def _hello_differs(obs: Observation) -> bool:
    e = obs.reflected
    assert e is not None
    if e.hello_sha256 and e.sent_hello_sha256:
        return e.hello_sha256 != e.sent_hello_sha256
    return bool(e.ja3 and e.sent_ja3 and e.ja3 != e.sent_ja3)


def _reflected_cert_problem(obs: Observation) -> str | None:
    """How the client certificate failed to reach the reflector unchanged, or None."""
    e = obs.reflected
    assert e is not None
    sent = obs.attempt.client_cert_sha256 if obs.attempt else None
    got = e.client_chain_sha256[0] if e.client_chain_sha256 else None
    if sent and got is None:
        return "did not arrive"
    if sent and got != sent:
        return "arrived as a different certificate"
    if obs.attempt is not None and not sent and got:
        return "arrived although we sent none"
    return None


def _reflected_chain_differs(obs: Observation) -> bool:
    e = obs.reflected
    assert e is not None
    if obs.server_chain_seen is not Seen.YES or not obs.server_chain:
        return False
    return bool(e.server_chain_sha256) and obs.server_chain[0].sha256 != e.server_chain_sha256[0]


def _reflected_ok(obs: Observation) -> bool:
    return not (
        _hello_differs(obs) or _reflected_cert_problem(obs) or _reflected_chain_differs(obs)
    )


@rule("MTLS080", "Reflector received a different ClientHello", Severity.BREAKS)
def reflector_hello_differs(case: Case) -> Iterator[Finding]:
    """The `mtlsprobe serve` reflector reported a different ClientHello (hash or JA3) than the
    one the probe sent.

    Breaks client-certificate authentication: something between the agent and the reflector
    re-originates the TLS connection, as an intercepting proxy or terminator does.

    Exempt the reflector's port and, since inspection policies often depend on the port, the
    Endpoint Central server name and ports from TLS inspection.
    """
    differ = [o for o in _echoed(case) if _hello_differs(o)]
    if not differ:
        return
    e = differ[0].reflected
    assert e is not None
    yield finding(
        "MTLS080",
        f"The reflector at {_target(case)} received a different ClientHello than the one we "
        f"sent (JA3 {e.ja3} there, {e.sent_ja3} here) on {len(differ)} connection(s): "
        "something between here and there re-originates the TLS connection.",
        evidence=[ev for o in differ for ev in (
            _ev(o, "reflected.ja3", o.reflected.ja3 if o.reflected else None),
            _ev(o, "reflected.sent_ja3", o.reflected.sent_ja3 if o.reflected else None),
            _ev(o, "reflected.hello_sha256", o.reflected.hello_sha256 if o.reflected else None),
            _ev(o, "reflected.sent_hello_sha256",
                o.reflected.sent_hello_sha256 if o.reflected else None),
        )],
        remediation=INSPECT_FIX.format(t=_target(case)),
    )


@rule("MTLS081", "Client certificate did not reach the reflector intact", Severity.BREAKS)
def reflector_cert_lost(case: Case) -> Iterator[Finding]:
    """The client certificate the probe sent did not arrive at the reflector, arrived as a
    different certificate, or a certificate arrived although the probe sent none (a proxy
    presenting its own).

    Breaks client-certificate authentication: the path does not carry the client's certificate
    to the far end.

    Exempt the server name and ports from TLS inspection, or pass TCP through on the load
    balancer.
    """
    lost = [(o, why) for o in _echoed(case) if (why := _reflected_cert_problem(o))]
    if not lost:
        return
    obs, why = lost[0]
    yield finding(
        "MTLS081",
        f"The client certificate {why} at the reflector {_target(case)} ({obs.label}): the "
        "path does not carry client certificates to the far end.",
        evidence=[ev for o, w in lost for ev in (
            _ev(o, "attempt.client_cert_sha256",
                (o.attempt.client_cert_sha256 if o.attempt else None) or "none"),
            _ev(o, "reflected.client_chain_sha256",
                ", ".join(o.reflected.client_chain_sha256 if o.reflected else ()) or "none"),
            _ev(o, "reflected.problem", w),
        )],
        remediation=INSPECT_FIX.format(t=_target(case)),
    )


@rule("MTLS082", "Reflector's certificate differs from the one received", Severity.BREAKS)
def reflector_chain_differs(case: Case) -> Iterator[Finding]:
    """The reflector reported presenting another certificate than the one the probe received.

    Breaks client-certificate authentication: something in between answers TLS with its own
    certificate.

    Exempt the server name and ports from TLS inspection, or pass TCP through on the load
    balancer.
    """
    differ = [o for o in _echoed(case) if _reflected_chain_differs(o)]
    if not differ:
        return
    obs = differ[0]
    yield finding(
        "MTLS082",
        f"The reflector at {_target(case)} presented another certificate than the one we "
        f"received (issued by {obs.server_chain[0].issuer}): something in between answers "
        "TLS with its own certificate.",
        evidence=[ev for o in differ for ev in (
            _ev(o, "server_chain[0].sha256", o.server_chain[0].sha256),
            _ev(o, "reflected.server_chain_sha256[0]",
                o.reflected.server_chain_sha256[0] if o.reflected else None),
        )],
        remediation=INSPECT_FIX.format(t=_target(case)),
    )


@rule("MTLS083", "Reflector confirms the connection end to end", Severity.INFO)
def reflector_confirms(case: Case) -> Iterator[Finding]:
    """The reflector received the probe's own ClientHello and client certificate and presented
    the certificate the probe saw, on every echoed connection.

    A good sign that stands in for --pin or --baseline on this target: nothing re-originates TLS
    to this port. It covers only the reflector's port and address, and an unsigned echo could be
    forged by a middlebox that knows the format.

    Give both sides --secret-file. For the strongest test run `mtlsprobe serve` on the real port
    (8383) while the Endpoint Central server is stopped in a maintenance window.
    """
    echoed = _echoed(case)
    done = [o for o in case.observations if o.outcome is Outcome.ESTABLISHED]
    with_cert = [o for o in echoed if o.attempt is not None and o.attempt.client_cert_sha256]
    if (
        not echoed
        or not with_cert
        or any(o.reflected is None or o.reflected.status != "ok" for o in done)
        or not all(_reflected_ok(o) for o in echoed)
    ):
        return
    signed = all(o.reflected is not None and o.reflected.signed for o in echoed)
    how = "signed echo" if signed else (
        "unsigned echo: give both sides a --secret-file so a middlebox cannot forge it"
    )
    yield finding(
        "MTLS083",
        f"The reflector at {_target(case)} received our own ClientHello and client "
        f"certificate and presented the certificate we saw, on {len(echoed)} connection(s) "
        f"({how}): nothing re-originates TLS to this port.",
        evidence=[_ev(o, "reflected", f"hello, client certificate and chain match"
                      f"{' (signed)' if o.reflected and o.reflected.signed else ''}")
                  for o in echoed],
    )


@rule("MTLS084", "Reflector echo missing or unverifiable", Severity.UNKNOWN)
def reflector_echo_unusable(case: Case) -> Iterator[Finding]:
    """Connections to the reflector completed, but the echo was missing, malformed, or failed
    its signature check.

    Hides the answer: what arrived at the far end cannot be compared. A missing or altered echo
    can itself mean something in between answers instead of the reflector.

    Check that `mtlsprobe serve` listens at that address and port and that the probe and the
    reflector use the same --secret-file.
    """
    bad = [o for o in case.observations if o.reflected is not None
           and o.reflected.status != "ok" and o.outcome is Outcome.ESTABLISHED]
    if not bad:
        return
    e = bad[0].reflected
    assert e is not None
    yield finding(
        "MTLS084",
        f"{len(bad)} connection(s) to the reflector {_target(case)} completed without a "
        f"usable echo ({e.status}: {e.error or 'no detail'}): cannot compare what arrived.",
        evidence=[_ev(o, "reflected.status",
                      f"{o.reflected.status}: {o.reflected.error}" if o.reflected else "")
                  for o in bad],
        remediation=f"Check that `mtlsprobe serve` listens at {_target(case)} and that the "
        "probe and the reflector use the same --secret-file; a missing or altered echo may "
        "itself mean something in between answers instead.",
    )
