"""Test helper: build pcap/pcapng captures of TCP conversations from known byte streams.

- ``conversation(...)`` turns an ordered list of (sender, bytes) messages into TCP
  segments (handshake, data with consistent ACKs, FIN or RST), with knobs for segment
  size, ISNs and TTLs.
- ``reorder``/``duplicate``/``drop`` edit the segment list like a lossy capture would;
  ``rewritten``/``merged`` make the copy a second capture point behind a firewall that
  randomises sequence numbers sees, and merge the two.
- ``frames(...)`` encodes segments for a link type with scapy (IPv4 or IPv6), or in
  Ethernet frames with encapsulations (``encapsulate``: VLAN tags, MPLS, Cisco MetaData,
  IP in IP, GRE, ERSPAN I/II/III, VXLAN, Geneve, nested as "mpls/vlan/vxlan").
- ``write_pcap``/``write_pcapng`` write the container (struct), in either byte order, with
  micro/nanosecond pcap timestamps, several pcapng interfaces, SPB/PB/unknown blocks and a
  Decryption Secrets Block.

scapy is imported lazily: importing this module is cheap.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, replace
from pathlib import Path

from mtlsprobe.model import Direction, Transcript

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
MASK = 0xFFFFFFFF

LINKTYPES = {
    "ether": 1, "vlan": 1, "qinq": 1, "sll": 113, "sll2": 276, "raw": 101,
    "raw4": 228, "raw6": 229, "null": 0, "loop": 108,
}


@dataclass(frozen=True)
class Seg:
    src: str
    sport: int
    dst: str
    dport: int
    seq: int
    ack: int
    flags: int
    payload: bytes = b""
    ttl: int = 64
    ts: float = 0.0
    options: tuple = ()


def conversation(
    messages: list[tuple[str, bytes]],
    *,
    client: tuple[str, int] = ("10.0.0.1", 40000),
    server: tuple[str, int] = ("10.0.0.2", 443),
    segment_size: int = 1448,
    isn_client: int = 1000,
    isn_server: int = 500000,
    handshake: bool = True,
    close: str | None = "fin",  # "fin" | "rst" | None
    closer: str = "c",  # who sends the RST / the first FIN
    ttl_client: int = 64,
    ttl_server: int = 57,
    start: float = 1_700_000_000.0,
    step: float = 0.001,
    pure_acks: bool = True,
) -> list[Seg]:
    """Segments of one TCP connection carrying ``messages`` ("c" or "s", bytes) in order."""
    ends = {"c": client, "s": server}
    ttl = {"c": ttl_client, "s": ttl_server}
    nxt = {"c": (isn_client + 1) & MASK, "s": (isn_server + 1) & MASK}
    segs: list[Seg] = []
    t = [start]

    def emit(who: str, seq: int, flags: int, payload: bytes = b"", options: tuple = ()) -> None:
        peer = "s" if who == "c" else "c"
        ack = nxt[peer] if flags & ACK else 0
        (src, sport), (dst, dport) = ends[who], ends[peer]
        segs.append(Seg(src, sport, dst, dport, seq & MASK, ack, flags, payload, ttl[who], t[0],
                        options))
        t[0] += step

    if handshake:
        emit("c", isn_client, SYN, options=(("MSS", 1460), ("SAckOK", b""), ("WScale", 7)))
        emit("s", isn_server, SYN | ACK,
             options=(("MSS", 1400), ("NOP", None), ("WScale", 8), ("SAckOK", b"")))
        emit("c", nxt["c"], ACK)
    for who, data in messages:
        for i in range(0, len(data), segment_size):
            piece = data[i : i + segment_size]
            emit(who, nxt[who], PSH | ACK, piece)
            nxt[who] = (nxt[who] + len(piece)) & MASK
        if pure_acks:
            peer = "s" if who == "c" else "c"
            emit(peer, nxt[peer], ACK)
    if close == "fin":
        first, second = (closer, "s" if closer == "c" else "c")
        emit(first, nxt[first], FIN | ACK)
        nxt[first] = (nxt[first] + 1) & MASK
        emit(second, nxt[second], FIN | ACK)
        nxt[second] = (nxt[second] + 1) & MASK
        emit(first, nxt[first], ACK)
    elif close == "rst":
        emit(closer, nxt[closer], RST | ACK)
    return segs


def messages_of(transcript: Transcript) -> list[tuple[str, bytes]]:
    """A recorded session's bytes as alternating ("c" or "s", bytes) messages, in order:
    what ``conversation`` takes."""
    out: list[tuple[str, bytes]] = []
    for chunk in transcript.chunks:
        who = "c" if chunk.direction is Direction.C2S else "s"
        if out and out[-1][0] == who:
            out[-1] = (who, out[-1][1] + chunk.data)
        else:
            out.append((who, chunk.data))
    return out


def streams(messages: list[tuple[str, bytes]]) -> dict[str, bytes]:
    """The byte stream each side sends."""
    return {who: b"".join(d for w, d in messages if w == who) for who in ("c", "s")}


# --- capture damage ----------------------------------------------------------------------


def reorder(segs: list[Seg], seed: int = 1, window: int = 4) -> list[Seg]:
    """Shuffle consecutive segments of one sender (a flight), ``window`` at a time.

    As on the wire seen from one capture point: the network may reorder a flight, but a
    peer never acknowledges bytes before they passed the capture point.
    """
    rng = random.Random(seed)
    out: list[Seg] = []
    flight: list[Seg] = []
    for s in [*segs, None]:
        if flight and (s is None or s.sport != flight[0].sport or len(flight) == window):
            rng.shuffle(flight)
            out += flight
            flight = []
        if s is not None:
            flight.append(s)
    return retime(out, segs[0].ts)


def duplicate(segs: list[Seg], index: int) -> list[Seg]:
    return retime([*segs[: index + 1], segs[index], *segs[index + 1 :]], segs[0].ts)


def drop(segs: list[Seg], index: int) -> list[Seg]:
    return segs[:index] + segs[index + 1 :]


def retime(segs: list[Seg], start: float, step: float = 0.001) -> list[Seg]:
    return [replace(s, ts=start + i * step) for i, s in enumerate(segs)]


def rewritten(segs: list[Seg], *, client_shift: int, server_shift: int = 0, ttl: int = -1,
              delay: float = 0.0003) -> list[Seg]:
    """The segments as a capture point on the other side of a firewall that randomises
    sequence numbers sees them: each side's sequence numbers (and the peer's
    acknowledgements of them) moved by its shift, the TTL by ``ttl``, ``delay`` later.
    The client is the sender of the first segment."""
    client = (segs[0].src, segs[0].sport)
    out = []
    for s in segs:
        mine, theirs = ((client_shift, server_shift) if (s.src, s.sport) == client
                        else (server_shift, client_shift))
        out.append(replace(s, seq=(s.seq + mine) & MASK,
                           ack=(s.ack + theirs) & MASK if s.flags & ACK else s.ack,
                           ttl=s.ttl + ttl, ts=s.ts + delay))
    return out


def merged(*captures: list[Seg]) -> list[Seg]:
    """Segments of several capture points in one file, by time (as mergecap writes it)."""
    return sorted((s for c in captures for s in c), key=lambda s: s.ts)


def data_indexes(segs: list[Seg], sender_port: int) -> list[int]:
    """Indexes of the segments with payload sent from ``sender_port``."""
    return [i for i, s in enumerate(segs) if s.payload and s.sport == sender_port]


# --- frames ------------------------------------------------------------------------------


def ip_tcp(seg: Seg) -> bytes:
    """IPv4 or IPv6 packet bytes of one segment (scapy)."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import IPv6

    tcp = TCP(sport=seg.sport, dport=seg.dport, seq=seg.seq, ack=seg.ack, flags=seg.flags,
              window=65535, options=list(seg.options))
    ip = IPv6(src=seg.src, dst=seg.dst, hlim=seg.ttl) if ":" in seg.src else IP(
        src=seg.src, dst=seg.dst, ttl=seg.ttl, id=(int(seg.ts * 1000) & 0xFFFF))
    return bytes(ip / tcp / seg.payload) if seg.payload else bytes(ip / tcp)


