"""Encapsulation headers: where the packet inside one header starts, and what it is.

Boundary: one header at a time, no recursion and no TCP. ``capture.linklayer`` walks a
frame from its link header inward and calls these for each header it meets; each returns
``(next, offset)``: what follows (an EtherType: IPv4, IPv6, Ethernet, MPLS...) and where;
a reason (``str``) when the header is cut short, malformed or carries something not
decoded (those reasons start with ``NOT_DECODED`` and name it); or None where there is no
tunnel (a UDP port that is not one). Every length is checked before it is used.

References: MPLS RFC 3032 and RFC 4385 (pseudowire control word), Cisco MetaData (the
802.1AE-style SGT tag, Wireshark's and Snort's codecs), VXLAN RFC 7348, Geneve RFC 8926,
GRE RFC 2784 and RFC 2890, ERSPAN draft-foschiano-erspan-03 (types I, II and III).
"""

from __future__ import annotations

import struct

# What follows a header: EtherTypes (GRE and Geneve use them as protocol types too)
ETH_IPV4, ETH_IPV6 = 0x0800, 0x86DD
ETH_TEB = 0x6558  # transparent Ethernet bridging: an Ethernet frame follows
ETH_MPLS = frozenset({0x8847, 0x8848})  # unicast, multicast
ETH_CISCO_METADATA = 0x8909
ERSPAN_I_II, ERSPAN_III = 0x88BE, 0x22EB

# IP protocol numbers of the tunnels inside IP
IPIP, UDP, IPV6_IN_IP, GRE = 4, 17, 41, 47
IP_TUNNELS = frozenset({IPIP, UDP, IPV6_IN_IP, GRE})
VXLAN_PORTS = frozenset({4789, 8472})  # IANA's, and Linux's default before it (flannel)
GENEVE_PORT = 6081
# UDP tunnels known but not decoded: named in the note about frames not decoded
UDP_TUNNELS_NOT_DECODED = {
    1701: "L2TP", 2152: "GTP-U", 3544: "Teredo", 4754: "GRE in UDP", 4790: "VXLAN-GPE",
    5246: "CAPWAP control", 5247: "CAPWAP data", 6635: "MPLS in UDP",
}

# EtherTypes an Ethernet frame read here usually carries (to tell where one starts)
ETHERTYPES_READ = frozenset({ETH_IPV4, ETH_IPV6, 0x8100, 0x88A8, 0x9100, 0x9200, 0x8847,
                             0x8848, 0x8864, ETH_CISCO_METADATA})

NOT_DECODED = "not decoded: "  # prefix of the reasons that name something not decoded
MAX_LABELS = 16  # MPLS label stack entries before the bottom of the stack

ETHERTYPE_NAMES = {
    0x0806: "ARP", 0x0842: "Wake-on-LAN", 0x22EB: "ERSPAN III", 0x22F3: "TRILL",
    0x6558: "Ethernet bridging", 0x8035: "RARP", 0x809B: "AppleTalk", 0x80F3: "AARP",
    0x8137: "IPX", 0x8808: "Ethernet flow control", 0x8809: "LACP/slow protocols",
    0x880B: "PPP", 0x883E: "WCCP", 0x8847: "MPLS", 0x8848: "MPLS multicast",
    0x8863: "PPPoE discovery", 0x8864: "PPPoE session", 0x888E: "802.1X EAPOL",
    0x8892: "PROFINET", 0x88A2: "ATA over Ethernet", 0x88A4: "EtherCAT",
    0x88B5: "local experimental", 0x88B6: "local experimental", 0x88B8: "GOOSE",
    0x88BE: "ERSPAN", 0x88CC: "LLDP", 0x88E5: "MACsec", 0x88E7: "PBB (802.1ah)",
    0x88F7: "PTP", 0x88FB: "PRP", 0x8899: "Realtek", 0x8902: "CFM (802.1ag)", 0x8906: "FCoE",
    0x8909: "Cisco MetaData", 0x8914: "FIP", 0x8915: "RoCE", 0x892F: "HSR", 0x894F: "NSH",
    0x9000: "Ethernet loopback",
}

