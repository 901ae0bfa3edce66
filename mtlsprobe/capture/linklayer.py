"""Frame decoding: (link type, frame bytes) -> one TCP segment, or None.

Boundary: link layer (Ethernet with 802.1Q/802.1ad/QinQ tags and PPPoE, Linux SLL/SLL2,
raw IP, BSD null/loop), IPv4/IPv6 (and 6in4) and the TCP header. No flow state, no reassembly.

Frames that are not TCP, IP fragments, unknown link types and malformed headers return
None; the reason is counted in the ``skipped`` mapping the caller passes in.
"""

from __future__ import annotations

import struct
from socket import AF_INET, AF_INET6, inet_ntop
from typing import NamedTuple

# link types (LINKTYPE_* values as stored in pcap/pcapng)
NULL, ETHERNET, RAW_12, RAW_14, RAW, LOOP, SLL, RAW4, RAW6, SLL2 = (
    0, 1, 12, 14, 101, 108, 113, 228, 229, 276,
)
RAW_TYPES = frozenset({RAW_12, RAW_14, RAW, RAW4, RAW6, NULL, LOOP})  # IP starts at a fixed offset

ETH_IPV4, ETH_IPV6 = 0x0800, 0x86DD
ETH_TAGS = frozenset({0x8100, 0x88A8, 0x9100, 0x9200})
ETH_PPPOE = 0x8864
PPP_IPV4, PPP_IPV6 = 0x0021, 0x0057

IPV6_EXT_HEADERS = frozenset({0, 43, 60})  # hop-by-hop, routing, destination options
IPV6_FRAGMENT, IPV6_AH, TCP, IPV6_IN_IPV4 = 44, 51, 6, 41

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

_ipv4 = struct.Struct("!BBHHHBB").unpack_from  # vihl, tos, total, id, frag, ttl, proto
_tcp = struct.Struct("!HHIIBB").unpack_from  # sport, dport, seq, ack, offset, flags
_u16 = struct.Struct("!H").unpack_from
# IPv4 without options followed by the TCP header, in one call (the common case)
_ipv4_tcp_plain = struct.Struct("!xxHHHBB2x4s4sHHIIBB").unpack_from
# Ethernet II + IPv4 without options + TCP header, in one call: most frames of most captures
_eth_ipv4_tcp = struct.Struct("!12xHBxHHHBB2x4s4sHHIIBB").unpack_from
_ADDR4: dict[bytes, str] = {}  # packed IPv4 address -> text; captures reuse few addresses


class TcpSegment(NamedTuple):
    src: str
    dst: str
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    ttl: int  # IPv4 TTL or IPv6 hop limit
    ip_id: int | None  # None for IPv6
    options: bytes  # raw TCP options; see ``option_summary``
    payload: bytes
    truncated: bool = False  # the frame was cut by the snap length: payload is short

    @property
    def option_summary(self) -> tuple[str, ...]:
        return tcp_option_summary(self.options)


