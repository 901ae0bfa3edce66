"""x509.log rows indexed by fingerprint: the certificates an ssl.log names only by hash.

x509.log carries no connection id. Zeek's ``base/protocols/ssl/files.zeek`` writes each
chain into ssl.log as ``cert_chain_fps``/``client_cert_chain_fps``, the fingerprints (SHA-256
of the DER, ``X509::hash_function``) leaf first, and ``base/files/x509/main.zeek`` logs each
certificate once per ``relog_known_certificates_after`` (a day), cluster-wide, so the row
for a chain seen today may sit in yesterday's file of another worker: the index spans every
x509.log given. ``policy/protocols/ssl/log-hostcerts-only`` keeps only the leaves;
``policy/protocols/ssl/log-certs-base64`` adds the certificate itself (``cert``).

A row becomes a ``CertInfo`` known by its names (``known_by="names"``: subject, issuer,
serial, validity, SAN, basic constraints, key and signature algorithm; no key pin, no
signature check) or, with ``cert``, by its DER (every fact, pins included). A fingerprint
with no row is known by itself alone (``fingerprint_only``).

Memory: the index is the one thing the logs adapter holds: at most ``MAX_CERTS``
certificates (about 700 bytes each, 140 MB at the cap, measured); rows past that are
counted in a note and their certificates stay known by fingerprint only.
"""

from __future__ import annotations

import base64
import binascii
import re
import sys
from datetime import datetime, timezone

from mtlsprobe.capture.zeek.zeek_format import Row
from mtlsprobe.model import CertInfo
from mtlsprobe.model.certs import CertError, cert_info

MAX_CERTS = 200_000
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
FAR_FUTURE = datetime(9999, 12, 31, tzinfo=timezone.utc)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SIG = re.compile(r"^(md5|sha\d*)with", re.IGNORECASE)
_CURVES = {"prime256v1": "EC P-256", "secp384r1": "EC P-384", "secp521r1": "EC P-521"}


def parse_time(text: object) -> datetime | None:
    """Zeek's ``time``: epoch seconds (TSV, JSON default) or ISO 8601 (``JSON::TS_ISO8601``)."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromtimestamp(float(text), tz=timezone.utc)
    except (ValueError, OverflowError, OSError):
        pass
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def fingerprint_only(fp: str) -> CertInfo:
    """A certificate known by its SHA-256 alone: names empty, dates placeholders (no rule
    reads them: ``known_by="fingerprint"``)."""
    return CertInfo(sha256=fp, spki_pin="", subject="", issuer="", serial="0",
                    not_before=EPOCH, not_after=FAR_FUTURE, known_by="fingerprint")


def _text(row: Row, key: str) -> str:
    value = row.get(key)
    return value if isinstance(value, str) else ""


def _strings(row: Row, key: str) -> tuple[str, ...]:
    value = row.get(key)
    if isinstance(value, list):
        return tuple(value)
    return (value,) if isinstance(value, str) and value else ()


def _serial(text: str) -> str:
    try:
        return format(int(text, 16), "x")
    except ValueError:
        return "0"


def _key(row: Row) -> str:
    kind, length, curve = _text(row, "certificate.key_type"), _text(
        row, "certificate.key_length"), _text(row, "certificate.curve")
    if kind == "ecdsa" or curve:
        return _CURVES.get(curve, f"EC {curve}".strip())
    return f"{kind.upper()} {length}".strip()


def _signature(text: str) -> str:
    """Zeek's OpenSSL name (``sha256WithRSAEncryption``, ``ecdsa-with-SHA256``) -> ours."""
    m = _SIG.match(text)
    if m:
        return m.group(1).lower()
    if text.lower().startswith("ecdsa-with-"):
        return text[len("ecdsa-with-"):].lower()
    return text


def cert_from_row(row: Row, fp: str) -> CertInfo:
    """One x509.log row as a CertInfo (from its DER when the ``cert`` column holds it)."""
    b64 = _text(row, "cert")
    if b64:
        try:
            info = cert_info(base64.b64decode(b64, validate=True))
            if info.sha256 == fp:
                return info
        except (binascii.Error, ValueError, CertError):
            pass  # the names below still hold
    # a fleet's certificates share their issuer, key and algorithm texts: kept once
    subject = _text(row, "certificate.subject")
    issuer = sys.intern(_text(row, "certificate.issuer"))
    return CertInfo(
        sha256=fp,
        spki_pin="",
        subject=subject,
        issuer=issuer,
        serial=_serial(_text(row, "certificate.serial")),
        not_before=parse_time(row.get("certificate.not_valid_before")) or EPOCH,
        not_after=parse_time(row.get("certificate.not_valid_after")) or FAR_FUTURE,
        san_dns=_strings(row, "san.dns"),
        san_ip=_strings(row, "san.ip"),
        key=sys.intern(_key(row)),
        signature_algorithm=sys.intern(_signature(_text(row, "certificate.sig_alg"))),
        is_ca=row.get("basic_constraints.ca") is True,
        self_issued=bool(subject) and subject == issuer,
        known_by="names",
    )


class X509Index:
    """Certificates by fingerprint, from every x509.log row given (the first row wins; a
    later row that carries the certificate itself replaces one that did not)."""

    def __init__(self, limit: int = MAX_CERTS) -> None:
        self.certs: dict[str, CertInfo] = {}
        self.limit = limit
        self.overflow = 0
        self.bad_fingerprints = 0
        self.with_der = 0

    def add(self, row: Row) -> None:
        fp = _text(row, "fingerprint").lower()
        if not _SHA256.match(fp):
            self.bad_fingerprints += 1
            return
        known = self.certs.get(fp)
        if known is not None and (known.known_by == "der" or not _text(row, "cert")):
            return
        if known is None and len(self.certs) >= self.limit:
            self.overflow += 1
            return
        info = cert_from_row(row, fp)
        self.with_der += info.known_by == "der"
        self.certs[fp] = info

    def chain(self, fps: list[str]) -> tuple[CertInfo, ...]:
        """The certificates of a chain of fingerprints, leaf first."""
        return tuple(self.certs.get(fp) or fingerprint_only(fp) for fp in fps)

    def notes(self) -> list[str]:
        out = []
        if self.overflow:
            out.append(f"x509.log: {self.overflow:,} certificate(s) beyond the {self.limit:,} "
                       "indexed were not kept; chains naming them are known by fingerprint only")
        if self.bad_fingerprints:
            out.append(f"x509.log: {self.bad_fingerprints:,} row(s) whose fingerprint is not a "
                       "SHA-256 (X509::hash_function changed?) were not indexed")
        return out
