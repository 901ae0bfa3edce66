"""Handshake message framing and parsers for the messages the verdict needs.

Sans-IO. :class:`HandshakeAssembler` turns handshake-record payloads (plaintext, or
decrypted) into whole messages, whatever the record boundaries (RFC 8446 §5.1: messages
may span records, and one record may hold several). Each ``parse_*`` function takes a
message *body* (without the 4-byte handshake header) and returns a frozen value or raises
:class:`~mtlsprobe.tls.reader.DecodeError`; they never return partial results.

Leniency is deliberate where noted: we observe other people's traffic, so unknown
extensions and trailing bytes inside extensions are kept or noted, never fatal.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from struct import unpack_from
from typing import NamedTuple, TypeVar

from mtlsprobe.tls.constants import (
    GREASE,
    HELLO_RETRY_REQUEST_RANDOM,
    ExtensionType,
    HandshakeType,
)
from mtlsprobe.tls.dn import name_to_string
from mtlsprobe.tls.reader import DecodeError, Reader

HANDSHAKE_HEADER_LEN = 4
_T = TypeVar("_T")
# RFC 8446 allows 2^24-1; no message we parse comes close to this (a long chain is ~20 KB).
MAX_HANDSHAKE_LEN = 1 << 20


class HandshakeMessage(NamedTuple):
    """One whole handshake message (NamedTuple: immutable and cheap to build)."""

    msg_type: int
    body: bytes


_set = object.__setattr__  # for the memo of frozen ClientHello values

# ``tuple.__new__(HandshakeMessage, fields)`` skips the NamedTuple's Python-level __new__:
# several times cheaper, at one call per handshake message of a capture.
_message = tuple.__new__


class HandshakeAssembler:
    """Whole handshake messages out of a sequence of handshake-record payloads.

    ``feed`` raises DecodeError for a declared length over MAX_HANDSHAKE_LEN; the error is
    sticky, as framing is lost.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.error: DecodeError | None = None

    @property
    def pending(self) -> int:
        """Bytes of an incomplete message held back."""
        return len(self._buf)

    def feed(self, payload: bytes) -> list[HandshakeMessage]:
        if self.error is not None:
            raise self.error
        buf = self._buf
        if buf:
            buf += payload
            data: bytes | bytearray = buf
        else:  # the usual case: read the record's payload in place, keep only a remainder
            data = payload
        out: list[HandshakeMessage] = []
        pos = 0
        n = len(data)
        while n - pos >= HANDSHAKE_HEADER_LEN:
            length = (data[pos + 1] << 16) | (data[pos + 2] << 8) | data[pos + 3]
            if length > MAX_HANDSHAKE_LEN:
                self.error = DecodeError(
                    f"handshake message length {length} over the limit", context="handshake"
                )
                raise self.error
            end = pos + HANDSHAKE_HEADER_LEN + length
            if end > n:
                break
            out.append(_message(HandshakeMessage,
                                (data[pos], bytes(data[pos + HANDSHAKE_HEADER_LEN : end]))))
            pos = end
        if data is buf:
            del buf[:pos]
        elif pos < n:
            buf += data[pos:]
        return out


# --- extensions ---------------------------------------------------------------------


class Extension(NamedTuple):
    """One hello extension (NamedTuple: immutable, and a ClientHello carries a dozen)."""

    type: int
    data: bytes


def _parse_extensions(r: Reader) -> tuple[Extension, ...]:
    """The extensions block, if present (RFC 5246 §7.4.1.2: it may be absent)."""
    if r.at_end():
        return ()
    block = r.sub_vector(2, f"{r.context}.extensions")
    return tuple([Extension(etype, data) for etype, data in block.typed_vectors()])


def _find(exts: tuple[Extension, ...], etype: int) -> bytes | None:
    return next((e.data for e in exts if e.type == etype), None)


