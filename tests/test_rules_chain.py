"""Whose certificate is this? MTLS010-MTLS018 on hand-made observations."""

from __future__ import annotations

import dataclasses
import datetime as dt

import factories as f

from mtlsprobe.model import Expectations, Finding, HttpExchange, Severity, Verdict, certs
from mtlsprobe.rules.engine import evaluate, run_rules


def found(case, rule_id: str) -> list[Finding]:
    return [x for x in run_rules(case) if x.rule == rule_id]


def ids(case) -> set[str]:
    return {x.rule for x in run_rules(case)}


def test_real_server_with_pin_raises_no_chain_finding():
    assert not ids(f.case(f.observation())) & {
        "MTLS010", "MTLS011", "MTLS012", "MTLS013", "MTLS014", "MTLS015", "MTLS016", "MTLS017"}


# MTLS010 ----------------------------------------------------------------------------------

def test_mtls010_chain_not_from_ca_names_the_issuer():
    c = f.case(f.intercepted("Example SSL Inspection CA"), expect=f.ROOTS_ONLY)
    (x,) = found(c, "MTLS010")
    assert "CN=Example SSL Inspection CA" in x.summary
    assert any(e.field == "server_chain[0].issuer" for e in x.evidence)
    assert "Exempt ec.example.com:8443 from TLS inspection" in x.remediation
    assert evaluate(c).verdict is Verdict.INSPECTED


def test_mtls010_quiet_when_chain_builds_through_sent_intermediate():
    assert not found(f.case(f.observation(), expect=f.ROOTS_ONLY), "MTLS010")


def test_mtls010_quiet_without_roots():
    assert not found(f.case(f.intercepted(), expect=Expectations(pins=(f.REAL_PIN,))), "MTLS010")


# MTLS011 ----------------------------------------------------------------------------------

def test_mtls011_no_pin_match_is_inspected_without_a_named_cause():
    c = f.case(f.intercepted(), expect=Expectations(pins=(f.REAL_PIN,)))
    (x,) = found(c, "MTLS011")
    assert x.severity is Severity.BREAKS
    res = evaluate(c)
    assert res.verdict is Verdict.INSPECTED and res.product is None


def test_mtls011_pin_on_intermediate_also_matches():
    intermediate_pin = f.REAL_CHAIN[1].spki_pin
    c = f.case(f.observation(), expect=Expectations(pins=(intermediate_pin,)))
    assert not found(c, "MTLS011")


# MTLS012 ----------------------------------------------------------------------------------

def test_mtls012_chain_differs_from_baseline():
    c = f.case(f.intercepted(), expect=f.with_baseline())
    (x,) = found(c, "MTLS012")
    assert f.REAL_CHAIN[0].sha256 in " ".join(e.value for e in x.evidence)


def test_mtls012_renewed_leaf_with_same_key_matches_by_leaf_pin():
    renewed = f.SERVER_ISSUING_CA.issue("ec.example.com", key=f.SERVER_LEAF.key)
    chain = (f.info(renewed), f.REAL_CHAIN[1])
    assert not found(f.case(f.observation(server_chain=chain), expect=f.with_baseline()),
                     "MTLS012")


def test_mtls012_quiet_for_other_ports():
    other = dataclasses.replace(f.TARGET, port=443)
    assert not found(f.case(f.intercepted(), expect=f.with_baseline(), target=other), "MTLS012")


# MTLS013 ----------------------------------------------------------------------------------

def test_mtls013_names_interception_product_from_issuer():
    c = f.case(f.intercepted("Zscaler Intermediate Root CA (zscalerthree.net) (t)",
                             "Zscaler Inc."))
    (x,) = found(c, "MTLS013")
    assert x.product == "Zscaler"
    assert any(e.field.startswith("signature.zscaler") for e in x.evidence)
    assert evaluate(c).product == "Zscaler"


def test_mtls013_names_product_from_response_header():
    http = HttpExchange(path="/", status=200, headers=(("X-BlueCoat-Via", "4f1c2d"),))
    (x,) = found(f.case(f.observation(http=http)), "MTLS013")
    assert x.product.startswith("Blue Coat")


def test_mtls013_ignores_a_confirmed_real_server_chain():
    # The real server's CA happens to carry a vendor name; the pin proves it is the server.
    chain = f.foreign_chain("FortiGate CA", "Fortinet")
    c = f.case(f.observation(server_chain=chain),
               expect=Expectations(pins=(chain[0].spki_pin,)))
    assert not found(c, "MTLS013")


# MTLS014 ----------------------------------------------------------------------------------

