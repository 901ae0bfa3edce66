"""X.509 facts and checks over DER bytes, with `cryptography`. No I/O, no clock.

Everything here takes bytes or CertInfo values and returns values; callers pass the
time to judge at (capture time for pcaps), so committed fixtures never expire.
"""

from __future__ import annotations

import base64
import hashlib
import re
import warnings
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mtlsprobe.model import CertInfo

with warnings.catch_warnings():
    # cryptography 51 deprecates DSA, warning on the names' first use; certificates and
    # keys in the field still carry it, so mtlsprobe names it (and judges it weak)
    warnings.simplefilter("ignore")
    from cryptography.hazmat.primitives.asymmetric.dsa import DSAPrivateKey as DSAPrivateKey
    from cryptography.hazmat.primitives.asymmetric.dsa import DSAPublicKey

_EKU_NAMES = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE: "anyExtendedKeyUsage",
}


class CertError(ValueError):
    """Bytes that are not a certificate."""


def spki_pin(cert: x509.Certificate) -> str:
    """The HPKP-style pin of a certificate's public key: ``sha256/BASE64``."""
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256/" + base64.b64encode(hashlib.sha256(spki).digest()).decode()


def describe_key(key: object) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return {"secp256r1": "EC P-256", "secp384r1": "EC P-384", "secp521r1": "EC P-521"}.get(
            key.curve.name, f"EC {key.curve.name}"
        )
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448"
    if isinstance(key, DSAPublicKey):
        return f"DSA {key.key_size}"
    return type(key).__name__


def name_str(name: x509.Name) -> str:
    """RFC 4514 string of a name; never raises on odd encodings."""
    try:
        return name.rfc4514_string()
    except (ValueError, KeyError, TypeError):  # odd attribute types/encodings in hostile DER
        try:
            return repr(name)
        except Exception:
            return "<undecodable name>"


def _name_of(cert: x509.Certificate, which: str) -> str:
    """cert.subject / cert.issuer as text; cryptography parses names lazily and can raise."""
    try:
        return name_str(getattr(cert, which))
    except (ValueError, KeyError, TypeError):
        return "<undecodable name>"


def common_name(name: x509.Name) -> str | None:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else None


def _not_before(cert: x509.Certificate) -> datetime:
    """The start of validity, in UTC (``not_valid_before_utc`` came with cryptography 42)."""
    when = getattr(cert, "not_valid_before_utc", None)
    if when is None:
        when = cert.not_valid_before.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc)


def _not_after(cert: x509.Certificate) -> datetime:
    """The end of validity, in UTC (see :func:`_not_before`)."""
    when = getattr(cert, "not_valid_after_utc", None)
    if when is None:
        when = cert.not_valid_after.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc)


def _why(exc: Exception) -> str:
    """The reason from cryptography, without the ASN.1 parser's internals (``ParseError {
    kind: ... }``), which mean nothing to an operator."""
    text = str(exc).split(" ParseError", 1)[0].split("ParseError", 1)[0].strip(" :")
    return f" ({text})" if text and len(text) < 120 else ""


def parse_der(der: bytes) -> x509.Certificate:
    """One DER certificate, or CertError. Warnings about RFC 5280 lapses (a negative
    serial, ...) are silenced, as in ``cert_info``: stderr is no place for evidence."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return x509.load_der_x509_certificate(der)
    except (ValueError, x509.InvalidVersion) as exc:  # InvalidVersion is no ValueError
        raise CertError(f"not a DER certificate{_why(exc)}") from None


def cert_info(der: bytes) -> CertInfo:
    """Facts of one DER certificate. Raises CertError for bytes that are not one.

    Certificates seen on the wire break RFC 5280 in small ways (negative serials, ...);
    cryptography warns about those on stderr, which is no place for evidence, so the
    warnings are silenced here: the facts are still reported.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. CryptographyDeprecationWarning, UserWarning
        try:
            return _cert_info(der)
        except CertError:
            raise
        except Exception as exc:  # untrusted DER: cryptography raises many kinds of errors
            raise CertError(f"unreadable certificate ({type(exc).__name__}: {exc})") from None


# An extension that is absent, or that cannot be read. cryptography parses extensions
# lazily, and on hostile DER it was seen to raise DuplicateExtension,
# UnsupportedGeneralNameType and KeyError besides ValueError (found by fuzzing captures).
_EXTENSION_ERRORS = (
    x509.ExtensionNotFound, x509.DuplicateExtension, x509.UnsupportedGeneralNameType, ValueError,
    KeyError, TypeError,
)


