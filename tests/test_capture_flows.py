"""Capture -> Transcripts: reassembled bytes and gaps exactly, roles, TCP facts, flow lifecycle."""

from __future__ import annotations

import gzip
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtlsprobe.capture import pcapfile
from mtlsprobe.capture.connection import tls_record_start
from mtlsprobe.capture.observations import iter_observations
from mtlsprobe.capture.transcripts import CaptureReader, iter_transcripts
from mtlsprobe.model import Direction, Stage, StreamEnd
from mtlsprobe.model.errors import InputError
from tests import pcapgen

CLIENT_HELLO = b"\x16\x03\x01\x01\x00\x01\x00\x00\xfc\x03\x03" + bytes(range(256))[:245]
SERVER_FLIGHT = b"\x16\x03\x03\x0f\xa0\x02" + bytes((i * 7) % 251 for i in range(4000))
CLIENT_FIN = b"\x14\x03\x03\x00\x01\x01\x17\x03\x03\x00\x20" + b"F" * 32
SERVER_APP = b"\x17\x03\x03\x00\x40" + b"A" * 64
MESSAGES = [("c", CLIENT_HELLO), ("s", SERVER_FLIGHT), ("c", CLIENT_FIN), ("s", SERVER_APP)]
STREAMS = pcapgen.streams(MESSAGES)


def read(path, **kw):
    reader = CaptureReader(path, **kw)
    return list(reader), reader


def stream(t, direction: Direction) -> bytes:
    return b"".join(c.data for c in t.chunks if c.direction is direction)


def check_streams(t, client=STREAMS["c"], server=STREAMS["s"]):
    assert stream(t, Direction.C2S) == client
    assert stream(t, Direction.S2C) == server


@pytest.mark.parametrize("link", sorted(pcapgen.LINKTYPES))
def test_each_link_type_gives_the_streams(tmp_path, link):
    v6 = link == "raw6"
    ends = ({"client": ("2001:db8::1", 40000), "server": ("2001:db8::2", 443)} if v6 else {})
    segs = pcapgen.conversation(MESSAGES, segment_size=500, **ends)
    (t,), reader = read(pcapgen.capture(segs, tmp_path / f"{link}.pcap", link))
    check_streams(t)
    assert t.gaps == () and t.end is StreamEnd.FIN and not t.truncated_at_start
    assert (t.client.port, t.server.port) == (40000, 443)
    assert t.client.host == t.client.ip == segs[0].src
    assert t.label == f"{link}.pcap flow 0"
    assert t.route.kind == "capture" and t.route.source == "capture"
    assert t.started_at.timestamp() == pytest.approx(segs[0].ts)
    assert reader.stats["tls_connections"] == 1


@pytest.mark.parametrize("size", [1, 7, 1448])
def test_chunks_interleave_in_arrival_order(tmp_path, size):
    segs = pcapgen.conversation(MESSAGES, segment_size=size)
    (t,), _ = read(pcapgen.capture(segs, tmp_path / "x.pcap"))
    check_streams(t)
    directions = [c.direction for c in t.chunks]
    first_s2c = directions.index(Direction.S2C)
    assert b"".join(c.data for c in t.chunks[:first_s2c]) == CLIENT_HELLO
    assert all(t.chunks[i].at <= t.chunks[i + 1].at for i in range(len(t.chunks) - 1))


def test_reordered_and_duplicated_segments(tmp_path):
    segs = pcapgen.conversation(MESSAGES, segment_size=300)
    segs = pcapgen.duplicate(pcapgen.reorder(segs, seed=3), 9)
    (t,), _ = read(pcapgen.capture(segs, tmp_path / "x.pcap"))
    check_streams(t)
    assert t.tcp.retransmissions >= 1 and t.gaps == ()


