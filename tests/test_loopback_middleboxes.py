"""Loopback middleboxes with real Python ssl clients: who sees which certificate."""

from __future__ import annotations

import base64
import hashlib
import socket
import ssl
import threading

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from tools import read_http_head, tls_request

from mtlsprobe.live import pki
from mtlsprobe_demo.connect_proxy import ConnectProxy
from mtlsprobe_demo.intercepting_proxy import InterceptingProxy
from mtlsprobe_demo.tcp_relay import TcpRelay
from mtlsprobe_demo.terminating_proxy import TerminatingProxy, add_cookie
from mtlsprobe_demo.tls_contexts import client_context

REQUEST = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"


def tls_exchange(
    raw: socket.socket,
    trust: pki.CA,
    identity: pki.Issued | None = None,
    *,
    max_version: str | None = None,
) -> tuple[x509.Certificate, bytes]:
    """TLS over an open socket, one GET; returns (server leaf as seen, raw response)."""
    ctx = client_context(trust=[trust], identity=identity, max_version=max_version)
    return tls_request(raw, ctx, REQUEST)


def connect_via(
    proxy: tuple[str, int], target: str, auth: tuple[str, str] | None = None
) -> tuple[socket.socket, bytes]:
    """Send CONNECT; return the socket and the proxy's response head."""
    raw = socket.create_connection(proxy, timeout=5)
    head = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        head += f"Proxy-Authorization: Basic {token}\r\n"
    raw.sendall((head + "\r\n").encode())
    return raw, read_http_head(raw)


def cn(name: x509.Name) -> str:
    return str(name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def sha256(issued: pki.Issued) -> str:
    return hashlib.sha256(issued.der).hexdigest()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- TcpRelay ---------------------------------------------------------------------------------


def test_tcp_relay_passes_the_client_cert(tcp_relay, mtls_server, loopback_pki):
    raw = socket.create_connection(tcp_relay.address, timeout=5)
    leaf, response = tls_exchange(raw, loopback_pki.server_root, loopback_pki.client)
    assert response.startswith(b"HTTP/1.1 200")
    assert cn(leaf.issuer) == "mtlsprobe Test Server Root"
    assert mtls_server.wait_seen(1)[0].client_cert_sha256 == sha256(loopback_pki.client)
    (flow,) = tcp_relay.wait_seen(1)
    assert flow.bytes_up > 0 and flow.bytes_down > len(response)


def test_tcp_relay_half_close_still_gets_the_answer(make_reference_server, start_service):
    """A plain client that half-closes after its request still receives the response."""
    server = make_reference_server(behaviour="silent_after_hello")
    relay = start_service(TcpRelay(server.address))
    with socket.create_connection(relay.address, timeout=5) as raw:
        raw.sendall(b"\x16\x03\x01\x00\x04\x01\x00\x00\x00")
        raw.shutdown(socket.SHUT_WR)
        assert raw.recv(10) == b""  # server saw EOF after the hello and closed
    assert server.wait_seen(1)[0].client_hello == b"\x16\x03\x01\x00\x04\x01\x00\x00\x00"


# -- InterceptingProxy ------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_intercepting_proxy_resigns_and_drops_client_cert(
    intercepting_proxy, mtls_server, loopback_pki, version
):
    raw = socket.create_connection(intercepting_proxy.address, timeout=5)
    leaf, response = tls_exchange(
        raw, loopback_pki.inspection_ca, loopback_pki.client, max_version=version
    )
    assert cn(leaf.issuer) == "mtlsprobe Demo Inspection CA"
    assert cn(leaf.subject) == "localhost"
    assert response.startswith(b"HTTP/1.1 502 Bad Gateway")
    assert b"CERTIFICATE_REQUIRED" in response
    (seen,) = mtls_server.wait_seen(1)
    assert seen.client_cert_sha256 is None
    assert "PEER_DID_NOT_RETURN_A_CERTIFICATE" in (seen.error or "")
    (flow,) = intercepting_proxy.wait_seen(1)
    assert flow.status == 502 and flow.sni == "localhost"


