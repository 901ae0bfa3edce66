"""Parsers for the handshake messages other than the hellos, and for alert records.

Sans-IO. EncryptedExtensions, Certificate, CertificateRequest, NewSessionTicket,
HelloRequest, KeyUpdate and Finished (the hellos are in :mod:`~mtlsprobe.tls.hellos`). Each
``parse_*`` function takes a message *body* (without the 4-byte handshake header; see
:mod:`~mtlsprobe.tls.handshake_framing`), or an alert record's payload, and returns a
frozen value or raises :class:`~mtlsprobe.tls.reader.DecodeError`; never a partial result.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from mtlsprobe.tls.constants import ExtensionType
from mtlsprobe.tls.dn import name_to_string
from mtlsprobe.tls.extensions import (
    Extension,
    find_extension,
    parse_extensions,
    read_alpn_list,
    read_authorities,
    read_u16_list,
)
from mtlsprobe.tls.reader import DecodeError, Reader

_T = TypeVar("_T")


# --- EncryptedExtensions ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EncryptedExtensions:
    extensions: tuple[Extension, ...]
    alpn: str | None = None
    early_data: bool = False


def parse_encrypted_extensions(body: bytes) -> EncryptedExtensions:
    """RFC 8446 §4.3.1. Raises DecodeError."""
    r = Reader(body, "EncryptedExtensions")
    exts = parse_extensions(r) if not r.at_end() else ()
    alpn_data = find_extension(exts, ExtensionType.application_layer_protocol_negotiation)
    names = read_alpn_list(alpn_data) if alpn_data is not None else ()
    return EncryptedExtensions(
        extensions=exts,
        alpn=names[0] if names else None,
        early_data=find_extension(exts, ExtensionType.early_data) is not None,
    )


# --- Certificate --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Certificate:
    certificates: tuple[bytes, ...]  # DER, leaf first as sent
    context: bytes = b""  # TLS 1.3 certificate_request_context


_MEMO_ENTRIES = 256  # per parser
_MEMO_MAX_BODY = 1 << 16


def _memo(parse: Callable[..., _T]) -> Callable[..., _T]:
    """Remember a parser's results by message body: a capture repeats the same server
    Certificate and CertificateRequest (and a client's Certificate) thousands of times.
    Results are frozen; only successful parses are kept (an error is raised afresh each
    time); bounded in entries and body size."""
    cache: dict[tuple[bytes, bool], _T] = {}

    @functools.wraps(parse)
    def cached(body: bytes, *, tls13: bool) -> _T:
        if len(body) > _MEMO_MAX_BODY:
            return parse(body, tls13=tls13)
        key = (bytes(body), tls13)
        hit = cache.get(key)
        if hit is None:
            hit = parse(body, tls13=tls13)
            if len(cache) >= _MEMO_ENTRIES:
                cache.clear()
            cache[key] = hit
        return hit

    return cached


@_memo
def parse_certificate(body: bytes, *, tls13: bool) -> Certificate:
    """RFC 8446 §4.4.2 (per-entry extensions) / RFC 5246 §7.4.2. Raises DecodeError.

    An empty list is a valid message: a client without a suitable certificate.
    """
    r = Reader(body, "Certificate")
    context = r.vector(1) if tls13 else b""
    entries = r.sub_vector(3, "Certificate.certificate_list")
    certs: list[bytes] = []
    while not entries.at_end():
        der = entries.vector(3)
        if not der:
            raise entries.error("empty certificate entry")
        certs.append(der)
        if tls13:
            entries.vector(2)  # CertificateEntry.extensions (OCSP, SCT): not needed
    r.expect_end()
    return Certificate(certificates=tuple(certs), context=context)


# --- CertificateRequest -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CertificateRequest:
    signature_algorithms: tuple[int, ...] = ()
    authorities: tuple[bytes, ...] = ()  # DER DistinguishedNames
    authority_names: tuple[str, ...] = ()  # RFC 4514; "<undecodable DN hex>" if bad
    certificate_types: tuple[int, ...] = ()  # TLS <= 1.2
    context: bytes = b""  # TLS 1.3
    extensions: tuple[Extension, ...] = ()  # TLS 1.3


def _names(authorities: tuple[bytes, ...]) -> tuple[str, ...]:
    out = []
    for der in authorities:
        try:
            out.append(name_to_string(der))
        except DecodeError:
            out.append(f"<undecodable DN {der[:32].hex()}>")
    return tuple(out)


@_memo
def parse_certificate_request(body: bytes, *, tls13: bool) -> CertificateRequest:
    """RFC 8446 §4.3.2 / RFC 5246 §7.4.4. Raises DecodeError.

    A DN that is not valid DER does not fail the message: the CA list is evidence the
    rules quote, and a garbled entry is itself worth reporting.
    """
    r = Reader(body, "CertificateRequest")
    if tls13:
        context = r.vector(1)
        exts = parse_extensions(r)
        r.expect_end()
        sig = find_extension(exts, ExtensionType.signature_algorithms)
        cas = find_extension(exts, ExtensionType.certificate_authorities)
        authorities = read_authorities(cas) if cas is not None else ()
        return CertificateRequest(
            signature_algorithms=read_u16_list(sig, 2, "signature_algorithms") if sig else (),
            authorities=authorities,
            authority_names=_names(authorities),
            context=context,
            extensions=exts,
        )
    types = tuple(r.vector(1))
    # RFC 5246 §7.4.4: supported_signature_algorithms exists from TLS 1.2 on; a 1.0/1.1
    # request has none. Try the 1.2 layout first, then the older one.
    try:
        sigs, authorities = _cr12_tail(body, r.offset, with_sigs=True)
    except DecodeError:
        sigs, authorities = _cr12_tail(body, r.offset, with_sigs=False)
    return CertificateRequest(
        signature_algorithms=sigs,
        authorities=authorities,
        authority_names=_names(authorities),
        certificate_types=types,
    )


def _cr12_tail(
    body: bytes, start: int, *, with_sigs: bool
) -> tuple[tuple[int, ...], tuple[bytes, ...]]:
    r = Reader(body, "CertificateRequest", start=start)
    sigs = r.u16_list(2) if with_sigs else ()
    cas = r.sub_vector(2, "CertificateRequest.certificate_authorities")
    r.expect_end()
    authorities: list[bytes] = []
    while not cas.at_end():
        authorities.append(cas.vector(2))
    return sigs, tuple(authorities)


# --- small messages -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Alert:
    level: int
    description: int


def parse_alerts(payload: bytes) -> tuple[Alert, ...]:
    """An alert record's payload: one or more 2-byte alerts (RFC 8446 §6). Raises DecodeError."""
    if not payload or len(payload) % 2:
        raise DecodeError(f"alert payload of {len(payload)} bytes", context="Alert")
    return tuple(Alert(payload[i], payload[i + 1]) for i in range(0, len(payload), 2))


@dataclass(frozen=True, slots=True)
class NewSessionTicket:
    lifetime: int
    ticket: bytes
    age_add: int | None = None  # TLS 1.3
    nonce: bytes = b""  # TLS 1.3


def parse_new_session_ticket(body: bytes, *, tls13: bool) -> NewSessionTicket:
    """RFC 8446 §4.6.1 / RFC 5077 §3.3. Raises DecodeError."""
    r = Reader(body, "NewSessionTicket")
    lifetime = r.u32()
    if tls13:
        age_add = r.u32()
        nonce = r.vector(1)
        ticket = r.vector(2)
        parse_extensions(r)
        r.expect_end()
        return NewSessionTicket(lifetime=lifetime, ticket=ticket, age_add=age_add, nonce=nonce)
    ticket = r.vector(2)
    r.expect_end()
    return NewSessionTicket(lifetime=lifetime, ticket=ticket)


@dataclass(frozen=True, slots=True)
class HelloRequest:
    pass


def parse_hello_request(body: bytes) -> HelloRequest:
    """RFC 5246 §7.4.1.1: an empty body. Raises DecodeError."""
    if body:
        raise DecodeError(f"HelloRequest with {len(body)} body bytes", context="HelloRequest")
    return HelloRequest()


@dataclass(frozen=True, slots=True)
class KeyUpdate:
    update_requested: bool


def parse_key_update(body: bytes) -> KeyUpdate:
    """RFC 8446 §4.6.3. Raises DecodeError."""
    r = Reader(body, "KeyUpdate")
    value = r.u8()
    r.expect_end()
    if value > 1:
        raise DecodeError(f"KeyUpdateRequest {value}", context="KeyUpdate")
    return KeyUpdate(update_requested=value == 1)


@dataclass(frozen=True, slots=True)
class Finished:
    verify_data: bytes


def parse_finished(body: bytes) -> Finished:
    """RFC 8446 §4.4.4 / RFC 5246 §7.4.9 (12 bytes in 1.2, hash length in 1.3)."""
    if len(body) not in (12, 32, 48, 64):
        raise DecodeError(f"Finished with {len(body)} bytes", context="Finished")
    return Finished(verify_data=body)


__all__ = [
    "Alert",
    "Certificate",
    "CertificateRequest",
    "EncryptedExtensions",
    "Finished",
    "HelloRequest",
    "KeyUpdate",
    "NewSessionTicket",
    "parse_alerts",
    "parse_certificate",
    "parse_certificate_request",
    "parse_encrypted_extensions",
    "parse_finished",
    "parse_hello_request",
    "parse_key_update",
    "parse_new_session_ticket",
]
