"""Frame decoding: every supported link type, VLAN stacks, IP options/extensions, fragments."""

from __future__ import annotations

import pytest

from mtlsprobe.capture.linklayer import decode, tcp_option_summary
from tests import pcapgen

SEG4 = pcapgen.Seg("192.0.2.1", 40000, "198.51.100.7", 443, 0xFFFFFFF0, 12345,
                   pcapgen.PSH | pcapgen.ACK, b"\x16\x03\x01payload", ttl=51)
SEG6 = pcapgen.Seg("2001:db8::1", 40000, "2001:db8::2", 8443, 7, 9, pcapgen.ACK, b"hello", ttl=33)


@pytest.mark.parametrize("link", sorted(pcapgen.LINKTYPES))
@pytest.mark.parametrize("seg", [SEG4, SEG6], ids=["ipv4", "ipv6"])
def test_every_link_type_decodes_to_the_same_segment(link, seg):
    frame = pcapgen.frame(link, pcapgen.ip_tcp(seg))
    got = decode(pcapgen.LINKTYPES[link], frame)
    assert got is not None
    assert (got.src, got.sport, got.dst, got.dport, got.seq, got.ack, got.flags, got.ttl,
            bytes(got.payload)) == (seg.src, seg.sport, seg.dst, seg.dport, seg.seq, seg.ack,
                                    seg.flags, seg.ttl, seg.payload)
    assert (got.ip_id is None) == (":" in seg.src)


def test_ethernet_padding_is_not_payload():
    frame = pcapgen.frame("ether", pcapgen.ip_tcp(pcapgen.Seg("10.0.0.1", 1, "10.0.0.2", 2, 0, 0,
                                                             pcapgen.ACK)))
    padded = frame + b"\0" * (60 - len(frame))
    assert decode(1, padded).payload == b""


def test_ipv4_options_and_tcp_options():
    from scapy.layers.inet import IP, TCP, IPOption_RR

    pkt = bytes(IP(src="10.0.0.1", dst="10.0.0.2", options=[IPOption_RR()])
                / TCP(sport=1, dport=443, flags="SA",
                      options=[("MSS", 1400), ("NOP", None), ("WScale", 8), ("SAckOK", b""),
                               ("Timestamp", (1, 2))]) / b"x")
    got = decode(101, pkt)
    assert got.payload == b"x"
    assert got.option_summary == ("mss=1400", "wscale=8", "sack_perm", "ts")


def test_ipv6_extension_headers_are_walked():
    from scapy.layers.inet import TCP
    from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting

    pkt = bytes(IPv6(src="::1", dst="::2") / IPv6ExtHdrHopByHop() / IPv6ExtHdrRouting()
                / IPv6ExtHdrDestOpt() / TCP(sport=5, dport=443) / b"data")
    got = decode(229, pkt)
    assert got is not None and got.payload == b"data" and got.dport == 443


def test_fragments_are_skipped_and_counted():
    from scapy.layers.inet import IP, TCP, fragment
    from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment

    skipped: dict[str, int] = {}
    for frag in fragment(IP(src="10.0.0.1", dst="10.0.0.2") / TCP() / (b"z" * 100), fragsize=48):
        assert decode(101, bytes(frag), skipped) is None
    v6 = IPv6(src="::1", dst="::2") / IPv6ExtHdrFragment(m=1) / TCP() / b"q"
    assert decode(101, bytes(v6), skipped) is None
    assert skipped == {"IPv4 fragment": 3, "IPv6 fragment": 1}


def test_non_tcp_and_unknown_link_types_return_none():
    from scapy.layers.inet import IP, UDP

    skipped: dict[str, int] = {}
    assert decode(101, bytes(IP() / UDP() / b"dns"), skipped) is None
    assert decode(1, b"\xff" * 12 + b"\x08\x06" + b"\0" * 28, skipped) is None  # ARP
    assert decode(147, b"\0" * 40, skipped) is None
    assert decode(1, b"\0" * 5, skipped) is None
    assert skipped == {"not TCP": 1, "not decoded: in EtherType 0x0806 (ARP)": 1,
                       "unsupported link type 147": 1, "short frame": 1}


def test_snaplen_cut_frame_is_marked_truncated():
    pkt = pcapgen.ip_tcp(SEG4)
    got = decode(101, pkt[:-4])
    assert got.truncated and got.payload == SEG4.payload[:-4]


def test_malformed_tcp_options_do_not_raise():
    assert tcp_option_summary(b"\x02\x04\x05") == ("malformed",)
    assert tcp_option_summary(b"\x01\x01\x00\x02") == ()