def frame(link: str, packet: bytes) -> bytes:
    """Wrap an IP packet for ``link`` (see ``LINKTYPES``)."""
    from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Ether
    from scapy.packet import Raw

    v6 = packet[0] >> 4 == 6
    etype = 0x86DD if v6 else 0x0800
    macs = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}
    if link == "ether":
        return bytes(Ether(type=etype, **macs) / Raw(packet))
    if link == "vlan":
        return bytes(Ether(type=0x8100, **macs) / Dot1Q(vlan=42, type=etype) / Raw(packet))
    if link == "qinq":
        return bytes(
            Ether(type=0x88A8, **macs) / Dot1AD(vlan=100, type=0x8100)
            / Dot1Q(vlan=42, type=etype) / Raw(packet)
        )
    if link == "sll":
        return bytes(CookedLinux(pkttype=0, lladdrtype=1, lladdrlen=6, proto=etype)) + packet
    if link == "sll2":
        return bytes(CookedLinuxV2(proto=etype, ifindex=1, lladdrtype=1, lladdrlen=6)) + packet
    if link in ("raw", "raw4", "raw6"):
        return packet
    if link == "null":  # address family in the writer's (here little-endian) byte order
        return struct.pack("<I", 30 if v6 else 2) + packet
    if link == "loop":  # OpenBSD: network byte order
        return struct.pack(">I", 24 if v6 else 2) + packet
    raise ValueError(link)


