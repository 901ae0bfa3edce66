"""ClientHello and ServerHello: parsers, and the hello shape cache that makes them cheap.

Sans-IO. :func:`parse_client_hello` and :func:`parse_server_hello` take a message *body*
(without the 4-byte handshake header; see :mod:`~mtlsprobe.tls.handshake_framing`) and
return a frozen value or raise :class:`~mtlsprobe.tls.reader.DecodeError`; never a partial
result. A capture holds thousands of hellos from a few TLS stacks, so a hello whose shape
was seen before is rebuilt from that parse (see "hello shapes" below); :func:`shape_memo`
gives such copies one place for values computed from the shape alone (the JA3/JA4
fingerprints of :mod:`~mtlsprobe.tls.fingerprint`).

Leniency is deliberate: unknown extensions and bytes after the extensions block are kept
or ignored, never fatal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from mtlsprobe.tls.constants import GREASE, HELLO_RETRY_REQUEST_RANDOM, ExtensionType
from mtlsprobe.tls.extensions import (
    Extension,
    parse_extensions,
    read_alpn_list,
    read_key_share_groups,
    read_server_name,
    read_u8_list,
    read_u16_list,
)
from mtlsprobe.tls.reader import Reader

_set = object.__setattr__  # for the memo of frozen ClientHello values


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
_CH_FIELDS: dict[int, tuple[str, Callable[[bytes], object]]] = {
    int(ExtensionType.server_name): ("sni", read_server_name),
    int(ExtensionType.application_layer_protocol_negotiation): ("alpn", read_alpn_list),
    int(ExtensionType.supported_versions): (
        "supported_versions", lambda d: read_u16_list(d, 1, "supported_versions")),
    int(ExtensionType.supported_groups): (
        "supported_groups", lambda d: read_u16_list(d, 2, "supported_groups")),
    int(ExtensionType.ec_point_formats): (
        "ec_point_formats", lambda d: read_u8_list(d, "ec_point_formats")),
    int(ExtensionType.signature_algorithms): (
        "signature_algorithms", lambda d: read_u16_list(d, 2, "signature_algorithms")),
    int(ExtensionType.key_share): ("key_share_groups", read_key_share_groups),
    int(ExtensionType.post_handshake_auth): ("post_handshake_auth", lambda d: True),
    int(ExtensionType.pre_shared_key): ("psk", lambda d: True),
    int(ExtensionType.session_ticket): ("session_ticket", bool),
    int(ExtensionType.early_data): ("early_data", lambda d: True),
}


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
            groups = read_key_share_groups(body[start:end])
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
    exts = parse_extensions(r)
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


SHAPES_MAX = 1024  # hellos remembered per cache


class _ShapeCache(dict[object, Any]):  # values: ClientHello or ServerHello, per cache
    """shape key -> the full parse of the first hello with that shape. Bounded: cleared
    when full (a capture has a handful of shapes; a flood of distinct ones just misses)."""

    def put(self, key: object, value: object) -> None:
        if len(self) >= SHAPES_MAX:
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
    exts = parse_extensions(r)
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
            names = read_alpn_list(ext.data)
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


__all__ = [
    "ClientHello",
    "ServerHello",
    "parse_client_hello",
    "parse_server_hello",
    "shape_memo",
]