def _cert_info(der: bytes) -> CertInfo:
    cert = parse_der(der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        san_dns = tuple(san.get_values_for_type(x509.DNSName))
        san_ip = tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    except _EXTENSION_ERRORS:
        san_dns, san_ip = (), ()
    try:
        eku_ext = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        eku: tuple[str, ...] | None = tuple(
            _EKU_NAMES.get(oid, oid.dotted_string) for oid in eku_ext
        )
    except _EXTENSION_ERRORS:
        eku = None
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except _EXTENSION_ERRORS:
        is_ca = False
    try:
        key = describe_key(cert.public_key())
        pin = spki_pin(cert)
    except (ValueError, TypeError, UnsupportedAlgorithm):  # unknown or malformed key
        key, pin = "unsupported", ""
    try:
        sig = cert.signature_hash_algorithm
        sig_name = f"{sig.name}" if sig else "none"
    except Exception:
        sig_name = cert.signature_algorithm_oid.dotted_string
    subject, issuer = _name_of(cert, "subject"), _name_of(cert, "issuer")
    return CertInfo(
        sha256=hashlib.sha256(der).hexdigest(),
        spki_pin=pin,
        subject=subject,
        issuer=issuer,
        serial=format(cert.serial_number, "x"),
        not_before=_not_before(cert),
        not_after=_not_after(cert),
        san_dns=san_dns,
        san_ip=san_ip,
        eku=eku,
        key=key,
        signature_algorithm=sig_name,
        is_ca=is_ca,
        self_issued=subject == issuer,
        der=der,
    )


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """Certificates from PEM (one or many; UTF-16 too, as Windows PowerShell 5 writes it) or
    a single DER. Raises CertError."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):  # a UTF-16 byte order mark: text, not DER
        try:
            data = data.decode("utf-16").encode("ascii")
        except (UnicodeDecodeError, UnicodeEncodeError):
            raise CertError("UTF-16 text that is not a PEM certificate") from None
    if b"-----BEGIN" in data:
        try:
            certs = x509.load_pem_x509_certificates(data)
        except (ValueError, x509.InvalidVersion) as exc:
            raise CertError(f"bad PEM certificate{_why(exc)}") from None
        if not certs:
            raise CertError("no certificate in PEM data")
        return certs
    return [parse_der(data)]


def to_der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


_DN_TYPES = {"1.2.840.113549.1.9.1": "emailaddress", "2.5.4.5": "serialnumber"}


def dn_key(text: str) -> str:
    """An RFC 4514 name compared across writers: attribute types in lower case, OIDs that
    OpenSSL names (Zeek's x509.log: ``emailAddress=``) and cryptography does not, unified."""
    parts = re.split(r"(?<!\\),", text)
    out = []
    for part in parts:
        kind, sep, value = part.partition("=")
        kind = kind.strip().lower()
        out.append(f"{_DN_TYPES.get(kind, kind)}{sep}{value.strip()}")
    return ",".join(out)


def issued_by(child: CertInfo, parent: CertInfo) -> bool:
    """True when `parent`'s key signed `child` and the names chain (RFC 5280 §6.1).

    A certificate known by names only (``known_by``: a Zeek x509.log row, no DER) chains by
    names alone; one known by its fingerprint alone chains to nothing.
    """
    if "fingerprint" in (child.known_by, parent.known_by):
        return False
    if "names" in (child.known_by, parent.known_by):
        return bool(child.issuer) and dn_key(child.issuer) == dn_key(parent.subject)
    if child.issuer != parent.subject:
        return False
    try:
        parse_der(child.der).verify_directly_issued_by(parse_der(parent.der))
    except (ValueError, TypeError, CertError):
        return False
    except Exception:
        return False
    return True


def anchor_of(chain: Sequence[CertInfo], roots: Iterable[CertInfo]) -> CertInfo | None:
    """The root in `roots` that the presented `chain` builds to, or None.

    Builds from the leaf through any certificates the peer sent (in any order, as
    real servers do), then to a root. Only signatures and names are checked here;
    validity dates are judged separately at the observation's time. A chain known from a
    Zeek log (no DER) that cannot be walked by names builds to a root whose fingerprint it
    holds: fingerprints are all such a log may give.
    """
    if not chain:
        return None
    roots = list(roots)
    root_shas = {r.sha256 for r in roots}
    walked = _walk(chain, roots, root_shas)
    if walked is None and all(c.known_by != "der" for c in chain):
        return next((r for r in roots for c in chain if c.sha256 == r.sha256), None)
    return walked


def _walk(chain: Sequence[CertInfo], roots: list[CertInfo],
          root_shas: set[str]) -> CertInfo | None:
    current = chain[0]
    pool = list(chain[1:])
    for _ in range(len(chain) + 1):
        if current.sha256 in root_shas:
            return current
        for root in roots:
            if issued_by(current, root):
                return root
        nxt = next((c for c in pool if c.sha256 != current.sha256 and issued_by(current, c)), None)
        if nxt is None:
            return None
        pool.remove(nxt)
        current = nxt
    return None


def leaf_shares_issuer_key(chain: Sequence[CertInfo]) -> bool:
    """mitmproxy's tell: every minted leaf reuses the CA's key pair.

    Seen either as a CA certificate in `chain` with the leaf's key and the leaf's issuer
    name, or, when the peer sent the leaf alone, as a leaf that is not self-issued yet
    whose signature verifies with its own public key.
    """
    if not chain or not chain[0].spki_pin:
        return False
    leaf = chain[0]
    if any(c.spki_pin == leaf.spki_pin and c.subject == leaf.issuer for c in chain[1:]):
        return True
    if leaf.self_issued:
        return False
    try:
        cert = parse_der(leaf.der)
        cert.verify_directly_issued_by(_renamed_issuer(cert))
    except Exception:  # InvalidSignature, unsupported key types, odd encodings
        return False
    return True


def _renamed_issuer(cert: x509.Certificate) -> x509.Certificate:
    """A stand-in issuer: the leaf's own key under the leaf's issuer name.

    verify_directly_issued_by checks names before the signature, so the stand-in carries
    the issuer's name; only the public key matters for the signature check.
    """
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec as _ec

    throwaway = _ec.generate_private_key(_ec.SECP256R1())
    return (
        x509.CertificateBuilder()
        .subject_name(cert.issuer)
        .issuer_name(cert.issuer)
        .public_key(cert.public_key())
        .serial_number(1)
        .not_valid_before(_not_before(cert))
        .not_valid_after(_not_after(cert))
        .sign(throwaway, hashes.SHA256())
    )


def chain_pins(chain: Sequence[CertInfo]) -> set[str]:
    return {c.spki_pin for c in chain if c.spki_pin}