def _alpn_list(data: bytes) -> tuple[str, ...]:
    # RFC 7301 §3.1: ProtocolNameList protocol_name_list<2..2^16-1>, names <1..2^8-1>.
    r = Reader(data, "alpn").sub_vector(2)
    out: list[str] = []
    while not r.at_end():
        out.append(r.vector(1).decode("ascii", "replace"))
    return tuple(out)


def _server_name(data: bytes) -> str | None:
    # RFC 6066 §3: ServerNameList; name_type 0 is host_name.
    if len(data) >= 5 and data[2] == 0:  # the usual single host_name, read in place
        listed, size = (data[0] << 8) | data[1], (data[3] << 8) | data[4]
        if listed + 2 <= len(data) and size + 3 <= listed:
            return data[5 : 5 + size].decode("ascii", "replace")
    r = Reader(data, "server_name")
    if r.at_end():
        return None  # a server's empty acknowledgement
    names = r.sub_vector(2)
    while not names.at_end():
        name_type = names.u8()
        name = names.vector(2)
        if name_type == 0:
            return name.decode("ascii", "replace")
    return None


def _u16_list(data: bytes, prefix: int, context: str) -> tuple[int, ...]:
    # well-formed lists in one unpack; anything else through the Reader, for its error
    if prefix == 2 and len(data) >= 2:
        n = (data[0] << 8) | data[1]
        if not n & 1 and n + 2 <= len(data):
            return unpack_from(f">{n >> 1}H", data, 2)
    elif prefix == 1 and data:
        n = data[0]
        if not n & 1 and n + 1 <= len(data):
            return unpack_from(f">{n >> 1}H", data, 1)
    return Reader(data, context).u16_list(prefix)


def _u8_list(data: bytes, context: str) -> tuple[int, ...]:
    return tuple(Reader(data, context).vector(1))


def _key_share_groups(data: bytes) -> tuple[int, ...]:
    # KeyShareEntry client_shares<0..2^16-1>: (group, opaque key_exchange<1..2^16-1>).
    # Well-formed lists are walked in place; anything else goes through the Reader below,
    # which raises the precise DecodeError.
    n = len(data)
    end = 2 + ((data[0] << 8) | data[1]) if n >= 2 else n + 1
    groups: list[int] = []
    if end <= n:
        pos = 2
        while pos + 4 <= end:
            groups.append((data[pos] << 8) | data[pos + 1])
            pos += 4 + ((data[pos + 2] << 8) | data[pos + 3])
        if pos == end:
            return tuple(groups)
    r = Reader(data, "key_share").sub_vector(2)
    groups.clear()
    while not r.at_end():
        groups.append(r.u16())
        r.vector(2)
    return tuple(groups)


def _authorities(data: bytes) -> tuple[bytes, ...]:
    # RFC 8446 §4.2.4 certificate_authorities / RFC 5246 §7.4.4 certificate_authorities:
    # DistinguishedName authorities<3..2^16-1>; opaque DistinguishedName<1..2^16-1>.
    r = Reader(data, "certificate_authorities").sub_vector(2)
    out: list[bytes] = []
    while not r.at_end():
        out.append(r.vector(2))
    return tuple(out)


# --- ClientHello --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientHello:
    legacy_version: int
    random: bytes
    session_id: bytes
    cipher_suites: tuple[int, ...]
    compression_methods: tuple[int, ...]
    extensions: tuple[Extension, ...]
    sni: str | None = None
    alpn: tuple[str, ...] = ()
    supported_versions: tuple[int, ...] = ()
    supported_groups: tuple[int, ...] = ()
    ec_point_formats: tuple[int, ...] = ()
    signature_algorithms: tuple[int, ...] = ()
    key_share_groups: tuple[int, ...] = ()
    post_handshake_auth: bool = False
    psk: bool = False  # pre_shared_key offered (TLS 1.3 resumption attempt)
    session_ticket: bool = False  # a non-empty session_ticket offered (TLS 1.2 resumption)
    early_data: bool = False
    # Values computed from the hello's shape alone (name -> value), e.g. the fingerprints;
    # see shape_memo. parse_client_hello hands a shape's copies the same dict, so each is
    # computed once per client stack, not per connection. init=False: replace() starts a
    # changed hello afresh instead of carrying its original's values.
    _memo: dict[str, str] | None = field(default=None, init=False, compare=False, repr=False)

    @property
    def offered_versions(self) -> tuple[int, ...]:
        """supported_versions without GREASE, else the legacy version alone."""
        real = tuple([v for v in self.supported_versions if v not in GREASE])
        return real or (self.legacy_version,)