def test_intercepting_proxy_relays_when_cert_is_optional(
    make_reference_server, loopback_pki, start_service
):
    server = make_reference_server(verify="optional")
    proxy = start_service(InterceptingProxy(loopback_pki.inspection_ca, upstream=server.address))
    raw = socket.create_connection(proxy.address, timeout=5)
    _, response = tls_exchange(raw, loopback_pki.inspection_ca, loopback_pki.client)
    assert response.startswith(b"HTTP/1.1 200")
    assert b'"client_cert_sha256": null' in response
    assert server.wait_seen(1)[0].client_cert_sha256 is None


def test_intercepting_proxy_upstream_handshake_failure_is_502(
    make_reference_server, loopback_pki, start_service
):
    """TLS 1.2 upstream: the refusal comes in the handshake itself."""
    server = make_reference_server(max_version="TLSv1.2")
    proxy = start_service(InterceptingProxy(loopback_pki.inspection_ca, upstream=server.address))
    raw = socket.create_connection(proxy.address, timeout=5)
    _, response = tls_exchange(raw, loopback_pki.inspection_ca, loopback_pki.client)
    assert response.startswith(b"HTTP/1.1 502")
    assert b"upstream TLS handshake failed" in response
    assert proxy.wait_seen(1)[0].upstream_error


