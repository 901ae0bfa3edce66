"""A capture taken on both sides of a firewall that randomises sequence numbers (Cisco ASA
"TCP sequence number randomization"), merged into one file (issue 13): every segment twice,
the same addresses and ports, other ISNs, the TTL a hop or more apart. Each copy is read as
a connection of its own, with the facts of the single capture (one ClientHello, no
renegotiation, one alert), and one note per capture says it was recognised.
"""

from __future__ import annotations

import ssl
from dataclasses import replace

import pytest
import tlsgen
from hypothesis import given, settings
from hypothesis import strategies as st
from test_capture_bulk_shortcut import _without_leases
from test_capture_encapsulations import _messages

from mtlsprobe.capture.observations import ObservationReader
from mtlsprobe.model import Direction, Seen
from mtlsprobe.run import expectations
from mtlsprobe.run.analyze import analyze
from mtlsprobe.run.captures import read_capture
from tests import pcapgen

COPY_NOTE = ("one of 2 copies of this connection in the capture, each with its own sequence "
             "numbers (captured on both sides of a firewall that randomises ISNs): this copy "
             "read on its own")
CAPTURE_NOTE = ("connection(s) were captured twice with rewritten sequence numbers (a firewall "
                "randomising ISNs between two capture points); each copy read on its own")
# a firewall's random ISN offsets: the client's, and the server's where it rewrites both
SHIFT_CLIENT, SHIFT_SERVER = 0x9E3779B9, 0x7F4A7C15


@pytest.fixture(scope="module")
def sessions() -> list[list[tuple[str, bytes]]]:
    """TLS 1.2 with the client certificate the server asks for, and without it (the
    server's alert ends it)."""
    return [_messages(tlsgen.run(version="TLSv1.2", client_cert="good")),
            _messages(tlsgen.run(version="TLSv1.2", client_cert=None))]


def _same_facts(copy, single):  # type: ignore[no-untyped-def]
    """The copy's observation is the single capture's but for its label, start time, TCP
    facts (other TTLs) and the note that it is a copy."""
    assert COPY_NOTE in copy.notes
    notes = tuple(n for n in copy.notes if n != COPY_NOTE)
    return replace(copy, label=single.label, observed_at=single.observed_at, tcp=single.tcp,
                   notes=notes) == single


@pytest.mark.parametrize("shift_server", [SHIFT_SERVER, 0], ids=["both-isns", "client-isn"])
@pytest.mark.parametrize("ttl", [-1, 0], ids=["ttl-1", "same-ttl"])
@pytest.mark.parametrize("delay", [0.0003, -0.0004], ids=["inside-first", "outside-first"])
def test_each_copy_is_read_on_its_own(sessions, tmp_path, shift_server, ttl, delay):
    """Both ISNs rewritten or only the client's (as an ASA does); the TTLs a hop apart or
    equal (an ASA does not decrement it by default); either capture point's copy first."""
    for n, messages in enumerate(sessions):
        inside = pcapgen.conversation(messages, isn_client=1000 + n, isn_server=500000 + n)
        outside = pcapgen.rewritten(inside, client_shift=SHIFT_CLIENT,
                                    server_shift=shift_server, ttl=ttl, delay=delay)
        (tmp_path / "single").mkdir(exist_ok=True)
        [single] = ObservationReader(pcapgen.capture(inside, tmp_path / "single" / f"{n}.pcap"))
        path = pcapgen.capture(pcapgen.merged(inside, outside), tmp_path / f"{n}.pcap")
        reader = ObservationReader(path)
        copies = sorted(reader, key=lambda o: o.label)
        assert len(copies) == 2
        assert reader.stats["connections"] == reader.stats["tls_connections"] == 2
        assert reader.stats["captured_twice"] == 1
        for copy in copies:
            assert copy.history == single.history and copy.history.count("C") == 1
            assert copy.renegotiation is Seen.NO and copy.alerts == single.alerts
            assert _same_facts(copy, single)
        first, second = (copies if delay > 0 else copies[::-1])
        assert first.tcp == single.tcp  # the inside copy's TTLs
        assert second.tcp.syn_ttl == single.tcp.syn_ttl + ttl
        assert bool(single.alerts) == (n == 1)  # the second session ends in an alert


def test_the_capture_note_counts_the_connections_captured_twice(sessions, tmp_path):
    segs: list[pcapgen.Seg] = []
    for i in range(3):
        inside = pcapgen.conversation(sessions[i % 2], client=("10.0.0.1", 40000 + i),
                                      isn_client=7 * i, start=1_700_000_000 + i)
        segs += [*inside, *pcapgen.rewritten(inside, client_shift=SHIFT_CLIENT + i)]
    alone = pcapgen.conversation(sessions[0], client=("10.0.0.1", 41000), start=1_700_000_009)
    path = pcapgen.capture(pcapgen.merged(segs, alone), tmp_path / "asa.pcap")
    result = read_capture(path)
    assert len(result.observations) == 7
    assert f"asa.pcap: 3 {CAPTURE_NOTE}" in result.notes
    assert sum(COPY_NOTE in o.notes for o in result.observations) == 6
    expect = expectations.build(ca=(), pins=(), baseline=None)
    one, shared = analyze([path], expect, jobs=1), analyze([path], expect, jobs=2)
    assert shared.results == one.results and shared.notes == one.notes
    assert f"asa.pcap: 3 {CAPTURE_NOTE}" in one.notes


def test_a_plain_capture_has_no_copy_note(sessions, tmp_path):
    result = read_capture(pcapgen.capture(pcapgen.conversation(sessions[0]), tmp_path / "p.pcap"))
    assert not any("captured twice" in n for n in result.notes)
    assert not any(COPY_NOTE in o.notes for o in result.observations)


