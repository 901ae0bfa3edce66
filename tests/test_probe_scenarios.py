"""End to end: real servers and middleboxes on loopback -> live probe -> observer -> rules.

Each scenario asserts the verdict and the rule ids that fired, so a broken rule, parser
or adapter fails here; every report is also validated against the shipped JSON Schema.
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
from collections.abc import Callable
from importlib.resources import files
from typing import Any

import jsonschema
import pytest

from mtlsprobe.live import pki
from mtlsprobe.live.credentials import Credentials
from mtlsprobe.live.probe import ProbeOptions
from mtlsprobe.model import (
    BaselinePort,
    CaseResult,
    Endpoint,
    Expectations,
    Seen,
    Verdict,
)
from mtlsprobe.model.certs import cert_info
from mtlsprobe.report.jsonout import dumps
from mtlsprobe.run import pipeline
from mtlsprobe.tls.observer import observe
from mtlsprobe_demo.connect_proxy import ConnectProxy
from mtlsprobe_demo.tcp_relay import TcpRelay

SCHEMA = json.loads(files("mtlsprobe").joinpath("report/schema/report-v1.json").read_text("utf-8"))


def ids(result: CaseResult) -> set[str]:
    return {f.rule for f in result.findings}


def probe(
    address: tuple[str, int],
    expect: Expectations,
    *,
    credentials: Credentials | None = None,
    proxies: tuple[str, ...] = (),
    direct: bool = True,
    **options: Any,
) -> list[CaseResult]:
    """Probe one target; validate the JSON report against the schema; return the results."""
    opts = ProbeOptions(
        sni=options.pop("sni", "localhost"),
        timeout=options.pop("timeout", 5.0),
        repeat=options.pop("repeat", 2),
        proxies=proxies,
        use_env_proxy=False,
        direct=direct,
        credentials=credentials,
        **options,
    )
    target = Endpoint(host=address[0], port=address[1])
    results = pipeline.probe([(target, "test")], opts, expect)
    report = pipeline.make_report("probe", results, {"targets": [str(target)]})
    jsonschema.validate(json.loads(dumps(report)), SCHEMA)
    return results


def only(results: list[CaseResult]) -> CaseResult:
    [result] = results
    return result


@pytest.fixture
def agent(loopback_pki) -> Credentials:
    return Credentials.from_issued(loopback_pki.client)


@pytest.fixture
def pinned(loopback_pki) -> Expectations:
    """The operator knows the real server: its root and its leaf's pin."""
    leaf = cert_info(loopback_pki.server.der)
    return Expectations(
        roots=(cert_info(loopback_pki.server_root.der),),
        pins=(leaf.spki_pin,),
        agent_cert=cert_info(loopback_pki.client.der),
        agent_chain=(cert_info(loopback_pki.client.der),),
    )


@pytest.fixture
def root_only(loopback_pki) -> Expectations:
    return Expectations(roots=(cert_info(loopback_pki.server_root.der),))


# --- servers, direct ------------------------------------------------------------------------


def test_required_client_cert_direct_passes(mtls_server, pinned, agent, loopback_pki):
    result = only(probe(mtls_server.address, pinned, credentials=agent))
    assert result.verdict is Verdict.PASS_END_TO_END
    assert {"MTLS001", "MTLS032", "MTLS035"} <= ids(result)
    requests = [o.cert_request for o in result.observations if o.cert_request.seen is Seen.YES]
    assert requests and all(
        "CN=mtlsprobe Test Client CA" in ",".join(r.authorities) for r in requests
    )
    # ground truth: the server itself saw the agent's certificate
    agent_sha = cert_info(loopback_pki.client.der).sha256
    assert any(s.client_cert_sha256 == agent_sha for s in mtls_server.seen)


def test_optional_client_cert_passes(make_reference_server, pinned, agent):
    server = make_reference_server(verify="optional")
    result = only(probe(server.address, pinned, credentials=agent))
    assert result.verdict is Verdict.PASS_END_TO_END
    assert {"MTLS001", "MTLS035"} <= ids(result)


def test_no_client_cert_requested_is_a_pass_with_a_note(make_reference_server, pinned):
    server = make_reference_server(verify="none")
    result = only(probe(server.address, pinned))
    assert result.verdict is Verdict.PASS_END_TO_END
    assert "MTLS002" in ids(result)
    # no CertificateRequest, so the throwaway certificate was never sent: nothing was "accepted"
    assert "MTLS031" not in ids(result)


