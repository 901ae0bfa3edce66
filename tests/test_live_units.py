"""Target strings, proxy URLs, environment proxies and NO_PROXY: pure parsing, no sockets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mtlsprobe.live.connect import _parse_connect_response, connect_request
from mtlsprobe.live.proxy import (
    env_proxy,
    no_proxy_matches,
    parse_proxy_url,
    plan_routes,
    redact_url,
)
from mtlsprobe.live.targets import expand_targets, parse_target
from mtlsprobe.model import Endpoint
from mtlsprobe.model.errors import InputError

# --- targets ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("example.com", ("example.com", None)),
        ("Example.COM.:443", ("example.com", 443)),
        ("10.1.2.3:8443", ("10.1.2.3", 8443)),
        ("[2001:db8::1]:9443", ("2001:db8::1", 9443)),
        ("[::1]", ("::1", None)),
        ("::1", ("::1", None)),
        ("fe80::1%eth0", ("fe80::1%eth0", None)),
        ("ec_server-01.corp.internal", ("ec_server-01.corp.internal", None)),
    ],
)
def test_parse_target(text, expected):
    assert parse_target(text) == expected


@pytest.mark.parametrize(
    "junk",
    [
        "",
        "https://example.com",
        "example.com/path",
        "host:0",
        "host:65536",
        "host:http",
        "2001:db8::1:443:x",
        "[2001:db8::1",
        "[not-v6]:443",
        "[::1]443",
        "bad host",
        "-leading.example",
        "1.2.3",
        "300.1.1.1",
        "a" * 64 + ".com",
    ],
)
def test_parse_target_rejects_junk_with_one_line(junk):
    with pytest.raises(InputError) as info:
        parse_target(junk)
    assert "\n" not in str(info.value)


def test_expand_targets_default_port_and_port_flags():
    assert expand_targets(["a.test"]) == [Endpoint(host="a.test", port=8383)]
    assert expand_targets(["a.test", "b.test:9000", "[::1]"], [443, 8443, 443]) == [
        Endpoint(host="a.test", port=443),
        Endpoint(host="a.test", port=8443),
        Endpoint(host="b.test", port=9000),  # an explicit port wins over --port
        Endpoint(host="::1", port=443),
        Endpoint(host="::1", port=8443),
    ]
    with pytest.raises(InputError):
        expand_targets(["a.test"], [0])


@given(st.ip_addresses(), st.integers(1, 65535))
def test_bracketed_addresses_round_trip(ip, port):
    text = f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"
    assert parse_target(text) == (str(ip), port)
    assert str(Endpoint(host=str(ip), port=port)) == text


# --- proxy URLs ----------------------------------------------------------------------------


def test_proxy_url_keeps_credentials_out_of_everything_shown():
    spec = parse_proxy_url("http://alice:p%40ss%3Aword@proxy.corp:3128/")
    assert (spec.host, spec.port, spec.username, spec.password) == (
        "proxy.corp", 3128, "alice", "p@ss:word",
    )
    assert spec.url == "http://alice@proxy.corp:3128"
    assert "p@ss" not in repr(spec) and "p%40ss" not in repr(spec)
    assert spec.authorization == "Basic YWxpY2U6cEBzczp3b3Jk"  # base64("alice:p@ss:word")
    route = plan_routes(Endpoint(host="s", port=1), proxies=[
        "http://alice:p%40ss%3Aword@proxy.corp:3128"], use_env_proxy=False)[1].route()
    assert route.proxy == "http://alice@proxy.corp:3128" and route.source == "flag"
    assert "word" not in repr(route)


def test_proxy_url_defaults_and_ipv6():
    assert parse_proxy_url("proxy.corp").port == 1080
    spec = parse_proxy_url("http://[::1]:3128")
    assert (spec.host, spec.url, spec.authorization) == ("::1", "http://[::1]:3128", None)


@pytest.mark.parametrize(
    "bad", ["socks5://h:1080", "https://h:443", "http://:3128", "http://h:notaport",
            "http://h:3128/path", "http://user:hunter2@h:99999"]
)
def test_bad_proxy_urls_are_input_errors_without_password(bad):
    with pytest.raises(InputError) as info:
        parse_proxy_url(bad)
    assert "hunter2" not in str(info.value)
    assert "\n" not in str(info.value)


def test_redact_url():
    assert redact_url("http://u:secret@h:1") == "http://u:***@h:1"
    assert redact_url("http://h:1") == "http://h:1"


def test_connect_request_brackets_ipv6_and_sends_auth():
    req = connect_request(Endpoint(host="::1", port=443), "Basic eHg=")
    assert req.startswith(b"CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n")
    assert b"Proxy-Authorization: Basic eHg=\r\n" in req and req.endswith(b"\r\n\r\n")
    assert b"Proxy-Authorization" not in connect_request(Endpoint(host="h", port=1), None)


# --- environment ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "no_proxy", "matches"),
    [
        ("api.corp.example", "corp.example", True),
        ("api.corp.example", ".corp.example", True),
        ("corp.example", ".corp.example", True),
        ("notcorp.example", "corp.example", False),
        ("API.Corp.Example.", "corp.example", True),
        ("anything", "*", True),
        ("anything", "a, *.b ,*", True),
        ("10.1.2.3", "10.0.0.0/8", True),
        ("10.1.2.3", "10.1.2.3", True),
        ("11.1.2.3", "10.0.0.0/8", False),
        ("::1", "::1", True),
        ("2001:db8::5", "2001:db8::/32", True),
        ("10.1.2.3", "corp.example", False),
        ("host", "", False),
        ("host", "other host", True),
    ],
)
def test_no_proxy_matches_like_curl(host, no_proxy, matches):
    assert no_proxy_matches(host, no_proxy) is matches


def test_env_proxy_precedence_and_no_proxy():
    env = {"HTTPS_PROXY": "http://upper:1", "https_proxy": "lower:2", "NO_PROXY": "skip.test"}
    spec = env_proxy("svc.test", env)
    assert (spec.host, spec.port, spec.source) == ("lower", 2, "env:https_proxy")
    assert env_proxy("a.skip.test", env) is None
    assert env_proxy("svc.test", {"no_proxy": "x"}) is None
    assert env_proxy("svc.test", {"HTTPS_PROXY": "http://u:pw@p:3"}).source == "env:HTTPS_PROXY"


def test_plan_routes_order_and_switches():
    target = Endpoint(host="svc.test", port=8383)
    env = {"HTTPS_PROXY": "http://envproxy:3128"}
    kinds = [(p.kind, p.proxy and p.proxy.source) for p in
             plan_routes(target, proxies=["http://flag:1"], environ=env)]
    assert kinds == [("direct", None), ("http_proxy", "flag"), ("http_proxy", "env:HTTPS_PROXY")]
    assert len(plan_routes(target, environ=env, use_env_proxy=False)) == 1
    assert [p.kind for p in plan_routes(target, environ=env, direct=False)] == ["http_proxy"]
    # the same proxy from the flag and the environment is probed once
    assert len(plan_routes(target, proxies=["envproxy:3128"], environ=env)) == 2
    with pytest.raises(InputError):
        plan_routes(target, environ={"HTTPS_PROXY": "socks5://x:1"})


def test_connect_answer_keeps_early_tls_bytes_for_the_handshake():
    tunnel = _parse_connect_response(
        b"HTTP/1.1 200 Connection established\r\nVia: 1.1 squid", b"\x16\x03\x03\x00"
    )
    assert (tunnel.status, tunnel.reason, tunnel.headers) == (
        200, "Connection established", (("Via", "1.1 squid"),)
    )
    assert tunnel.leftover == b"\x16\x03\x03\x00" and tunnel.error is None
    assert _parse_connect_response(b"SSH-2.0-OpenSSH_9.6", b"").error is not None


def test_status_codes_must_be_ascii_digits():
    # "³" passes str.isdigit() but int() refuses it: a hostile proxy or server must get a
    # clear "malformed" answer, not a traceback
    from mtlsprobe.live.handshake import parse_http_response

    assert _parse_connect_response(b"HTTP/1.1 2\xb30 OK", b"").error
    assert parse_http_response("/", b"HTTP/1.1 2\xb3 OK\r\n\r\n", None).error
    assert _parse_connect_response(b"HTTP/1.1 200 OK", b"").status == 200
