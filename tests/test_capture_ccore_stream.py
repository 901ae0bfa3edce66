"""The C reassembler (``_ccore.StreamCore``) against ``tcp.TcpReassembler``: the same runs,
gaps and counters after every call, for hypothesis-made call sequences (in-order, out of
order, overlapping and conflicting copies, wrapping sequence numbers, FINs, acknowledgements
past holes, caps, bytes only counted). Skipped, with the reason, without the C core.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtlsprobe.capture.tcp import TcpReassembler
from tests.coretwins import CCORE, needs_ccore

pytestmark = needs_ccore

FUZZ = settings(max_examples=600, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])
STATE = ("started", "truncated_at_start", "next_offset", "fin_offset", "gaps",
         "retransmissions", "conflicting_bytes", "stored", "beyond_cap", "complete", "_high",
         "_pending", "max_bytes")


def _state(stream: object, probe: int) -> dict[str, object]:
    out = {name: getattr(stream, name) for name in STATE}
    out["gaps"] = list(out["gaps"])  # type: ignore[call-overload]  # copies: Python's
    out["_pending"] = list(out["_pending"])  # type: ignore[call-overload]  # lists live on
    out["end_seq"] = stream.end_seq()  # type: ignore[attr-defined]
    out["expects"] = stream.expects(probe)  # type: ignore[attr-defined]
    out["distance"] = stream.distance(probe)  # type: ignore[attr-defined]
    out["offset"] = stream.offset(probe)  # type: ignore[attr-defined]
    return out


def _calls(isn: int) -> st.SearchStrategy[list[tuple]]:
    """Calls near ``isn``: segments (payload a slice of one pattern, or other bytes),
    acks, advances, a SYN, a flush, a release."""
    near = st.integers(-300, 3000).map(lambda d: (isn + d) & 0xFFFFFFFF)
    payload = st.one_of(
        st.tuples(st.integers(0, 2000), st.integers(0, 700)).map(
            lambda p: bytes((i * 7) & 0xFF for i in range(p[0], p[0] + p[1]))),
        st.binary(max_size=300))
    call = st.one_of(
        st.tuples(st.just("segment"), near, payload, st.booleans()),
        st.tuples(st.just("acked"), near),
        st.tuples(st.just("advance"), st.integers(0, 500)),
        st.tuples(st.just("syn"), near),
        st.tuples(st.just("flush")),
        st.tuples(st.just("release")),
        st.tuples(st.just("retransmissions"), st.integers(0, 3)),
    )
    return st.lists(call, max_size=40)


def _run(stream: object, calls: list[tuple], isn: int) -> list[object]:
    seen: list[object] = []
    for call in calls:
        name, *args = call
        if name == "retransmissions":  # flowtable carries the count over (_rebase)
            stream.retransmissions += args[0]  # type: ignore[attr-defined]
            result: object = None
        else:
            result = getattr(stream, name)(*args)
        seen.append((name, list(result) if isinstance(result, (list, tuple)) else result))
        seen.append(_state(stream, isn))
    return seen


@FUZZ
@given(st.integers(0, 0xFFFFFFFF), st.sampled_from([256 * 1024, 1500, 0, None]), st.data())
def test_the_c_reassembler_gives_the_same_runs_and_state(isn, cap, data):
    calls = data.draw(_calls(isn))
    python = _run(TcpReassembler(cap), calls, isn)
    c = _run(CCORE.StreamCore(cap), calls, isn)
    assert c == python


def test_retained_bytes_are_bounded_and_still_compared():
    """Megabytes in order keep at most 2 * RETAIN bytes; a late copy is still compared."""
    block = bytes(range(256)) * 64
    streams = [TcpReassembler(None), CCORE.StreamCore(None)]
    for s in streams:
        s.syn(99)
        for i in range(200):
            s.segment(100 + i * len(block), block)
        s.segment(100 + 199 * len(block), b"X" + block[1:])  # the last block, one byte off
    assert [s.conflicting_bytes for s in streams] == [1, 1]
    assert [s.stored for s in streams] == [200 * len(block)] * 2