def tcp_option_summary(options: bytes) -> tuple[str, ...]:
    """Wire-order summary of TCP options: "mss=1460", "wscale=7", "sack_perm", "ts", "sack"."""
    out: list[str] = []
    i, n = 0, len(options)
    while i < n:
        kind = options[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= n or options[i + 1] < 2 or i + options[i + 1] > n:
            out.append("malformed")
            break
        length = options[i + 1]
        value = options[i + 2 : i + length]
        if kind == 2 and length == 4:
            out.append(f"mss={_u16(value)[0]}")
        elif kind == 3 and length == 3:
            out.append(f"wscale={value[0]}")
        elif kind == 4:
            out.append("sack_perm")
        elif kind == 5:
            out.append("sack")
        elif kind == 8:
            out.append("ts")
        else:
            out.append(f"opt{kind}")
        i += length
    return tuple(out)


def _count(skipped: dict[str, int] | None, reason: str) -> None:
    if skipped is not None:
        skipped[reason] = skipped.get(reason, 0) + 1


def decode(linktype: int, frame: bytes, skipped: dict[str, int] | None = None) -> TcpSegment | None:
    """Decode one captured frame to its TCP segment; None (reason counted) otherwise."""
    if linktype == ETHERNET and len(frame) >= 54:
        segment = _ethernet_ipv4_tcp(frame)
        if segment is not None:
            return segment
    if linktype == ETHERNET:
        if len(frame) < 14:
            _count(skipped, "short frame")
            return None
        (etype,) = _u16(frame, 12)
        off = 14
        while etype in ETH_TAGS and len(frame) >= off + 4:
            (etype,) = _u16(frame, off + 2)
            off += 4
        if etype == ETH_PPPOE and len(frame) >= off + 8:
            length, ppp = _u16(frame, off + 4)[0], _u16(frame, off + 6)[0]
            etype = ETH_IPV4 if ppp == PPP_IPV4 else ETH_IPV6 if ppp == PPP_IPV6 else 0
            if off + 6 + length < len(frame):  # like tshark: the PPPoE length bounds the packet
                frame = frame[: off + 6 + length]  # (Ethernet padding is not IP payload)
            off += 8
        return _by_ethertype(etype, frame, off, skipped)
    if linktype in (SLL, SLL2):
        off = 16 if linktype == SLL else 20
        if len(frame) < off:
            _count(skipped, "short frame")
            return None
        (etype,) = _u16(frame, 14 if linktype == SLL else 0)
        return _by_ethertype(etype, frame, off, skipped)
    if linktype in RAW_TYPES:
        off = 4 if linktype in (NULL, LOOP) else 0
        if len(frame) <= off:
            _count(skipped, "short frame")
            return None
        # the null/loop address family word is in the writer's byte order; the IP version
        # nibble is unambiguous, so use it
        version = frame[off] >> 4
        if version == 4:
            return _ipv4_tcp(frame, off, skipped)
        if version == 6:
            return _ipv6_tcp(frame, off, skipped)
        _count(skipped, "not IP")
        return None
    _count(skipped, f"unsupported link type {linktype}")
    return None


def _by_ethertype(
    etype: int, frame: bytes, off: int, skipped: dict[str, int] | None
) -> TcpSegment | None:
    """IPv4 or IPv6 at `off`, by the link layer's EtherType; anything else is counted."""
    if etype == ETH_IPV4:
        return _ipv4_tcp(frame, off, skipped)
    if etype == ETH_IPV6:
        return _ipv6_tcp(frame, off, skipped)
    _count(skipped, "not IP")
    return None


def _ipv4_tcp(frame: bytes, off: int, skipped: dict[str, int] | None) -> TcpSegment | None:
    if len(frame) < off + 20:
        _count(skipped, "short IPv4 header")
        return None
    if frame[off] == 0x45 and len(frame) >= off + 40:
        total, ip_id, frag, ttl, proto, src, dst, sport, dport, seq, ack, doff, flags = (
            _ipv4_tcp_plain(frame, off)
        )
        if proto == TCP and not frag & 0x3FFF and doff >> 4 >= 5:
            return _plain_segment(frame, off, total, ip_id, ttl, src, dst, sport, dport, seq,
                                  ack, doff, flags, skipped)
    vihl, _tos, total, ip_id, frag, ttl, proto = _ipv4(frame, off)
    if proto == IPV6_IN_IPV4 and not frag & 0x3FFF:  # 6in4 tunnel
        return _ipv6_tcp(frame, off + (vihl & 0x0F) * 4, skipped)
    if proto != TCP:
        _count(skipped, "not TCP")
        return None
    if frag & 0x3FFF:  # MF set or non-zero offset
        _count(skipped, "IPv4 fragment")
        return None
    ihl = (vihl & 0x0F) * 4
    if vihl >> 4 != 4 or ihl < 20:
        _count(skipped, "malformed IPv4 header")
        return None
    # total == 0: segmentation offload captured before the NIC filled it in
    end = off + total if total >= ihl else len(frame)
    return _tcp_segment(
        frame, off + ihl, end,
        inet_ntop(AF_INET, frame[off + 12 : off + 16]),
        inet_ntop(AF_INET, frame[off + 16 : off + 20]),
        ttl, ip_id, skipped,
    )


def _ipv6_tcp(frame: bytes, off: int, skipped: dict[str, int] | None) -> TcpSegment | None:
    if len(frame) < off + 40:
        _count(skipped, "short IPv6 header")
        return None
    (plen,) = _u16(frame, off + 4)
    nxt, hlim = frame[off + 6], frame[off + 7]
    src = frame[off + 8 : off + 24]
    dst = frame[off + 24 : off + 40]
    end = off + 40 + plen if plen else len(frame)  # 0: jumbogram or offload
    pos = off + 40
    while nxt != TCP:
        if nxt in IPV6_EXT_HEADERS or nxt == IPV6_AH:
            if len(frame) < pos + 2:
                _count(skipped, "short IPv6 extension header")
                return None
            step = (frame[pos + 1] + 2) * 4 if nxt == IPV6_AH else (frame[pos + 1] + 1) * 8
            nxt = frame[pos]
            pos += step
        elif nxt == IPV6_FRAGMENT:
            _count(skipped, "IPv6 fragment")
            return None
        else:
            _count(skipped, "not TCP")
            return None
    return _tcp_segment(
        frame, pos, end, inet_ntop(AF_INET6, src), inet_ntop(AF_INET6, dst), hlim, None, skipped
    )


def _tcp_segment(
    frame: bytes, pos: int, end: int, src: str, dst: str, ttl: int, ip_id: int | None,
    skipped: dict[str, int] | None,
) -> TcpSegment | None:
    if len(frame) < pos + 20:
        _count(skipped, "short TCP header")
        return None
    sport, dport, seq, ack, doff, flags = _tcp(frame, pos)
    hlen = (doff >> 4) * 4
    if hlen < 20 or len(frame) < pos + hlen:
        _count(skipped, "malformed TCP header")
        return None
    options = frame[pos + 20 : pos + hlen] if hlen > 20 else b""
    truncated = end > len(frame)
    payload = frame[pos + hlen : end] if pos + hlen < end else b""
    return TcpSegment(
        src, dst, sport, dport, seq, ack, flags, ttl, ip_id, options, payload, truncated
    )


def _ethernet_ipv4_tcp(frame: bytes) -> TcpSegment | None:
    """The common case in one unpack: untagged Ethernet, IPv4 without options, an unfragmented
    TCP segment. None when the frame is anything else (the general path decides)."""
    etype, vihl, total, ip_id, frag, ttl, proto, src, dst, sport, dport, seq, ack, doff, flags = (
        _eth_ipv4_tcp(frame)
    )
    if etype != ETH_IPV4 or vihl != 0x45 or proto != TCP or frag & 0x3FFF:
        return None
    hlen = (doff >> 4) * 4
    payload_at = 34 + hlen
    if hlen < 20 or len(frame) < payload_at:
        return None
    end = 14 + total if total >= 20 else len(frame)
    return TcpSegment(
        _ADDR4.get(src) or _addr4(src), _ADDR4.get(dst) or _addr4(dst), sport, dport, seq, ack,
        flags, ttl, ip_id,
        frame[54:payload_at] if hlen > 20 else b"",
        frame[payload_at:end] if payload_at < end else b"",
        end > len(frame),
    )


def _addr4(packed: bytes) -> str:
    text = _ADDR4.get(packed)
    if text is None:
        if len(_ADDR4) > 65536:
            _ADDR4.clear()
        text = _ADDR4[packed] = inet_ntop(AF_INET, packed)
    return text


def _plain_segment(
    frame: bytes, off: int, total: int, ip_id: int, ttl: int, src: bytes, dst: bytes,
    sport: int, dport: int, seq: int, ack: int, doff: int, flags: int,
    skipped: dict[str, int] | None,
) -> TcpSegment | None:
    """IPv4 without options: the same result as ``_tcp_segment`` from one header unpack."""
    pos = off + 20
    hlen = (doff >> 4) * 4
    if len(frame) < pos + hlen:
        _count(skipped, "malformed TCP header")
        return None
    end = off + total if total >= 20 else len(frame)
    payload_at = pos + hlen
    return TcpSegment(
        _addr4(src), _addr4(dst), sport, dport, seq, ack, flags, ttl, ip_id,
        frame[pos + 20 : payload_at] if hlen > 20 else b"",
        frame[payload_at:end] if payload_at < end else b"",
        end > len(frame),
    )
