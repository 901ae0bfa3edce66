"""CertificateRequest facts: MTLS001, MTLS002, MTLS020-MTLS022, MTLS050."""

from __future__ import annotations

import dataclasses

import factories as f
from factories import found

from mtlsprobe.model import CertRequestInfo, Seen, Severity, Verdict
from mtlsprobe.rules.engine import evaluate


def test_mtls001_reports_where_and_ca_names():
    (x,) = found(f.case(f.observation()), "MTLS001")
    assert x.severity is Severity.INFO
    assert "handshake" in x.summary and "Example Agent CA" in x.summary


def test_mtls002_no_request_anywhere_says_it_is_expected_before_enforcement():
    c = f.case(f.observation(cert_request=f.NO_CERT_REQUEST, client_chain=(),
                             client_chain_seen=Seen.NO))
    (x,) = found(c, "MTLS002")
    assert "expected" in x.summary and "enforce" in x.summary
    assert not found(c, "MTLS001")
    assert evaluate(c).verdict is Verdict.PASS_END_TO_END  # real server, not enforcing yet


def test_mtls002_not_claimed_when_only_unknown():
    c = f.case(f.observation(cert_request=CertRequestInfo(seen=Seen.UNKNOWN)))
    assert not found(c, "MTLS002")
    assert not found(c, "MTLS001")


def test_mtls020_request_vanished_on_this_path():
    c = f.case(f.intercepted(), expect=f.with_baseline())
    (x,) = found(c, "MTLS020")
    assert any(e.field == "baseline.cert_request" for e in x.evidence)
    assert any(e.field == "cert_request.seen" and e.value == "no" for e in x.evidence)


def test_mtls020_alone_means_terminated_by_lb():
    # Same chain as the baseline (a terminator holding the server's key), no request.
    c = f.case(f.observation(cert_request=f.NO_CERT_REQUEST, client_chain_seen=Seen.NO,
                             client_chain=()), expect=f.with_baseline())
    res = evaluate(c)
    assert res.verdict is Verdict.TERMINATED_BY_LB
    assert res.findings[0].rule == "MTLS020"


def test_mtls020_quiet_when_baseline_never_asked():
    c = f.case(f.observation(cert_request=f.NO_CERT_REQUEST),
               expect=f.with_baseline(cert_request=Seen.NO))
    assert not found(c, "MTLS020")


def test_mtls021_ca_names_differ_from_baseline():
    cr = CertRequestInfo(seen=Seen.YES, authorities=("CN=LB Client CA",), where="handshake")
    c = f.case(f.observation(cert_request=cr), expect=f.with_baseline())
    (x,) = found(c, "MTLS021")
    assert "CN=LB Client CA" in x.summary
    assert evaluate(c).verdict is Verdict.TERMINATED_BY_LB


def test_mtls021_same_names_in_other_order_match():
    names = ("CN=A", "CN=B")
    cr = CertRequestInfo(seen=Seen.YES, authorities=names[::-1])
    c = f.case(f.observation(cert_request=cr),
               expect=f.with_baseline(cert_request_authorities=names))
    assert not found(c, "MTLS021")


def test_mtls022_agent_issuer_not_requested():
    cr = CertRequestInfo(seen=Seen.YES, authorities=("CN=Someone Else CA",))
    (x,) = found(f.case(f.observation(cert_request=cr)), "MTLS022")
    assert x.severity is Severity.WARNING
    assert f.AGENT_CERT.issuer in x.summary


def test_mtls022_quiet_when_listed_or_list_empty():
    assert not found(f.case(f.observation()), "MTLS022")
    empty = CertRequestInfo(seen=Seen.YES, authorities=())
    assert not found(f.case(f.observation(cert_request=empty)), "MTLS022")


def test_mtls050_post_handshake_request():
    cr = dataclasses.replace(f.CERT_REQUEST, where="post_handshake")
    (x,) = found(f.case(f.observation(cert_request=cr)), "MTLS050")
    assert "RFC 8740" in x.summary
    assert x.remediation


def test_mtls050_quiet_for_handshake_request():
    assert not found(f.case(f.observation()), "MTLS050")
