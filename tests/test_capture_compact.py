"""The flow table's compact entries (capture.compact) change memory, never results.

A bare SYN is held as an ``Opening`` and a connection found not TLS as a ``NotTls``; read
with and without them (the general ``Connection`` for every flow), every capture gives the
same connections, bytes, roles and counters.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtlsprobe.capture import flowtable
from mtlsprobe.capture.compact import Opening
from mtlsprobe.capture.pcapfile import CaptureFile
from tests.sourcebuild import on_source_build

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "pcaps"
ETH = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00"
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
CLIENTS = [(bytes([10, 0, 0, 1]), 40000), (bytes([10, 0, 0, 2]), 40000),
           (bytes([10, 0, 0, 1]), 40001)]
SERVER = (bytes([10, 0, 0, 9]), 443)
PAYLOADS = [b"", b"GET / HTTP/1.1\r\n\r\n", b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00", b"SSH-2"]


def _read(path: Path, *, compact: bool, ports: tuple[int, ...] = ()) -> dict[str, Any]:
    """What the flow table makes of ``path``: each kept connection's facts, and counters."""
    saved = (vars(Opening)["fits"], vars(flowtable.FlowTable)["_settle"])
    if not compact:
        Opening.fits = staticmethod(lambda *_: False)  # type: ignore[method-assign]
        flowtable.FlowTable._settle = staticmethod(lambda *_: None)  # type: ignore[method-assign]
    try:
        table = flowtable.FlowTable(CaptureFile(path), ports=ports, max_open=64)
        conns = []
        for conn in table.run():
            client, server, how = conn.roles()
            conns.append((
                conn.index, client.addr, server.addr, how, conn.copies, conn.snapcut,
                conn.syn_ttl, conn.synack_ttl, len(conn.rst), client.ttls, server.ttls,
                [(s is client, at, data) for s, at, data in conn.chunks],
            ))
        return {"conns": conns, "stats": table.stats, "skipped": table.skipped}
    finally:
        Opening.fits, flowtable.FlowTable._settle = saved  # type: ignore[method-assign]


def _pcap(path: Path, segments: list[tuple[float, int, bool, int, int, int, bytes]]) -> Path:
    """(time, flow, from client, flags, seq, ack, payload) -> an Ethernet pcap."""
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    for ts, flow, from_client, flags, seq, ack, data in segments:
        (cip, cport), (sip, sport) = CLIENTS[flow], SERVER
        src, dst, s_port, d_port = (cip, sip, cport, sport) if from_client else (
            sip, cip, sport, cport)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(data), 0, 0x4000,
                         64 if from_client else 63, 6, 0, src, dst)
        tcp = struct.pack("!HHIIBBHHH", s_port, d_port, seq, ack, 0x50, flags, 65535, 0, 0)
        frame = ETH + ip + tcp + data
        sec, usec = int(ts), round((ts - int(ts)) * 1e6)
        out += struct.pack("<IIII", 1_700_000_000 + sec, min(usec, 999_999), len(frame),
                           len(frame)) + frame
    path.write_bytes(bytes(out))
    return path


_SEGMENT = st.tuples(
    st.sampled_from([0.0005, 0.3, 1.5, 2.5]),  # time since the last segment
    st.integers(0, len(CLIENTS) - 1),
    st.booleans(),
    st.sampled_from([SYN, SYN | ACK, ACK, PSH | ACK, FIN | ACK, RST, RST | ACK]),
    st.sampled_from([1000, 1001, 1019, 5000, 9000, 9001]),
    st.sampled_from([0, 1001, 1019, 5001, 9001]),
    st.sampled_from(PAYLOADS),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_SEGMENT, min_size=1, max_size=30), st.booleans())
def test_compact_entries_never_change_what_a_capture_gives(tmp_path_factory, segs, port) -> None:
    path = tmp_path_factory.mktemp("compact") / "c.pcap"
    now, timed = 0.0, []
    for gap, *rest in segs:
        now += gap
        timed.append((now, *rest))
    _pcap(path, timed)  # type: ignore[arg-type]
    ports = (443,) if port else ()
    assert _read(path, compact=True, ports=ports) == _read(path, compact=False, ports=ports)


