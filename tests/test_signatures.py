"""The middlebox signature file: validity, provenance, and matching real certificates."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

import factories as f
import pytest

from mtlsprobe.model import HttpExchange
from mtlsprobe.rules.signatures import (
    CONFIDENCES,
    KINDS,
    SignatureError,
    load_signatures,
    match_chain,
    match_http,
    parse_signatures,
)

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "middleboxes.md"


def raw() -> dict:
    text = resources.files("mtlsprobe.rules").joinpath("signatures.json").read_text("utf-8")
    return json.loads(text)


def test_every_entry_is_valid_and_ids_are_unique():
    sigs = load_signatures()
    assert len(sigs) == len(raw()["signatures"]) >= 50
    assert len({s.id for s in sigs}) == len(sigs)
    for s in sigs:
        assert s.source.strip() and s.product.strip()
        assert s.kind in KINDS and s.confidence in CONFIDENCES
        assert any((s.issuer, s.subject, s.header_value, s.cookie, s.server, s.body))


def test_every_regex_compiles():
    for entry in raw()["signatures"]:
        m = entry["match"]
        for key, value in m.items():
            re.compile(value["regex"] if key == "header" else value)


@pytest.mark.skipif(not REFERENCE.exists(), reason="shared/ reference not present")
def test_sources_are_cited_exactly_as_in_the_reference():
    """Quoted from shared/reference, or naming the upstream file or page it was read in."""
    text = REFERENCE.read_text("utf-8")
    upstream = re.compile(r"^(https://\S+|[\w.-]+/[\w.-]+ [\w./-]+\.\w+:) ")
    for s in load_signatures():
        assert s.source in text or upstream.match(s.source), (s.id, s.source)


def test_seeded_from_every_product_row():
    products = " ".join(s.product for s in load_signatures())
    for name in ("Zscaler", "Fortinet", "Netskope", "Blue Coat", "Cisco Umbrella", "Cisco WSA",
                 "Sophos", "Forcepoint", "McAfee", "Kaspersky", "Avast", "ESET", "Bitdefender",
                 "Trend Micro", "SonicWall", "Smoothwall", "Cyberoam", "ContentKeeper",
                 "Squid", "mitmproxy", "Fiddler", "Charles", "Burp", "HTTP Toolkit",
                 "Barracuda", "F5", "AWS", "Azure Application Gateway", "HAProxy", "nginx",
                 "Citrix"):
        assert name in products, name


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"signatures": [{"id": "a", "product": "p", "kind": "interceptor",
                          "confidence": "official", "match": {"issuer_regex": "x"}}]},
         "missing source"),
        ({"signatures": [{"id": "a", "product": "p", "kind": "interceptor", "source": "s",
                          "confidence": "official", "match": {"issuer_regex": "(unclosed"}}]},
         "does not compile"),
        ({"signatures": [{"id": "a", "product": "p", "kind": "interceptor", "source": "s",
                          "confidence": "official", "match": {"issuer_regex": "x"}}] * 2},
         "duplicate id"),
        ({"signatures": [{"id": "a", "product": "p", "kind": "firewall", "source": "s",
                          "confidence": "official", "match": {"issuer_regex": "x"}}]},
         "kind"),
        ({"signatures": [{"id": "a", "product": "p", "kind": "proxy", "source": "s",
                          "confidence": "maybe", "match": {"issuer_regex": "x"}}]},
         "confidence"),
        ({"signatures": [{"id": "a", "product": "p", "kind": "proxy", "source": "s",
                          "confidence": "official", "match": {"ja3": "x"}}]},
         "unknown match keys"),
        ({"sigs": []}, "signatures"),
    ],
)
def test_loader_rejects_defects(doc, message):
    with pytest.raises(SignatureError, match=message):
        parse_signatures(doc)


@pytest.mark.parametrize(
    ("cn", "org", "product"),
    [
        ("Zscaler Intermediate Root CA (zscalerthree.net) (t)", "Zscaler Inc.", "Zscaler"),
        ("Zscaler Root CA", None, "Zscaler"),
        ("FortiGate CA", "Fortinet", "Fortinet FortiGate"),
        ("FG100F3G19000000", "Fortinet Ltd.", "Fortinet FortiGate"),
        ("ca.acme.goskope.com", "Acme Corp", "Netskope"),
        ("Cisco Umbrella Primary SubCA", "Cisco", "Cisco Umbrella"),
        ("Sophos SSL CA_C1234567", "Sophos", "Sophos"),
        ("Forcepoint Cloud CA", "Forcepoint LLC", "Forcepoint / Websense"),
        ("McAfee Web Gateway", None, "McAfee (Skyhigh) Web Gateway"),
        ("Kaspersky Anti-Virus Personal Root Certificate", None, "Kaspersky"),
        ("Avast Web/Mail Shield Root", "Avast Web/Mail Shield", "Avast / AVG"),
        ("ESET SSL Filter CA", "ESET, spol. s r. o.", "ESET"),
        ("Bitdefender Personal CA.Net-Defender", "Bitdefender", "Bitdefender"),
        ('Not trusted by "Corp Proxy CA"', None, "Squid ssl-bump"),
        ("mitmproxy", "mitmproxy", "mitmproxy"),
        ("DO_NOT_TRUST_FiddlerRoot", "DO_NOT_TRUST", "Fiddler"),
        ("PortSwigger CA", "PortSwigger", "Burp Suite"),
        ("HTTP Toolkit CA", None, "HTTP Toolkit"),
        ("Charles Proxy CA (12 Jan 2024, laptop)", "XK72 Ltd", "Charles Proxy"),
    ],
)
def test_interceptor_issuers_match_certificates_made_with_pki(cn, org, product):
    hits = match_chain(f.foreign_chain(cn, org), kinds=("interceptor",))
    assert product in {h.signature.product for h in hits}
    assert hits[0].field == "server_chain[0].issuer"


def test_f5_default_certificate_is_a_load_balancer():
    chain = f.foreign_chain("localhost.localdomain", leaf_cn="localhost.localdomain")
    (hit,) = match_chain(chain, kinds=("load_balancer",))
    assert hit.signature.product == "F5 BIG-IP"
    assert not match_chain(chain, kinds=("interceptor",))


@pytest.mark.parametrize(
    ("cn", "org"),
    [("Example Server Issuing CA", "Example Corp"), ("R3", "Let's Encrypt"),
     ("DigiCert Global G2 TLS RSA SHA256 2020 CA1", "DigiCert Inc")],
)
def test_ordinary_issuers_match_nothing(cn, org):
    assert not match_chain(f.foreign_chain(cn, org))


def test_real_server_chain_matches_nothing():
    assert not match_chain(f.REAL_CHAIN)


@pytest.mark.parametrize(
    ("headers", "body", "product"),
    [
        ((("Set-Cookie", "BIGipServerpool=1677787402.20480.0000; path=/"),), "", "F5 BIG-IP"),
        ((("Server", "BigIP"),), "", "F5 BIG-IP"),
        ((("Set-Cookie", "AWSALBTG=x; Path=/"),), "", "AWS Application Load Balancer"),
        ((("Set-Cookie", "AWSELB=x"),), "", "AWS Classic Load Balancer"),
        ((("Set-Cookie", "ApplicationGatewayAffinity=abc"),), "", "Azure Application Gateway"),
        ((), "<hr><center>Microsoft-Azure-Application-Gateway/v2</center>",
         "Azure Application Gateway"),
        ((), "<h1>503 Service Unavailable</h1>\nNo server is available to handle this request.",
         "HAProxy"),
        ((("Set-Cookie", "NSC_vs_ec=ffffffff09; path=/"),), "", "Citrix ADC / NetScaler"),
        ((("x-citrix-via", "gw1"),), "", "Citrix ADC / NetScaler"),
    ],
)
def test_load_balancer_http_tells(headers, body, product):
    http = HttpExchange(path="/", status=200, headers=headers, body_excerpt=body)
    assert product in {h.signature.product for h in match_http(http, kinds=("load_balancer",))}


def test_proxy_and_interceptor_headers():
    http = HttpExchange(path="/", status=200, headers=(
        ("Via", "1.1 wsa.corp:80 (Cisco-WSA/9.0.0-485)"), ("X-Cache", "MISS from proxy"),
        ("X-MWG-Via", "mwg1")))
    interceptors = {h.signature.product for h in match_http(http, kinds=("interceptor",))}
    assert interceptors == {"Cisco WSA", "McAfee (Skyhigh) Web Gateway"}
    proxies = {h.signature.id for h in match_http(http, kinds=("proxy",))}
    assert proxies == {"proxy-via", "proxy-x-cache"}


def test_plain_response_matches_nothing():
    assert not match_http(f.HTTP_OK)
    assert not match_http(None)
