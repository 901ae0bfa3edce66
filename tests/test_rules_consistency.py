"""Consistency across handshakes and against the baseline: MTLS040-MTLS042."""

from __future__ import annotations

import factories as f
from factories import found

from mtlsprobe.model import Outcome, Seen, Severity, Verdict
from mtlsprobe.rules.engine import evaluate


def repeat(n: int, **changes):
    return f.observation(label=f"repeat-{n}", attempt=f.attempt(f"repeat-{n}"), **changes)


def test_mtls040_unknown_without_expectations_lists_leaves_per_attempt():
    other = f.intercepted()
    c = f.case(f.observation(), repeat(2, server_chain=other.server_chain), expect=f.NOTHING)
    (x,) = found(c, "MTLS040")
    assert x.severity is Severity.UNKNOWN
    assert {(e.observation, e.value) for e in x.evidence} == {
        ("agent-cert", f.REAL_CHAIN[0].sha256),
        ("repeat-2", other.server_chain[0].sha256),
    }


def test_mtls040_warning_when_expectations_judged_each_chain():
    other = f.intercepted()
    c = f.case(f.observation(), repeat(2, server_chain=other.server_chain))
    (x,) = found(c, "MTLS040")
    assert x.severity is Severity.WARNING
    # the foreign chain decides; it asks for the agent's certificate, which an interceptor
    # cannot use: a terminating pool member (issue 13)
    assert evaluate(c).verdict is Verdict.TERMINATED_BY_LB


def test_mtls040_quiet_for_a_pool_of_known_servers():
    second = f.SERVER_ISSUING_CA.issue("ec.example.com", not_before=f.MONTH_AGO)
    chain2 = f.chain_of(second)
    expect = f.with_baseline(chain_sha256=(tuple(c.sha256 for c in f.REAL_CHAIN),
                                           tuple(c.sha256 for c in chain2)),
                             leaf_pins=())
    c = f.case(f.observation(), repeat(2, server_chain=chain2), expect=expect)
    assert not found(c, "MTLS040")


def test_mtls041_cert_request_comes_and_goes():
    c = f.case(f.observation(), repeat(2, cert_request=f.NO_CERT_REQUEST))
    (x,) = found(c, "MTLS041")
    assert {e.value for e in x.evidence if e.field == "cert_request.seen"} == {"yes", "no"}


def test_mtls041_outcome_differs_between_identical_attempts():
    c = f.case(f.observation(), repeat(2, outcome=Outcome.ABORTED))
    assert found(c, "MTLS041")


def test_mtls041_quiet_for_different_attempt_kinds():
    c = f.case(*f.probe_set())
    assert not found(c, "MTLS041")


def test_mtls042_version_and_cipher_differ_from_baseline():
    c = f.case(f.observation(version="TLSv1.2", cipher_suite="AES128-SHA"),
               expect=f.with_baseline(versions=("TLSv1.3",)))
    (x,) = found(c, "MTLS042")
    fields = {e.field for e in x.evidence}
    assert {"version", "cipher_suite"} <= fields


def test_mtls042_quiet_when_matching():
    assert not found(f.case(f.observation(), expect=f.with_baseline()), "MTLS042")


def test_seen_unknown_cert_request_is_not_variation():
    from mtlsprobe.model import CertRequestInfo

    c = f.case(f.observation(), repeat(2, cert_request=CertRequestInfo(seen=Seen.UNKNOWN)))
    assert not found(c, "MTLS041")
