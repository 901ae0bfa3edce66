"""DER X.501 Name -> RFC 4514 string, for the CA lists in CertificateRequest.

`cryptography` can print an ``x509.Name`` but offers no loader for a bare DER Name, so we
walk the few DER layers ourselves (RDNSequence -> SET -> SEQUENCE {OID, value}) and let
``x509.Name.rfc4514_string()`` do the formatting: the result then matches the issuer
strings of ``mtlsprobe.model.certs.cert_info`` exactly, which the rules compare against.
"""

from __future__ import annotations

import warnings

from cryptography import x509
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import ObjectIdentifier

from mtlsprobe.tls.reader import DecodeError, Reader

_SEQUENCE, _SET, _OID = 0x30, 0x31, 0x06
_STRING_CODECS = {
    12: "utf-8",  # UTF8String
    18: "ascii",  # NumericString
    19: "ascii",  # PrintableString
    20: "latin-1",  # T61String (leniently)
    22: "ascii",  # IA5String
    26: "ascii",  # VisibleString
    28: "utf-32-be",  # UniversalString
    30: "utf-16-be",  # BMPString
}


def _tlv(r: Reader) -> tuple[int, Reader]:
    tag = r.u8()
    if tag & 0x1F == 0x1F:
        raise r.error("high-tag-number form is not used in names")
    first = r.u8()
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 3:
            raise r.error("unsupported DER length")
        length = 0
        for _ in range(count):
            length = (length << 8) | r.u8()
    return tag, r.sub(length)


def _oid(body: bytes) -> str:
    if not body:
        raise DecodeError("empty OID", context="DistinguishedName")
    arcs: list[int] = []
    value = 0
    for b in body:
        value = (value << 7) | (b & 0x7F)
        if not b & 0x80:
            arcs.append(value)
            value = 0
    if body[-1] & 0x80:
        raise DecodeError("truncated OID", context="DistinguishedName")
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in (first, arcs[0] - 40 * first, *arcs[1:]))


def _attribute(r: Reader) -> x509.NameAttribute:
    tag, oid_r = _tlv(r)
    if tag != _OID:
        raise r.error("attribute type is not an OID")
    oid = ObjectIdentifier(_oid(oid_r.rest()))
    vtag, value_r = _tlv(r)
    raw = value_r.rest()
    codec = _STRING_CODECS.get(vtag)
    if codec is None:
        raise r.error(f"attribute value tag {vtag} is not a string")
    try:
        text = raw.decode(codec)
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    # No validation: a CA list may carry e.g. a 3-letter countryName, and we report
    # what the server sent rather than what it should have sent.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return x509.NameAttribute(oid, text, _ASN1Type(vtag), _validate=False)


def parse_name(der: bytes) -> x509.Name:
    """Decode a DER Name. Raises DecodeError."""
    try:
        return _parse_name(der)
    except DecodeError:
        raise
    except (ValueError, TypeError) as exc:  # cryptography refusing an OID or an RDN
        raise DecodeError(str(exc), context="DistinguishedName") from None


def _parse_name(der: bytes) -> x509.Name:
    r = Reader(der, "DistinguishedName")
    tag, seq = _tlv(r)
    if tag != _SEQUENCE:
        raise r.error("Name is not a SEQUENCE")
    r.expect_end()
    rdns: list[x509.RelativeDistinguishedName] = []
    while not seq.at_end():
        tag, rdn = _tlv(seq)
        if tag != _SET:
            raise seq.error("RDN is not a SET")
        attrs: list[x509.NameAttribute] = []
        while not rdn.at_end():
            tag, atv = _tlv(rdn)
            if tag != _SEQUENCE:
                raise rdn.error("AttributeTypeAndValue is not a SEQUENCE")
            attrs.append(_attribute(atv))
        if not attrs:
            raise seq.error("empty RDN")
        rdns.append(x509.RelativeDistinguishedName(attrs))
    return x509.Name(rdns)


def name_to_string(der: bytes) -> str:
    """RFC 4514 string of a DER Name. Raises DecodeError."""
    name = parse_name(der)
    try:
        return name.rfc4514_string()
    except (ValueError, TypeError) as exc:  # pragma: no cover - defensive
        raise DecodeError(f"unprintable name: {exc}", context="DistinguishedName") from None