def test_dropped_segment_is_a_gap_not_zeros(tmp_path):
    segs = pcapgen.conversation(MESSAGES, segment_size=1000)
    index = pcapgen.data_indexes(segs, 443)[1]  # second server segment: bytes 1000..2000
    (t,), _ = read(pcapgen.capture(pcapgen.drop(segs, index), tmp_path / "x.pcap"))
    gap = (Direction.S2C, 1000, 1000)
    assert [(g.direction, g.offset, g.length) for g in t.gaps] == [gap]
    check_streams(t, server=STREAMS["s"][:1000] + STREAMS["s"][2000:])
    server_chunks = [c.data for c in t.chunks if c.direction is Direction.S2C]
    assert server_chunks[0] == STREAMS["s"][:1000]  # the run before the gap ends at the gap
    assert any("gap" in n for n in t.notes)


def test_sequence_numbers_wrapping_past_2_32(tmp_path):
    segs = pcapgen.conversation(MESSAGES, segment_size=100, isn_client=2**32 - 50,
                                isn_server=2**32 - 2000)
    (t,), _ = read(pcapgen.capture(pcapgen.reorder(segs, seed=5), tmp_path / "x.pcap"))
    check_streams(t)


def test_reset_from_the_server(tmp_path):
    segs = pcapgen.conversation(MESSAGES[:2], close="rst", closer="s", ttl_server=57)
    segs[-1] = pcapgen.replace(segs[-1], ttl=250)  # injected by a middlebox, say
    (t,), _ = read(pcapgen.capture(segs, tmp_path / "x.pcap"))
    assert t.end is StreamEnd.RST
    assert t.tcp.rst_from == (Direction.S2C,) and t.tcp.rst_ttls == (250,)
    check_streams(t, client=CLIENT_HELLO, server=SERVER_FLIGHT)


def test_tcp_facts(tmp_path):
    segs = pcapgen.conversation(MESSAGES, ttl_client=128, ttl_server=57)
    (t,), _ = read(pcapgen.capture(segs, tmp_path / "x.pcap"))
    assert (t.tcp.syn_ttl, t.tcp.synack_ttl) == (128, 57)
    assert (t.tcp.client_ttls, t.tcp.server_ttls) == ((128,), (57,))
    assert t.tcp.synack_options == ("mss=1400", "wscale=8", "sack_perm")
    assert t.tcp.rst_from == () and t.tcp.retransmissions == 0


def test_same_four_tuple_reused_gives_two_connections(tmp_path):
    first = pcapgen.conversation(MESSAGES, isn_client=10, isn_server=20)
    second_messages = [("c", CLIENT_HELLO[:100]), ("s", SERVER_APP)]
    second = pcapgen.conversation(second_messages, isn_client=99999, isn_server=7,
                                  start=first[-1].ts + 1)
    (a, b), reader = read(pcapgen.capture(first + second, tmp_path / "x.pcap"))
    check_streams(a)
    check_streams(b, client=CLIENT_HELLO[:100], server=SERVER_APP)
    assert (a.label[-6:], b.label[-6:]) == ("flow 0", "flow 1")
    assert reader.stats["connections"] == 2


def test_mid_stream_capture_picks_the_client_by_its_client_hello(tmp_path):
    # the client uses a lower port than the server: the port rule alone would get it wrong
    segs = pcapgen.conversation(MESSAGES, handshake=False, client=("10.1.1.1", 100),
                                server=("10.2.2.2", 50000))
    (t,), _ = read(pcapgen.capture(segs, tmp_path / "x.pcap"))
    assert (t.client.port, t.server.port) == (100, 50000)
    assert t.truncated_at_start
    assert t.tcp.syn_ttl is None
    assert any("ClientHello" in n for n in t.notes)
    check_streams(t)


def test_non_tls_connections_are_counted_unless_their_port_is_asked_for(tmp_path):
    http = [("c", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), ("s", b"HTTP/1.1 200 OK\r\n\r\n")]
    segs = pcapgen.conversation(http, server=("10.0.0.2", 80))
    path = pcapgen.capture(segs, tmp_path / "x.pcap")
    got, reader = read(path)
    assert got == [] and reader.stats["non_tls_connections"] == 1
    (t,), _ = read(path, ports={80})
    check_streams(t, *pcapgen.streams(http).values())