def frames(segs: list[Seg], link: str = "ether") -> list[tuple[float, bytes]]:
    """(time, frame bytes) for each segment; ``link`` is a link type (``LINKTYPES``) or
    encapsulations (see ``encapsulate``)."""
    if link not in LINKTYPES:
        return [(s.ts, encapsulate(ip_tcp(s), link)) for s in segs]
    return [(s.ts, frame(link, ip_tcp(s))) for s in segs]


def linktype(link: str) -> int:
    """The pcap link type of ``frames(..., link)``: encapsulations are in Ethernet."""
    return LINKTYPES.get(link, LINKTYPES["ether"])


# --- encapsulations ----------------------------------------------------------------------
#
# Each wraps ("ip", packet) or ("ether", frame) and returns the same: the layers of a SPAN
# port or a cloud traffic mirror, built with scapy's own implementations where it has them.

MACS = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}
OUTER4 = ("192.0.2.10", "192.0.2.20")  # the mirroring device and the collector
OUTER6 = ("2001:db8:ffff::10", "2001:db8:ffff::20")
SGT = 0x1234  # the Cisco MetaData security group tag


def _ip_etype(packet: bytes) -> int:
    return 0x86DD if packet[0] >> 4 == 6 else 0x0800


def _ether(kind: str, data: bytes) -> bytes:
    """An Ethernet frame of ``data`` (wrapped when it is an IP packet)."""
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    return data if kind == "ether" else bytes(Ether(type=_ip_etype(data), **MACS) / Raw(data))


def _shim(etype: int, header: bytes, kind: str, data: bytes) -> tuple[str, bytes]:
    """A header between the MAC addresses and the EtherType it ends with (a tag, Cisco
    MetaData): inserted into an Ethernet frame, or around an IP packet."""
    frame = _ether(kind, data)
    return "ether", frame[:12] + etype.to_bytes(2, "big") + header + frame[12:]


def _outer_ip(proto: int, payload: bytes, v6: bool = False) -> tuple[str, bytes]:
    from scapy.layers.inet import IP
    from scapy.layers.inet6 import IPv6
    from scapy.packet import Raw

    if v6:
        return "ip", bytes(IPv6(src=OUTER6[0], dst=OUTER6[1], nh=proto, hlim=250) / Raw(payload))
    return "ip", bytes(IP(src=OUTER4[0], dst=OUTER4[1], proto=proto, ttl=250) / Raw(payload))


def _udp(dport: int, payload: bytes, v6: bool = False) -> tuple[str, bytes]:
    from scapy.layers.inet import UDP
    from scapy.packet import Raw

    src, dst = OUTER6 if v6 else OUTER4
    udp = UDP(sport=49152, dport=dport) / Raw(payload)  # (a hash of the inner flow: fixed)
    if v6:
        from scapy.layers.inet6 import IPv6
        return "ip", bytes(IPv6(src=src, dst=dst, hlim=250) / udp)
    from scapy.layers.inet import IP
    return "ip", bytes(IP(src=src, dst=dst, ttl=250) / udp)


def _mpls(kind: str, data: bytes, etype: int = 0x8847) -> tuple[str, bytes]:
    """Two labels; an Ethernet frame goes in a pseudowire with its control word."""
    from scapy.contrib.mpls import MPLS
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    payload = b"\0\0\0\x07" + data if kind == "ether" else data  # control word, sequence 7
    return "ether", bytes(Ether(type=etype, **MACS) / MPLS(label=1001, s=0, ttl=64)
                          / MPLS(label=16, s=1, ttl=63) / Raw(payload))


