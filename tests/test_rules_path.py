"""The path carries nothing (or shows a proxy): MTLS060-MTLS066."""

from __future__ import annotations

import dataclasses

import factories as f
from factories import found

from mtlsprobe.model import CertRequestInfo, HttpExchange, Outcome, Seen, Stage, Verdict
from mtlsprobe.rules.engine import evaluate

PRE_TLS = dict(
    server_chain=(), server_chain_seen=Seen.UNKNOWN, version=None, cipher_suite=None,
    cert_request=CertRequestInfo(seen=Seen.UNKNOWN), client_chain=(),
    client_chain_seen=Seen.UNKNOWN, outcome=Outcome.INCOMPLETE, http=None,
    server_hello_ms=None,
)


def via(status: int, **route_changes):
    route = dataclasses.replace(f.VIA_PROXY, connect_status=status, **route_changes)
    return f.observation(route=route, stage=Stage.PROXY, **PRE_TLS), route


def silenced(label: str = "tls13-nocert", outcome: Outcome = Outcome.ABORTED):
    return f.observation(label=label, stage=Stage.HANDSHAKE, **{**PRE_TLS, "outcome": outcome})


def test_mtls060_proxy_407_with_schemes():
    obs, route = via(407, proxy_auth_schemes=("NTLM", "Negotiate"))
    c = f.case(obs, route=route)
    (x,) = found(c, "MTLS060")
    assert "NTLM, Negotiate" in x.summary
    assert x.remediation.startswith("Give the proxy credentials")
    assert evaluate(c).verdict is Verdict.PROXY_AUTH_REQUIRED


def test_mtls061_proxy_403():
    obs, route = via(403, connect_reason="Forbidden")
    c = f.case(obs, route=route)
    assert found(c, "MTLS061")
    assert evaluate(c).verdict is Verdict.BLOCKED


def test_mtls061_not_for_407_502_or_2xx():
    for status in (200, 407, 502, 504):
        obs, route = via(status)
        assert not found(f.case(obs, route=route), "MTLS061"), status


def test_mtls062_unreachable_on_every_attempt():
    dns = f.observation(stage=Stage.DNS, local_error="Name or service not known", **PRE_TLS)
    gw, _route = via(502)
    c = f.case(dns, gw)
    assert found(c, "MTLS062")
    assert evaluate(c).verdict is Verdict.UNREACHABLE


def test_mtls062_not_when_one_attempt_got_through():
    dns = f.observation(stage=Stage.TCP, **PRE_TLS)
    assert not found(f.case(dns, f.observation()), "MTLS062")


def test_mtls063_reset_after_client_hello_everywhere():
    c = f.case(silenced("tls13-nocert"), silenced("tls12-nocert", Outcome.NO_ANSWER))
    (x,) = found(c, "MTLS063")
    assert "ClientHello" in x.summary
    assert evaluate(c).verdict is Verdict.BLOCKED


def test_mtls064_only_tls13_reset():
    c = f.case(silenced("tls13-nocert"), f.nocert("TLSv1.2"))
    (x,) = found(c, "MTLS064")
    assert "tls13-nocert" in x.summary
    assert not found(c, "MTLS063")


def test_mtls065_via_and_squid_headers():
    http = HttpExchange(path="/", status=200, headers=(
        ("Via", "1.1 proxy.corp (squid/5.7)"), ("X-Squid-Error", "ERR_NONE 0")))
    c = f.case(f.observation(http=http))
    (x,) = found(c, "MTLS065")
    assert {e.field for e in x.evidence} >= {"http.headers.Via", "http.headers.X-Squid-Error"}
    assert evaluate(c).verdict is Verdict.PASS_END_TO_END  # a warning never moves the verdict


def test_mtls066_not_tls_on_every_attempt_is_its_own_finding_not_blocked():
    """Plain traffic on the probed port is no TLS to judge (issue 13): unknown, and why."""
    c = f.case(f.observation(stage=Stage.HANDSHAKE, **{**PRE_TLS, "outcome": Outcome.NOT_TLS}))
    assert found(c, "MTLS066")
    res = evaluate(c)
    assert res.verdict is Verdict.UNKNOWN
    assert res.reason.endswith("there is no TLS to judge.")


def _reason(*observations, route=None):
    kw = {"route": route} if route is not None else {}
    return evaluate(f.case(*observations, **kw)).reason


def test_unreachable_says_which_step_failed_and_blames_the_proxy_when_it_was():
    """Issue 16: name resolution, refused, timeout, CONNECT status, TLS never started."""
    dns = f.observation(stage=Stage.DNS, local_error="Name or service not known", **PRE_TLS)
    assert "name resolution failed for the server's name (Name or service not known)" in (
        _reason(dns))
    proxy_dns = dataclasses.replace(dns, route=f.VIA_PROXY)
    assert f"name resolution failed on the way to the proxy {f.VIA_PROXY.proxy}" in _reason(
        proxy_dns, route=f.VIA_PROXY)
    timeout = f.observation(stage=Stage.TCP, local_error="ETIMEDOUT (connect)", **PRE_TLS)
    assert "the TCP connection timed out" in _reason(timeout)
    refused = f.observation(stage=Stage.TCP, local_error="ECONNREFUSED", **PRE_TLS)
    assert "the TCP connection was refused" in _reason(refused)
    gateway, route = via(502)
    assert "answered CONNECT with 502: the proxy could not reach the server" in _reason(
        gateway, route=route)
    forbidden, route = via(403, connect_reason="Forbidden")
    assert "refused CONNECT" in _reason(forbidden, route=route)
    assert "403 Forbidden" in _reason(forbidden, route=route)
    never = silenced("tls13-nocert")  # TCP up, the ClientHello went unanswered
    result = evaluate(f.case(never, silenced("tls12-nocert", Outcome.NO_ANSWER)))
    assert result.verdict is Verdict.BLOCKED and "ClientHello" in result.reason
