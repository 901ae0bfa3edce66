"""What we could not tell: missing expectations, hidden facts, no completed handshake
(MTLS090-092).
"""

from __future__ import annotations

from collections.abc import Iterator

from mtlsprobe.model import Case, Finding, Observation, Outcome, Seen, Severity
from mtlsprobe.rules.facts import (
    _PRE_TLS,
    EXPECT_FIX,
    _all,
    _baseline,
    _chains,
    _ev,
    _no_server_hello,
    _not_tls,
    _proxy_auth,
    _proxy_refused,
    _silenced,
    _target,
    _unreachable,
)
from mtlsprobe.rules.registry import finding, rule


@rule("MTLS090", "No expectations given", Severity.UNKNOWN)
def no_expectations(case: Case) -> Iterator[Finding]:
    """No --ca, --pin or --baseline was given, and at least one attempt got as far as the TLS
    handshake.

    Hides the answer: without knowing what the real server looks like, the probe cannot tell it
    from a middlebox, so the verdict is unknown.

    Re-run with --ca (the server certificate's root), --pin (the real server's key pin) or
    --baseline (a report taken next to the server), or use a reflector (`mtlsprobe serve`,
    `probe --reflector`).
    """
    if case.expect.any or not any(o.stage not in _PRE_TLS for o in case.observations):
        return
    reflector = any(o.reflected is not None for o in case.observations)
    yield finding(
        "MTLS090",
        "This is a reflector target and no --ca or --pin was given: only its echo of a "
        "certificate attempt can show that nothing re-originates TLS (a --pin of the "
        "certificate `mtlsprobe serve` presents would check the chain too)."
        if reflector else
        "No --ca, --pin or --baseline was given: cannot tell whether the certificate is the "
        "real server's.",
        evidence=[_ev(None, "expect", "none")],
        remediation=EXPECT_FIX.replace("--pin (", "--ca (the server's CA), --pin ("),
    )


def _why_hidden(obs: Observation) -> str:
    if obs.gaps:
        return f"capture gap of {sum(g.length for g in obs.gaps)} bytes"
    if obs.version == "TLSv1.3" and not obs.decrypted:
        if obs.route.source == "zeek":
            return "TLS 1.3 encrypts it and Zeek logs only what comes before"
        return "TLS 1.3 encrypts it and no key log was available"
    if obs.end is not None and obs.end.value == "capture_ended":
        return "the capture ended first"
    return "not visible"


@rule("MTLS091", "A decisive fact could not be seen", Severity.UNKNOWN)
def hidden_fact(case: Case) -> Iterator[Finding]:
    """A fact the verdict depends on could not be seen: the server certificate on some or every
    handshake (a chain seen on one connection does not vouch for another, which may have
    reached another pool member), or, when the baseline says the real server asks for a
    certificate, whether a CertificateRequest came. TLS 1.3 encrypts both, and a capture may
    have gaps or end early.

    Hides the answer: the verdict stays unknown rather than guessing.

    Re-run live (the probe keeps its own keys), or give the capture's key log (--keylog FILE
    from SSLKEYLOGFILE, or a pcapng with the secrets embedded).
    """
    obs_all = case.observations
    chains_seen = bool(_chains(case))
    # a ServerHello came (its version is known), but not the certificate after it
    unseen = [o for o in obs_all
              if o.server_chain_seen is Seen.UNKNOWN and o.version and not o.resumed]
    if chains_seen and unseen:
        answered = [o for o in obs_all if o.version and not o.resumed]
        yield finding(
            "MTLS091",
            f"The server certificate was hidden on {_count(unseen)} of {_count(answered)} "
            f"handshakes ({_why_hidden(unseen[0])}): those may have ended elsewhere (another "
            "pool member, another path), so the chains seen cannot vouch for them.",
            evidence=[_ev(o, "server_chain_seen", f"unknown: {_why_hidden(o)}")
                      for o in unseen],
            remediation="Supply the key log (SSLKEYLOGFILE / pcapng secrets) with the capture, "
            "or re-run live (the probe keeps its own keys).",
        )
    if not chains_seen:
        hidden = [o for o in obs_all
                  if o.server_chain_seen is Seen.UNKNOWN and not _no_server_hello(o)]
        if hidden:
            yield finding(
                "MTLS091",
                "The server certificate was not visible on any handshake "
                f"({_why_hidden(hidden[0])}).",
                evidence=[_ev(o, "server_chain_seen", f"unknown: {_why_hidden(o)}")
                          for o in hidden],
                remediation="Re-run live (the probe keeps its own keys) or supply the key log "
                "(SSLKEYLOGFILE / pcapng secrets) with the capture.",
            )
    base = _baseline(case)
    if base is not None and base.cert_request is Seen.YES:
        known = [o for o in obs_all if o.cert_request.seen in (Seen.YES, Seen.NO)]
        hidden = [o for o in obs_all if o.cert_request.seen is Seen.UNKNOWN]
        if not known and hidden:
            yield finding(
                "MTLS091",
                "Whether the far end asks for a client certificate could not be seen "
                f"({_why_hidden(hidden[0])}), and the baseline says the real server does.",
                evidence=[_ev(o, "cert_request.seen", f"unknown: {_why_hidden(o)}")
                          for o in hidden],
                remediation="Re-run live or supply the key log with the capture.",
            )


def _count(observations: list[Observation]) -> int:
    """Connections behind the observations (one observation may stand for repeats)."""
    return sum(o.repeats for o in observations)


@rule("MTLS092", "No handshake completed", Severity.UNKNOWN)
def nothing_completed(case: Case) -> Iterator[Finding]:
    """No TLS handshake completed, and no other rule explains why (no proxy answer, unreachable
    target, reset, non-TLS answer or hidden certificate).

    Hides the answer: there is nothing to judge.

    Re-run with `--capture FILE.pcapng` (needs root) and read the outcome and local error the
    finding lists for each attempt.
    """
    obs_all = case.observations
    if _chains(case) or any(o.outcome is Outcome.ESTABLISHED for o in obs_all):
        return
    explained = (
        _proxy_auth(case) or _proxy_refused(case) or _all(case, _unreachable)
        or _all(case, _silenced) or _not_tls(case)
        or any(o.server_chain_seen is Seen.UNKNOWN and not _no_server_hello(o) for o in obs_all)
    )
    if explained:
        return
    yield finding(
        "MTLS092",
        f"No TLS handshake with {_target(case)} completed and no rule explains why.",
        evidence=[_ev(o, "outcome", f"{o.outcome.value} at {o.stage.value}"
                      + (f": {o.local_error}" if o.local_error else ""))
                  for o in obs_all] or [_ev(None, "observations", "none")],
        remediation="Re-run with --capture FILE.pcapng (or take a capture with tcpdump) and "
        "read the local errors in the JSON report (--format json).",
    )
