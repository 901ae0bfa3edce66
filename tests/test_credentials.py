"""Credential loading: every supported file shape loads, every failure is one clear line."""

from __future__ import annotations

import ssl
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from mtlsprobe.live import pki
from mtlsprobe.live.credentials import Credentials, load_credentials, password_from
from mtlsprobe.model.errors import InputError

PASSWORD = b"s3cret-pass"


@pytest.fixture(scope="module")
def issued() -> pki.Issued:
    root = pki.CA("Creds Test Root")
    return root.intermediate("Creds Test Intermediate").issue("agent-01", eku=(pki.CLIENT_AUTH,))


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def _key(issued: pki.Issued, fmt: serialization.PrivateFormat, enc: str, password=None) -> bytes:
    encryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    encoding = serialization.Encoding.PEM if enc == "pem" else serialization.Encoding.DER
    return issued.key.private_bytes(encoding, fmt, encryption)


def _assert_loaded(creds: Credentials, issued: pki.Issued, chain_len: int = 2) -> None:
    assert creds.chain_der[0] == issued.der
    assert len(creds.chain_der) == chain_len
    assert creds.key.public_key() == issued.key.public_key()
    assert PASSWORD.decode() not in repr(creds)


@pytest.mark.parametrize(
    ("fmt", "enc"),
    [
        (serialization.PrivateFormat.PKCS8, "pem"),
        (serialization.PrivateFormat.TraditionalOpenSSL, "pem"),
        (serialization.PrivateFormat.PKCS8, "der"),
        (serialization.PrivateFormat.TraditionalOpenSSL, "der"),
    ],
)
def test_pem_chain_with_plain_keys(tmp_path, issued, fmt, enc):
    cert = _write(tmp_path, "c.pem", issued.chain_pem)
    key = _write(tmp_path, "k", _key(issued, fmt, enc))
    _assert_loaded(load_credentials(cert, key, None, None), issued)


def test_der_certificate_and_encrypted_pkcs8_key(tmp_path, issued):
    cert = _write(tmp_path, "c.der", issued.der)
    key = _write(tmp_path, "k.pem", issued.key_pem(PASSWORD))
    _assert_loaded(load_credentials(cert, key, None, PASSWORD), issued, chain_len=1)


def test_encrypted_traditional_key_asks_password_lazily(tmp_path, issued):
    cert = _write(tmp_path, "c.pem", issued.chain_pem)
    key = _write(
        tmp_path, "k.pem", _key(issued, serialization.PrivateFormat.TraditionalOpenSSL, "pem",
                                PASSWORD)
    )
    asked: list[bool] = []

    def ask() -> bytes:
        asked.append(True)
        return PASSWORD

    _assert_loaded(load_credentials(cert, key, None, ask), issued)
    assert asked == [True]
    plain = _write(tmp_path, "plain.pem", issued.key_pem())
    load_credentials(cert, plain, None, ask)
    assert asked == [True], "an unencrypted key must not trigger the prompt"


def test_combined_cert_and_key_file(tmp_path, issued):
    both = _write(tmp_path, "both.pem", issued.chain_pem + issued.key_pem())
    _assert_loaded(load_credentials(both, None, None, None), issued)


@pytest.mark.parametrize("with_password", [True, False])
def test_pkcs12_orders_chain_leaf_first(tmp_path, issued, with_password):
    root = pki.CA("P12 Root")
    inter = root.intermediate("P12 Inter")
    leaf = inter.issue("agent-p12")
    enc = (
        serialization.BestAvailableEncryption(PASSWORD)
        if with_password
        else serialization.NoEncryption()
    )
    # Bags deliberately out of order: root first.
    data = pkcs12.serialize_key_and_certificates(
        b"agent", leaf.key, leaf.cert, [root.cert, inter.cert], enc
    )
    p = _write(tmp_path, "a.p12", data)
    creds = load_credentials(None, None, p, PASSWORD if with_password else None)
    assert creds.chain_der == (leaf.der, inter.der, root.der)