def shape_memo(ch: ClientHello) -> dict[str, str]:
    """The memo of values that depend on ``ch``'s shape alone (name -> value).

    Shared by every hello :func:`parse_client_hello` rebuilt from the same shape; a hello
    made otherwise (a direct parse, ``dataclasses.replace``) gets its own, on first use.
    Only a value that is the same for every hello of the shape may go in: the shape fixes
    every byte but the random, the session id and the data of the key_share and
    pre_shared_key extensions (see "hello shapes" below).
    """
    memo = ch._memo
    if memo is None:
        memo = {}
        _set(ch, "_memo", memo)
    return memo


# ClientHello extension type -> (ClientHello field, reader of the extension data). A table
# rather than an if/elif chain on IntEnum members: each enum comparison costs ~100 ns, and
# this runs for every extension of every ClientHello in a capture.
_CH_FIELDS: dict[int, tuple[str, Callable[[bytes], object]]] = {int(t): v for t, v in {
    ExtensionType.server_name: ("sni", _server_name),
    ExtensionType.application_layer_protocol_negotiation: ("alpn", _alpn_list),
    ExtensionType.supported_versions: (
        "supported_versions", lambda d: _u16_list(d, 1, "supported_versions")),
    ExtensionType.supported_groups: (
        "supported_groups", lambda d: _u16_list(d, 2, "supported_groups")),
    ExtensionType.ec_point_formats: (
        "ec_point_formats", lambda d: _u8_list(d, "ec_point_formats")),
    ExtensionType.signature_algorithms: (
        "signature_algorithms", lambda d: _u16_list(d, 2, "signature_algorithms")),
    ExtensionType.key_share: ("key_share_groups", _key_share_groups),
    ExtensionType.post_handshake_auth: ("post_handshake_auth", lambda d: True),
    ExtensionType.pre_shared_key: ("psk", lambda d: True),
    ExtensionType.session_ticket: ("session_ticket", bool),
    ExtensionType.early_data: ("early_data", lambda d: True),
}.items()}


def parse_client_hello(body: bytes) -> ClientHello:
    """RFC 8446 §4.1.2 / RFC 5246 §7.4.1.2. Raises DecodeError.

    Remembered by shape (see :class:`_ShapeCache`): a hello from a stack already seen is
    rebuilt from that parse plus its own random, session id and key shares.
    """
    return _by_shape(body, _CH_SHAPES, _client_hello_shape, _first_client_hello,
                     _client_hello_like)


def _first_client_hello(body: bytes) -> ClientHello:
    """The full parse of the first hello of a shape, with the memo its copies share."""
    ch = _parse_client_hello(body)
    _set(ch, "_memo", {})
    return ch


def _client_hello_like(hit: ClientHello, body: bytes, cuts: tuple[Cut, ...]) -> ClientHello:
    """``body``, a hello of ``hit``'s shape: ``hit`` with this one's own volatile fields."""
    exts = _splice_extensions(hit.extensions, body, cuts)
    groups = hit.key_share_groups  # () unless the shape has a key_share: then read below
    for etype, start, end in cuts:  # in order, as the full parse reads them (last one wins)
        if etype == _KEY_SHARE:
            groups = _key_share_groups(body[start:end])
    ch = ClientHello(
        legacy_version=hit.legacy_version,
        random=body[2:34],
        session_id=body[35 : 35 + body[34]],
        cipher_suites=hit.cipher_suites,
        compression_methods=hit.compression_methods,
        extensions=exts,
        sni=hit.sni,
        alpn=hit.alpn,
        supported_versions=hit.supported_versions,
        supported_groups=hit.supported_groups,
        ec_point_formats=hit.ec_point_formats,
        signature_algorithms=hit.signature_algorithms,
        key_share_groups=groups,
        post_handshake_auth=hit.post_handshake_auth,
        psk=hit.psk,  # the extension's presence is part of the shape
        session_ticket=hit.session_ticket,
        early_data=hit.early_data,
    )
    _set(ch, "_memo", hit._memo)  # same shape, same fingerprints
    return ch


