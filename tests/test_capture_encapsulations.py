"""Encapsulations of SPAN ports and cloud traffic mirrors (issue 13): VLAN/QinQ tags, MPLS
(with Ethernet pseudowires), Cisco MetaData/SGT, IP in IP, GRE, ERSPAN I/II/III, VXLAN and
Geneve, alone and nested. A TLS handshake inside any of them is read exactly as without
them (the inner 5-tuple is the connection); a cut or malformed header, something not
decoded, or nesting too deep is counted, named in a note, and never raises. The bulk
shortcut declines tunnelled frames, so it changes nothing for them. Frames are built
with scapy's own implementations of the headers (tests/pcapgen.py).
"""

from __future__ import annotations

import ssl
import struct
from dataclasses import replace

import pytest
import tlsgen
from hypothesis import given, settings
from hypothesis import strategies as st
from test_capture_bulk_shortcut import _without_leases

from mtlsprobe.capture import bulk
from mtlsprobe.capture.linklayer import MAX_DEPTH, decode
from mtlsprobe.capture.observations import ObservationReader
from mtlsprobe.capture.transcripts import CaptureReader
from mtlsprobe.model import Seen
from mtlsprobe.run import expectations
from mtlsprobe.run.analyze import analyze
from tests import pcapgen

ETHER = pcapgen.LINKTYPES["ether"]
NESTED = ("mpls/vlan/vxlan", "vlan/gre/erspan2", "vlan88a8/vlan/erspan3o", "vxlan6/geneve-ip",
          "cmd/mplsmc/grekcs", "vlan9100/ipip", "geneve/vlan/mpls", "erspan1/cmd")
ALL = (*pcapgen.ENCAPSULATIONS, *NESTED)
TAGS_ONLY = ("vlan", "vlan88a8", "vlan9100")  # the bulk shortcut reads up to two tags

SEG4 = pcapgen.Seg("192.0.2.1", 40000, "198.51.100.7", 443, 0xFFFFFFF0, 12345,
                   pcapgen.PSH | pcapgen.ACK, b"\x16\x03\x01payload", ttl=51)
SEG6 = pcapgen.Seg("2001:db8::1", 40000, "2001:db8::2", 8443, 7, 9, pcapgen.ACK, b"hello", ttl=33)


_messages = pcapgen.messages_of  # the tests here and their importers use this name


def _fields(seg):  # type: ignore[no-untyped-def]
    return (seg.src, seg.sport, seg.dst, seg.dport, seg.seq, seg.ack, seg.flags, seg.ttl,
            bytes(seg.payload))


# --- one frame ---------------------------------------------------------------------------


@pytest.mark.parametrize("link", ALL)
@pytest.mark.parametrize("seg", [SEG4, SEG6], ids=["ipv4", "ipv6"])
def test_the_inner_segment_is_decoded(link, seg):
    """The segment is the innermost one: its addresses, ports, TTL and payload; nothing is
    skipped on the way."""
    [(_, frame)] = pcapgen.frames([seg], link)
    skipped: dict[str, int] = {}
    got = decode(ETHER, frame, skipped)
    assert got is not None and _fields(got) == _fields(seg)
    assert skipped == {}


def test_padding_after_a_tunnel_is_not_inner_payload():
    """The outer packet bounds the inner one: Ethernet padding after a short VXLAN or GRE
    packet is not TCP payload (here the inner IP length is zero, as with offload)."""
    bare = pcapgen.Seg("10.0.0.1", 1, "10.0.0.2", 2, 0, 0, pcapgen.ACK)
    packet = bytearray(pcapgen.ip_tcp(bare))
    packet[2:4] = b"\0\0"  # total length 0: segmentation offload, read to the end
    for link in ("vxlan", "gre", "ipip"):
        frame = pcapgen.encapsulate(bytes(packet), link)
        got = decode(ETHER, frame + b"\0" * 30)
        assert got is not None and got.payload == b"", link