@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_single_version_servers_pass(make_reference_server, pinned, agent, version):
    server = make_reference_server(min_version=version, max_version=version)
    result = only(probe(server.address, pinned, credentials=agent))
    assert result.verdict is Verdict.PASS_END_TO_END, result.reason
    assert {o.version for o in result.observations if o.version} == {version}
    assert not ids(result) & {"MTLS063", "MTLS064"}  # a version refusal is not a block


def test_post_handshake_auth_is_seen_and_flagged(make_reference_server, pinned, agent):
    server = make_reference_server(behaviour="post_handshake_auth", max_version="TLSv1.3")
    result = only(probe(server.address, pinned, credentials=agent, http_path="/"))
    wheres = {o.cert_request.where for o in result.observations}
    assert "post_handshake" in wheres
    assert "MTLS050" in ids(result)
    assert result.verdict is Verdict.PASS_END_TO_END


def test_nginx_style_http_400_rejection(make_reference_server, pinned, loopback_pki):
    server = make_reference_server(behaviour="nginx")
    stranger = Credentials.from_issued(loopback_pki.stranger)
    result = only(probe(server.address, pinned, credentials=stranger, http_path="/"))
    assert result.verdict is Verdict.CLIENT_CERT_REJECTED
    assert {"MTLS032", "MTLS033"} <= ids(result)
    agent_obs = [o for o in result.observations if o.attempt and o.attempt.name == "agent-cert"]
    assert agent_obs[0].http is not None and agent_obs[0].http.status == 400


def test_agent_cert_from_wrong_ca_is_rejected(mtls_server, pinned, loopback_pki):
    stranger = Credentials.from_issued(loopback_pki.stranger)
    result = only(probe(mtls_server.address, pinned, credentials=stranger))
    assert result.verdict is Verdict.CLIENT_CERT_REJECTED
    assert "MTLS033" in ids(result)


@pytest.mark.parametrize("behaviour", ["reset_after_hello", "silent_after_hello"])
def test_reset_or_silence_after_client_hello_is_blocked(make_reference_server, pinned, behaviour):
    server = make_reference_server(behaviour=behaviour)
    result = only(probe(server.address, pinned, timeout=2.0))
    assert result.verdict is Verdict.BLOCKED
    assert "MTLS063" in ids(result)


def test_closed_port_is_unreachable(pinned):
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = only(probe(("127.0.0.1", port), pinned, timeout=2.0))
    assert result.verdict is Verdict.UNREACHABLE
    assert "MTLS062" in ids(result)


def test_server_accepting_any_cert(make_openssl_server, pinned, agent):
    server = make_openssl_server(verify="request")  # s_server -verify: asks, accepts anything
    result = only(probe(server.address, pinned, credentials=agent, http_path="/"))
    assert result.verdict is Verdict.PASS_END_TO_END
    assert "MTLS031" in ids(result)  # the far end does not enforce yet: said, not failed


def test_accepting_any_cert_where_the_real_server_rejects_is_a_terminator(
    make_openssl_server, pinned, agent
):
    server = make_openssl_server(verify="request")
    baseline = BaselinePort(port=server.port, rejects_untrusted_cert=Seen.YES)
    expect = Expectations(
        roots=pinned.roots, pins=pinned.pins, baseline=(baseline,), agent_cert=pinned.agent_cert
    )
    result = only(probe(server.address, expect, credentials=agent, http_path="/"))
    assert result.verdict is Verdict.TERMINATED_BY_LB
    assert "MTLS030" in ids(result)


def test_incomplete_chain_is_not_called_interception(make_reference_server, loopback_pki):
    import datetime as dt

    inter = loopback_pki.server_root.intermediate("mtlsprobe Test Issuing CA")
    issued = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=30)  # not minted just now
    full = inter.issue("localhost", sans=("localhost", "127.0.0.1"), not_before=issued)
    leaf_only = pki.Issued(cert=full.cert, key=full.key, chain=())
    server = make_reference_server(identity=leaf_only)
    roots = (cert_info(loopback_pki.server_root.der),)
    result = only(probe(server.address, Expectations(roots=roots)))
    assert result.verdict is Verdict.UNKNOWN, result.reason
    assert "MTLS010" not in ids(result)
    assert "MTLS023" in ids(result)  # the chain is incomplete: said as such
    pinned = Expectations(roots=roots, pins=(cert_info(full.der).spki_pin,))
    result = only(probe(server.address, pinned))
    assert result.verdict is Verdict.PASS_END_TO_END
    assert "MTLS023" in ids(result)


