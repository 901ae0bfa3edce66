"""Frame decoding: (link type, frame bytes) -> one TCP segment, or None.

Boundary: link layer (Ethernet, Linux SLL/SLL2, raw IP, BSD null/loop), the encapsulations
found on SPAN ports and in cloud traffic mirroring (802.1Q/802.1ad/QinQ tags, PPPoE, MPLS
with pseudowires, Cisco MetaData/SGT, IP in IP, GRE, ERSPAN I/II/III, VXLAN, Geneve; their
headers are read by ``capture.tunnels``), IPv4/IPv6 and the TCP header. The segment is the
innermost one: its addresses, ports and TTL are the tunnelled connection's. At most
``MAX_DEPTH`` encapsulations are unwrapped. No flow state, no reassembly.

Frames that are not TCP, IP fragments, unknown link types, malformed headers and
encapsulations not decoded return None; the reason is counted in the ``skipped`` mapping
the caller passes in. Reasons that name something not decoded (an EtherType, a GRE
protocol...) start with ``NOT_DECODED``; ``not_decoded_note`` says them in one line.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from socket import AF_INET, AF_INET6, inet_ntop
from typing import NamedTuple

from mtlsprobe.capture import core, tunnels
from mtlsprobe.capture.tunnels import (
    ETH_IPV4,
    ETH_IPV6,
    IP_TUNNELS,
    IPIP,
    IPV6_IN_IP,
    NOT_DECODED,
    UDP,
    ethertype_name,
    not_decoded,
)

# link types (LINKTYPE_* values as stored in pcap/pcapng)
NULL, ETHERNET, RAW_12, RAW_14, RAW, LOOP, SLL, RAW4, RAW6, SLL2 = (
    0, 1, 12, 14, 101, 108, 113, 228, 229, 276,
)
RAW_TYPES = frozenset({RAW_12, RAW_14, RAW, RAW4, RAW6, NULL, LOOP})  # IP starts at a fixed offset

ETH_TAGS = frozenset({0x8100, 0x88A8, 0x9100, 0x9200})
ETH_PPPOE = 0x8864
PPP_IPV4, PPP_IPV6 = 0x0021, 0x0057

IPV6_EXT_HEADERS = frozenset({0, 43, 60})  # hop-by-hop, routing, destination options
IPV6_FRAGMENT, IPV6_AH, TCP = 44, 51, 6
MAX_DEPTH = 10  # encapsulations unwrapped in one frame (a tag, a label stack, a tunnel...)

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
        return _by_ethertype(_u16(frame, 12)[0], frame, 14, skipped, 0)
    if linktype in (SLL, SLL2):
        off = 16 if linktype == SLL else 20
        if len(frame) < off:
            _count(skipped, "short frame")
            return None
        (etype,) = _u16(frame, 14 if linktype == SLL else 0)
        return _by_ethertype(etype, frame, off, skipped, 0)
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
        _count(skipped, not_decoded(f"with IP version {version} on a raw IP link"))
        return None
    _count(skipped, f"unsupported link type {linktype}")
    return None


Decoder = Callable[[int, bytes, "dict[str, int] | None"], "TcpSegment | None"]


def frame_decoder() -> Decoder:
    """``decode`` of the capture core that runs (``capture.core``): the C twin, bound to
    ``TcpSegment`` and to this ``decode`` for the frames it hands back, or this one."""
    if core.ACTIVE is None:
        return decode
    core.ACTIVE.bind(TcpSegment, decode)
    decoder: Decoder = core.ACTIVE.decode
    return decoder


def _by_ethertype(
    etype: int, frame: bytes, off: int, skipped: dict[str, int] | None, depth: int
) -> TcpSegment | None:
    """What the EtherType ``etype`` says is at ``off``: IPv4 or IPv6, or an encapsulation
    (tags, PPPoE, MPLS, Cisco MetaData, an Ethernet frame) unwrapped to what it carries."""
    while True:
        if etype == ETH_IPV4:
            return _ipv4_tcp(frame, off, skipped, depth)
        if etype == ETH_IPV6:
            return _ipv6_tcp(frame, off, skipped, depth)
        depth += 1
        if depth > MAX_DEPTH:
            _count(skipped, f"more than {MAX_DEPTH} nested encapsulations")
            return None
        if etype in ETH_TAGS:
            if len(frame) < off + 4:
                _count(skipped, "short VLAN tag")
                return None
            (etype,) = _u16(frame, off + 2)
            off += 4
            continue
        if etype == ETH_PPPOE:
            if len(frame) < off + 8:
                _count(skipped, "short PPPoE header")
                return None
            length, ppp = _u16(frame, off + 4)[0], _u16(frame, off + 6)[0]
            if ppp not in (PPP_IPV4, PPP_IPV6):
                _count(skipped, not_decoded(f"inside PPPoE: PPP protocol 0x{ppp:04x}"))
                return None
            etype = ETH_IPV4 if ppp == PPP_IPV4 else ETH_IPV6
            if off + 6 + length < len(frame):  # like tshark: the PPPoE length bounds the packet
                frame = frame[: off + 6 + length]  # (Ethernet padding is not IP payload)
            off += 8
            continue
        header = tunnels.BY_ETHERTYPE.get(etype)
        if header is None:
            _count(skipped, not_decoded(f"in {ethertype_name(etype)}"))
            return None
        inner = header(frame, off)
        if isinstance(inner, str):
            _count(skipped, inner)
            return None
        etype, off = inner


def _tunnel(
    proto: int, frame: bytes, off: int, end: int, skipped: dict[str, int] | None, depth: int
) -> TcpSegment | None:
    """The packet inside IP protocol ``proto`` at ``frame[off:end]`` (IP in IP, GRE, a UDP
    tunnel); "not TCP" when it is plain UDP."""
    depth += 1
    if depth > MAX_DEPTH:
        _count(skipped, f"more than {MAX_DEPTH} nested encapsulations")
        return None
    if end < len(frame):
        frame = frame[:end]  # the outer packet bounds the inner one (not the link's padding)
    if proto == IPIP:
        return _ipv4_tcp(frame, off, skipped, depth)
    if proto == IPV6_IN_IP:
        return _ipv6_tcp(frame, off, skipped, depth)
    inner = tunnels.udp(frame, off) if proto == UDP else tunnels.gre(frame, off)
    if inner is None:
        _count(skipped, "not TCP")
        return None
    if isinstance(inner, str):
        _count(skipped, inner)
        return None
    return _by_ethertype(inner[0], frame, inner[1], skipped, depth)


def not_decoded_note(skipped: dict[str, int]) -> str | None:
    """One line naming the frames not decoded (the ``NOT_DECODED`` reasons), most first:
    "312 frame(s) in EtherType 0x88cc (LLDP) not decoded", or the total and each."""
    what = sorted(((n, r[len(NOT_DECODED):]) for r, n in skipped.items()
                   if r.startswith(NOT_DECODED)), key=lambda x: (-x[0], x[1]))
    if not what:
        return None
    if len(what) == 1:
        return f"{what[0][0]} frame(s) {what[0][1]} not decoded"
    total = sum(n for n, _ in what)
    return f"{total} frame(s) not decoded: " + ", ".join(f"{n} {r}" for n, r in what)


def _ipv4_tcp(
    frame: bytes, off: int, skipped: dict[str, int] | None, depth: int = 0
) -> TcpSegment | None:
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
    if proto != TCP and proto not in IP_TUNNELS:
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
    if proto != TCP:
        return _tunnel(proto, frame, off + ihl, end, skipped, depth)
    return _tcp_segment(
        frame, off + ihl, end,
        inet_ntop(AF_INET, frame[off + 12 : off + 16]),
        inet_ntop(AF_INET, frame[off + 16 : off + 20]),
        ttl, ip_id, skipped,
    )


def _ipv6_tcp(
    frame: bytes, off: int, skipped: dict[str, int] | None, depth: int = 0
) -> TcpSegment | None:
    if len(frame) < off + 40:
        _count(skipped, "short IPv6 header")
        return None
    (plen,) = _u16(frame, off + 4)
    nxt, hlim = frame[off + 6], frame[off + 7]
    src = frame[off + 8 : off + 24]
    dst = frame[off + 24 : off + 40]
    end = off + 40 + plen if plen else len(frame)  # 0: jumbogram or offload
    pos = off + 40
    while nxt in IPV6_EXT_HEADERS or nxt == IPV6_AH:
        if len(frame) < pos + 2:
            _count(skipped, "short IPv6 extension header")
            return None
        step = (frame[pos + 1] + 2) * 4 if nxt == IPV6_AH else (frame[pos + 1] + 1) * 8
        nxt = frame[pos]
        pos += step
    if nxt == TCP:
        return _tcp_segment(
            frame, pos, end, inet_ntop(AF_INET6, src), inet_ntop(AF_INET6, dst), hlim, None,
            skipped,
        )
    if nxt == IPV6_FRAGMENT:
        _count(skipped, "IPv6 fragment")
        return None
    if nxt in IP_TUNNELS:
        return _tunnel(nxt, frame, pos, end, skipped, depth)
    _count(skipped, "not TCP")
    return None


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
