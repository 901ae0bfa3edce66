"""ReferenceServer: each behaviour against real Python ssl clients on 127.0.0.1."""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import ssl
import threading

import pytest

from mtlsprobe.live import pki
from mtlsprobe_demo.server import NGINX_BAD_CERT, NGINX_NO_CERT, ReferenceServer
from mtlsprobe_demo.tls_contexts import client_context

REQUEST = b"GET /probe HTTP/1.1\r\nHost: localhost\r\n\r\n"


def fetch(
    address: tuple[str, int],
    trust: pki.CA,
    identity: pki.Issued | None = None,
    *,
    max_version: str | None = None,
    post_handshake_auth: bool = False,
) -> bytes:
    """One HTTPS GET; returns the raw response (raises on TLS errors)."""
    ctx = client_context(trust=[trust], identity=identity, max_version=max_version)
    ctx.post_handshake_auth = post_handshake_auth
    with (
        socket.create_connection(address, timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(REQUEST)
        out = b""
        while chunk := tls.recv(65536):
            out += chunk
        return out


def body_json(response: bytes) -> dict:
    return json.loads(response.split(b"\r\n\r\n", 1)[1])


def sha256(issued: pki.Issued) -> str:
    return hashlib.sha256(issued.der).hexdigest()


@pytest.fixture
def thread_errors(monkeypatch: pytest.MonkeyPatch) -> list[threading.ExceptHookArgs]:
    """Unhandled exceptions in any thread during the test (should stay empty)."""
    errors: list[threading.ExceptHookArgs] = []
    monkeypatch.setattr(threading, "excepthook", errors.append)
    return errors


def test_http_reports_client_cert_and_session(mtls_server, loopback_pki):
    response = fetch(mtls_server.address, loopback_pki.server_root, loopback_pki.client)
    assert response.startswith(b"HTTP/1.1 200 OK")
    seen_json = body_json(response)
    assert seen_json["client_cert_sha256"] == sha256(loopback_pki.client)
    assert seen_json["request_line"] == "GET /probe HTTP/1.1"
    (seen,) = mtls_server.wait_seen(1)
    assert seen.tls_version == "TLSv1.3"
    assert seen.sni == "localhost"
    assert seen.client_cert_subject == "CN=agent-01"
    assert seen.error is None


@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_required_cert_missing_is_refused(mtls_server, loopback_pki, version):
    with pytest.raises(ssl.SSLError) as err:
        fetch(mtls_server.address, loopback_pki.server_root, max_version=version)
    expected = "CERTIFICATE_REQUIRED" if version == "TLSv1.3" else "HANDSHAKE_FAILURE"
    assert expected in str(err.value)
    (seen,) = mtls_server.wait_seen(1)
    assert seen.client_cert_sha256 is None
    assert "PEER_DID_NOT_RETURN_A_CERTIFICATE" in (seen.error or "")


def test_untrusted_client_cert_is_refused(mtls_server, loopback_pki):
    with pytest.raises(ssl.SSLError):
        fetch(mtls_server.address, loopback_pki.server_root, loopback_pki.stranger)
    (seen,) = mtls_server.wait_seen(1)
    assert "CERTIFICATE_VERIFY_FAILED" in (seen.error or "")


def test_optional_verify_serves_without_cert(make_reference_server, loopback_pki):
    server = make_reference_server(verify="optional")
    response = fetch(server.address, loopback_pki.server_root)
    assert body_json(response)["client_cert_sha256"] is None


def test_certificate_request_names_the_client_ca(mtls_server, loopback_pki):
    """TLS 1.2 sends CertificateRequest in clear: the client CA's DER subject must be in it."""
    ctx = client_context(trust=[loopback_pki.server_root], max_version="TLSv1.2")
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    received = b""
    with (
        socket.create_connection(mtls_server.address, timeout=5) as raw,
        pytest.raises(ssl.SSLError),  # the server refuses us (no cert) in the end
    ):
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                raw.sendall(outgoing.read())
                data = raw.recv(65536)
                if not data:
                    raise ssl.SSLError("closed") from None
                received += data
                incoming.write(data)
        raw.sendall(outgoing.read())
        tls.read(1)
    ca_subject_der = loopback_pki.client_ca.cert.subject.public_bytes()
    assert ca_subject_der in received


@pytest.mark.parametrize(
    ("who", "status", "text"),
    [("client", b"200 OK", None), ("none", b"400 Bad Request", NGINX_NO_CERT),
     ("stranger", b"400 Bad Request", NGINX_BAD_CERT)],
)  # fmt: skip
def test_nginx_behaviour(make_reference_server, loopback_pki, who, status, text):
    server = make_reference_server(behaviour="nginx")
    identity = {"client": loopback_pki.client, "none": None, "stranger": loopback_pki.stranger}
    response = fetch(server.address, loopback_pki.server_root, identity[who])
    assert response.startswith(b"HTTP/1.1 " + status)
    if text:
        assert b"Server: nginx\r\n" in response
        assert f"<center>{text}</center>".encode() in response
    (seen,) = server.wait_seen(1)
    assert seen.client_cert_valid is {"client": True, "none": None, "stranger": False}[who]


def test_reset_after_hello_sends_rst_and_keeps_the_hello(make_reference_server, loopback_pki):
    server = make_reference_server(behaviour="reset_after_hello")
    with pytest.raises(ConnectionResetError):
        fetch(server.address, loopback_pki.server_root, loopback_pki.client)
    (seen,) = server.wait_seen(1)
    hello = seen.client_hello or b""
    assert hello[:1] == b"\x16" and hello[5:6] == b"\x01"  # handshake record, ClientHello
    assert b"localhost" in hello  # the SNI
    assert seen.tls_version is None


def test_silent_after_hello_never_answers(make_reference_server, loopback_pki):
    server = make_reference_server(behaviour="silent_after_hello")
    ctx = client_context(trust=[loopback_pki.server_root])
    with socket.create_connection(server.address, timeout=0.5) as raw, pytest.raises(TimeoutError):
        ctx.wrap_socket(raw, server_hostname="localhost")
    (seen,) = server.wait_seen(1)  # recorded once the client went away
    assert (seen.client_hello or b"")[:1] == b"\x16"


def test_post_handshake_auth_gets_the_cert(make_reference_server, loopback_pki):
    server = make_reference_server(behaviour="post_handshake_auth")
    response = fetch(
        server.address, loopback_pki.server_root, loopback_pki.client, post_handshake_auth=True
    )
    assert body_json(response)["client_cert_sha256"] == sha256(loopback_pki.client)
    assert server.wait_seen(1)[0].tls_version == "TLSv1.3"


def test_post_handshake_auth_without_cert_gets_certificate_required(
    make_reference_server, loopback_pki
):
    server = make_reference_server(behaviour="post_handshake_auth")
    with pytest.raises(ssl.SSLError, match="CERTIFICATE_REQUIRED"):
        fetch(server.address, loopback_pki.server_root, post_handshake_auth=True)
    assert "PEER_DID_NOT_RETURN_A_CERTIFICATE" in (server.wait_seen(1)[0].error or "")


def test_post_handshake_auth_refused_when_client_cannot_do_it(make_reference_server, loopback_pki):
    server = make_reference_server(behaviour="post_handshake_auth")
    response = fetch(server.address, loopback_pki.server_root, loopback_pki.client)
    assert response.startswith(b"HTTP/1.1 403")
    assert "EXTENSION_NOT_RECEIVED" in (server.wait_seen(1)[0].error or "")


HOSTILE = [
    b"",  # connect and close
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # truncated ClientHello
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # plain HTTP to a TLS port
    b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\xff",  # nonsense handshake body
    bytes(range(256)) * 4,
]


@pytest.mark.parametrize("behaviour", ["http", "nginx", "post_handshake_auth", "reset_after_hello"])
def test_hostile_clients_do_not_hurt(make_reference_server, loopback_pki, thread_errors, behaviour):
    server = make_reference_server(behaviour=behaviour)
    for junk in HOSTILE:
        # reset_after_hello may reset us as soon as the junk arrives: any call below can then
        # fail (ENOTCONN, EPIPE, ECONNRESET), which is the server's answer, not an error
        with (
            socket.create_connection(server.address, timeout=5) as raw,
            contextlib.suppress(OSError),
        ):
            raw.sendall(junk)
            raw.shutdown(socket.SHUT_WR)
            while raw.recv(4096):
                pass
    seen = server.wait_seen(len(HOSTILE))
    if behaviour != "reset_after_hello":
        assert all(s.tls_version is None for s in seen)
        assert fetch(
            server.address, loopback_pki.server_root, loopback_pki.client, post_handshake_auth=True
        ).startswith(b"HTTP/1.1 200")
    assert thread_errors == []


def test_stop_cuts_open_connections_and_leaves_nothing(loopback_pki):
    server = ReferenceServer(
        loopback_pki.server, client_ca=loopback_pki.client_ca, behaviour="silent_after_hello"
    ).start()
    address = server.address
    ctx = client_context(trust=[loopback_pki.server_root])
    raw = socket.create_connection(address, timeout=5)
    outgoing = ssl.MemoryBIO()
    tls = ctx.wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    raw.sendall(outgoing.read())  # a real ClientHello; the server will never answer it
    try:
        server.stop()
        server.stop()  # idempotent
        assert server.live_threads == 0
        assert not [t for t in threading.enumerate() if t.name.startswith("ReferenceServer")]
        # Our open connection was cut: EOF, or RST if the hello was still unread.
        with contextlib.suppress(ConnectionResetError):
            assert raw.recv(1) == b""
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(address, timeout=1).close()
    finally:
        raw.close()


def test_bad_arguments_are_refused(loopback_pki):
    with pytest.raises(ValueError, match="behaviour"):
        ReferenceServer(loopback_pki.server, client_ca=loopback_pki.client_ca, behaviour="x")
    with pytest.raises(ValueError, match="client_ca"):
        ReferenceServer(loopback_pki.server, verify="required")
    with pytest.raises(ValueError, match="TLS version"):
        ReferenceServer(loopback_pki.server, client_ca=loopback_pki.client_ca, min_version="1.3")