def test_expired_server_certificate_is_flagged(make_reference_server, loopback_pki):
    import datetime as dt

    now = dt.datetime.now(dt.timezone.utc)
    expired = loopback_pki.server_root.issue(
        "localhost", sans=("localhost", "127.0.0.1"),
        not_before=now - dt.timedelta(days=30), not_after=now - dt.timedelta(days=1),
    )
    server = make_reference_server(identity=expired)
    expect = Expectations(
        roots=(cert_info(loopback_pki.server_root.der),), pins=(cert_info(expired.der).spki_pin,)
    )
    result = only(probe(server.address, expect))
    assert "MTLS019" in ids(result)
    assert result.verdict is Verdict.PASS_END_TO_END  # the path is fine; the cert is not


def test_tls12_renegotiation_request_is_read(make_openssl_server, agent):
    """s_server asks for the client certificate only by renegotiating after the request."""
    from mtlsprobe.live.connect import open_connection
    from mtlsprobe.live.handshake import run_attempt
    from mtlsprobe.live.proxy import RoutePlan
    from mtlsprobe.model import Attempt, CertKind

    server = make_openssl_server(
        verify="none", tls="TLSv1.2", www=False, extra_args=("-no_ticket", "-no_cache")
    )
    target = Endpoint(host=server.host, port=server.port)
    attempt = Attempt(name="agent-cert", client_cert=CertKind.AGENT)
    out: list[Any] = []

    def run() -> None:
        import time

        deadline = time.monotonic() + 8
        conn = open_connection(target, RoutePlan(), deadline=deadline)
        out.append(run_attempt(conn, attempt, sni="localhost", credentials=agent,
                               untrusted=None, deadline=deadline, http_path="/admin"))

    worker = threading.Thread(target=run)
    worker.start()
    try:
        server.wait_for_line(r"GET /admin HTTP/1.1")
        mark = server.line_count
        server.command("R")
        server.wait_for_line(r"agent-01", start=mark)
        server.command("q")
    finally:
        worker.join(10)
    obs = observe(out[0])
    assert obs.renegotiation is Seen.YES
    assert obs.cert_request.seen is Seen.YES and obs.cert_request.where == "renegotiation"
    assert obs.client_chain_seen is Seen.YES and obs.client_chain


# --- paths ------------------------------------------------------------------------------------


def test_tcp_relay_passes(tcp_relay, pinned, agent, mtls_server):
    result = only(probe(tcp_relay.address, pinned, credentials=agent))
    assert result.verdict is Verdict.PASS_END_TO_END
    assert "MTLS035" in ids(result)


def test_tinyproxy_tunnel_passes(mtls_server, make_tinyproxy, pinned, agent):
    proxy = make_tinyproxy()
    results = probe(
        mtls_server.address, pinned, credentials=agent, direct=False,
        proxies=(f"http://{proxy.host}:{proxy.port}",),
    )
    result = only(results)
    assert result.route.kind == "http_proxy" and result.route.connect_status == 200
    assert result.verdict is Verdict.PASS_END_TO_END, result.reason


def test_tinyproxy_auth_required(mtls_server, make_tinyproxy, pinned):
    proxy = make_tinyproxy(basic_auth=("alice", "tp-secret"))
    result = only(probe(mtls_server.address, pinned, direct=False,
                        proxies=(f"http://{proxy.host}:{proxy.port}",)))
    assert result.verdict is Verdict.PROXY_AUTH_REQUIRED
    assert "MTLS060" in ids(result)


def test_connect_proxy_407_and_403(mtls_server, start_service, pinned):
    authed = start_service(ConnectProxy(require_auth=("bob", "pw-not-in-report")))
    result = only(probe(mtls_server.address, pinned, direct=False,
                        proxies=(f"http://{authed.host}:{authed.port}",)))
    assert result.verdict is Verdict.PROXY_AUTH_REQUIRED
    assert result.route.proxy_auth_schemes == ("Basic",)
    deny = start_service(ConnectProxy(deny={f"{mtls_server.host}:{mtls_server.port}"}))
    result = only(probe(mtls_server.address, pinned, direct=False,
                        proxies=(f"http://{deny.host}:{deny.port}",)))
    assert result.verdict is Verdict.BLOCKED
    assert "MTLS061" in ids(result)