def _parse_client_hello(body: bytes) -> ClientHello:
    """The full ClientHello parse, field by field."""
    r = Reader(body, "ClientHello")
    legacy_version = r.u16()
    random = r.bytes(32)
    session_id = r.vector(1)
    if len(session_id) > 32:
        raise r.error("session_id longer than 32 bytes")
    suites = r.u16_list(2)
    compression = tuple(r.vector(1))
    exts = _parse_extensions(r)
    # Lenient: bytes after the extensions block are ignored (some old stacks pad).
    fields: dict[str, object] = {}
    for ext in exts:
        known = _CH_FIELDS.get(ext.type)
        if known is not None:
            name, read = known
            fields[name] = read(ext.data)
    return ClientHello(
        legacy_version=legacy_version,
        random=random,
        session_id=session_id,
        cipher_suites=suites,
        compression_methods=compression,
        extensions=exts,
        **fields,  # type: ignore[arg-type]
    )


# --- hello shapes -------------------------------------------------------------------
#
# A capture holds thousands of hellos from a few TLS stacks. Per connection only the
# random, the session id and the data of a few extensions (key shares, PSK identities and
# binders) differ; everything else -- suites, extension list, SNI, ALPN, groups -- repeats.
# So a hello is split into its "shape" (every other byte, as a dict key) and those
# per-connection parts. The first hello of a shape is parsed in full; later ones copy that
# parse and re-read only their own parts. Anything unusual (malformed framing) goes to the
# full parse, which raises the precise DecodeError.

_KEY_SHARE = int(ExtensionType.key_share)
_PRE_SHARED_KEY = int(ExtensionType.pre_shared_key)
_CH_VOLATILE = frozenset({_KEY_SHARE, _PRE_SHARED_KEY})
_SH_VOLATILE = frozenset({_KEY_SHARE})
Cut = tuple[int, int, int]  # (extension type, data start, data end) in the message body


class _ShapeCache(dict):  # type: ignore[type-arg]
    """shape key -> the full parse of the first hello with that shape. Bounded: cleared
    when full (a capture has a handful of shapes; a flood of distinct ones just misses)."""

    MAX = 1024

    def put(self, key: object, value: object) -> None:
        if len(self) >= self.MAX:
            self.clear()
        self[key] = value


_CH_SHAPES = _ShapeCache()
_SH_SHAPES = _ShapeCache()
_Hello = TypeVar("_Hello", "ClientHello", "ServerHello")


def _by_shape(
    body: bytes,
    shapes: _ShapeCache,
    shape_of: Callable[[bytes], tuple[object, tuple[Cut, ...]] | None],
    parse: Callable[[bytes], _Hello],
    like: Callable[[_Hello, bytes, tuple[Cut, ...]], _Hello],
) -> _Hello:
    """A hello parsed through ``shapes``: the first of its shape in full (and remembered),
    later ones rebuilt from it by ``like``; one without a shape key always in full."""
    shape = shape_of(body)
    if shape is None:
        return parse(body)
    key, cuts = shape
    hit = shapes.get(key)
    if hit is None:
        hit = parse(body)
        shapes.put(key, hit)
        return hit
    return like(hit, body, cuts)


