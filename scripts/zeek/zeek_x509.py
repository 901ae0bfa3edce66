"""The x509.log facts Zeek writes for one DER certificate, and Zeek's name strings.

Used by ``zeek_logs_from_capture.py``. Each field as Zeek's X.509 file analyzer fills it
(zeek/zeek ``src/file_analysis/analyzer/x509/X509.cc``, ``X509::ParseCertificate`` and
``ParseSAN``; record types in ``scripts/base/init-bare.zeek``, ``X509::Certificate``):

- subject, issuer: OpenSSL ``X509_NAME_print_ex(..., XN_FLAG_RFC2253)``: last RDN first,
  short names (``CN``, ``emailAddress``), ``,`` between RDNs, ``+`` inside one, RFC 2253
  escapes, bytes over 0x7f as ``\\XX``; an unknown attribute as its OID and ``#`` DER hex.
  The same form is ``parse_distinguished_name`` (certificate-request-info.zeek).
- serial: ``i2a_ASN1_INTEGER``: upper-case hex of the magnitude, two digits a byte.
- key_alg, sig_alg: OpenSSL long names of the OIDs (``i2t_ASN1_OBJECT``); OpenSSL's own
  names are read through Python's ``ssl`` module, so they are the linked OpenSSL's.
- key_type ``rsa``/``dsa``/``ecdsa`` or OpenSSL's type name (``ED25519``), key_length
  ``EVP_PKEY_bits``, exponent (RSA), curve (EC: OpenSSL's group name, ``prime256v1``).
- san.*: only IA5 DNS/URI/email names and IPs; a kind with no entry stays unset.
"""

from __future__ import annotations

import ipaddress
import ssl
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import ExtensionOID

with warnings.catch_warnings():  # cryptography 51 deprecates DSA; Zeek still logs it
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    from cryptography.hazmat.primitives.asymmetric.dsa import DSAPublicKey

# OpenSSL's group names where cryptography names the curve otherwise (RFC 4492 aliases)
_CURVE_NAMES = {"secp256r1": "prime256v1", "secp192r1": "prime192v1"}
# EVP_PKEY_bits for the Edwards keys (OpenSSL: ED25519_BITS, ED448_BITS)
_EDWARDS = ((ed25519.Ed25519PublicKey, "ED25519", 253), (ed448.Ed448PublicKey, "ED448", 456))
_RFC2253_SPECIAL = frozenset(',+"\\<>;')
# Names of OpenSSL 3.5 (ML-DSA, FIPS 204) for an older linked OpenSSL that has none;
# EVP_PKEY_bits is the public key's size in bits.
_NEWER_OPENSSL = {f"2.16.840.1.101.3.4.3.{n}": f"ML-DSA-{k}" for n, k in
                  ((17, 44), (18, 65), (19, 87))}


@cache
def openssl_names(oid: str) -> tuple[str, str] | None:
    """(short name, long name) OpenSSL gives ``oid``; None when it knows none."""
    try:
        obj = ssl._ASN1Object(oid)  # OpenSSL's OBJ_txt2obj (read-only)
    except ValueError:
        return None
    return obj.shortname, obj.longname


def long_name(oid: str) -> str:
    """``i2t_ASN1_OBJECT``: the long name, or the dotted OID."""
    names = openssl_names(oid)
    return names[1] if names else _NEWER_OPENSSL.get(oid, oid)


