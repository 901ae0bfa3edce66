"""Handshake parsers on RFC 8448 messages and on real bytes from tlsgen."""

from __future__ import annotations

import functools

import pytest
import tls_vectors as v
import tlsgen
from cryptography import x509
from cryptography.x509.oid import NameOID

from mtlsprobe.model import Direction
from mtlsprobe.tls import fingerprint
from mtlsprobe.tls.constants import HandshakeType
from mtlsprobe.tls.dn import name_to_string
from mtlsprobe.tls.handshake_framing import HandshakeAssembler
from mtlsprobe.tls.handshake_messages import (
    parse_alerts,
    parse_certificate,
    parse_certificate_request,
    parse_encrypted_extensions,
    parse_finished,
    parse_hello_request,
    parse_key_update,
    parse_new_session_ticket,
)
from mtlsprobe.tls.hellos import parse_client_hello, parse_server_hello
from mtlsprobe.tls.reader import DecodeError
from mtlsprobe.tls.records import RecordSplitter


@functools.cache
def tls12_server_messages():
    t = tlsgen.run(
        version="TLSv1.2",
        client_cert="good",
        alpn=("h2", "http/1.1"),
        server_alpn=("http/1.1",),
        post_handshake_auth=True,
    )
    out = {}
    for d in Direction:
        data = b"".join(c.data for c in t.chunks if c.direction is d)
        asm = HandshakeAssembler()
        msgs = []
        for r in RecordSplitter().feed(data):
            if r.content_type == 22:
                if r.version == 0x0303 and msgs and msgs[-1].msg_type == 20:
                    break
                msgs += asm.feed(r.payload)
            if r.content_type == 20:
                break  # what follows is encrypted
        out[d] = msgs
    return out


def test_rfc8448_client_hello():
    ch = parse_client_hello(v.CLIENT_HELLO[4:])
    assert ch.legacy_version == 0x0303 and ch.random == v.CLIENT_RANDOM
    assert ch.cipher_suites == (0x1301, 0x1303, 0x1302)
    assert ch.sni == "server"
    assert ch.supported_versions == (0x0304,) and ch.offered_versions == (0x0304,)
    assert ch.key_share_groups == (29,)
    assert 0x0804 in ch.signature_algorithms
    assert not ch.post_handshake_auth and not ch.psk
    assert fingerprint.ja3_string(ch).startswith(
        "771,4865-4867-4866,0-65281-10-35-51-43-13-45-28,29-23-24")
    assert len(fingerprint.ja3(ch)) == 32


def test_rfc8448_server_hello_and_encrypted_extensions():
    sh = parse_server_hello(v.SERVER_HELLO[4:])
    assert sh.version == 0x0304 and sh.selected_version == 0x0304 and sh.legacy_version == 0x0303
    assert sh.cipher_suite == 0x1301 and not sh.is_hello_retry and sh.key_share_group == 29
    ee = parse_encrypted_extensions(v.ENCRYPTED_EXTENSIONS[4:])
    assert ee.alpn is None and len(ee.extensions) == 3


def test_hello_retry_request_is_detected_by_its_random():
    from mtlsprobe.tls.constants import HELLO_RETRY_REQUEST_RANDOM

    body = (
        b"\x03\x03"
        + HELLO_RETRY_REQUEST_RANDOM
        + b"\x00"
        + b"\x13\x01\x00"
        + b"\x00\x0c"
        + b"\x00\x2b\x00\x02\x03\x04"
        + b"\x00\x33\x00\x02\x00\x17"
    )
    sh = parse_server_hello(body)
    assert sh.is_hello_retry and sh.version == 0x0304 and sh.key_share_group == 23


def test_assembler_handles_messages_spanning_and_sharing_records():
    a, b = v.CLIENT_HELLO, v.SERVER_HELLO
    asm = HandshakeAssembler()
    got = asm.feed(a[:3]) + asm.feed(a[3:50]) + asm.feed(a[50:] + b[:10])
    assert [m.msg_type for m in got] == [1] and asm.pending == 10
    got = asm.feed(b[10:])
    assert [m.msg_type for m in got] == [2] and asm.pending == 0
    assert got[0].body == b[4:]


def test_assembler_rejects_absurd_length():
    with pytest.raises(DecodeError):
        HandshakeAssembler().feed(b"\x0b\xff\xff\xff")


