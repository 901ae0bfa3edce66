"""TcpReassembler: ordering, duplicates, overlaps, wrap-around, gaps, cap, mid-stream start."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from mtlsprobe.capture.tcp import MASK, RETAIN, TcpReassembler

DATA = bytes(range(256)) * 4


def feed(r: TcpReassembler, isn: int, pieces: list[tuple[int, bytes]]) -> bytes:
    out = b""
    for off, data in pieces:
        out += b"".join(r.segment((isn + 1 + off) & 0xFFFFFFFF, data))
    return out


def test_in_order_and_out_of_order_give_the_stream():
    r = TcpReassembler()
    r.syn(100)
    assert feed(r, 100, [(0, DATA[:10]), (20, DATA[20:30]), (10, DATA[10:20])]) == DATA[:30]
    assert not r.gaps and r.retransmissions == 0


def test_sequence_numbers_wrap_around_2_32():
    isn = 0xFFFFFFFF - 5
    r = TcpReassembler()
    r.syn(isn)
    pieces = [(i, DATA[i : i + 4]) for i in range(0, 40, 4)]
    assert feed(r, isn, pieces[::-1]) == DATA[:40]


def test_retransmission_first_copy_wins_and_conflicts_are_counted():
    r = TcpReassembler()
    r.syn(0)
    assert feed(r, 0, [(0, b"hello world")]) == b"hello world"
    assert feed(r, 0, [(6, b"WORLD")]) == b""
    assert r.retransmissions == 1 and r.conflicting_bytes == 5
    # overlap with buffered (not yet delivered) data: the buffered copy wins too
    assert feed(r, 0, [(20, b"abcdef"), (18, b"XXYYYY")]) == b""
    assert r.conflicting_bytes == 5 + 4
    assert feed(r, 0, [(11, b"1234567")]) == b"1234567XXabcdef"


def test_partial_overlap_delivers_only_the_new_part():
    r = TcpReassembler()
    r.syn(0)
    assert feed(r, 0, [(0, b"abcd"), (2, b"cdef")]) == b"abcdef"
    assert r.retransmissions == 1 and r.conflicting_bytes == 0


def test_peer_ack_past_a_hole_records_a_gap_and_delivers_the_rest_as_a_new_run():
    r = TcpReassembler()
    r.syn(0)
    feed(r, 0, [(0, b"aaaa"), (8, b"cccc")])
    runs = r.acked(1 + 12)
    assert list(runs) == [b"cccc"]
    assert r.gaps == [(4, 4)]
    assert r.next_offset == 12


def test_flush_turns_holes_before_fin_into_gaps():
    r = TcpReassembler()
    r.syn(0)
    feed(r, 0, [(0, b"aa"), (4, b"cc")])
    r.segment(1 + 8, b"", fin=True)
    assert list(r.flush()) == [b"cc"]
    assert r.gaps == [(2, 2), (6, 2)]
    assert r.complete


def test_cap_keeps_the_head_and_counts_the_rest():
    r = TcpReassembler(max_bytes=10)
    r.syn(0)
    assert feed(r, 0, [(0, DATA[:8]), (8, DATA[8:16]), (16, DATA[16:30])]) == DATA[:10]
    assert r.stored == 10 and r.beyond_cap == 20


def test_mid_stream_start_begins_at_the_first_seen_sequence_number():
    r = TcpReassembler()
    assert b"".join(r.segment(7777, b"xyz")) == b"xyz"
    assert r.truncated_at_start
    assert b"".join(r.segment(7777 - 3, b"abc")) == b""  # before our start: cannot place it


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(min_size=1, max_size=300),
    cuts=st.lists(st.integers(min_value=1, max_value=299), max_size=20),
    isn=st.integers(min_value=0, max_value=0xFFFFFFFF),
    order=st.randoms(use_true_random=False),
    dups=st.lists(st.integers(min_value=0, max_value=30), max_size=5),
)
def test_any_segmentation_order_and_duplication_yields_the_same_bytes(data, cuts, isn, order, dups):
    bounds = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    pieces = [(a, data[a:b]) for a, b in pairwise(bounds)]
    pieces += [pieces[d % len(pieces)] for d in dups]
    order.shuffle(pieces)
    r = TcpReassembler()
    r.syn(isn)
    assert feed(r, isn, pieces) == data
    assert not r.gaps and r.conflicting_bytes == 0 and not r.flush()


def test_advance_counts_in_order_bytes_without_keeping_them():
    r = TcpReassembler(max_bytes=None)
    r.syn(0xFFFFFFF0)  # wraps while advancing
    assert r.segment(0xFFFFFFF1, b"hello") == [b"hello"]
    assert not r.expects(0xFFFFFFF0) and r.expects(0xFFFFFFF6)
    r.advance(1000)  # bytes 5..1004, never delivered
    assert r.next_offset == 1005 and r.stored == 5 and r.end_seq() == (0xFFFFFFF6 + 1000) & MASK
    assert r.segment((0xFFFFFFF6 + 1000) & MASK, b"tail") == [b"tail"]
    assert r.segment((0xFFFFFFF6 + 500) & MASK, b"x" * 10) == ()  # a repeat of counted bytes
    assert r.retransmissions == 1 and r.conflicting_bytes == 0  # counted, not compared


def test_expects_is_false_while_segments_wait_out_of_order():
    r = TcpReassembler(max_bytes=None)
    r.syn(100)
    r.segment(111, b"later")  # a hole at 101..110
    assert not r.expects(101) and r.end_seq() is None  # not while a segment waits
    assert r.acked(116) == [b"later"] and r.gaps == [(0, 10)]
    assert r.expects(116)


def test_retained_bytes_stay_bounded_on_a_long_stream():
    r = TcpReassembler(max_bytes=None)
    r.syn(0)
    block = bytes(range(256)) * 64  # 16 KiB
    for i in range(200):  # 3.2 MB
        r.segment(1 + i * len(block), block)
    assert r.next_offset == 200 * len(block) and not r.beyond_cap
    assert sum(len(run) for _, run in r._runs) <= 2 * RETAIN
    last = 1 + 199 * len(block)
    r.segment(last, b"\xff" + block[1:])  # a late copy of recent bytes that differs
    assert r.conflicting_bytes == 1