def _escape_value(text: str) -> str:
    """ASN1_STRFLGS_RFC2253 escaping of one attribute value (UTF-8, ESC_2253|CTRL|MSB)."""
    raw = text.encode("utf-8", "surrogateescape")
    out: list[str] = []
    last = len(raw) - 1
    for i, b in enumerate(raw):
        ch = chr(b)
        if b > 0x7F or b < 0x20 or b == 0x7F:
            out.append(f"\\{b:02X}")
        elif ch in _RFC2253_SPECIAL or (i == 0 and ch in "# ") or (i == last and ch == " "):
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def _der_hex(attr: x509.NameAttribute) -> str:
    value = attr.value if isinstance(attr.value, bytes) else attr.value.encode("utf-8")
    tag = getattr(attr, "_type", None)
    tag_byte = int(getattr(tag, "value", 12))
    n = len(value)
    length = bytes([n]) if n < 0x80 else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + (
        n.to_bytes((n.bit_length() + 7) // 8, "big"))
    return "#" + (bytes([tag_byte]) + length + value).hex().upper()


def name_string(name: x509.Name) -> str:
    """``X509_NAME_print_ex(XN_FLAG_RFC2253)`` of a name, as Zeek logs subject/issuer."""
    rdns: list[str] = []
    for rdn in reversed(list(name.rdns)):
        parts = []
        for attr in reversed(list(rdn)):
            oid = attr.oid.dotted_string
            names = openssl_names(oid)
            if names is None:
                parts.append(f"{oid}={_der_hex(attr)}")
                continue
            value = attr.value if isinstance(attr.value, str) else attr.value.decode("latin-1")
            parts.append(f"{names[0]}={_escape_value(value)}")
        rdns.append("+".join(parts))
    return ",".join(rdns)


def dn_string(der: bytes) -> str:
    """Zeek's ``parse_distinguished_name`` of a DER DistinguishedName (CA names)."""
    from mtlsprobe.tls.dn import parse_name  # the project's DER name reader

    return name_string(parse_name(der))


def serial_hex(serial: int) -> str:
    sign = "-" if serial < 0 else ""
    magnitude = abs(serial)
    digits = f"{magnitude:X}"
    if len(digits) % 2:
        digits = "0" + digits
    return sign + digits


@dataclass(frozen=True, slots=True)
class X509Facts:
    """The logged fields of ``X509::Certificate`` plus ``san`` and ``basic_constraints``."""

    version: int
    serial: str
    subject: str
    issuer: str
    not_valid_before: float
    not_valid_after: float
    key_alg: str
    sig_alg: str
    key_type: str | None
    key_length: int | None
    exponent: str | None
    curve: str | None
    san_dns: tuple[str, ...] | None
    san_uri: tuple[str, ...] | None
    san_email: tuple[str, ...] | None
    san_ip: tuple[str, ...] | None
    ca: bool | None
    path_len: int | None
    # names x509_check_cert_hostname tries: the SAN's DNS names when there is a SAN (even
    # none), else the subject's last CN
    dns_names: tuple[str, ...]


def _time(cert: x509.Certificate, which: str) -> float:
    utc = getattr(cert, f"{which}_utc", None)
    value: datetime = utc if utc is not None else getattr(cert, which).replace(
        tzinfo=timezone.utc)
    return value.timestamp()


def _key(cert: x509.Certificate) -> tuple[str | None, int | None, str | None, str | None]:
    """key_type, key_length, exponent, curve."""
    try:
        key = cert.public_key()
    except (ValueError, TypeError):  # a key OpenSSL would not load either
        return None, None, None, None
    if isinstance(key, rsa.RSAPublicKey):
        return "rsa", key.key_size, str(key.public_numbers().e), None
    if isinstance(key, DSAPublicKey):
        return "dsa", key.key_size, None, None
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ecdsa", key.curve.key_size, None, _CURVE_NAMES.get(key.curve.name,
                                                                     key.curve.name)
    for kind, name, bits in _EDWARDS:
        if isinstance(key, kind):
            return name, bits, None, None
    return None, None, None, None


def _extension(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> object | None:
    try:
        return cert.extensions.get_extension_for_oid(oid).value
    except (x509.ExtensionNotFound, ValueError):
        return None


def _san(ext: object | None) -> tuple[tuple[str, ...] | None, ...]:
    if not isinstance(ext, x509.SubjectAlternativeName):
        return None, None, None, None
    kinds = (x509.DNSName, x509.UniformResourceIdentifier, x509.RFC822Name)
    found = [tuple(str(v) for v in ext.get_values_for_type(k)) for k in kinds]
    ips = tuple(str(ipaddress.ip_address(v.packed)) if hasattr(v, "packed") else str(v)
                for v in ext.get_values_for_type(x509.IPAddress))
    return (*(f or None for f in found), ips or None)


def x509_facts(der: bytes) -> X509Facts:
    """The facts of one certificate. Raises ValueError when it does not parse."""
    with warnings.catch_warnings():  # a zero or negative serial: OpenSSL reads it, so do we
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        return _x509_facts(der)


def _x509_facts(der: bytes) -> X509Facts:
    cert = x509.load_der_x509_certificate(der)
    san = _extension(cert, ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    bc = _extension(cert, ExtensionOID.BASIC_CONSTRAINTS)
    key_type, key_length, exponent, curve = _key(cert)
    spki_oid, key_bits = _spki(cert.tbs_certificate_bytes)
    if key_type is None and spki_oid in _NEWER_OPENSSL:
        key_type, key_length = _NEWER_OPENSSL[spki_oid], key_bits
    dns, uri, email, ip = _san(san)
    cns = tuple(str(a.value) for a in cert.subject.get_attributes_for_oid(
        x509.NameOID.COMMON_NAME))
    return X509Facts(
        version=cert.version.value + 1,
        serial=serial_hex(cert.serial_number),
        subject=name_string(cert.subject),
        issuer=name_string(cert.issuer),
        not_valid_before=_time(cert, "not_valid_before"),
        not_valid_after=_time(cert, "not_valid_after"),
        key_alg=long_name(spki_oid),
        sig_alg=long_name(cert.signature_algorithm_oid.dotted_string),
        key_type=key_type,
        key_length=key_length,
        exponent=exponent,
        curve=curve,
        san_dns=dns,
        san_uri=uri,
        san_email=email,
        san_ip=ip,
        ca=bc.ca if isinstance(bc, x509.BasicConstraints) else None,
        path_len=bc.path_length if isinstance(bc, x509.BasicConstraints) else None,
        dns_names=(dns or ()) if isinstance(san, x509.SubjectAlternativeName) else cns[-1:],
    )


def _tlv(buf: bytes, i: int) -> tuple[int, int, int]:
    """(tag, start of contents, end of contents) of the DER element at ``i``."""
    tag, n = buf[i], buf[i + 1]
    i += 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(buf[i : i + k], "big")
        i += k
    return tag, i, i + n


def _spki(tbs: bytes) -> tuple[str, int]:
    """The SubjectPublicKeyInfo's algorithm OID and key size in bits, from the DER."""
    _, i, _ = _tlv(tbs, 0)  # into TBSCertificate
    if tbs[i] == 0xA0:  # [0] version
        i = _tlv(tbs, i)[2]
    for _ in range(5):  # serial, signature, issuer, validity, subject
        i = _tlv(tbs, i)[2]
    _, i, _ = _tlv(tbs, i)  # into SubjectPublicKeyInfo
    _, alg, after_alg = _tlv(tbs, i)  # AlgorithmIdentifier
    _, start, end = _tlv(tbs, alg)
    _, bits_start, bits_end = _tlv(tbs, after_alg)  # subjectPublicKey BIT STRING
    return _oid_text(tbs[start:end]), 8 * (bits_end - bits_start - 1)


def _oid_text(body: bytes) -> str:
    arcs: list[int] = []
    value = 0
    for b in body:
        value = (value << 7) | (b & 0x7F)
        if not b & 0x80:
            arcs.append(value)
            value = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in (first, arcs[0] - 40 * first, *arcs[1:]))


def check_hostname(hostname: str, certname: str) -> bool:
    """Zeek's ``check_hostname`` (functions.bif, RFC 6125): equal as bytes, or a ``*`` just
    before the first dot of a name with at least two dots, standing for the host's first
    label (``abc*`` matches ``abcdef``). Case-sensitive, as Zeek compares."""
    if hostname == certname:
        return True
    wild = certname.find("*")
    first = certname.find(".")
    if wild < 0 or first < 0 or certname.find(".", first + 1) < 0 or wild + 1 != first:
        return False
    host_first = hostname.find(".")
    if host_first < 0 or hostname[host_first:] != certname[first:]:
        return False
    return not wild or hostname[:wild] == certname[:wild]


def hostname_matches(names: tuple[str, ...], hostname: str) -> bool:
    """``x509_check_cert_hostname`` != "": one of ``names`` (X509Facts.dns_names) matches."""
    return any(check_hostname(hostname, name) for name in names)
