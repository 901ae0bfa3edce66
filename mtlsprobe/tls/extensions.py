"""Hello-style extensions: the extensions block and readers of the extension data we use.

Sans-IO. Shared by the hellos (:mod:`~mtlsprobe.tls.hellos`) and by EncryptedExtensions,
CertificateRequest and NewSessionTicket (:mod:`~mtlsprobe.tls.handshake_messages`). The
``read_*`` functions take one extension's data and return a value or raise
:class:`~mtlsprobe.tls.reader.DecodeError`. Unknown extensions are kept as they are, never
an error: we observe other people's traffic.
"""

from __future__ import annotations

from struct import unpack_from
from typing import NamedTuple

from mtlsprobe.tls.reader import Reader


class Extension(NamedTuple):
    """One hello extension (NamedTuple: immutable, and a ClientHello carries a dozen)."""

    type: int
    data: bytes


def parse_extensions(r: Reader) -> tuple[Extension, ...]:
    """The extensions block, if present (RFC 5246 §7.4.1.2: it may be absent)."""
    if r.at_end():
        return ()
    block = r.sub_vector(2, f"{r.context}.extensions")
    return tuple([Extension(etype, data) for etype, data in block.typed_vectors()])


def find_extension(exts: tuple[Extension, ...], etype: int) -> bytes | None:
    return next((e.data for e in exts if e.type == etype), None)


def read_alpn_list(data: bytes) -> tuple[str, ...]:
    # RFC 7301 §3.1: ProtocolNameList protocol_name_list<2..2^16-1>, names <1..2^8-1>.
    r = Reader(data, "alpn").sub_vector(2)
    out: list[str] = []
    while not r.at_end():
        out.append(r.vector(1).decode("ascii", "replace"))
    return tuple(out)


def read_server_name(data: bytes) -> str | None:
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


def read_u16_list(data: bytes, prefix: int, context: str) -> tuple[int, ...]:
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


def read_u8_list(data: bytes, context: str) -> tuple[int, ...]:
    return tuple(Reader(data, context).vector(1))


def read_key_share_groups(data: bytes) -> tuple[int, ...]:
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


def read_authorities(data: bytes) -> tuple[bytes, ...]:
    # RFC 8446 §4.2.4 certificate_authorities / RFC 5246 §7.4.4 certificate_authorities:
    # DistinguishedName authorities<3..2^16-1>; opaque DistinguishedName<1..2^16-1>.
    r = Reader(data, "certificate_authorities").sub_vector(2)
    out: list[bytes] = []
    while not r.at_end():
        out.append(r.vector(2))
    return tuple(out)


__all__ = [
    "Extension",
    "find_extension",
    "parse_extensions",
    "read_alpn_list",
    "read_authorities",
    "read_key_share_groups",
    "read_server_name",
    "read_u8_list",
    "read_u16_list",
]
