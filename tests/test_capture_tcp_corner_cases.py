"""TCP corner cases real captures showed, where tshark read a handshake we lost.

- A client's RST crosses the server's flight: the server's segments in flight still arrive
  and are real bytes (ntop reddit.pcap, pinterest.pcap); the reset connection lingers.
- SYN-ACKs with different ISNs: the one the client acknowledges is the connection (suricata
  tcp-fastopen-10-syn-data-ignore, ntop tls_multiple_synack_different_seq.pcapng).
- PPPoE: the session length bounds the IP packet, whatever its total length claims
  (zeek pppoe-over-qinq.pcap).
"""

from __future__ import annotations

import dataclasses
import ssl
import struct

import pytest
import tlsgen

from mtlsprobe.capture.flowtable import RST_LINGER
from mtlsprobe.capture.linklayer import ETHERNET, decode
from mtlsprobe.capture.transcripts import CaptureReader
from mtlsprobe.model import Direction, Seen
from mtlsprobe.tls.observer import observe
from tests import pcapgen

CLIENT, SERVER = ("10.0.0.1", 40000), ("10.0.0.2", 443)


@pytest.fixture(scope="module")
def tls12():
    """A real TLS 1.2 ClientHello and server flight (certificate, ServerHelloDone)."""
    t = tlsgen.run(version="TLSv1.2", verify=ssl.CERT_NONE)
    return t.chunks[0].data, t.chunks[1].data


def server_data(t) -> bytes:
    return b"".join(c.data for c in t.chunks if c.direction is Direction.S2C)


def reset_mid_flight(hello: bytes, flight: bytes, *, late: float = 0.0) -> list[pcapgen.Seg]:
    """The client resets after the first server segment; the rest of the flight (already
    sent) arrives after the RST, ``late`` seconds later."""
    segs = pcapgen.conversation([("c", hello), ("s", flight)], client=CLIENT, server=SERVER,
                                segment_size=400, close=None, pure_acks=False)
    first = pcapgen.data_indexes(segs, 443)[0]
    client_seq = segs[pcapgen.data_indexes(segs, 40000)[0]].seq + len(hello)
    rst = pcapgen.Seg(*CLIENT, *SERVER, seq=client_seq, ack=0, flags=pcapgen.RST,
                      ts=segs[first].ts + 0.0001)
    rest = [dataclasses.replace(s, ts=s.ts + late) for s in segs[first + 1 :]]
    return [*segs[: first + 1], rst, *rest]


def test_server_segments_in_flight_after_a_client_reset_still_count(tls12, tmp_path):
    hello, flight = tls12
    [t] = CaptureReader(pcapgen.capture(reset_mid_flight(hello, flight), tmp_path / "r.pcap"))
    assert server_data(t) == flight and not t.gaps
    assert t.tcp is not None and t.tcp.rst_from == (Direction.C2S,)
    obs = observe(t)
    assert obs.server_chain_seen is Seen.YES and obs.cert_request.seen is Seen.NO


def test_segments_long_after_the_reset_are_strays(tls12, tmp_path):
    hello, flight = tls12
    segs = reset_mid_flight(hello, flight, late=RST_LINGER + 1)
    reader = CaptureReader(pcapgen.capture(segs, tmp_path / "r.pcap"))
    [t] = list(reader)
    assert len(server_data(t)) == 400
    assert reader.stats["after_close"] == len(segs) - segs.index(
        next(s for s in segs if s.flags & pcapgen.RST)) - 1


def test_a_new_connection_on_the_tuple_during_the_linger_is_its_own(tls12, tmp_path):
    hello, flight = tls12
    first = reset_mid_flight(hello, flight)
    again = pcapgen.conversation([("c", hello), ("s", flight)], client=CLIENT, server=SERVER,
                                 isn_client=77777, start=first[-1].ts + 0.01)
    transcripts = list(CaptureReader(pcapgen.capture(first + again, tmp_path / "r.pcap")))
    assert [server_data(t) for t in transcripts] == [flight, flight]


def synacks(hello: bytes, flight: bytes, *, acked: int) -> list[pcapgen.Seg]:
    """Three SYN-ACKs with ISNs 1000, 2000, 3000; the client acknowledges ``acked``."""
    segs = pcapgen.conversation([("c", hello), ("s", flight)], client=CLIENT, server=SERVER,
                                isn_server=acked, close="fin")
    syn, real_synack = segs[0], segs[1]
    others = [dataclasses.replace(real_synack, seq=isn) for isn in (1000, 2000, 3000)
              if isn != acked]
    return [syn, *others[:1], real_synack, *others[1:], *segs[2:]]


@pytest.mark.parametrize("acked", [1000, 2000, 3000])
def test_the_synack_the_client_acknowledges_frames_the_server_stream(tls12, tmp_path, acked):
    hello, flight = tls12
    [t] = CaptureReader(pcapgen.capture(synacks(hello, flight, acked=acked), tmp_path / "s.pcap"))
    assert server_data(t) == flight and not t.gaps
    assert observe(t).server_chain_seen is Seen.YES


@pytest.mark.parametrize("claimed_extra", [0, 6])
def test_pppoe_padding_is_not_payload(claimed_extra):
    seg = pcapgen.Seg(*SERVER, *CLIENT, seq=5, ack=7, flags=pcapgen.ACK)
    ip = bytearray(pcapgen.ip_tcp(seg))
    if claimed_extra:  # an IPv4 total length that counts the padding (checksum aside)
        struct.pack_into("!H", ip, 2, len(ip) + claimed_extra)
    pppoe = struct.pack("!BBHHH", 0x11, 0, 0x0F07, len(ip) + 2, 0x0021)
    frame = b"\x02" * 12 + b"\x88\x64" + pppoe + bytes(ip) + b"\x00" * 6
    got = decode(ETHERNET, frame)
    assert got is not None and got.payload == b"" and (got.seq, got.ack) == (5, 7)
