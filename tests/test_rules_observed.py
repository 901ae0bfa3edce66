"""Rules on real TLS: in-memory handshakes (tests/tlsgen) -> observer -> rules -> verdict.

Guards the contract between the observer's facts and the rules' reading of them
(late TLS 1.3 rejections, empty Certificates, hidden chains without keys).
"""

from __future__ import annotations

import dataclasses
import ssl

import pytest
import tlsgen

from mtlsprobe.model import Attempt, Case, CertKind, Expectations, Verdict, certs
from mtlsprobe.rules.engine import evaluate
from mtlsprobe.tls.observer import observe


def attempt(label: str, kind: CertKind, version: str, cert: str | None, **kw):
    t = tlsgen.run(version=version, client_cert=cert, label=label, **kw)
    t = dataclasses.replace(t, attempt=Attempt(name=label, max_version=version, client_cert=kind))
    return observe(t)


def probe(agent_cert: str | None = "good", **kw):
    return (
        attempt("tls13-nocert", CertKind.NONE, "TLSv1.3", None, **kw),
        attempt("tls12-nocert", CertKind.NONE, "TLSv1.2", None, **kw),
        attempt("untrusted-cert", CertKind.UNTRUSTED, "TLSv1.3", "other", **kw),
        attempt("agent-cert", CertKind.AGENT, "TLSv1.3", agent_cert, **kw),
    )


@pytest.fixture(scope="module")
def pinned() -> Expectations:
    p = tlsgen.pki()
    leaf = certs.cert_info(p.server.der)
    return Expectations(roots=(certs.cert_info(p.server_ca.der),), pins=(leaf.spki_pin,))


def judge(observations, expect: Expectations):
    first = observations[0]
    return evaluate(Case(target=first.server, route=first.route, observations=observations,
                         expect=expect))


def test_enforcing_real_server_passes_end_to_end(pinned):
    res = judge(probe(), pinned)
    assert res.verdict is Verdict.PASS_END_TO_END, res.reason
    ids = {x.rule for x in res.findings}
    assert {"MTLS001", "MTLS032", "MTLS035"} <= ids
    assert "MTLS031" not in ids and "MTLS033" not in ids


def test_agent_certificate_from_another_ca_is_rejected(pinned):
    res = judge(probe(agent_cert="other"), pinned)
    assert res.verdict is Verdict.CLIENT_CERT_REJECTED
    assert "unknown_ca" in res.reason


def test_not_enforcing_server_passes_and_says_so(pinned):
    res = judge(probe(verify=ssl.CERT_NONE), pinned)
    assert res.verdict is Verdict.PASS_END_TO_END, res.reason
    fired = {x.rule for x in res.findings}
    assert "MTLS002" in fired
    assert "MTLS031" not in fired  # not asked for a certificate, so none was "accepted"


def test_chain_from_another_ca_that_asks_for_certificates_is_a_terminator():
    """Not from the expected CA, yet it requests the agent's certificate: an interceptor
    cannot use one, so a terminator (issue 13); the chain finding still comes first."""
    other_root = certs.cert_info(tlsgen.pki().other_ca.der)
    res = judge(probe(), Expectations(roots=(other_root,)))
    assert res.verdict is Verdict.TERMINATED_BY_LB
    assert res.findings[0].rule == "MTLS010"
    assert "MTLS026" in {x.rule for x in res.findings}


def test_tls13_without_keys_is_unknown_not_pass(pinned):
    obs = (attempt("agent-cert", CertKind.AGENT, "TLSv1.3", "good", keylog=False),)
    res = judge(obs, pinned)
    assert res.verdict is Verdict.UNKNOWN
    assert res.findings[0].rule == "MTLS091"
