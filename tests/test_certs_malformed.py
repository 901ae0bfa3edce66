"""certs.cert_info on certificates that break RFC 5280 the ways fuzzing found: facts where
they can be read, CertError where they cannot, never another exception (captures and
servers are not to be trusted)."""

from __future__ import annotations

import datetime as dt
import warnings

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mtlsprobe.model.certs import CertError, cert_info, parse_der

TWIN_A, TWIN_B = x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), x509.ObjectIdentifier(
    "1.3.6.1.4.1.55555.2"
)


def _certificate_with_two_extensions() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "twin")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(7)
        .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.UnrecognizedExtension(TWIN_A, b"\x05\x00"), critical=False)
        .add_extension(x509.UnrecognizedExtension(TWIN_B, b"\x05\x00"), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def test_a_duplicated_extension_leaves_the_other_facts():
    der = bytearray(_certificate_with_two_extensions())
    second = der.index(bytes([0x83, 0xB2, 0x03, 0x02]))  # DER of TWIN_B's arcs 55555.2
    der[second + 3] = 0x01  # now TWIN_A: the same extension twice
    with pytest.raises(x509.DuplicateExtension):
        x509.load_der_x509_certificate(bytes(der)).extensions  # noqa: B018 - what cryptography does
    info = cert_info(bytes(der))  # the signature no longer matches: parsing does not check it
    assert info.subject and "twin" in info.subject.lower()
    assert info.san_dns == () and info.eku is None and not info.is_ca


def test_an_impossible_version_is_a_cert_error():
    der = bytearray(_certificate_with_two_extensions())
    der[der.index(bytes([0xA0, 0x03, 0x02, 0x01, 0x02])) + 4] = 47
    with pytest.raises(CertError, match="47 is not a valid X509 version"):
        cert_info(bytes(der))


def test_a_negative_serial_is_read_without_a_warning_on_stderr():
    """Found by fuzzing analyze: cryptography warns on loading a non-positive serial, and
    the chain checks load certificates outside cert_info, so the warning reached stderr."""
    der = bytearray(_certificate_with_two_extensions())
    at = der.index(bytes([0x02, 0x01, 0x07]))  # the serial number 7
    der[at + 2] = 0x87  # now -121
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        parse_der(bytes(der))
        info = cert_info(bytes(der))
    assert info.serial == "-79" and info.subject  # -121, still reported
    assert seen == []