def test_connections_are_emitted_when_they_close_not_at_the_end(tmp_path, monkeypatch):
    monkeypatch.setattr(pcapfile, "CHUNK", 256)
    one = pcapgen.conversation(MESSAGES, client=("10.0.0.1", 1111))
    two = pcapgen.conversation(MESSAGES, client=("10.0.0.1", 2222), start=one[-1].ts + 1)
    data = pcapgen.pcap_bytes(pcapgen.frames(one + two), 1)
    source = io.BytesIO(data)
    transcripts = iter_transcripts(source)
    first = next(transcripts)
    assert first.client.port == 1111 and source.tell() < len(data) / 2 + 2048
    assert [t.client.port for t in transcripts] == [2222]


def test_truncated_capture_keeps_the_connections_before_the_cut(tmp_path):
    one = pcapgen.conversation(MESSAGES, client=("10.0.0.1", 1111))
    two = pcapgen.conversation(MESSAGES, client=("10.0.0.1", 2222), start=one[-1].ts + 1)
    data = pcapgen.pcap_bytes(pcapgen.frames(one + two[:5]), 1)
    path = tmp_path / "cut.pcap"
    path.write_bytes(data[:-30])
    (a, b), reader = read(path)
    check_streams(a)
    assert a.end is StreamEnd.FIN and b.end is StreamEnd.CAPTURE_ENDED
    assert stream(b, Direction.C2S) == CLIENT_HELLO
    assert any("truncated" in n for n in reader.notes)


def test_gzip_pcapng_with_embedded_key_log(tmp_path):
    keylog = "CLIENT_RANDOM " + "ab" * 32 + " " + "cd" * 48
    segs = pcapgen.conversation(MESSAGES)
    packets = [(0, ts, f) for ts, f in pcapgen.frames(segs)]
    path = tmp_path / "x.pcapng.gz"
    path.write_bytes(gzip.compress(pcapgen.pcapng_bytes([(1, 9)], packets, keylog=keylog)))
    (t,), reader = read(path)
    check_streams(t)
    assert reader.keylog_text.strip() == keylog and t.keylog.strip() == keylog


def test_byte_cap_keeps_the_head_and_notes_the_rest(tmp_path):
    segs = pcapgen.conversation(MESSAGES, segment_size=512)
    (t,), _ = read(pcapgen.capture(segs, tmp_path / "x.pcap"), max_bytes=1024)
    check_streams(t, client=STREAMS["c"][:1024], server=STREAMS["s"][:1024])
    assert any("more byte(s) counted" in n for n in t.notes)


def test_not_a_capture(tmp_path):
    path = tmp_path / "x.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n")
    with pytest.raises(InputError):
        CaptureReader(path)


def test_tls_record_start():
    assert tls_record_start(CLIENT_HELLO) and tls_record_start(SERVER_APP)
    assert tls_record_start(b"\x80\x2e\x01\x03\x01") is True  # SSLv2-compatible ClientHello
    assert tls_record_start(b"GET / HTTP/1.1") is False
    assert tls_record_start(b"\x16\x03") is None


@settings(max_examples=15, deadline=None)
@given(size=st.integers(min_value=50, max_value=2000), seed=st.integers(0, 1000),
       window=st.integers(1, 6), dup=st.integers(0, 40))
def test_property_any_capture_damage_without_loss_yields_the_same_bytes(tmp_path_factory, size,
                                                                       seed, window, dup):
    segs = pcapgen.conversation(MESSAGES, segment_size=size)
    segs = pcapgen.reorder(pcapgen.duplicate(segs, dup % len(segs)), seed=seed, window=window)
    path = pcapgen.capture(segs, tmp_path_factory.mktemp("p") / "x.pcap")
    (t,), _ = read(path)
    check_streams(t)
    assert t.gaps == ()


