"""Rules MTLS080-MTLS084 (reflector comparisons) on hand-made observations, and their rows."""

from __future__ import annotations

import dataclasses

import factories as f

from mtlsprobe.model import Expectations, Outcome, ReflectorEcho, Verdict
from mtlsprobe.rules.engine import VERDICT_TABLE, decide, evaluate, sort_key

HELLO = "a" * 64
JA3 = "b" * 32
AGENT_SHA = f.AGENT_CERT.sha256
OWN = Expectations(agent_cert=f.AGENT_CERT)  # the reflector target: no --ca/--pin


def echo(**changes: object) -> ReflectorEcho:
    base = ReflectorEcho(
        status="ok", signed=True, peer="127.0.0.1:50000", hello_sha256=HELLO, ja3=JA3,
        sent_hello_sha256=HELLO, sent_ja3=JA3, version="TLSv1.3",
        client_chain_sha256=(AGENT_SHA,),
        server_chain_sha256=tuple(c.sha256 for c in f.REAL_CHAIN),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def agent(**changes: object):
    att = dataclasses.replace(f.attempt(), client_cert_sha256=AGENT_SHA)
    return f.observation(attempt=att, reflected=echo(**changes))


def nocert(**changes: object):
    return f.nocert(reflected=echo(**{"client_chain_sha256": (), **changes}))


def result(*observations):
    return evaluate(f.case(*observations, expect=OWN))


def ids(res) -> set[str]:
    return {x.rule for x in res.findings}


def test_mtls083_confirmed_end_to_end_passes_without_pin():
    res = result(nocert(), agent())
    assert "MTLS083" in ids(res) and "MTLS090" in ids(res)
    assert res.verdict is Verdict.PASS_END_TO_END
    assert res.reason.startswith("reflector confirms")
    summary = next(x.summary for x in res.findings if x.rule == "MTLS083")
    assert "(signed echo)" in summary


def test_mtls083_unsigned_echo_says_so():
    res = result(agent(signed=False))
    summary = next(x.summary for x in res.findings if x.rule == "MTLS083")
    assert "unsigned echo" in summary


def test_mtls083_needs_a_certificate_attempt():
    res = result(nocert())
    assert "MTLS083" not in ids(res)
    assert res.verdict is Verdict.UNKNOWN  # MTLS090: nothing proves the far end
    # and it says what would prove it: the echo of a certificate attempt, or a pin
    why = next(x.summary for x in res.findings if x.rule == "MTLS090")
    assert why.startswith("This is a reflector target and no --ca or --pin was given")


def test_mtls080_different_client_hello():
    res = result(nocert(hello_sha256="c" * 64, ja3="d" * 32), agent())
    assert "MTLS080" in ids(res) and "MTLS083" not in ids(res)
    assert res.verdict is Verdict.INSPECTED
    finding = next(x for x in res.findings if x.rule == "MTLS080")
    assert "d" * 32 in finding.summary and JA3 in finding.summary


def test_mtls080_falls_back_to_ja3_without_digests():
    res = result(agent(hello_sha256=None, sent_hello_sha256=None, ja3="e" * 32))
    assert "MTLS080" in ids(res)


def test_mtls081_certificate_missing_or_different_or_added():
    missing = result(agent(client_chain_sha256=()))
    assert "MTLS081" in ids(missing) and missing.verdict is Verdict.INSPECTED
    assert "did not arrive" in next(x.summary for x in missing.findings if x.rule == "MTLS081")
    other = result(agent(client_chain_sha256=("f" * 64,)))
    assert "different certificate" in next(
        x.summary for x in other.findings if x.rule == "MTLS081")
    added = result(nocert(client_chain_sha256=(AGENT_SHA,)))
    assert "although we sent none" in next(
        x.summary for x in added.findings if x.rule == "MTLS081")


def test_mtls082_reflector_presented_another_chain():
    res = result(agent(server_chain_sha256=("0" * 64,)))
    assert "MTLS082" in ids(res) and res.verdict is Verdict.INSPECTED


def test_mtls084_missing_echo_is_unknown_and_blocks_083():
    bad = f.nocert(reflected=ReflectorEcho(status="bad_signature", error="HMAC mismatch"))
    res = result(bad, agent())
    assert "MTLS084" in ids(res) and "MTLS083" not in ids(res)
    assert res.verdict is Verdict.UNKNOWN
    assert "HMAC mismatch" in next(x.summary for x in res.findings if x.rule == "MTLS084")


def test_unverified_echo_is_never_compared():
    forged = agent(status="bad_signature", client_chain_sha256=())
    assert "MTLS081" not in ids(result(forged))


def test_failed_handshake_without_echo_is_not_mtls084():
    failed = f.nocert(outcome=Outcome.ABORTED,
                      reflected=ReflectorEcho(status="missing", error="no HTTP answer"))
    assert "MTLS084" not in ids(result(failed, agent()))


def test_rows_080_082_inspected_and_083_skips_the_unknown_row():
    for rule in ("MTLS080", "MTLS081", "MTLS082"):
        got, row, _ = decide([f_(rule)])
        assert got is Verdict.INSPECTED and rule in (row.rules or ())
    findings = sorted([f_("MTLS090", "unknown"), f_("MTLS083", "info")], key=sort_key)
    got, row, decider = decide(findings)
    assert got is Verdict.PASS_END_TO_END and row is VERDICT_TABLE[-1] and decider is None
    got, _, _ = decide([f_("MTLS090", "unknown")])
    assert got is Verdict.UNKNOWN


def f_(rule: str, severity: str = "breaks"):
    from mtlsprobe.model import Evidence, Finding, Severity

    return Finding(rule=rule, title="t", severity=Severity(severity), summary="s",
                   evidence=(Evidence(observation="x", field="y", value="z"),))