# where each encapsulation's own header ends, counted back from the inner IP packet, and
# what a frame cut just before it is skipped as
CUT = {
    "vlan": (0, "short VLAN tag"), "vlan88a8": (0, "short VLAN tag"),
    "vlan9100": (0, "short VLAN tag"), "mpls": (0, "short MPLS label stack"),
    "mplsmc": (0, "short MPLS label stack"), "cmd": (0, "short Cisco MetaData header"),
    "ipip": (0, "short IPv4 header"), "gre": (0, "short GRE header"),
    "gre6": (0, "short GRE header"), "grekcs": (0, "short GRE header"),
    "erspan1": (0, "short inner Ethernet header"), "erspan2": (14, "short ERSPAN header"),
    "erspan3": (14, "short ERSPAN header"),
    "erspan3o": (14, "short ERSPAN header (platform subheader)"),
    "erspan3-ip": (0, "short ERSPAN header"), "vxlan": (14, "short VXLAN header"),
    "vxlan6": (14, "short VXLAN header"), "geneve": (14, "short Geneve header (options)"),
    "geneve-ip": (0, "short Geneve header (options)"),
}


@pytest.mark.parametrize("link", pcapgen.ENCAPSULATIONS)
def test_a_frame_cut_inside_each_header_is_skipped_and_named(link, tmp_path):
    assert set(CUT) == set(pcapgen.ENCAPSULATIONS)
    packet = pcapgen.ip_tcp(SEG4)
    frame = pcapgen.encapsulate(packet, link)
    back, reason = CUT[link]
    cut = frame[: frame.rindex(packet) - back - 1]
    skipped: dict[str, int] = {}
    assert decode(ETHER, cut, skipped) is None
    assert skipped == {reason: 1}
    path = pcapgen.write_pcap(tmp_path / "cut.pcap", [(1.0, cut), (2.0, cut)], ETHER)
    reader = CaptureReader(path)
    assert list(reader) == [] and reader.notes == [f"skipped 2 frame(s): {reason}"]


def _outer4(proto: int, payload: bytes) -> bytes:
    from scapy.layers.inet import IP

    return bytes(IP(src="192.0.2.10", dst="192.0.2.20", proto=proto) / payload)


def _ether(etype: int, payload: bytes) -> bytes:
    return b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01" + etype.to_bytes(2, "big") + payload


def _udp(dport: int, payload: bytes) -> bytes:
    from scapy.layers.inet import IP, UDP

    return _ether(0x0800, bytes(IP(src="192.0.2.10", dst="192.0.2.20")
                                / UDP(sport=49152, dport=dport) / payload))


def _gre(flags: int, protocol: int, body: bytes) -> bytes:
    return _ether(0x0800, _outer4(47, struct.pack("!HH", flags, protocol) + body))


