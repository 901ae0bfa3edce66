"""The live adapter against real third-party programs: openssl s_server and tinyproxy."""

from __future__ import annotations

import threading
import time

import pytest

from mtlsprobe.live.connect import ConnectFailure, Connection, open_connection
from mtlsprobe.live.credentials import Credentials
from mtlsprobe.live.handshake import run_attempt
from mtlsprobe.live.probe import ProbeOptions, probe_target, untrusted_identity
from mtlsprobe.live.proxy import RoutePlan, parse_proxy_url
from mtlsprobe.model import Attempt, CertKind, Direction, Endpoint, Stage, Transcript

pytestmark = pytest.mark.tools

AGENT = Attempt(name="agent-cert", client_cert=CertKind.AGENT)
TLS12_NOCERT = Attempt(name="tls12-nocert", max_version="TLSv1.2", min_version="TLSv1.2")


@pytest.fixture
def agent(loopback_pki) -> Credentials:
    return Credentials.from_issued(loopback_pki.client)


def _run(server, attempt: Attempt, *, creds=None, plan=None, timeout=5.0, **kw) -> Transcript:
    deadline = time.monotonic() + timeout
    conn = open_connection(
        Endpoint(host=server.host, port=server.port), plan or RoutePlan(), deadline=deadline
    )
    assert isinstance(conn, Connection), conn
    return run_attempt(conn, attempt, sni="localhost", credentials=creds,
                       untrusted=untrusted_identity(), deadline=deadline, **kw)


def test_openssl_s_server_tls12_required(make_openssl_server, agent):
    server = make_openssl_server(verify="required", tls="TLSv1.2")
    bare = _run(server, TLS12_NOCERT)
    assert bare.local_error and "ALERT" in bare.local_error
    s2c = b"".join(c.data for c in bare.chunks if c.direction == Direction.S2C)
    assert b"\x15\x03\x03\x00\x02\x02" in s2c  # a plaintext fatal alert from s_server
    good = _run(server, AGENT, creds=agent)
    assert good.local_error is None
    assert good.http.status == 200 and "s_server" in good.http.body_excerpt


def test_tls12_renegotiation_for_a_client_cert_is_followed(make_openssl_server, agent):
    """The server asks for the certificate only after the request (HelloRequest)."""
    # no resumption, so the renegotiation is a full handshake with a CertificateRequest
    server = make_openssl_server(
        verify="none", tls="TLSv1.2", www=False, extra_args=("-no_ticket", "-no_cache")
    )
    result: list[Transcript] = []
    worker = threading.Thread(
        target=lambda: result.append(_run(server, AGENT, creds=agent, http_path="/admin"))
    )
    worker.start()
    try:
        server.wait_for_line(r"GET /admin HTTP/1.1")
        mark = server.line_count
        server.command("R")  # renegotiate, requesting a client certificate
        server.wait_for_line(r"agent-01", start=mark)  # s_server verified our cert
        server.command("q")  # end the connection
    finally:
        worker.join(10)
    [t] = result
    after_get = False
    renegotiated = False
    for chunk in t.chunks:
        if chunk.direction == Direction.C2S and chunk.data[:1] == b"\x17":
            after_get = True
        elif after_get and chunk.direction == Direction.S2C and chunk.data[:1] == b"\x16":
            renegotiated = True  # handshake record after the request: HelloRequest
    assert renegotiated
    assert t.local_error is None or "ALERT" not in t.local_error


def test_tinyproxy_tunnel_and_probe(make_reference_server, make_tinyproxy, agent):
    server = make_reference_server(verify="required")
    proxy = make_tinyproxy()
    options = ProbeOptions(sni="localhost", timeout=5, repeat=1, credentials=agent,
                           proxies=(f"http://{proxy.host}:{proxy.port}",), use_env_proxy=False)
    routes = probe_target(Endpoint(host=server.host, port=server.port), options)
    (_, direct), (proxied_route, proxied) = routes
    assert proxied_route.kind == "http_proxy" and proxied_route.connect_status == 200
    assert {t.attempt.name: t.http and t.http.status for t in proxied}["agent-cert"] == 200
    assert any("CERTIFICATE_REQUIRED" in (t.local_error or "") for t in proxied)
    # the tunnel adds no TLS bytes of its own: both routes start with the same record type
    assert all(t.chunks[0].data[:1] == b"\x16" for t in direct + proxied)


def test_tinyproxy_407_and_forbidden_port(make_reference_server, make_tinyproxy):
    server = make_reference_server()
    target = Endpoint(host=server.host, port=server.port)
    authed = make_tinyproxy(basic_auth=("alice", "tp-secret"))
    got = open_connection(
        target,
        RoutePlan(proxy=parse_proxy_url(f"http://alice:wrong@{authed.host}:{authed.port}")),
        deadline=time.monotonic() + 3,
    )
    assert isinstance(got, ConnectFailure) and got.stage == Stage.PROXY
    # tinyproxy 1.11 answers a CONNECT without valid credentials with 401 + WWW-Authenticate
    assert got.route.connect_status in (401, 407)
    assert got.route.proxy_auth_schemes == ("Basic",)
    assert "wrong" not in (got.route.proxy or "")
    ok = _run(server, Attempt(name="x"),
              plan=RoutePlan(proxy=parse_proxy_url(
                  f"http://alice:tp-secret@{authed.host}:{authed.port}")))
    assert ok.route.connect_status == 200 and ok.chunks
    limited = make_tinyproxy(connect_ports=[server.port + 1 if server.port < 65535 else 1])
    denied = open_connection(
        target, RoutePlan(proxy=parse_proxy_url(f"{limited.host}:{limited.port}")),
        deadline=time.monotonic() + 3,
    )
    assert isinstance(denied, ConnectFailure) and denied.route.connect_status == 403