def test_tls12_certificate_request_names_the_client_ca():
    server = tls12_server_messages()[Direction.S2C]
    types = [m.msg_type for m in server]
    assert types[:5] == [2, 11, 12, 13, 14]
    cr = parse_certificate_request(server[3].body, tls13=False)
    assert cr.authority_names == ("O=Example Agents,CN=tlsgen Client CA",)
    assert cr.authority_names[0] == tlsgen.pki().client_ca.cert.subject.rfc4514_string()
    assert {1, 64} & set(cr.certificate_types)
    assert 0x0403 in cr.signature_algorithms
    cert = parse_certificate(server[1].body, tls13=False)
    assert cert.certificates[0] == tlsgen.pki().server.der
    sh = parse_server_hello(server[0].body)
    assert sh.alpn == "http/1.1" and sh.version == 0x0303


def test_tls12_client_messages():
    client = tls12_server_messages()[Direction.C2S]
    ch = parse_client_hello(client[0].body)
    assert ch.alpn == ("h2", "http/1.1") and ch.sni == "server.test"
    assert not ch.post_handshake_auth  # OpenSSL offers PHA only with TLS 1.3 enabled
    assert client[1].msg_type == HandshakeType.CERTIFICATE
    cert = parse_certificate(client[1].body, tls13=False)
    assert cert.certificates == (tlsgen.pki().client_good.der,)


def test_tls13_certificate_request_with_certificate_authorities():
    ca = tlsgen.pki().client_ca.cert.subject.public_bytes()
    sig = b"\x00\x0d\x00\x04\x00\x02\x04\x03"
    cas = (
        b"\x00\x2f"
        + (len(ca) + 4).to_bytes(2, "big")
        + (len(ca) + 2).to_bytes(2, "big")
        + (len(ca).to_bytes(2, "big") + ca)
    )
    exts = sig + cas
    body = b"\x00" + len(exts).to_bytes(2, "big") + exts
    cr = parse_certificate_request(body, tls13=True)
    assert cr.signature_algorithms == (0x0403,)
    assert cr.authority_names == ("O=Example Agents,CN=tlsgen Client CA",)
    assert parse_certificate_request(b"\x00\x00\x00", tls13=True).authorities == ()


def test_tls10_style_certificate_request_without_signature_algorithms():
    ca = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Old CA")]).public_bytes()
    body = b"\x01\x01" + (len(ca) + 2).to_bytes(2, "big") + len(ca).to_bytes(2, "big") + ca
    cr = parse_certificate_request(body, tls13=False)
    assert cr.signature_algorithms == () and cr.authority_names == ("CN=Old CA",)


def test_garbled_dn_is_kept_as_a_marker_not_an_error():
    body = b"\x01\x01\x00\x02\x04\x03\x00\x05\x00\x03abc"
    cr = parse_certificate_request(body, tls13=False)
    assert cr.authority_names[0].startswith("<undecodable DN")


def test_dn_decoding_matches_cryptography():
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme, Inc+"),
            x509.NameAttribute(NameOID.COMMON_NAME, "Zürich CA"),
        ]
    )
    assert name_to_string(name.public_bytes()) == name.rfc4514_string()
    with pytest.raises(DecodeError):
        name_to_string(b"\x31\x00")


def test_tls13_certificate_with_entry_extensions_and_empty_certificate():
    der = tlsgen.pki().client_good.der
    entry = len(der).to_bytes(3, "big") + der + b"\x00\x00"
    body = b"\x00" + len(entry).to_bytes(3, "big") + entry
    assert parse_certificate(body, tls13=True).certificates == (der,)
    empty = parse_certificate(b"\x00\x00\x00\x00", tls13=True)
    assert empty.certificates == ()
    with pytest.raises(DecodeError):
        parse_certificate(b"\x00\x00\x00\x05\x00", tls13=True)


def test_small_messages():
    assert [(a.level, a.description) for a in parse_alerts(b"\x02\x74")] == [(2, 116)]
    with pytest.raises(DecodeError):
        parse_alerts(b"\x02")
    t = parse_new_session_ticket(
        b"\x00\x00\x1c\x20" + b"\x01\x02\x03\x04" + b"\x01\x00" + b"\x00\x02ab" + b"\x00\x00",
        tls13=True,
    )
    assert t.lifetime == 7200 and t.ticket == b"ab" and t.age_add == 0x01020304
    assert parse_new_session_ticket(b"\x00\x00\x00\x01\x00\x01z", tls13=False).ticket == b"z"
    assert parse_hello_request(b"") is not None
    with pytest.raises(DecodeError):
        parse_hello_request(b"x")
    assert parse_key_update(b"\x01").update_requested
    with pytest.raises(DecodeError):
        parse_key_update(b"\x02")
    assert parse_finished(b"\x00" * 32).verify_data == b"\x00" * 32
    with pytest.raises(DecodeError):
        parse_finished(b"\x00" * 5)