CONNECT = b"CONNECT server.example:8443 HTTP/1.1\r\nHost: server.example:8443\r\n\r\n"


def test_http_connect_prelude_becomes_the_route_and_is_stripped(tmp_path):
    ok = b"HTTP/1.1 200 Connection established\r\nVia: 1.1 squid\r\n\r\n"
    messages = [("c", CONNECT), ("s", ok), *MESSAGES]
    segs = pcapgen.conversation(messages, server=("10.9.9.9", 3128), segment_size=40)
    # server segments: the reply in 40 + 15 bytes, then the TLS flight: drop its bytes 120..160
    segs = pcapgen.drop(segs, pcapgen.data_indexes(segs, 3128)[5])
    (t,), _ = read(pcapgen.capture(segs, tmp_path / "x.pcap"))
    assert (t.server.host, t.server.port) == ("server.example", 8443)
    assert t.route.kind == "http_proxy" and t.route.proxy == "http://10.9.9.9:3128"
    assert (t.route.connect_status, t.route.connect_reason) == (200, "Connection established")
    assert ("Via", "1.1 squid") in t.route.connect_headers and t.failed_stage is None
    assert stream(t, Direction.C2S) == STREAMS["c"]
    # gap offsets count from the first byte after the CONNECT reply
    assert [(g.direction, g.offset, g.length) for g in t.gaps] == [(Direction.S2C, 120, 40)]
    assert stream(t, Direction.S2C) == STREAMS["s"][:120] + STREAMS["s"][160:]


def test_http_connect_refused_by_the_proxy(tmp_path):
    auth = (b"HTTP/1.1 407 Proxy Authentication Required\r\n"
            b"Proxy-Authenticate: Negotiate\r\nProxy-Authenticate: Basic realm=x\r\n\r\n")
    segs = pcapgen.conversation([("c", CONNECT), ("s", auth)], server=("10.9.9.9", 3128))
    (t,), _ = read(pcapgen.capture(segs, tmp_path / "x.pcap"))
    assert t.route.connect_status == 407 and t.route.proxy_auth_schemes == ("Negotiate", "Basic")
    assert t.failed_stage is Stage.PROXY and t.chunks == ()


def test_a_timestamp_that_is_no_date_is_a_note_not_a_crash(tmp_path):
    # if_tsresol 10^0: one tick per second, and ticks around 2**50 s: far past year 9999
    segs = pcapgen.conversation(MESSAGES)
    packets = [(0, 2**50 + i, frame) for i, (_t, frame) in enumerate(pcapgen.frames(segs))]
    path = pcapgen.write_pcapng(tmp_path / "t.pcapng", [(1, 0)], packets)
    [t] = CaptureReader(path)
    assert t.started_at.year == 1970
    assert any("is not a date" in n for n in t.notes)
    [obs] = iter_observations(path)
    assert obs.observed_at.year == 1970 and any("is not a date" in n for n in obs.notes)


@pytest.mark.parametrize("request_head, reply", [
    (b"CONNECT server.example:8\xb343 HTTP/1.1\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\n"),
    (CONNECT, b"HTTP/1.1 2\xb30 OK\r\n\r\n"),
])
def test_connect_with_non_ascii_digits_is_not_a_connect_and_no_crash(tmp_path, request_head,
                                                                     reply):
    # found by fuzzing: "³" passes str.isdigit() and int() refuses it
    segs = pcapgen.conversation([("c", request_head), ("s", reply), *MESSAGES],
                                server=("10.9.9.9", 3128))
    path = pcapgen.capture(segs, tmp_path / "x.pcap")
    _, reader = read(path)
    assert reader.stats["connections"] == 1
    assert all(o.route.kind != "http_proxy" for o in iter_observations(path))