def test_mtls014_leaf_sharing_ca_key_like_mitmproxy():
    ca = f.pki.CA("Some Proxy CA")
    leaf = ca.issue("ec.example.com", key=ca.key, not_before=f.MONTH_AGO)
    chain = (f.info(leaf), f.info(ca))
    assert certs.leaf_shares_issuer_key(chain)
    (x,) = found(f.case(f.observation(server_chain=chain)), "MTLS014")
    # squid mints with its CA's key too: the key alone names no product (issue 13)
    assert x.product is None


def test_mtls014_also_spots_the_ca_among_roots_when_only_the_leaf_is_sent():
    ca = f.pki.CA("Some Proxy CA")
    leaf = ca.issue("ec.example.com", key=ca.key, not_before=f.MONTH_AGO)
    expect = Expectations(roots=(f.info(ca),), pins=(f.REAL_PIN,))
    assert found(f.case(f.observation(server_chain=(f.info(leaf),)), expect=expect), "MTLS014")


def test_mtls014_quiet_for_normal_leaf():
    assert not found(f.case(f.intercepted()), "MTLS014")


# MTLS015 ----------------------------------------------------------------------------------

def test_mtls015_fresh_leaf_is_only_a_warning():
    fresh = f.foreign_chain("Example SSL Inspection CA",
                            not_before=f.OBSERVED_AT - dt.timedelta(hours=2))
    c = f.case(f.observation(server_chain=fresh))
    (x,) = found(c, "MTLS015")
    assert x.severity is Severity.WARNING


def test_mtls015_quiet_for_old_leaf_and_for_confirmed_server():
    assert not found(f.case(f.intercepted()), "MTLS015")
    fresh_real = f.SERVER_ISSUING_CA.issue("ec.example.com", key=f.SERVER_LEAF.key)
    chain = (f.info(fresh_real), f.REAL_CHAIN[1])
    assert not found(f.case(f.observation(server_chain=chain)), "MTLS015")


# MTLS016 / MTLS017 ------------------------------------------------------------------------

def same_ca_impostor():
    other = f.SERVER_ISSUING_CA.issue("lb.example.com", not_before=f.MONTH_AGO)
    return f.observation(server_chain=f.chain_of(other))


def test_mtls016_same_root_other_key_is_terminated_by_lb():
    c = f.case(same_ca_impostor())
    (x,) = found(c, "MTLS016")
    assert "Example Server Root CA" in x.summary
    assert "TCP (L4) pass-through" in x.remediation
    assert not found(c, "MTLS011")  # the more specific finding replaces the generic one
    assert evaluate(c).verdict is Verdict.TERMINATED_BY_LB


def test_mtls016_with_baseline_instead_of_pin():
    expect = dataclasses.replace(f.with_baseline(), roots=(f.SERVER_ROOT,))
    assert found(f.case(same_ca_impostor(), expect=expect), "MTLS016")


def test_mtls017_roots_only_is_never_a_pass():
    c = f.case(f.observation(), expect=f.ROOTS_ONLY)
    (x,) = found(c, "MTLS017")
    assert "--pin" in x.remediation and "--baseline" in x.remediation
    res = evaluate(c)
    assert res.verdict is Verdict.UNKNOWN
    assert res.reason == x.summary


def test_mtls017_quiet_when_a_pin_exists():
    assert not found(f.case(f.observation()), "MTLS017")


# MTLS018 ----------------------------------------------------------------------------------

def test_mtls018_f5_default_certificate():
    chain = f.foreign_chain("localhost.localdomain", leaf_cn="localhost.localdomain")
    c = f.case(f.observation(server_chain=chain))
    (x,) = found(c, "MTLS018")
    assert x.product == "F5 BIG-IP"
    assert not found(c, "MTLS010")  # the LB's own certificate is not "re-signed"
    assert evaluate(c).verdict is Verdict.TERMINATED_BY_LB


def test_mtls018_lb_cookie_inside_tls_even_with_the_real_chain():
    http = HttpExchange(path="/", status=200,
                        headers=(("Set-Cookie", "AWSALB=abc; Expires=x; Path=/"),))
    c = f.case(f.observation(http=http))
    (x,) = found(c, "MTLS018")
    assert x.product == "AWS Application Load Balancer"
    assert "decrypted" in x.summary
    res = evaluate(c)
    assert res.verdict is Verdict.TERMINATED_BY_LB and res.product == x.product


def test_mtls018_server_header_and_citrix_cookie():
    http = HttpExchange(path="/", status=503, headers=(
        ("Server", "awselb/2.0"), ("Set-Cookie", "NSC_ec-vs=ffffffff0959; path=/")))
    (x,) = found(f.case(f.observation(http=http)), "MTLS018")
    products = {e.field for e in x.evidence}
    assert "http.headers.Server" in products and "http.set_cookie" in products