def _gre(kind: str, data: bytes, v6: bool = False, **flags: int) -> tuple[str, bytes]:
    from scapy.layers.l2 import GRE
    from scapy.packet import Raw

    proto = 0x6558 if kind == "ether" else _ip_etype(data)
    return _outer_ip(47, bytes(GRE(proto=proto, **flags) / Raw(data)), v6)


def _erspan(kind: str, data: bytes, version: str) -> tuple[str, bytes]:
    from scapy.contrib.erspan import ERSPAN_I, ERSPAN_II, ERSPAN_III, ERSPAN_PlatformSpecific
    from scapy.layers.l2 import GRE
    from scapy.packet import Raw

    if version == "1":
        gre = GRE(proto=0x88BE) / ERSPAN_I()
    elif version == "2":
        # ver given: scapy 2.5 defaults it to 0 (ERSPAN I), later versions to 1
        ii = ERSPAN_II(ver=1, session_id=5)
        gre = GRE(proto=0x88BE, seqnum_present=1, sequence_number=9) / ii
    elif version == "3-ip":  # frame type 2: the IP packet without its Ethernet header
        if kind != "ip":
            raise ValueError("erspan3-ip carries an IP packet")
        gre = GRE(proto=0x22EB, seqnum_present=1) / ERSPAN_III(ft=2, sgt_other=SGT)
        return _outer_ip(47, bytes(gre / Raw(data)))
    else:
        o = int(version == "3o")
        gre = GRE(proto=0x22EB, seqnum_present=1) / ERSPAN_III(sgt_other=SGT, o=o)
        if version == "3o":
            gre = gre / ERSPAN_PlatformSpecific(platf_id=3, info1=77, info2=0x12345678)
    return _outer_ip(47, bytes(gre / Raw(_ether(kind, data))))


def _geneve(kind: str, data: bytes) -> tuple[str, bytes]:
    from scapy.contrib.geneve import GENEVE, GeneveOptions
    from scapy.packet import Raw

    proto = 0x6558 if kind == "ether" else _ip_etype(data)
    option = GeneveOptions(classid=0x0108, type=1, data=b"gwlb-flw")  # as AWS GWLB adds
    return _udp(6081, bytes(GENEVE(vni=7, proto=proto, options=[option]) / Raw(data)))


def _vxlan(kind: str, data: bytes, v6: bool = False) -> tuple[str, bytes]:
    from scapy.layers.vxlan import VXLAN
    from scapy.packet import Raw

    return _udp(4789, bytes(VXLAN(vni=4242) / Raw(_ether(kind, data))), v6)


def _cisco_metadata(kind: str, data: bytes) -> tuple[str, bytes]:
    """Version 1, length 1 (8 bytes: this header to the inner EtherType), the SGT option."""
    return _shim(0x8909, bytes([1, 1, 0x00, 0x01]) + SGT.to_bytes(2, "big"), kind, data)


def _ipip(kind: str, data: bytes) -> tuple[str, bytes]:
    if kind != "ip":
        raise ValueError("ipip carries an IP packet")
    return _outer_ip(4 if _ip_etype(data) == 0x0800 else 41, data)


WRAPS = {
    "vlan": lambda k, d: _shim(0x8100, b"\x00\x2a", k, d),  # tag (VLAN 42); EtherType after it
    "vlan88a8": lambda k, d: _shim(0x88A8, b"\x00\x64", k, d),
    "vlan9100": lambda k, d: _shim(0x9100, b"\x00\x65", k, d),
    "mpls": _mpls,
    "mplsmc": lambda k, d: _mpls(k, d, 0x8848),
    "cmd": _cisco_metadata,
    "ipip": _ipip,
    "gre": _gre,
    "gre6": lambda k, d: _gre(k, d, v6=True),
    "grekcs": lambda k, d: _gre(k, d, chksum_present=1, key_present=1, key=99,
                                seqnum_present=1, sequence_number=3),
    "erspan1": lambda k, d: _erspan(k, d, "1"),
    "erspan2": lambda k, d: _erspan(k, d, "2"),
    "erspan3": lambda k, d: _erspan(k, d, "3"),
    "erspan3o": lambda k, d: _erspan(k, d, "3o"),
    "erspan3-ip": lambda k, d: _erspan(k, d, "3-ip"),
    "vxlan": _vxlan,
    "vxlan6": lambda k, d: _vxlan(k, d, v6=True),
    "geneve": lambda k, d: _geneve("ether", _ether(k, d)),
    "geneve-ip": _geneve,
}
ENCAPSULATIONS = tuple(WRAPS)