def test_write_pem_pair_is_private_and_loadable(tmp_path, issued):
    creds = load_credentials(
        _write(tmp_path, "c.pem", issued.chain_pem), _write(tmp_path, "k.pem", issued.key_pem()),
        None, None,
    )
    out = tmp_path / "out"
    out.mkdir(mode=0o700)
    cert_path, key_path = creds.write_pem_pair(out)
    for p in (cert_path, key_path):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_cert_chain(cert_path, key_path)  # raises if the pair is wrong
    assert cert_path.read_bytes() == issued.chain_pem


# --- failures: one line, names the problem, never the secret ---------------------------


def _error(callable_, *args) -> str:
    with pytest.raises(InputError) as info:
        callable_(*args)
    msg = str(info.value)
    assert "\n" not in msg
    assert PASSWORD.decode() not in msg
    assert "PRIVATE KEY" not in msg
    return msg


def test_unreadable_file(tmp_path, issued):
    key = _write(tmp_path, "k.pem", issued.key_pem())
    msg = _error(load_credentials, tmp_path / "missing.pem", key, None, None)
    assert "cannot read certificate" in msg and "missing.pem" in msg


def test_not_a_certificate(tmp_path, issued):
    junk = _write(tmp_path, "junk.pem", b"hello, I am not a certificate\n")
    key = _write(tmp_path, "k.pem", issued.key_pem())
    assert "is not a certificate" in _error(load_credentials, junk, key, None, None)


def test_certificate_with_an_impossible_version(tmp_path, issued):
    # cryptography raises x509.InvalidVersion for it, which is not a ValueError
    der = bytearray(issued.der)
    der[der.index(bytes([0xA0, 0x03, 0x02, 0x01, 0x02])) + 4] = 47
    bad = _write(tmp_path, "bad.der", bytes(der))
    key = _write(tmp_path, "k.pem", issued.key_pem())
    assert "is not a certificate" in _error(load_credentials, bad, key, None, None)


def test_encrypted_key_without_password(tmp_path, issued):
    cert = _write(tmp_path, "c.pem", issued.chain_pem)
    key = _write(tmp_path, "k.pem", issued.key_pem(PASSWORD))
    assert "is encrypted" in _error(load_credentials, cert, key, None, None)


def test_wrong_password(tmp_path, issued):
    cert = _write(tmp_path, "c.pem", issued.chain_pem)
    key = _write(tmp_path, "k.pem", issued.key_pem(PASSWORD))
    assert "wrong password" in _error(load_credentials, cert, key, None, b"nope")


def test_key_does_not_match_certificate(tmp_path, issued):
    other = pki.CA("Other").issue("someone-else")
    cert = _write(tmp_path, "c.pem", issued.chain_pem)
    key = _write(tmp_path, "k.pem", other.key_pem())
    assert "does not match" in _error(load_credentials, cert, key, None, None)


def test_cert_file_without_key(tmp_path, issued):
    cert = _write(tmp_path, "c.pem", issued.chain_pem)
    assert "no private key" in _error(load_credentials, cert, None, None, None)


def test_pkcs12_without_key(tmp_path, issued):
    data = pkcs12.serialize_key_and_certificates(
        b"x", None, issued.cert, None, serialization.NoEncryption()
    )
    p = _write(tmp_path, "nokey.p12", data)
    assert "no private key" in _error(load_credentials, None, None, p, None)


def test_pkcs12_wrong_password(tmp_path, issued):
    data = pkcs12.serialize_key_and_certificates(
        b"x", issued.key, issued.cert, None, serialization.BestAvailableEncryption(PASSWORD)
    )
    p = _write(tmp_path, "a.p12", data)
    assert "wrong password" in _error(load_credentials, None, None, p, b"bad")
    assert "needs a password" in _error(load_credentials, None, None, p, None)


def test_pkcs12_junk(tmp_path):
    p = _write(tmp_path, "junk.p12", b"definitely not PKCS#12")
    assert "not a PKCS#12" in _error(load_credentials, None, None, p, None)


def test_password_sources(tmp_path, monkeypatch):
    pw = _write(tmp_path, "pw", PASSWORD + b"\n")
    assert password_from(pw, environ={}) == PASSWORD
    assert password_from(None, environ={"MTLSPROBE_KEY_PASSWORD": "envpw"}) == b"envpw"
    assert password_from(None, environ={}, prompt_if_tty=False) is None
    assert "cannot read password file" in _error(password_from, tmp_path / "nope")