_u16 = struct.Struct("!H").unpack_from
_u32 = struct.Struct("!I").unpack_from

Next = tuple[int, int] | str  # (what follows, where), or why not


def ethertype_name(etype: int) -> str:
    """``EtherType 0x88cc (LLDP)``; an 802.3 length field is named as such."""
    if etype < 0x0600:
        return "802.3/LLC framing (STP, CDP...)"
    return f"EtherType {protocol_name(etype)}"


def protocol_name(etype: int) -> str:
    """``0x88cc (LLDP)``: an EtherType, or a GRE or Geneve protocol type (the same numbers)."""
    name = ETHERTYPE_NAMES.get(etype)
    return f"0x{etype:04x}" + (f" ({name})" if name else "")


def not_decoded(what: str) -> str:
    return NOT_DECODED + what


def ethernet(frame: bytes, off: int) -> Next:
    """An Ethernet header (without FCS) at ``off``: its EtherType. Tags are the caller's."""
    if len(frame) < off + 14:
        return "short inner Ethernet header"
    return _u16(frame, off + 12)[0], off + 14


def mpls(frame: bytes, off: int) -> Next:
    """An MPLS label stack: the entries up to the bottom of the stack, then the payload by
    its first nibble: 4 IPv4, 6 IPv6, 0 a pseudowire control word and an Ethernet frame."""
    for _ in range(MAX_LABELS):
        if len(frame) < off + 4:
            return "short MPLS label stack"
        bottom = frame[off + 2] & 1
        off += 4
        if bottom:
            break
    else:
        return f"MPLS label stack of more than {MAX_LABELS} labels"
    if len(frame) <= off:
        return "MPLS label stack with no payload"
    nibble = frame[off] >> 4
    if nibble == 4:
        return ETH_IPV4, off
    if nibble == 6:
        return ETH_IPV6, off
    # An Ethernet pseudowire: a control word (RFC 4385: first nibble 0) then the frame, or
    # the frame at once (its destination MAC may start with nibble 0 too): take the reading
    # whose EtherType is one read here, the control word when neither is.
    if nibble == 0 and _ethertype_at(frame, off + 4) in ETHERTYPES_READ:
        return ETH_TEB, off + 4
    if _ethertype_at(frame, off) in ETHERTYPES_READ:
        return ETH_TEB, off
    if nibble == 0:
        return ETH_TEB, off + 4
    if nibble == 1:
        return not_decoded("inside MPLS: a pseudowire associated channel (control traffic)")
    return not_decoded(f"inside MPLS: a payload starting with nibble 0x{nibble:x} "
                       "(not IPv4, IPv6 or a pseudowire control word)")


def _ethertype_at(frame: bytes, off: int) -> int | None:
    """The EtherType of an Ethernet header at ``off``, if the frame holds one."""
    return _u16(frame, off + 12)[0] if len(frame) >= off + 14 else None


def cisco_metadata(frame: bytes, off: int) -> Next:
    """Cisco MetaData (the SGT tag): version, length in 8-byte units (the whole header,
    options and the inner EtherType included), options; the inner EtherType ends it."""
    if len(frame) < off + 2:
        return "short Cisco MetaData header"
    length = frame[off + 1] * 8
    if length == 0:
        return "malformed Cisco MetaData header (length 0)"
    if len(frame) < off + length:
        return "short Cisco MetaData header"
    return _u16(frame, off + length - 2)[0], off + length