def _handshake(flow: int, t: float, isn: int, data: bytes, close: int) -> Iterator[tuple]:
    """A connection: SYN, SYN-ACK, ACK, the client's ``data``, then FINs (close=FIN), a RST
    (close=RST) or nothing."""
    yield (t, flow, True, SYN, isn, 0, b"")
    yield (t + 0.001, flow, False, SYN | ACK, 7000, isn + 1, b"")
    yield (t + 0.002, flow, True, ACK, isn + 1, 7001, b"")
    yield (t + 0.003, flow, True, PSH | ACK, isn + 1, 7001, data)
    end = isn + 1 + len(data)
    if close == FIN:
        yield (t + 0.004, flow, True, FIN | ACK, end, 7001, b"")
        yield (t + 0.005, flow, False, FIN | ACK, 7001, end + 1, b"")
    elif close == RST:
        yield (t + 0.004, flow, False, RST, 7001, 0, b"")


@pytest.mark.parametrize("close", [FIN, RST, 0], ids=["fin", "rst", "open"])
def test_a_tuple_reused_after_a_plain_connection_starts_a_new_one(tmp_path, close) -> None:
    """Plain HTTP on a tuple, settled to a NotTls, then TLS on the same tuple with a new ISN
    (port reuse) and a late retransmitted SYN of the first: the TLS one is read whole."""
    hello = PAYLOADS[2]
    segs = [*_handshake(0, 0.0, 1000, PAYLOADS[1], close),
            (3.0, 0, True, SYN, 1000, 0, b""),  # the first one's SYN again: taken, no new flow
            *_handshake(0, 6.0, 5000, hello, FIN)]
    path = _pcap(tmp_path / "reuse.pcap", segs)
    got = _read(path, compact=True)
    assert got == _read(path, compact=False)
    assert [c[-1][0][2] for c in got["conns"]] == [hello]
    # the repeated SYN is a retransmission of the open one, a lone attempt after a close
    assert got["stats"]["non_tls_connections"] == (1 if close == 0 else 2)
    assert got["stats"]["tls_connections"] == 1


def test_a_scan_of_bare_syns_is_counted_not_kept_and_a_probed_port_is_kept(tmp_path) -> None:
    segs = [(i * 0.01, i % 3, True, SYN, 1000 + i, 0, b"") for i in range(9)]
    path = _pcap(tmp_path / "scan.pcap", segs)
    assert _read(path, compact=True) == _read(path, compact=False)
    assert _read(path, compact=True)["stats"]["non_tls_connections"] == 9
    kept = _read(path, compact=True, ports=(443,))
    assert kept == _read(path, compact=False, ports=(443,))
    assert len(kept["conns"]) == 9  # a SYN to a --port is a connection attempt to judge


def test_the_table_holds_compact_entries_for_floods_and_plain_flows(tmp_path, request) -> None:
    """The entries themselves: a lone SYN is an Opening, settled plain HTTP a NotTls."""
    if on_source_build(request):  # a spy on FlowTable._finish
        return
    segs = [(0.0, 0, True, SYN, 1000, 0, b""), *_handshake(1, 0.1, 3000, PAYLOADS[1], 0),
            (5.0, 2, True, ACK, 1, 1, b"")]  # a later segment lets the HTTP one settle
    path = _pcap(tmp_path / "mix.pcap", segs)
    seen: list[type] = []
    real = flowtable.FlowTable._finish

    def spy(self, conn):  # type: ignore[no-untyped-def]
        seen.append(type(conn))
        return real(self, conn)

    flowtable.FlowTable._finish = spy  # type: ignore[method-assign]
    try:
        list(flowtable.FlowTable(CaptureFile(path)).run())
    finally:
        flowtable.FlowTable._finish = real  # type: ignore[method-assign]
    assert sorted(t.__name__ for t in seen) == ["Connection", "NotTls", "Opening"]


CAPTURES = sorted((ROOT / "fixtures" / "pcaps").rglob("*.pcap*"))
CAPTURES = [p for p in CAPTURES if p.suffix in (".pcap", ".pcapng")]


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_fixture_captures_read_the_same(path: Path) -> None:
    assert _read(path, compact=True) == _read(path, compact=False)


def test_the_shared_captures_read_the_same() -> None:
    if not SHARED.is_dir():
        pytest.skip("../shared is absent")
    paths = sorted(p for p in SHARED.rglob("*") if p.suffix in (".pcap", ".pcapng")
                   and p.stat().st_size < 2_000_000)
    assert len(paths) > 100
    for path in paths:
        try:
            with_compact = _read(path, compact=True)
        except Exception as exc:  # the same error either way
            with pytest.raises(type(exc)):
                _read(path, compact=False)
            continue
        assert with_compact == _read(path, compact=False), path