def test_a_retry_on_the_same_port_is_not_a_copy(sessions, tmp_path):
    """A SYN nobody answered, then, a second later, the client's new SYN on the same port
    with another ISN: one TLS connection and no copy note (the first SYN alone is not a
    connection the server saw)."""
    lost = pcapgen.Seg("10.0.0.1", 40000, "10.0.0.2", 443, 77, 0, pcapgen.SYN, ts=1_699_999_999.0)
    segs = pcapgen.conversation(sessions[0], isn_client=5_000_000)
    result = read_capture(pcapgen.capture([lost, *segs], tmp_path / "retry.pcap"))
    [obs] = result.observations
    assert COPY_NOTE not in obs.notes and obs.history.count("C") == 1
    assert not any("captured twice" in n for n in result.notes)


def test_a_later_connection_on_the_same_tuple_is_not_a_copy(sessions, tmp_path):
    """Copies that never closed (the capture missed their FINs), then, seconds later, a new
    connection on the same tuple: three connections, one of them not a copy."""
    inside = pcapgen.conversation(sessions[1], close=None)
    outside = pcapgen.rewritten(inside, client_shift=SHIFT_CLIENT, server_shift=SHIFT_SERVER)
    later = pcapgen.conversation(sessions[0], isn_client=123456, start=inside[0].ts + 5)
    result = read_capture(pcapgen.capture(pcapgen.merged(inside, outside, later),
                                          tmp_path / "later.pcap"))
    assert len(result.observations) == 3
    assert [COPY_NOTE in o.notes for o in result.observations] == [True, True, False]
    assert any(n.endswith(f": 1 {CAPTURE_NOTE}") for n in result.notes)
    assert result.observations[2].client_chain_seen is Seen.YES


def test_reset_copies(sessions, tmp_path):
    """Each copy ends in a RST (and lingers for segments in flight): both read whole."""
    inside = pcapgen.conversation(sessions[1], close="rst", closer="s")
    outside = pcapgen.rewritten(inside, client_shift=SHIFT_CLIENT, ttl=-2)
    result = read_capture(pcapgen.capture(pcapgen.merged(inside, outside), tmp_path / "r.pcap"))
    assert len(result.observations) == 2
    assert all(o.history.count("C") == 1 and len(o.alerts) == 1 for o in result.observations)
    assert [o.tcp.rst_from for o in result.observations] == [(Direction.S2C,)] * 2


def test_copies_with_bulk_data_read_the_same_with_and_without_the_shortcut(tmp_path):
    """Copies are read the general way (their frames share raw addresses and ports, so the
    bulk shortcut could not tell them apart): the same observations as without it, and
    each copy's as the single capture's."""
    messages = _messages(tlsgen.run(version="TLSv1.3", verify=ssl.CERT_NONE,
                                    server_says=bytes(range(256)) * 600))
    inside = pcapgen.conversation(messages)
    outside = pcapgen.rewritten(inside, client_shift=SHIFT_CLIENT, server_shift=SHIFT_SERVER)
    (tmp_path / "single").mkdir()
    single_reader = ObservationReader(pcapgen.capture(inside, tmp_path / "single" / "b.pcap"))
    [single] = single_reader
    assert single_reader.stats["bulk_frames"] > 20
    path = pcapgen.capture(pcapgen.merged(inside, outside), tmp_path / "b.pcap")
    reader = ObservationReader(path)
    copies = list(reader)
    assert copies == list(_without_leases(path)) and len(copies) == 2
    assert reader.stats["bulk_frames"] == 0
    assert all(_same_facts(c, single) for c in copies)


def _without_copy_note(obs):  # type: ignore[no-untyped-def]
    return replace(obs, label="", notes=tuple(n for n in obs.notes if n != COPY_NOTE))


@given(shift_client=st.integers(1 << 24, (1 << 32) - (1 << 24)),
       shift_server=st.sampled_from([0, SHIFT_SERVER]), delay=st.floats(-0.003, 0.003),
       seed=st.integers(0, 1000), window=st.integers(1, 5), lost=st.integers(0, 10_000),
       ttl=st.integers(-3, 0))
@settings(max_examples=25, deadline=None)
def test_property_each_copy_reads_as_if_captured_alone(
    sessions, tmp_path_factory, shift_client, shift_server, delay, seed, window, lost, ttl
):
    """Whatever the firewall's offsets, the clock difference between the capture points and
    each point's own damage (segments reordered, one lost on the outside), each copy of the
    merged capture is observed exactly as its capture point's file alone."""
    base = pcapgen.conversation(sessions[0], segment_size=700)
    inside = base[:3] + pcapgen.reorder(base[3:], seed=seed, window=window)
    outside = pcapgen.rewritten(pcapgen.drop(base, 3 + lost % (len(base) - 3)),
                                client_shift=shift_client, server_shift=shift_server,
                                ttl=ttl, delay=delay)
    tmp = tmp_path_factory.mktemp("copies")
    alone = []
    for name, segs in (("in", inside), ("out", outside)):
        (tmp / name).mkdir()
        alone += list(ObservationReader(pcapgen.capture(segs, tmp / name / "x.pcap")))
    reader = ObservationReader(pcapgen.capture(pcapgen.merged(inside, outside), tmp / "x.pcap"))
    merged = list(reader)
    assert reader.stats["captured_twice"] == 1
    assert (sorted(map(_without_copy_note, merged), key=repr)
            == sorted(map(_without_copy_note, alone), key=repr))
