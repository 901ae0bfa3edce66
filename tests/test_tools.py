"""External programs on loopback (openssl s_server, tinyproxy, mitmdump): they start, behave as
the tests rely on, and leave no process behind."""

from __future__ import annotations

import hashlib
import socket
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from tools import Mitmdump, OpenSSLServer, Tinyproxy, read_http_head, require_program, tls_request

from mtlsprobe.live import pki
from mtlsprobe_demo.tls_contexts import client_context

pytestmark = pytest.mark.tools

REQUEST = b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n"


def https_get(
    raw: socket.socket,
    trust: pki.CA | Path,
    identity: pki.Issued | None = None,
    *,
    post_handshake_auth: bool = False,
) -> tuple[x509.Certificate, bytes]:
    if isinstance(trust, Path):
        ctx = client_context(identity=identity)
        ctx.load_verify_locations(cafile=str(trust))
    else:
        ctx = client_context(trust=[trust], identity=identity)
    ctx.post_handshake_auth = post_handshake_auth
    return tls_request(raw, ctx, REQUEST)


def connect_via(proxy: tuple[str, int], target: str) -> tuple[socket.socket, bytes]:
    raw = socket.create_connection(proxy, timeout=10)
    raw.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    return raw, read_http_head(raw)


def issuer_cn(cert: x509.Certificate) -> str:
    return str(cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


# -- openssl s_server -------------------------------------------------------------------------


def test_s_server_www_shows_the_client_cert(openssl_server, loopback_pki):
    raw = socket.create_connection(openssl_server.address, timeout=5)
    _, page = https_get(raw, loopback_pki.server_root, loopback_pki.client)
    assert page.startswith(b"HTTP/1.0 200 ok")
    assert b"agent-01" in page  # s_server -www prints the client certificate it got


def test_s_server_verify_required_refuses_no_cert(make_openssl_server, loopback_pki):
    server = make_openssl_server(verify="required", tls="TLSv1.2")
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        https_get(socket.create_connection(server.address, timeout=5), loopback_pki.server_root)
    server.wait_for_line("peer did not return a certificate|PEER_DID_NOT_RETURN")


def test_s_server_lowercase_verify_accepts_any_cert(make_openssl_server, loopback_pki):
    server = make_openssl_server(verify="request")
    raw = socket.create_connection(server.address, timeout=5)
    _, page = https_get(raw, loopback_pki.server_root, loopback_pki.stranger)
    assert page.startswith(b"HTTP/1.0 200 ok") and b"stranger" in page


@pytest.mark.parametrize(("key", "tls"), [("R", "TLSv1.2"), ("c", "TLSv1.3")])
def test_s_server_commands_request_a_cert_mid_connection(
    make_openssl_server, loopback_pki, key, tls
):
    """'R' (TLS 1.2 renegotiation) and 'c' (TLS 1.3 post-handshake auth) fetch the client cert."""
    server = make_openssl_server(verify="none", tls=tls, www=False)
    ctx = client_context(trust=[loopback_pki.server_root], identity=loopback_pki.client)
    ctx.post_handshake_auth = True
    with (
        socket.create_connection(server.address, timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as conn,
    ):
        assert conn.version() == tls
        conn.sendall(b"hello\n")
        server.wait_for_line("^hello$")
        before = server.line_count
        assert "agent-01" not in server.output  # no cert asked for in the handshake
        server.command(key, wait_for=r"SSL_do_handshake -> 1")
        server.command("pong")
        assert conn.recv(100) == b"pong\n"  # reading drove the new handshake
        conn.sendall(b"bye\n")
        server.wait_for_line("^bye$", start=before)
    assert "depth=0 CN = agent-01" in "".join(server.lines[before:])


def test_s_server_stops_and_leaves_no_process(loopback_pki, tmp_path):
    require_program("openssl")
    server = OpenSSLServer(loopback_pki.server, workdir=tmp_path, client_ca=loopback_pki.client_ca)
    with server:
        proc = server.process
        assert proc is not None and proc.poll() is None
        address = server.address
    assert proc.poll() is not None
    assert proc.stdin.closed and proc.stdout.closed
    server.stop()  # idempotent
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(address, timeout=1).close()
    assert (tmp_path / "server-key.pem").stat().st_mode & 0o077 == 0


# -- tinyproxy --------------------------------------------------------------------------------


def test_tinyproxy_tunnels_mtls_to_allowed_port_only(make_tinyproxy, mtls_server, loopback_pki):
    proxy = make_tinyproxy(connect_ports=[mtls_server.port])
    raw, reply = connect_via(proxy.address, f"127.0.0.1:{mtls_server.port}")
    assert b" 200 " in reply.split(b"\r\n")[0]
    _, response = https_get(raw, loopback_pki.server_root, loopback_pki.client)
    assert response.startswith(b"HTTP/1.1 200")
    seen = mtls_server.wait_seen(1)[0]
    assert seen.client_cert_sha256 == hashlib.sha256(loopback_pki.client.der).hexdigest()

    raw, reply = connect_via(proxy.address, f"127.0.0.1:{mtls_server.port + 1}")
    raw.close()
    assert reply.split(b"\r\n")[0].split()[1] == b"403"


def test_tinyproxy_stops_and_leaves_no_process(tmp_path):
    require_program("tinyproxy")
    proxy = Tinyproxy(workdir=tmp_path)
    with proxy:
        proc = proxy.process
        assert proc is not None and proc.poll() is None
        assert "Allow 127.0.0.1" in proxy.config_path.read_text()
    assert proc.poll() is not None
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(proxy.address, timeout=1).close()


# -- mitmdump ---------------------------------------------------------------------------------


def test_mitmdump_bumps_tls_and_drops_client_cert(mitmdump, make_reference_server, loopback_pki):
    server = make_reference_server(verify="optional")
    assert mitmdump.ca_cert_path.exists()
    raw, reply = connect_via(mitmdump.address, f"localhost:{server.port}")
    assert reply.startswith(b"HTTP/1.1 200")
    leaf, response = https_get(raw, mitmdump.ca_cert_path, loopback_pki.client)
    assert issuer_cn(leaf) == "mitmproxy"
    assert response.startswith(b"HTTP/1.1 200")
    assert server.wait_seen(1)[0].client_cert_sha256 is None  # the cert never got through


def test_mitmdump_stops_and_leaves_no_process(tmp_path):
    require_program(Mitmdump.default_binary())
    with Mitmdump(workdir=tmp_path) as proxy:
        proc = proxy.process
        assert proc is not None and proc.poll() is None
    assert proc.poll() is not None