PACKET = pcapgen.ip_tcp(SEG4)
INNER = pcapgen.frame("ether", PACKET)
LABEL = (16 << 12 | 1 << 8 | 64).to_bytes(4, "big")  # label 16, bottom of stack, TTL 64
MALFORMED = {
    "GRE version 1 (PPTP)": (_gre(0x3081, 0x880B, b"\0" * 8 + PACKET),
                             "not decoded: inside GRE version 1 (PPTP)"),
    "GRE with source routing": (_gre(0x4000, 0x0800, b"\0" * 4 + PACKET),
                                "not decoded: inside GRE with source routing (RFC 1701)"),
    "GRE protocol unknown": (_gre(0, 0x1234, PACKET), "not decoded: inside GRE protocol 0x1234"),
    "GRE protocol named": (_gre(0, 0x880B, PACKET),
                           "not decoded: inside GRE protocol 0x880b (PPP)"),
    "ERSPAN version 3": (_gre(0x1000, 0x88BE, b"\0" * 4 + b"\x30" + b"\0" * 7 + INNER),
                         "not decoded: inside ERSPAN version 3"),
    "ERSPAN III frame type 5": (_gre(0x1000, 0x22EB, b"\0" * 4 + b"\x20" + b"\0" * 9
                                     + (5 << 10).to_bytes(2, "big") + INNER),
                                "not decoded: inside ERSPAN type III frame type 5"),
    "Geneve version 1": (_udp(6081, b"\x40\0\x65\x58" + b"\0" * 4 + INNER),
                         "not decoded: inside Geneve version 1"),
    "Geneve protocol unknown": (_udp(6081, b"\0\0\x88\xcc" + b"\0" * 4 + INNER),
                                "not decoded: inside Geneve protocol 0x88cc (LLDP)"),
    "Geneve options past the frame": (_udp(6081, b"\x3f\0\x65\x58" + b"\0" * 4 + INNER[:40]),
                                      "short Geneve header (options)"),
    "GTP-U": (_udp(2152, b"\x30\xff\0\0" + b"\0" * 4 + PACKET),
              "not decoded: inside GTP-U (UDP port 2152)"),
    "VXLAN carrying ARP": (_udp(4789, b"\x08" + b"\0" * 7 + _ether(0x0806, b"\0" * 28)),
                           "not decoded: in EtherType 0x0806 (ARP)"),
    "MPLS without a bottom of stack": (_ether(0x8847, b"\0\0\0\x40" * 17 + PACKET),
                                       "MPLS label stack of more than 16 labels"),
    "MPLS payload neither IP nor Ethernet": (
        _ether(0x8847, LABEL + b"\xf0" + b"\0" * 40),
        "not decoded: inside MPLS: a payload starting with nibble 0xf (not IPv4, IPv6 or a "
        "pseudowire control word)"),
    "MPLS control channel": (_ether(0x8847, LABEL + b"\x10\0\0\x21" + b"\0" * 40),
                             "not decoded: inside MPLS: a pseudowire associated channel "
                             "(control traffic)"),
    "MPLS with no payload": (_ether(0x8847, LABEL), "MPLS label stack with no payload"),
    "Cisco MetaData length 0": (_ether(0x8909, b"\x01\x00\x00\x01\x12\x34\x08\x00" + PACKET),
                                "malformed Cisco MetaData header (length 0)"),
    "Cisco MetaData longer than the frame": (_ether(0x8909, b"\x01\xff\0\x01\x12\x34\x08\0"),
                                             "short Cisco MetaData header"),
    "LLDP": (_ether(0x88CC, b"\x02\x07\x04" + b"\0" * 40),
             "not decoded: in EtherType 0x88cc (LLDP)"),
    "802.3 with LLC": (_ether(0x0026, b"\x42\x42\x03" + b"\0" * 40),
                       "not decoded: in 802.3/LLC framing (STP, CDP...)"),
    "PPPoE carrying LCP": (_ether(0x8864, b"\x11\0\0\x01\0\x10\xc0\x21" + b"\0" * 14),
                           "not decoded: inside PPPoE: PPP protocol 0xc021"),
    "too many VLAN tags": (_ether(0x8100, b"\0\x01\x81\x00" * MAX_DEPTH + b"\0\x01\x08\x00"
                                  + PACKET), f"more than {MAX_DEPTH} nested encapsulations"),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_unknown_or_too_deep_is_skipped_and_named(name):
    frame, reason = MALFORMED[name]
    skipped: dict[str, int] = {}
    assert decode(ETHER, frame, skipped) is None
    assert skipped == {reason: 1}


def test_nesting_is_bounded():
    """GRE in GRE in GRE...: the frame is skipped past MAX_DEPTH encapsulations, and read
    just below it."""
    def nest(n: int) -> bytes:
        packet = PACKET
        for _ in range(n):
            packet = _outer4(47, b"\0\0\x08\x00" + packet)
        return _ether(0x0800, packet)

    skipped: dict[str, int] = {}
    assert decode(ETHER, nest(MAX_DEPTH), skipped) is not None and skipped == {}
    assert decode(ETHER, nest(MAX_DEPTH + 1), skipped) is None
    assert skipped == {f"more than {MAX_DEPTH} nested encapsulations": 1}


@given(which=st.integers(0, len(ALL) - 1), cut=st.integers(0, 200),
       flips=st.lists(st.tuples(st.integers(0, 199), st.integers(0, 255)), max_size=6),
       v6=st.booleans())
@settings(max_examples=300, deadline=None)
def test_property_damaged_encapsulations_never_raise(which, cut, flips, v6):
    """Any encapsulated frame, cut anywhere and with any bytes changed: a segment or a
    counted reason, never an exception."""
    frame = bytearray(_FRAMES[ALL[which], v6])
    for at, value in flips:
        if at < len(frame):
            frame[at] = value
    skipped: dict[str, int] = {}
    got = decode(ETHER, bytes(frame[: len(frame) - cut]), skipped)
    assert (got is None) == bool(skipped)


_FRAMES = {(link, v6): pcapgen.encapsulate(pcapgen.ip_tcp(SEG6 if v6 else SEG4), link)
           for link in ALL for v6 in (False, True)}


# --- a TLS handshake inside each ---------------------------------------------------------


@pytest.fixture(scope="module")
def handshakes() -> list[pcapgen.Seg]:
    """Two TLS 1.2 connections: one with the client certificate the server asks for, one
    without (the server's alert ends it)."""
    with_cert = tlsgen.run(version="TLSv1.2", client_cert="good")
    without = tlsgen.run(version="TLSv1.2", client_cert=None)
    segs = pcapgen.conversation(_messages(with_cert))
    segs += pcapgen.conversation(_messages(without), client=("10.0.0.1", 40001),
                                 start=segs[-1].ts + 1)
    return segs


@pytest.fixture(scope="module")
def plain(handshakes, tmp_path_factory) -> list:
    path = pcapgen.capture(handshakes, tmp_path_factory.mktemp("plain") / "x.pcap")
    observations = list(ObservationReader(path))
    assert len(observations) == 2
    assert observations[0].client_chain_seen is Seen.YES
    assert observations[1].alerts and observations[0].cert_request.seen is Seen.YES
    return observations


@pytest.mark.parametrize("link", ALL)
def test_a_tunnelled_handshake_has_the_facts_of_the_plain_one(handshakes, plain, link,
                                                             tmp_path):
    """Every fact (chains, CertificateRequest, client certificate, alerts, TTLs, ...) as in
    the capture without the encapsulation; no frame skipped, no note."""
    path = pcapgen.capture(handshakes, tmp_path / "x.pcap", link)  # same name: same labels
    reader = ObservationReader(path)
    assert list(reader) == plain
    assert reader.notes == [] and reader.stats["connections"] == 2


def test_analyze_finds_the_connections_in_a_mirror_capture(handshakes, tmp_path):
    """Geneve (as AWS Gateway Load Balancer forwards) and ERSPAN III: the report is the plain
    capture's, not "no TLS connection found"."""
    expect = expectations.build(ca=(), pins=(), baseline=None)
    (tmp_path / "p").mkdir()
    plain = analyze([pcapgen.capture(handshakes, tmp_path / "p" / "m.pcap")], expect)
    for link in ("geneve-ip", "erspan3o"):
        (tmp_path / link).mkdir()
        report = analyze([pcapgen.capture(handshakes, tmp_path / link / "m.pcap", link)], expect)
        assert report.results == plain.results and report.results
        assert not any("no TLS connection" in n for n in report.notes)


def test_frames_not_decoded_are_named_in_one_note(handshakes, tmp_path):
    """LLDP, a GRE protocol not decoded and GTP-U beside a VXLAN capture: the connections are
    found, and one note counts and names the rest (most first)."""
    frames = pcapgen.frames(handshakes, "vxlan")
    t = frames[0][0]
    extra = ([MALFORMED["LLDP"][0]] * 5 + [MALFORMED["GRE protocol unknown"][0]] * 3
             + [MALFORMED["GTP-U"][0]] * 3)
    path = pcapgen.write_pcap(tmp_path / "mixed.pcap",
                              [*frames, *((t + 10 + i, f) for i, f in enumerate(extra))], ETHER)
    reader = ObservationReader(path)
    assert len(list(reader)) == 2
    assert reader.notes == ["11 frame(s) not decoded: 5 in EtherType 0x88cc (LLDP), "
                            "3 inside GRE protocol 0x1234, 3 inside GTP-U (UDP port 2152)"]
    only_lldp = pcapgen.write_pcap(tmp_path / "lldp.pcap", [(1.0, extra[0])] * 3, ETHER)
    reader = ObservationReader(only_lldp)
    assert list(reader) == []
    assert reader.notes == ["3 frame(s) in EtherType 0x88cc (LLDP) not decoded"]
    expect = expectations.build(ca=(), pins=(), baseline=None)
    notes = analyze([only_lldp], expect).notes
    assert "lldp.pcap: 3 frame(s) in EtherType 0x88cc (LLDP) not decoded" in notes


# --- the bulk shortcut -------------------------------------------------------------------

BULK = bytes(range(256)) * 600  # 150 KB: past the observer's post-handshake budget


@pytest.fixture(scope="module")
def bulk_session() -> list[tuple[str, bytes]]:
    return _messages(tlsgen.run(version="TLSv1.3", verify=ssl.CERT_NONE, server_says=BULK))


@pytest.mark.parametrize("link", [e for e in ALL if e not in TAGS_ONLY])
def test_the_bulk_shortcut_declines_tunnelled_frames(link):
    for v6 in (False, True):
        assert bulk.layout(_FRAMES[link, v6], ETHER) is None


@pytest.mark.parametrize("link", ["vxlan", "erspan2", "mpls/vlan/vxlan", "geneve-ip", "cmd"])
def test_tunnelled_bulk_reads_the_same_with_and_without_the_shortcut(bulk_session, link,
                                                                    tmp_path):
    segs = pcapgen.conversation(bulk_session)
    path = pcapgen.capture(segs, tmp_path / "t.pcap", link)
    reader = ObservationReader(path)
    streamed = list(reader)
    assert streamed == list(_without_leases(path))
    assert reader.stats["bulk_frames"] == 0  # every frame read the general way
    assert len(streamed) == 1 and streamed[0].outcome.value == "established"


def test_a_plain_connection_between_the_tunnel_ends_does_not_take_tunnelled_frames(
    bulk_session, tmp_path
):
    """A TCP connection between the VXLAN endpoints, on the ports the VXLAN packets use, has
    its bulk leased: the tunnel's frames have the same raw address and port bytes where
    the lease looks, and are still declined (UDP, not TCP) and read as the tunnel's."""
    tunnel_ends = pcapgen.conversation(bulk_session, client=(pcapgen.OUTER4[0], 49152),
                                       server=(pcapgen.OUTER4[1], 4789), ttl_client=250)
    inner = pcapgen.conversation(bulk_session, start=tunnel_ends[0].ts + 0.0005)
    frames = sorted([*pcapgen.frames(tunnel_ends), *pcapgen.frames(inner, "vxlan")])
    path = pcapgen.write_pcap(tmp_path / "both.pcap", frames, ETHER)
    reader = ObservationReader(path)
    streamed = list(reader)
    assert streamed == list(_without_leases(path)) and len(streamed) == 2
    assert {o.server.port for o in streamed} == {443, 4789}
    alone = ObservationReader(pcapgen.capture(tunnel_ends, tmp_path / "alone.pcap"))
    list(alone)
    assert reader.stats["bulk_frames"] == alone.stats["bulk_frames"] > 20  # undisturbed


def test_tunnelled_captures_read_in_shares_give_the_same_report(handshakes, tmp_path):
    """``--jobs``: every worker decodes the tunnelled frames; the report and its notes are
    the single reader's."""
    segs: list[pcapgen.Seg] = []
    for i in range(4):
        segs += [replace(s, sport=s.sport + 10 * i if s.sport >= 40000 else s.sport,
                         dport=s.dport + 10 * i if s.dport >= 40000 else s.dport,
                         ts=s.ts + i / 7) for s in handshakes]
    frames = sorted(pcapgen.frames(segs, "erspan2"))
    frames.append((frames[-1][0] + 1, MALFORMED["LLDP"][0]))
    path = pcapgen.write_pcap(tmp_path / "shares.pcap", frames, ETHER)
    expect = expectations.build(ca=(), pins=(), baseline=None)
    one, shared = analyze([path], expect, jobs=1), analyze([path], expect, jobs=2)
    assert shared.results == one.results and shared.notes == one.notes
    assert any("in EtherType 0x88cc (LLDP) not decoded" in n for n in one.notes)
    assert sum(len(r.observations) for r in one.results) >= 2



@pytest.mark.parametrize("link", ["cmd", "geneve"])
def test_a_hundred_handshakes_behind_sgt_tags_or_in_geneve(link, tmp_path):
    """The issue's captures: both halves of 100 handshakes, every frame Cisco SGT-tagged
    (EtherType 0x8909) or in Geneve (UDP 6081). analyze judges all 100 connections."""
    messages = _messages(tlsgen.run(version="TLSv1.2", client_cert="good"))
    segs: list[pcapgen.Seg] = []
    for i in range(100):
        segs += pcapgen.conversation(messages, client=("10.0.0.1", 30000 + i),
                                     start=1_700_000_000 + i * 0.05)
    path = pcapgen.capture(segs, tmp_path / f"{link}.pcap", link)
    report = analyze([path], expectations.build(ca=(), pins=(), baseline=None))
    assert not any("no TLS connection" in n for n in report.notes)
    assert sum(o.repeats for r in report.results for o in r.observations) == 100
    assert f"{link}.pcap: 1400 packets, 100 TCP connections, 100 with TLS" in report.notes
