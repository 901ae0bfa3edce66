"""What we could not tell: MTLS090-MTLS092 (never a pass)."""

from __future__ import annotations

import dataclasses

import factories as f
from factories import found

from mtlsprobe.model import (
    AlertInfo,
    CertRequestInfo,
    Direction,
    Gap,
    Outcome,
    Seen,
    Stage,
    Verdict,
)
from mtlsprobe.rules.engine import evaluate


def test_mtls090_no_expectations_is_unknown():
    c = f.case(f.observation(), expect=f.NOTHING)
    (x,) = found(c, "MTLS090")
    assert "--ca" in x.remediation
    assert evaluate(c).verdict is Verdict.UNKNOWN


def test_mtls090_quiet_when_nothing_reached_tls():
    c = f.case(f.observation(stage=Stage.TCP, server_chain=(), server_chain_seen=Seen.UNKNOWN),
               expect=f.NOTHING)
    assert not found(c, "MTLS090")


def hidden_tls13(**changes):
    return f.observation(server_chain=(), server_chain_seen=Seen.UNKNOWN, decrypted=False,
                         cert_request=CertRequestInfo(seen=Seen.UNKNOWN),
                         client_chain=(), client_chain_seen=Seen.UNKNOWN, attempt=None,
                         **changes)


def test_mtls091_tls13_capture_without_keys():
    c = f.case(hidden_tls13())
    (x,) = found(c, "MTLS091")
    assert "no key log" in x.summary
    res = evaluate(c)
    assert res.verdict is Verdict.UNKNOWN
    assert not found(c, "MTLS092")


def test_mtls091_a_chain_seen_on_some_connections_does_not_vouch_for_hidden_ones():
    """A pool with one terminating member that only TLS 1.3 connections reached: the TLS 1.2
    connections show the real chain, the TLS 1.3 ones hide theirs. Never a pass."""
    seen = f.observation(version="TLSv1.2")
    assert evaluate(f.case(seen)).verdict is Verdict.PASS_END_TO_END
    c = f.case(seen, hidden_tls13(repeats=3))
    (x,) = found(c, "MTLS091")
    assert "hidden on 3 of 4 handshakes" in x.summary
    assert evaluate(c).verdict is Verdict.UNKNOWN
    # a resumed session shows no certificate by design: not hidden
    assert evaluate(f.case(seen, hidden_tls13(resumed=True))).verdict is Verdict.PASS_END_TO_END
    # from a Zeek log, the reason names Zeek, not a missing key log
    from_zeek = hidden_tls13(route=dataclasses.replace(seen.route, source="zeek"))
    (x,) = found(f.case(seen, from_zeek), "MTLS091")
    assert "Zeek logs only what comes before" in x.summary
    # a refusal before any ServerHello hides nothing
    refused = hidden_tls13(version=None)
    assert not found(f.case(seen, refused), "MTLS091")


def test_mtls091_capture_gap_is_named():
    c = f.case(hidden_tls13(gaps=(Gap(direction=Direction.S2C, offset=10, length=1200),)))
    (x,) = found(c, "MTLS091")
    assert "gap of 1200 bytes" in x.summary


def test_mtls091_cert_request_hidden_while_baseline_needs_it():
    obs = f.observation(cert_request=CertRequestInfo(seen=Seen.UNKNOWN), decrypted=False)
    xs = found(f.case(obs, expect=f.with_baseline()), "MTLS091")
    assert any("client certificate" in x.summary for x in xs)


def test_mtls092_nothing_completed_and_nothing_explains_it():
    obs = f.observation(
        server_chain=(), server_chain_seen=Seen.NO, version=None, server_hello_ms=None,
        outcome=Outcome.REJECTED_BY_SERVER, stage=Stage.HANDSHAKE, http=None,
        alerts=(AlertInfo(sender=Direction.S2C, level="fatal", description="protocol_version",
                          code=70),),
        local_error="TLSV1_ALERT_PROTOCOL_VERSION",
    )
    c = f.case(obs)
    (x,) = found(c, "MTLS092")
    assert "TLSV1_ALERT_PROTOCOL_VERSION" in " ".join(e.value for e in x.evidence)
    assert evaluate(c).verdict is Verdict.UNKNOWN


def test_mtls092_for_a_case_without_observations():
    c = f.case()
    assert found(c, "MTLS092")
    assert evaluate(c).verdict is Verdict.UNKNOWN


def test_mtls092_quiet_when_a_blocking_rule_explains():
    obs = f.observation(server_chain=(), server_chain_seen=Seen.UNKNOWN, version=None,
                        server_hello_ms=None, outcome=Outcome.ABORTED, stage=Stage.HANDSHAKE,
                        http=None)
    c = f.case(obs)
    assert found(c, "MTLS063") and not found(c, "MTLS092")