def udp(frame: bytes, off: int) -> Next | None:
    """A UDP header: the tunnel behind its destination port (VXLAN, Geneve; others named
    as not decoded), or None: plain UDP."""
    if len(frame) < off + 4:
        return None  # not even the ports: not a tunnel we can tell
    (port,) = _u16(frame, off + 2)
    if port in VXLAN_PORTS:
        if len(frame) < off + 16:
            return "short VXLAN header"
        return ETH_TEB, off + 16  # UDP (8) and VXLAN (8: flags, VNI): an Ethernet frame
    if port == GENEVE_PORT:
        return _geneve(frame, off + 8)
    name = UDP_TUNNELS_NOT_DECODED.get(port)
    if name is not None:
        return not_decoded(f"inside {name} (UDP port {port})")
    return None


def _geneve(frame: bytes, off: int) -> Next:
    if len(frame) < off + 8:
        return "short Geneve header"
    first = frame[off]
    if first >> 6:
        return not_decoded(f"inside Geneve version {first >> 6}")
    end = off + 8 + (first & 0x3F) * 4  # options length in 4-byte words
    if len(frame) < end:
        return "short Geneve header (options)"
    (protocol,) = _u16(frame, off + 2)
    if protocol in (ETH_TEB, ETH_IPV4, ETH_IPV6):
        return protocol, end
    return not_decoded(f"inside Geneve protocol {protocol_name(protocol)}")


def gre(frame: bytes, off: int) -> Next:
    """A GRE header (RFC 2784/2890: optional checksum, key, sequence number) and, for
    ERSPAN, its header; what it carries."""
    if len(frame) < off + 4:
        return "short GRE header"
    flags, protocol = _u16(frame, off)[0], _u16(frame, off + 2)[0]
    if flags & 0x7:
        return not_decoded(f"inside GRE version {flags & 0x7}"
                           + (" (PPTP)" if flags & 0x7 == 1 else ""))
    if flags & 0x4000:
        return not_decoded("inside GRE with source routing (RFC 1701)")
    sequenced = bool(flags & 0x1000)
    end = off + 4 + 4 * (bool(flags & 0x8000) + bool(flags & 0x2000) + sequenced)  # C, K, S
    if len(frame) < end:
        return "short GRE header"
    if protocol in (ETH_IPV4, ETH_IPV6, ETH_TEB) or protocol in ETH_MPLS:
        return protocol, end
    if protocol == ERSPAN_I_II and not sequenced:
        return ETH_TEB, end  # ERSPAN type I: the mirrored frame right after GRE
    if protocol in (ERSPAN_I_II, ERSPAN_III):
        return _erspan(frame, end)
    return not_decoded(f"inside GRE protocol {protocol_name(protocol)}")


def _erspan(frame: bytes, off: int) -> Next:
    """ERSPAN type II (version 1, 8 bytes) or III (version 2, 12 bytes and an 8-byte
    platform subheader when the O bit is set; frame type 0 Ethernet, 2 IP)."""
    if len(frame) < off + 2:
        return "short ERSPAN header"
    version = frame[off] >> 4
    if version == 1:
        if len(frame) < off + 8:
            return "short ERSPAN header"
        return ETH_TEB, off + 8
    if version != 2:
        return not_decoded(f"inside ERSPAN version {version}")
    if len(frame) < off + 12:
        return "short ERSPAN header"
    (word,) = _u16(frame, off + 10)  # P, frame type (5 bits), hardware id, D, Gra, O
    end = off + 12 + (8 if word & 1 else 0)
    if len(frame) < end:
        return "short ERSPAN header (platform subheader)"
    kind = word >> 10 & 0x1F
    if kind == 0:
        return ETH_TEB, end
    if kind == 2 and len(frame) > end:  # an IP packet without its Ethernet header
        return (ETH_IPV6 if frame[end] >> 4 == 6 else ETH_IPV4), end
    return not_decoded(f"inside ERSPAN type III frame type {kind}")


BY_ETHERTYPE = {
    ETH_TEB: ethernet,
    0x8847: mpls,
    0x8848: mpls,
    ETH_CISCO_METADATA: cisco_metadata,
}