def _shape(
    body: bytes, head: int, ext_at: int, volatile: frozenset[int]
) -> tuple[tuple[bytes, ...], tuple[Cut, ...]] | None:
    """Split a hello body at its per-connection parts.

    ``body[:2]`` (legacy_version) and ``body[head:ext_at]`` are the fixed fields after the
    session id; the extensions block starts at ``ext_at`` (or the body ends there). Returns
    (shape key, cuts of the volatile extensions' data), or None when the framing is not
    well-formed (the caller then parses in full). Bytes after the extensions block are
    ignored by the parsers, so they are left out of the key too.
    """
    n = len(body)
    if ext_at > n:
        return None
    if ext_at == n:
        return (body[:2], body[head:]), ()
    if ext_at + 2 > n:
        return None
    end = ext_at + 2 + ((body[ext_at] << 8) | body[ext_at + 1])
    if end > n:
        return None
    key = [body[:2]]
    cuts: list[Cut] = []
    kept = head  # start of the bytes not yet put into the key
    pos = ext_at + 2
    while pos < end:
        if pos + 4 > end:
            return None
        etype = (body[pos] << 8) | body[pos + 1]
        stop = pos + 4 + ((body[pos + 2] << 8) | body[pos + 3])
        if stop > end:
            return None
        if etype in volatile:
            key.append(body[kept : pos + 4])  # up to and with the extension's header
            cuts.append((etype, pos + 4, stop))
            kept = stop
        pos = stop
    key.append(body[kept:end])
    return tuple(key), tuple(cuts)


def _session_end(body: bytes) -> int:
    """Offset just after legacy_version, random and session_id (past the end if short)."""
    return 35 + body[34] if len(body) >= 35 and body[34] <= 32 else len(body) + 1


def _client_hello_shape(body: bytes) -> tuple[tuple[bytes, ...], tuple[Cut, ...]] | None:
    head = _session_end(body)
    if head + 2 > len(body):
        return None
    compression = head + 2 + ((body[head] << 8) | body[head + 1])  # after cipher_suites
    if compression >= len(body) or (compression - head) % 2:
        return None
    return _shape(body, head, compression + 1 + body[compression], _CH_VOLATILE)


def _server_hello_shape(body: bytes) -> tuple[tuple[bytes, ...], tuple[Cut, ...]] | None:
    head = _session_end(body)
    return _shape(body, head, head + 3, _SH_VOLATILE)  # cipher_suite, compression_method


def _splice_extensions(
    template: tuple[Extension, ...], body: bytes, cuts: tuple[Cut, ...]
) -> tuple[Extension, ...]:
    """The template hello's extensions, with this hello's own data for the volatile ones."""
    if not cuts:
        return template
    exts = list(template)
    k = 0
    for i, ext in enumerate(exts):
        if ext.type == cuts[k][0]:
            etype, start, end = cuts[k]
            exts[i] = Extension(etype, body[start:end])
            k += 1
            if k == len(cuts):
                break
    return tuple(exts)


# --- ServerHello --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerHello:
    legacy_version: int
    random: bytes
    session_id: bytes
    cipher_suite: int
    compression_method: int
    extensions: tuple[Extension, ...]
    selected_version: int | None = None  # from supported_versions
    is_hello_retry: bool = False
    alpn: str | None = None  # TLS <= 1.2 only; TLS 1.3 puts ALPN in EncryptedExtensions
    key_share_group: int | None = None
    psk_selected: bool = False

    @property
    def version(self) -> int:
        return self.selected_version or self.legacy_version


def parse_server_hello(body: bytes) -> ServerHello:
    """RFC 8446 §4.1.3 (incl. HelloRetryRequest) / RFC 5246 §7.4.1.3. Raises DecodeError.

    Remembered by shape like :func:`parse_client_hello` (random, session id and key share
    are this connection's own).
    """
    return _by_shape(body, _SH_SHAPES, _server_hello_shape, _parse_server_hello,
                     _server_hello_like)