def test_bump_proxy_connect_mints_and_caches_leaf(bump_proxy, make_reference_server, loopback_pki):
    server = make_reference_server(verify="optional")
    leaves = []
    for _ in range(2):
        raw, reply = connect_via(bump_proxy.address, f"localhost:{server.port}")
        assert reply.startswith(b"HTTP/1.1 200")
        leaf, response = tls_exchange(raw, loopback_pki.inspection_ca)
        assert response.startswith(b"HTTP/1.1 200")
        leaves.append(leaf)
    assert leaves[0] == leaves[1]  # minted once per name
    assert list(bump_proxy.minted) == ["localhost"]
    san = leaves[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [f.target for f in bump_proxy.wait_seen(2)] == [("localhost", server.port)] * 2


def test_bump_proxy_refuses_non_loopback_targets(bump_proxy):
    raw, reply = connect_via(bump_proxy.address, "192.0.2.1:443")
    raw.close()
    assert reply.startswith(b"HTTP/1.1 403")


# -- TerminatingProxy -------------------------------------------------------------------------


def test_terminating_proxy_valid_chain_but_no_client_cert(
    terminating_proxy, mtls_server, loopback_pki
):
    raw = socket.create_connection(terminating_proxy.address, timeout=5)
    leaf, response = tls_exchange(raw, loopback_pki.server_root, loopback_pki.client)
    assert cn(leaf.issuer) == "mtlsprobe Test Server Root"  # the server's own root
    assert leaf != loopback_pki.server.cert  # but the LB's own certificate
    assert response.startswith(b"HTTP/1.1 502")
    assert mtls_server.wait_seen(1)[0].client_cert_sha256 is None


def test_terminating_proxy_injects_lb_cookie(make_reference_server, loopback_pki, start_service):
    server = make_reference_server(verify="optional")
    lb = start_service(TerminatingProxy(loopback_pki.server, server.address, lb_cookie="web-2"))
    raw = socket.create_connection(lb.address, timeout=5)
    _, response = tls_exchange(raw, loopback_pki.server_root, loopback_pki.client)
    head, body = response.split(b"\r\n\r\n", 1)
    assert head.split(b"\r\n")[:2] == [b"HTTP/1.1 200 OK", b"Set-Cookie: SERVERID=web-2; path=/"]
    assert b'"client_cert_sha256": null' in body


def test_terminating_proxy_with_client_ssl_profile_asks_but_does_not_forward(
    mtls_server, loopback_pki, start_service
):
    lb = start_service(
        TerminatingProxy(
            loopback_pki.server,
            mtls_server.address,
            client_ca=loopback_pki.client_ca,
            verify="required",
        )
    )
    with pytest.raises(ssl.SSLError):  # the LB itself now insists on a client cert
        tls_exchange(socket.create_connection(lb.address, timeout=5), loopback_pki.server_root)
    raw = socket.create_connection(lb.address, timeout=5)
    _, response = tls_exchange(raw, loopback_pki.server_root, loopback_pki.client)
    assert response.startswith(b"HTTP/1.1 502")  # accepted by the LB, refused by the server
    assert mtls_server.wait_seen(1)[0].client_cert_sha256 is None


def test_add_cookie_leaves_non_http_alone():
    assert add_cookie(b"\x16\x03\x03junk\r\n\r\n", "x") == b"\x16\x03\x03junk\r\n\r\n"


# -- ConnectProxy -----------------------------------------------------------------------------


def test_connect_tunnel_keeps_client_cert(connect_proxy, mtls_server, loopback_pki):
    raw, reply = connect_via(connect_proxy.address, f"127.0.0.1:{mtls_server.port}")
    assert reply.startswith(b"HTTP/1.1 200 Connection established")
    _, response = tls_exchange(raw, loopback_pki.server_root, loopback_pki.client)
    assert response.startswith(b"HTTP/1.1 200")
    assert mtls_server.wait_seen(1)[0].client_cert_sha256 == sha256(loopback_pki.client)


@pytest.mark.parametrize(
    ("auth", "status"),
    [(None, b"407"), (("user", "wrong"), b"407"), (("user", "pass"), b"200")],
)
def test_connect_proxy_auth(start_service, mtls_server, auth, status):
    proxy = start_service(ConnectProxy(require_auth=("user", "pass")))
    raw, reply = connect_via(proxy.address, f"127.0.0.1:{mtls_server.port}", auth)
    raw.close()
    assert reply.startswith(b"HTTP/1.1 " + status)
    if status == b"407":
        assert b'Proxy-Authenticate: Basic realm="mtlsprobe"\r\n' in reply


def test_connect_proxy_deny_unreachable_and_methods(start_service, mtls_server):
    proxy = start_service(ConnectProxy(deny={f"127.0.0.1:{mtls_server.port}"}))
    cases = {
        f"127.0.0.1:{mtls_server.port}": b"403",
        f"127.0.0.1:{closed_port()}": b"502",
        "198.51.100.7:443": b"403",  # never leaves loopback
        "nonsense": b"400",
    }
    for target, status in cases.items():
        raw, reply = connect_via(proxy.address, target)
        raw.close()
        assert reply.startswith(b"HTTP/1.1 " + status), target
    with socket.create_connection(proxy.address, timeout=5) as raw:
        raw.sendall(b"GET http://localhost/ HTTP/1.1\r\n\r\n")
        assert raw.recv(100).startswith(b"HTTP/1.1 405")
    assert [f.status for f in proxy.wait_seen(5)].count(403) == 2


# -- robustness -------------------------------------------------------------------------------


@pytest.fixture
def every_middlebox(mtls_server, loopback_pki, start_service):
    return [
        start_service(TcpRelay(mtls_server.address)),
        start_service(ConnectProxy()),
        start_service(InterceptingProxy(loopback_pki.inspection_ca, upstream=mtls_server.address)),
        start_service(InterceptingProxy(loopback_pki.inspection_ca)),
        start_service(TerminatingProxy(loopback_pki.server, mtls_server.address)),
    ]


def test_middleboxes_survive_clients_aborting_mid_handshake(every_middlebox, monkeypatch):
    errors: list = []
    monkeypatch.setattr(threading, "excepthook", errors.append)
    aborts = [b"", b"\x16\x03\x01\x02\x00\x01\x00\x01", b"CONNECT 127.0.0.1:1", b"\x00" * 300]
    for box in every_middlebox:
        for junk in aborts:
            with socket.create_connection(box.address, timeout=5) as raw:
                raw.sendall(junk)
        # a RST mid-handshake too
        raw = socket.create_connection(box.address, timeout=5)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        raw.sendall(b"\x16\x03\x01\x00")
        raw.close()
        box.wait_seen(len(aborts) + 1)
    assert errors == []


def test_middlebox_stop_cuts_live_tunnels(mtls_server, loopback_pki):
    proxy = ConnectProxy().start()
    raw, reply = connect_via(proxy.address, f"127.0.0.1:{mtls_server.port}")
    try:
        assert reply.startswith(b"HTTP/1.1 200")
        proxy.stop()
        assert proxy.live_threads == 0
        assert not [t for t in threading.enumerate() if t.name.startswith("ConnectProxy")]
        with pytest.raises(ssl.SSLError):  # the tunnel is gone
            tls_exchange(raw, loopback_pki.server_root, loopback_pki.client)
    finally:
        raw.close()
        proxy.stop()