def test_mitmproxy_regular_mode_is_inspected_and_named(mtls_server, mitmdump, pinned, agent):
    result = only(probe(
        mtls_server.address, pinned, credentials=agent, direct=False,
        proxies=(f"http://{mitmdump.host}:{mitmdump.port}",), timeout=8.0,
    ))
    assert result.verdict is Verdict.INSPECTED
    assert {"MTLS010", "MTLS013", "MTLS014"} <= ids(result)
    assert result.product == "mitmproxy"
    # ground truth: the agent's certificate never reached the server
    agent_sha = cert_info(pinned.agent_cert.der).sha256
    assert not any(s.client_cert_sha256 == agent_sha for s in mtls_server.seen)


def test_intercepting_proxy_is_inspected(intercepting_proxy, pinned, agent):
    result = only(probe(intercepting_proxy.address, pinned, credentials=agent))
    assert result.verdict is Verdict.INSPECTED
    assert {"MTLS010", "MTLS011"} <= ids(result)


def test_terminating_proxy_with_pin(terminating_proxy, pinned, agent):
    result = only(probe(terminating_proxy.address, pinned, credentials=agent))
    assert result.verdict is Verdict.TERMINATED_BY_LB
    assert "MTLS016" in ids(result)


def test_terminating_proxy_with_only_the_root_is_unknown_never_pass(terminating_proxy, root_only):
    result = only(probe(terminating_proxy.address, root_only))
    assert result.verdict is Verdict.UNKNOWN
    assert "MTLS017" in ids(result)


def test_without_expectations_the_verdict_is_unknown(mtls_server):
    result = only(probe(mtls_server.address, Expectations()))
    assert result.verdict is Verdict.UNKNOWN
    assert "MTLS090" in ids(result)


class RoundRobinRelay(TcpRelay):
    """An L4 pool: each new connection goes to the next upstream."""

    def __init__(self, upstreams: list[tuple[str, int]]) -> None:
        super().__init__(upstreams[0])
        self._next: Callable[[], tuple[str, int]] = itertools.cycle(upstreams).__next__
        self._lock = threading.Lock()

    def pick_upstream(self) -> tuple[str, int]:
        with self._lock:
            return self._next()


def test_chain_changing_between_repeats_is_caught(
    mtls_server, intercepting_proxy, start_service
):
    pool = start_service(RoundRobinRelay([mtls_server.address, intercepting_proxy.address]))
    result = only(probe(pool.address, Expectations(), repeat=4))
    assert "MTLS040" in ids(result)
    assert result.verdict is Verdict.UNKNOWN


def test_lb_cookie_names_the_load_balancer(
    make_reference_server, loopback_pki, start_service, root_only
):
    """A persistence cookie inside TLS proves an HTTP-aware box decrypted the session."""
    from mtlsprobe_demo.terminating_proxy import TerminatingProxy

    server = make_reference_server(verify="none")  # before enforcement: answers everyone
    identity = loopback_pki.server_root.issue("localhost", sans=("localhost", "127.0.0.1"))
    lb = start_service(TerminatingProxy(
        identity, server.address, lb_cookie="BIGipServerpool_ec=1677787402.20480.0000"
    ))
    result = only(probe(lb.address, root_only, http_path="/"))
    assert result.verdict is Verdict.TERMINATED_BY_LB
    assert "MTLS018" in ids(result)
    assert result.product and "F5" in result.product


@pytest.mark.parametrize(
    "suite", ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"]
)
def test_every_tls13_aead_is_decrypted_live(make_openssl_server, pinned, suite):
    """The encrypted CertificateRequest is read whichever AEAD the server picks."""
    server = make_openssl_server(tls="TLSv1.3", extra_args=("-ciphersuites", suite))
    result = only(probe(server.address, pinned, repeat=1))
    tls13 = [o for o in result.observations if o.version == "TLSv1.3"]
    assert tls13 and all(o.cipher_suite == suite for o in tls13)
    assert all(o.decrypted and o.cert_request.seen is Seen.YES for o in tls13)
    names = {a for o in tls13 for a in o.cert_request.authorities}
    assert any("CN=mtlsprobe Test Client CA" in a for a in names)
