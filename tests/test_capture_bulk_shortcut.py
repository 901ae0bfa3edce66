"""The bulk shortcut of the streaming reader (capture.bulk.BulkFrames, Observer.skip).

Past a connection's handshake and the observer's post-handshake budget, application data
is only counted: its frames are matched by their raw address bytes and never decoded or
reassembled. The observations must be exactly those of the general path (the transcript
path, which reads every byte), whatever the capture does to the bulk: holes, reordering,
retransmissions. Real TLS bytes (tests/tlsgen.py) in real pcap files (tests/pcapgen.py).
"""

from __future__ import annotations

import ssl
from dataclasses import replace
from pathlib import Path

import pytest
import tlsgen
from hypothesis import given, settings
from hypothesis import strategies as st

from mtlsprobe.capture.bulk import BulkFrames
from mtlsprobe.capture.observations import ObservationReader
from mtlsprobe.capture.transcripts import CaptureReader
from mtlsprobe.model import Direction, Transcript
from mtlsprobe.run import expectations
from mtlsprobe.run.analyze import analyze
from mtlsprobe.tls.keylog import KeyLog
from mtlsprobe.tls.observer import observe
from tests import pcapgen

BULK = bytes(range(256)) * 1200  # 300 KB: about 19 records of 16 KiB, 210 segments


@pytest.fixture(scope="module", params=["TLSv1.2", "TLSv1.3"])
def session(request: pytest.FixtureRequest) -> Transcript:
    return tlsgen.run(version=request.param, verify=ssl.CERT_NONE, server_says=BULK)


_messages = pcapgen.messages_of  # the tests here and their importers use this name


def _read_both(path: Path, keylog: KeyLog | None = None) -> tuple[list, list, int]:
    """(streamed observations, transcript-path observations, frames taken by the shortcut)."""
    reader = ObservationReader(path, keylog=keylog)
    streamed = list(reader)
    general = [observe(t, keylog=keylog) for t in CaptureReader(path, max_bytes=None)]
    return streamed, general, reader.stats["bulk_frames"]


def _same(a: list, b: list) -> bool:
    """Equal, notes as sets (a gap's note is placed in time order when streaming)."""
    return [replace(o, notes=tuple(sorted(o.notes))) for o in a] == [
        replace(o, notes=tuple(sorted(o.notes))) for o in b
    ]