def _server_hello_like(hit: ServerHello, body: bytes, cuts: tuple[Cut, ...]) -> ServerHello:
    """``body``, a hello of ``hit``'s shape: ``hit`` with this one's own volatile fields."""
    group = None
    for _, start, end in cuts:  # key_share only (the one volatile ServerHello extension)
        group = (body[start] << 8) | body[start + 1] if end - start >= 2 else group
    random = body[2:34]
    return ServerHello(
        legacy_version=hit.legacy_version,
        random=random,
        session_id=body[35 : 35 + body[34]],
        cipher_suite=hit.cipher_suite,
        compression_method=hit.compression_method,
        extensions=_splice_extensions(hit.extensions, body, cuts),
        selected_version=hit.selected_version,
        is_hello_retry=random == HELLO_RETRY_REQUEST_RANDOM,
        alpn=hit.alpn,
        key_share_group=group,
        psk_selected=hit.psk_selected,
    )


def _parse_server_hello(body: bytes) -> ServerHello:
    """The full ServerHello parse, field by field."""
    r = Reader(body, "ServerHello")
    legacy_version = r.u16()
    random = r.bytes(32)
    session_id = r.vector(1)
    if len(session_id) > 32:
        raise r.error("session_id longer than 32 bytes")
    suite = r.u16()
    compression = r.u8()
    exts = _parse_extensions(r)
    hrr = random == HELLO_RETRY_REQUEST_RANDOM
    selected = None
    alpn = None
    group = None
    psk = False
    for ext in exts:
        if ext.type == ExtensionType.supported_versions:
            vr = Reader(ext.data, "supported_versions")
            selected = vr.u16()
        elif ext.type == ExtensionType.application_layer_protocol_negotiation:
            names = _alpn_list(ext.data)
            alpn = names[0] if names else None
        elif ext.type == ExtensionType.key_share and len(ext.data) >= 2:
            group = Reader(ext.data, "key_share").u16()
        elif ext.type == ExtensionType.pre_shared_key:
            psk = True
    return ServerHello(
        legacy_version=legacy_version,
        random=random,
        session_id=session_id,
        cipher_suite=suite,
        compression_method=compression,
        extensions=exts,
        selected_version=selected,
        is_hello_retry=hrr,
        alpn=alpn,
        key_share_group=group,
        psk_selected=psk,
    )


# --- EncryptedExtensions ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EncryptedExtensions:
    extensions: tuple[Extension, ...]
    alpn: str | None = None
    early_data: bool = False


def parse_encrypted_extensions(body: bytes) -> EncryptedExtensions:
    """RFC 8446 §4.3.1. Raises DecodeError."""
    r = Reader(body, "EncryptedExtensions")
    exts = _parse_extensions(r) if not r.at_end() else ()
    alpn_data = _find(exts, ExtensionType.application_layer_protocol_negotiation)
    names = _alpn_list(alpn_data) if alpn_data is not None else ()
    return EncryptedExtensions(
        extensions=exts,
        alpn=names[0] if names else None,
        early_data=_find(exts, ExtensionType.early_data) is not None,
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
        exts = _parse_extensions(r)
        r.expect_end()
        sig = _find(exts, ExtensionType.signature_algorithms)
        cas = _find(exts, ExtensionType.certificate_authorities)
        authorities = _authorities(cas) if cas is not None else ()
        return CertificateRequest(
            signature_algorithms=_u16_list(sig, 2, "signature_algorithms") if sig else (),
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
        _parse_extensions(r)
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
    "ClientHello",
    "EncryptedExtensions",
    "Extension",
    "Finished",
    "HandshakeAssembler",
    "HandshakeMessage",
    "HandshakeType",
    "HelloRequest",
    "KeyUpdate",
    "NewSessionTicket",
    "ServerHello",
    "parse_alerts",
    "parse_certificate",
    "parse_certificate_request",
    "parse_client_hello",
    "parse_encrypted_extensions",
    "parse_finished",
    "parse_hello_request",
    "parse_key_update",
    "parse_new_session_ticket",
    "parse_server_hello",
    "shape_memo",
]