def encapsulate(packet: bytes, link: str) -> bytes:
    """An Ethernet frame of the IP ``packet`` inside the encapsulations ``link`` names,
    outermost first and separated by "/" (``WRAPS``). "mpls/vlan/vxlan": Ethernet, MPLS,
    the pseudowire's control word and Ethernet frame with a VLAN tag, IPv4, UDP, VXLAN,
    Ethernet, ``packet``."""
    kind, data = "ip", packet
    for layer in reversed(link.split("/")):
        kind, data = WRAPS[layer](kind, data)
    return _ether(kind, data)


# --- containers --------------------------------------------------------------------------


def pcap_bytes(
    packets: list[tuple[float, bytes]], linktype: int, *, nano: bool = False,
    big_endian: bool = False, snaplen: int = 262144,
) -> bytes:
    o = ">" if big_endian else "<"
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = [struct.pack(o + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    for ts, data in packets:
        sec = int(ts)
        frac = round((ts - sec) * (1e9 if nano else 1e6))
        out.append(struct.pack(o + "IIII", sec, frac, len(data), len(data)) + data)
    return b"".join(out)


def write_pcap(path: Path, packets: list[tuple[float, bytes]], linktype: int, **kw: object) -> Path:
    path.write_bytes(pcap_bytes(packets, linktype, **kw))  # type: ignore[arg-type]
    return path


def _block(o: str, btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack(o + "II", btype, n) + body + struct.pack(o + "I", n)


def _option(o: str, code: int, value: bytes) -> bytes:
    return struct.pack(o + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def pcapng_bytes(
    interfaces: list[tuple[int, int]],
    packets: list[tuple[int, float, bytes]],
    *,
    big_endian: bool = False,
    keylog: str | None = None,
    kinds: dict[int, str] | None = None,
    unknown_block: bool = True,
    epb_options: dict[int, list[tuple[int, bytes]]] | None = None,
) -> bytes:
    """pcapng: ``interfaces`` = [(linktype, if_tsresol byte)], ``packets`` = [(iface, t, frame)].

    ``kinds`` maps packet index -> "spb" or "pb" (default EPB). A DSB with ``keylog`` and an
    unknown block come right after the interfaces. ``epb_options`` maps packet index ->
    [(option code, value)] for its EPB (1: comment, 2: epb_flags).
    """
    o = ">" if big_endian else "<"
    kinds = kinds or {}
    out = [_block(o, 0x0A0D0D0A, struct.pack(o + "IHHq", 0x1A2B3C4D, 1, 0, -1))]
    ticks = []
    for linktype, resol in interfaces:
        opts = _option(o, 9, bytes([resol])) + _option(o, 0, b"")
        out.append(_block(o, 1, struct.pack(o + "HHI", linktype, 0, 262144) + opts))
        ticks.append(2 ** (resol & 0x7F) if resol & 0x80 else 10**resol)
    if keylog is not None:
        secret = keylog.encode()
        out.append(_block(o, 0x0A, struct.pack(o + "II", 0x544C534B, len(secret)) + secret))
    if unknown_block:
        out.append(_block(o, 0x0BAD, b"not a packet"))
    for i, (iface, ts, data) in enumerate(packets):
        t = round(ts * ticks[iface])
        kind = kinds.get(i, "epb")
        if kind == "spb":
            out.append(_block(o, 3, struct.pack(o + "I", len(data)) + data))
        elif kind == "pb":
            out.append(_block(o, 2, struct.pack(o + "HHIIII", iface, 0, t >> 32, t & MASK,
                                                len(data), len(data)) + data))
        else:
            opts = b"".join(_option(o, c, v) for c, v in (epb_options or {}).get(i, ()))
            body = data + b"\0" * (-len(data) % 4) + (opts + _option(o, 0, b"") if opts else b"")
            out.append(_block(o, 6, struct.pack(o + "IIIII", iface, t >> 32, t & MASK, len(data),
                                                len(data)) + body))
    return b"".join(out)


def write_pcapng(path: Path, interfaces: list[tuple[int, int]],
                 packets: list[tuple[int, float, bytes]], **kw: object) -> Path:
    path.write_bytes(pcapng_bytes(interfaces, packets, **kw))  # type: ignore[arg-type]
    return path


def capture(segs: list[Seg], path: Path, link: str = "ether", **kw: object) -> Path:
    """Shortcut: segments -> pcap file on ``link``."""
    return write_pcap(path, frames(segs, link), linktype(link), **kw)