def _bulk_indexes(segs: list[pcapgen.Seg]) -> list[int]:
    """Indexes of the server's data segments in the last quarter of its transfer (past the
    observer's post-handshake budget)."""
    data = pcapgen.data_indexes(segs, 443)
    return data[3 * len(data) // 4 :]


def test_bulk_is_counted_not_reassembled_and_observed_the_same(session, tmp_path):
    segs = pcapgen.conversation(_messages(session))
    streamed, general, counted = _read_both(pcapgen.capture(segs, tmp_path / "b.pcap"))
    assert counted > 50  # most of the transfer took the shortcut
    assert _same(streamed, general)
    [obs] = streamed
    assert obs.outcome.value == "established" and not obs.gaps


def test_a_hole_in_the_bulk_is_still_a_gap(session, tmp_path):
    segs = pcapgen.conversation(_messages(session))
    segs = pcapgen.drop(segs, _bulk_indexes(segs)[3])
    streamed, general, counted = _read_both(pcapgen.capture(segs, tmp_path / "g.pcap"))
    assert counted > 10  # before the hole; after it segments wait out of order
    assert _same(streamed, general)
    [obs] = streamed
    assert [g.direction for g in obs.gaps] == [Direction.S2C]


def test_reordered_and_repeated_bulk_segments(session, tmp_path):
    segs = pcapgen.conversation(_messages(session))
    bulk = _bulk_indexes(segs)
    segs = pcapgen.duplicate(segs, bulk[5])
    head, tail = segs[: bulk[0]], pcapgen.reorder(segs[bulk[0] :], seed=7, window=5)
    streamed, general, _ = _read_both(pcapgen.capture(head + tail, tmp_path / "r.pcap"))
    assert _same(streamed, general)
    [obs] = streamed
    assert not obs.gaps and obs.tcp is not None and obs.tcp.retransmissions >= 1


def test_with_the_key_log(session, tmp_path):
    assert session.keylog is not None
    keylog = KeyLog.parse(session.keylog)
    segs = pcapgen.conversation(_messages(session))
    streamed, general, counted = _read_both(pcapgen.capture(segs, tmp_path / "k.pcap"), keylog)
    assert counted > 50
    assert _same(streamed, general)
    assert streamed[0].decrypted


def _v6(segs: list[pcapgen.Seg]) -> list[pcapgen.Seg]:
    addr = {"10.0.0.1": "fd00::1", "10.0.0.2": "fd00::2"}
    return [replace(s, src=addr[s.src], dst=addr[s.dst]) for s in segs]


@pytest.mark.parametrize("link", ["sll", "sll2", "raw4", "null", "loop", "vlan", "qinq",
                                  "ether6", "vlan6", "sll6", "null6", "raw6"])
def test_link_types(session, tmp_path, link):
    """Linux cooked (tcpdump -i any), raw IP, BSD null/loop, one or two VLAN tags, IPv4 or
    IPv6: the same observations, and the bulk taken by the shortcut."""
    segs = _lagging_acks(pcapgen.conversation(_messages(session)))
    if link.endswith("6"):
        segs, link = _v6(segs), link[:-1] if link != "raw6" else link
    path = pcapgen.capture(segs, tmp_path / f"{link}.pcap", link)
    streamed, general, counted = _read_both(path)
    assert counted > 100
    assert _same(streamed, general)


def test_ipv6_frames_of_another_connection_with_the_same_key_are_not_taken(session, tmp_path):
    """An IPv6 claim key holds the low half of the destination address and the ports; a
    connection that shares them under another prefix (here with the same sequence numbers
    too) is told apart by the full addresses, and its frames are not taken for the first's.
    (The two leases then take turns at the key: correct, not fast.)"""
    segs = _v6(_lagging_acks(pcapgen.conversation(_messages(session))))
    other = [replace(s, src=s.src.replace("fd00::", "fd01::"),
                     dst=s.dst.replace("fd00::", "fd01::"), ts=s.ts + 0.0005) for s in segs]
    mixed = sorted(segs + other, key=lambda s: s.ts)
    streamed, general, _ = _read_both(pcapgen.capture(mixed, tmp_path / "twin.pcap"))
    assert _same(streamed, general) and len(streamed) == 2
    assert streamed[0].tcp == streamed[1].tcp  # each read whole: the same TCP facts


@pytest.fixture(scope="module")
def tls13_bulk(tmp_path_factory: pytest.TempPathFactory) -> tuple[list, object]:
    """A TLS 1.3 session with bulk data, and its observation from an undamaged capture."""
    t = tlsgen.run(version="TLSv1.3", verify=ssl.CERT_NONE, server_says=BULK)
    messages = _messages(t)
    path = tmp_path_factory.mktemp("reference") / "x.pcap"
    [reference] = ObservationReader(pcapgen.capture(pcapgen.conversation(messages), path))
    return messages, reference


def _without_tcp_counts(obs):  # type: ignore[no-untyped-def]
    """Retransmission counts differ with the damage; nothing else may."""
    return replace(obs, tcp=replace(obs.tcp, retransmissions=0))


# segments of 600+ bytes: smaller ones make scapy, which builds the frames, the slow part
@given(size=st.integers(min_value=600, max_value=4000), seed=st.integers(0, 1000),
       window=st.integers(1, 8), repeat=st.integers(0, 10_000))
@settings(max_examples=12, deadline=None)
def test_property_any_segmentation_reordering_or_repeat_reads_the_same(
    tls13_bulk, tmp_path_factory, size, seed, window, repeat
):
    messages, reference = tls13_bulk
    segs = pcapgen.conversation(messages, segment_size=size)
    data = pcapgen.data_indexes(segs, 443) + pcapgen.data_indexes(segs, 40000)
    segs = pcapgen.duplicate(segs, data[repeat % len(data)])
    segs = segs[:3] + pcapgen.reorder(segs[3:], seed=seed, window=window)
    path = tmp_path_factory.mktemp("p") / "x.pcap"  # same name: same labels
    [obs] = ObservationReader(pcapgen.capture(segs, path))
    assert _without_tcp_counts(obs) == _without_tcp_counts(reference)


def _lagging_acks(segs: list[pcapgen.Seg], every: int = 3, lag: int = 2) -> list[pcapgen.Seg]:
    """Client ACKs inside the server's bulk, each acknowledging the data of ``lag`` segments
    ago (as a receiver does while more is in flight): not past what the capture saw."""
    out: list[pcapgen.Seg] = []
    sent: list[int] = []  # server sequence numbers just after each data segment
    for s in segs:
        out.append(s)
        if s.sport == 443 and s.payload:
            sent.append((s.seq + len(s.payload)) & pcapgen.MASK)
            if len(sent) % every == 0 and len(sent) > lag:
                out.append(replace(s, src=s.dst, sport=s.dport, dst=s.src, dport=s.sport,
                                   seq=s.ack, ack=sent[-1 - lag], flags=pcapgen.ACK,
                                   payload=b"", ttl=64))
    return pcapgen.retime(out, segs[0].ts)


def test_acks_behind_the_data_are_taken_too(session, tmp_path):
    plain = pcapgen.conversation(_messages(session))
    segs = _lagging_acks(plain)
    streamed, general, counted = _read_both(pcapgen.capture(segs, tmp_path / "a.pcap"))
    assert _same(streamed, general)
    *_, without = _read_both(pcapgen.capture(plain, tmp_path / "p.pcap"))
    acks = len(segs) - len(plain)
    assert counted - without > acks // 3  # those past the handshake budget: about half


def test_an_ack_past_the_bytes_seen_takes_the_general_path(session, tmp_path):
    """The capture missed the last data segment: the client's final ACK passes what was
    seen, so it is not counted but read, and the hole becomes a gap at once."""
    segs = _lagging_acks(pcapgen.conversation(_messages(session)))
    *_, full = _read_both(pcapgen.capture(segs, tmp_path / "f.pcap"))
    last = _bulk_indexes(segs)[-1]
    streamed, general, counted = _read_both(pcapgen.capture(pcapgen.drop(segs, last),
                                                            tmp_path / "d.pcap"))
    assert _same(streamed, general)
    assert full - counted == 2  # the segment missing, and its ACK read the general way
    assert [g.direction for g in streamed[0].gaps] == [Direction.S2C]


def test_after_a_hole_acks_past_it_make_the_gap_and_the_shortcut_resumes(session, tmp_path):
    """Segments after a hole wait out of order; while they do, the client's ACKs are read
    the general way, so the first one past the hole makes it a gap and the bulk after it
    is counted again (from the next record boundary the observer confirms)."""
    segs = _lagging_acks(pcapgen.conversation(_messages(session)))
    *_, full = _read_both(pcapgen.capture(segs, tmp_path / "f.pcap"))
    holed = pcapgen.drop(segs, _bulk_indexes(segs)[3])
    streamed, general, counted = _read_both(pcapgen.capture(holed, tmp_path / "h.pcap"))
    assert _same(streamed, general)
    assert full - counted < 30  # measured 22; 51 when ACKs past the hole are counted


def test_a_new_ttl_in_the_bulk_is_recorded(session, tmp_path):
    """A segment with another TTL (an injected one, a route change) leaves the shortcut,
    so the direction's TTLs list it as the general path does."""
    segs = pcapgen.conversation(_messages(session))
    late = _bulk_indexes(segs)
    segs = [replace(s, ttl=41) if i in late[len(late) // 2 :] else s for i, s in enumerate(segs)]
    streamed, general, counted = _read_both(pcapgen.capture(segs, tmp_path / "t.pcap"))
    assert counted > 50 and _same(streamed, general)
    assert streamed[0].tcp is not None and 41 in streamed[0].tcp.server_ttls


def _records(data: bytes) -> list[bytes]:
    out, at = [], 0
    while at < len(data):
        end = at + 5 + int.from_bytes(data[at + 3 : at + 5], "big")
        out.append(data[at:end])
        at = end
    return out


def test_bulk_both_ways(session, tmp_path):
    """Both sides send bulk data, record by record in turn: both directions are leased at
    once, each acknowledging the other. (The client's records are copies of the server's:
    opaque application data all the same.)"""
    *head, (who, bulk) = _messages(session)
    assert who == "s"
    turns = [(w, r) for r in _records(bulk) for w in ("s", "c")]
    segs = pcapgen.conversation([*head, *turns], pure_acks=False)
    streamed, general, counted = _read_both(pcapgen.capture(segs, tmp_path / "both.pcap"))
    client_data = len(pcapgen.data_indexes(segs, 40000))
    assert counted > client_data // 2 + 50
    assert _same(streamed, general)


def test_pcapng_frames_are_claimed_unless_commented(session, tmp_path):
    """Enhanced Packet Blocks take the shortcut like pcap records, options (epb_flags, as
    some capture tools write on every packet) or not; a block with a comment (it may name
    the probe's attempt) always takes the general path."""
    segs = pcapgen.conversation(_messages(session))
    packets = [(0, ts, f) for ts, f in pcapgen.frames(segs)]
    flags = {i: [(2, (1 + i % 2).to_bytes(4, "little"))] for i in range(len(packets))}
    path = pcapgen.write_pcapng(tmp_path / "f.pcapng", [(1, 6)], packets, epb_options=flags)
    streamed, general, counted = _read_both(path)
    assert counted > 50 and _same(streamed, general)
    noted = {i: [(1, b"a note")] for i in range(len(packets))}
    path = pcapgen.write_pcapng(tmp_path / "c.pcapng", [(1, 6)], packets, epb_options=noted)
    streamed, general, counted = _read_both(path)
    assert counted == 0 and _same(streamed, general)


def test_frames_cut_by_the_snap_length_leave_the_shortcut(session, tmp_path):
    segs = pcapgen.conversation(_messages(session))
    cut = set(_bulk_indexes(segs)[-5:])
    frames = [(ts, f[:200] if i in cut else f) for i, (ts, f) in enumerate(pcapgen.frames(segs))]
    path = pcapgen.write_pcap(tmp_path / "s.pcap", frames, pcapgen.LINKTYPES["ether"])
    streamed, general, counted = _read_both(path)
    assert counted > 50 and _same(streamed, general)


def test_progress_is_reported_while_bulk_frames_are_taken(tmp_path):
    """Frames taken in the read buffer are never yielded, so the file layer reports the
    progress of a capture that is nearly all bulk."""
    t = tlsgen.run(version="TLSv1.3", verify=ssl.CERT_NONE, server_says=BULK * 22)
    segs = pcapgen.conversation(_messages(t))  # 4,600 frames: one progress step is 4,096
    path = pcapgen.capture(segs, tmp_path / "big.pcap")
    calls: list[int] = []
    reader = ObservationReader(path, progress=lambda done, total: calls.append(done))
    list(reader)
    assert reader.stats["bulk_frames"] > 0.9 * len(segs)
    assert any(0 < done < path.stat().st_size for done in calls)
    assert calls == sorted(calls)


# (link, IPv6?) -> offsets of the TTL (hop limit) and the ACK number in a frame
_DAMAGE_AT = {("ether", False): (14 + 8, 14 + 20 + 8), ("vlan", True): (18 + 7, 18 + 40 + 8)}


@pytest.fixture(scope="module", params=list(_DAMAGE_AT), ids=["ether-ipv4", "vlan-ipv6"])
def lagging_frames(session, request) -> tuple[list[tuple[float, bytes]], tuple[int, int]]:
    """Frames of the session with ACKs inside the bulk (built once: scapy is slow), and
    where their TTL and ACK number are."""
    link, v6 = request.param
    segs = _lagging_acks(pcapgen.conversation(_messages(session)))
    return pcapgen.frames(_v6(segs) if v6 else segs, link), _DAMAGE_AT[link, v6]


def _damage(frames: list[tuple[float, bytes]], ops: list[tuple[str, int, int]],
            ttl_at: int, ack_at: int) -> list:
    out = list(frames)
    for op, where, value in ops:
        i = 3 + where % (len(out) - 3)  # the TCP handshake stays whole
        ts, f = out[i]
        if op == "drop":
            del out[i]
        elif op == "repeat":
            out.insert(i, out[i])
        elif op == "swap" and i + 1 < len(out):
            out[i], out[i + 1] = (ts, out[i + 1][1]), (out[i + 1][0], f)
        elif op == "ttl":
            out[i] = (ts, f[:ttl_at] + bytes([value % 256]) + f[ttl_at + 1 :])
        elif op == "ack":  # another acknowledgement number: behind, ahead or anywhere
            ack = (int.from_bytes(f[ack_at : ack_at + 4], "big") + value) & 0xFFFFFFFF
            out[i] = (ts, f[:ack_at] + ack.to_bytes(4, "big") + f[ack_at + 4 :])
        elif op == "cut":
            out[i] = (ts, f[: 40 + value % max(1, len(f) - 40)])
    return out


@given(ops=st.lists(st.tuples(
    st.sampled_from(["drop", "repeat", "swap", "ttl", "ack", "cut"]),
    st.integers(0, 10_000), st.integers(-70_000, 70_000)), min_size=1, max_size=6))
@settings(max_examples=20, deadline=None)
def test_property_damage_never_makes_the_shortcut_differ(lagging_frames, tmp_path_factory, ops):
    """Whatever a capture does to the frames (lost, repeated, swapped, another TTL, odd
    ACKs, cut by the snap length), the shortcut changes nothing at all in what the
    streaming reader observes, untagged IPv4 and VLAN-tagged IPv6 alike."""
    frames, (ttl_at, ack_at) = lagging_frames
    path = pcapgen.write_pcap(tmp_path_factory.mktemp("d") / "x.pcap",
                              _damage(frames, ops, ttl_at, ack_at), pcapgen.LINKTYPES["ether"])
    assert list(ObservationReader(path)) == list(_without_leases(path))


class _NoLeases(BulkFrames):
    def resume(self, *args: object) -> None:
        """Never lease: every frame takes the general path."""


def _without_leases(path: Path) -> ObservationReader:
    """The streaming reader with the shortcut switched off: the same reader in every other
    way (a gap's note and history letter land where streaming puts them, which may differ
    from the transcript path's stream order under damage)."""
    reader = ObservationReader(path)
    reader.flows._late = _NoLeases(reader.capture)
    return reader


def test_vlan_and_ipv6_bulk_read_in_shares_gives_the_same_report(session, tmp_path):
    """``--jobs`` workers claim other shares' VLAN-tagged and IPv6 frames as they do
    untagged IPv4 ones: the report is the single reader's."""
    segs: list[pcapgen.Seg] = []
    for i in range(6):
        one = _lagging_acks(pcapgen.conversation(
            _messages(session), client=("10.0.0.1", 40000 + i), start=1_700_000_000 + i / 7))
        segs += _v6(one) if i % 2 else one
    path = pcapgen.capture(sorted(segs, key=lambda s: s.ts), tmp_path / "mixed.pcap", "vlan")
    expect = expectations.build(ca=(), pins=(), baseline=None)
    one_reader = analyze([path], expect, jobs=1)
    shared = analyze([path], expect, jobs=3)
    assert shared.results == one_reader.results and shared.notes == one_reader.notes
    assert sum(len(r.observations) for r in one_reader.results) >= 2


def test_an_ipv6_frame_cut_inside_its_tcp_header_at_the_end_of_the_file(session, tmp_path):
    """The last frame of the file holds 50 bytes of an IPv6 bulk segment (the TCP header is
    cut): declined, noted as cut by the snap length, never read past the file's end."""
    segs = _v6(_lagging_acks(pcapgen.conversation(_messages(session), close=None)))
    frames = pcapgen.frames(segs)
    last = max(i for i, s in enumerate(segs) if s.payload and s.sport == 443)
    ts, frame = frames[last]
    frames = [*frames[:last], *frames[last + 1 :], (ts + 1, frame[: 14 + 50])]
    path = pcapgen.write_pcap(tmp_path / "cut6.pcap", frames, pcapgen.LINKTYPES["ether"])
    streamed, general, counted = _read_both(path)
    assert counted > 100 and _same(streamed, general)
