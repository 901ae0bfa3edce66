"""Capture-specific rules (MTLS070, MTLS071) and how the live rules read captured traffic.

Captured observations have no Attempt (we did not choose the client's certificate), so the
attempt rules (MTLS030-035) stay silent; MTLS070 says when the far end refused the captured
client's certificate and accepted none, MTLS071 summarises a server's connections.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import factories as f
import pytest
from factories import found, rule_ids

from mtlsprobe.model import AlertInfo, Direction, Outcome, Seen, Severity, Stage, Verdict
from mtlsprobe.rules.engine import evaluate
from mtlsprobe.run.captures import read_capture

SHARED = Path(__file__).resolve().parents[2] / "shared"


def captured(label: str = "x.pcap flow 0", **changes: object):
    return f.observation(label=label, attempt=None, http=None, **changes)


def refused(obs, description: str = "certificate_required"):
    return f.rejected(obs, description)


def test_tls13_certificate_required_in_a_capture_is_not_a_pass():
    obs = refused(captured(client_chain=(), client_chain_seen=Seen.YES))
    res = evaluate(f.case(obs))
    assert res.verdict is Verdict.CLIENT_CERT_REJECTED
    (x,) = found(f.case(obs), "MTLS070")
    assert x.severity is Severity.REJECTS
    assert "empty Certificate" in x.summary and "certificate_required" in x.summary
    assert not rule_ids(f.case(obs)) & {"MTLS032", "MTLS033", "MTLS034", "MTLS035"}


def test_tls12_handshake_failure_after_an_empty_certificate_is_a_rejection():
    obs = dataclasses.replace(
        captured(version="TLSv1.2", client_chain=(), client_chain_seen=Seen.YES),
        alerts=(AlertInfo(sender=Direction.S2C, level="fatal", description="handshake_failure",
                          code=40),),
        outcome=Outcome.REJECTED_BY_SERVER, stage=Stage.HANDSHAKE,
    )
    assert evaluate(f.case(obs)).verdict is Verdict.CLIENT_CERT_REJECTED


def test_handshake_failure_without_a_certificate_request_is_not_about_certificates():
    obs = dataclasses.replace(
        captured(cert_request=f.NO_CERT_REQUEST, client_chain=(), client_chain_seen=Seen.NO),
        alerts=(AlertInfo(sender=Direction.S2C, level="fatal", description="handshake_failure",
                          code=40),),
        outcome=Outcome.REJECTED_BY_SERVER, stage=Stage.HANDSHAKE,
    )
    assert not found(f.case(obs), "MTLS070")


def test_a_certificate_accepted_on_another_connection_means_the_server_validates():
    """A capture of the live probe: throwaway and empty certificates refused, agent's taken."""
    case = f.case(
        refused(captured("flow 0", client_chain=(), client_chain_seen=Seen.YES)),
        refused(captured("flow 1", client_chain=(f.THROWAWAY_CERT,)), "unknown_ca"),
        captured("flow 2", stage=Stage.ESTABLISHED),
    )
    assert not found(case, "MTLS070")
    assert evaluate(case).verdict is Verdict.PASS_END_TO_END
    (x,) = found(case, "MTLS071")
    assert "3 TLS connection(s)" in x.summary and "accepted on 1" in x.summary


def test_client_closing_right_after_the_handshake_is_not_a_late_rejection():
    close = AlertInfo(sender=Direction.C2S, level="warning", description="close_notify",
                      code=0, after_handshake=True, decrypted=True)
    obs = captured(stage=Stage.FIRST_READ, alerts=(close,))
    case = f.case(obs)
    assert not found(case, "MTLS070")
    assert evaluate(case).verdict is Verdict.PASS_END_TO_END
    assert "accepted on 1" in found(case, "MTLS071")[0].summary


def test_tls12_close_after_the_server_finished_is_acceptance_not_rejection():
    """In TLS <= 1.2 the server's Finished follows its check of the client's certificate."""
    for version in ("TLSv1.0", "TLSv1.2"):
        obs = captured(version=version, stage=Stage.FIRST_READ, outcome=Outcome.ESTABLISHED)
        case = f.case(obs)
        assert not found(case, "MTLS070"), version
        assert evaluate(case).verdict is not Verdict.CLIENT_CERT_REJECTED
    tls13 = captured(version="TLSv1.3", stage=Stage.FIRST_READ, outcome=Outcome.ESTABLISHED)
    assert found(f.case(tls13), "MTLS070")  # TLS 1.3: the late rejection stays possible


def test_zeek_s_accepted_mutual_tls_is_not_judged_rejected():
    """globus-url-copy.pcap: Zeek logs mutual TLS established (CsxrnXGYIti); TLS 1.0."""
    trace = SHARED / "pcaps/zeek__zeek/testing/btest/Traces/globus-url-copy.pcap"
    if not trace.exists():
        pytest.skip("../shared is absent")
    result = read_capture(trace)
    [obs] = [o for o in result.observations if o.client_chain]
    assert obs.version == "TLSv1.0" and obs.history.startswith("CsxrnXGY")
    case = f.case(obs, expect=f.NOTHING)
    assert "MTLS070" not in rule_ids(case)
    assert evaluate(case).verdict is not Verdict.CLIENT_CERT_REJECTED


def test_hidden_client_certificate_with_a_certificate_alert_still_counts():
    obs = refused(captured(client_chain=(), client_chain_seen=Seen.UNKNOWN), "bad_certificate")
    (x,) = found(f.case(obs), "MTLS070")
    assert "could not be seen" in x.summary


def test_a_server_that_is_not_the_pinned_one_is_inspected_in_a_capture():
    obs = captured(server_chain=f.foreign_chain("Example SSL Inspection CA"),
                   cert_request=f.NO_CERT_REQUEST, client_chain=(), client_chain_seen=Seen.NO)
    res = evaluate(f.case(obs))
    assert res.verdict is Verdict.INSPECTED
    assert {"MTLS010", "MTLS011", "MTLS071"} <= {x.rule for x in res.findings}


def test_summary_counts_chains_and_only_speaks_for_captures():
    other = f.foreign_chain("Other CA")
    case = f.case(captured("a"), captured("b", server_chain=other))
    (x,) = found(case, "MTLS071")
    assert "2 different server chains" in x.summary
    assert {e.field: e.value for e in x.evidence}["connections"] == "2"
    assert not found(f.case(f.observation()), "MTLS071")  # a live attempt: not a capture


def test_a_completed_connection_with_a_hidden_certificate_may_have_been_accepted():
    """TLS 1.3 without keys: the refusal seen on TLS 1.2 does not prove every cert failed."""
    tls12_refused = dataclasses.replace(
        captured("flow 0", version="TLSv1.2", client_chain=(), client_chain_seen=Seen.YES),
        alerts=(AlertInfo(sender=Direction.S2C, level="fatal", description="handshake_failure",
                          code=40),),
        outcome=Outcome.REJECTED_BY_SERVER, stage=Stage.HANDSHAKE,
    )
    hidden = captured("flow 1", client_chain=(), client_chain_seen=Seen.UNKNOWN,
                      cert_request=f.CertRequestInfo(seen=Seen.UNKNOWN), decrypted=False,
                      stage=Stage.ESTABLISHED)
    assert found(f.case(tls12_refused), "MTLS070")
    assert not found(f.case(tls12_refused, hidden), "MTLS070")
