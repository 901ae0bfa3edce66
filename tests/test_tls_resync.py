"""Record resynchronisation after a capture gap: RecordSplitter.resync/settle on hand-built
records, and the observer on real TLS bytes (tlsgen) with bytes cut out of one direction.

The rule under test: what is read after a gap counts, but a fact needing *all* of a
direction (CertificateRequest NO, client certificate NO, renegotiation NO) stays UNKNOWN
when a gap came before the point that decides it.
"""

from __future__ import annotations

import dataclasses
import functools
import ssl

import pcapgen
import pytest
import tlsgen
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtlsprobe.capture.observations import ObservationReader
from mtlsprobe.model import Chunk, Direction, Gap, Outcome, Seen, StreamEnd, Transcript
from mtlsprobe.tls.observer import observe
from mtlsprobe.tls.records import RecordSplitter, plausible_header

C2S, S2C = Direction.C2S, Direction.S2C


def rec(ctype: int, payload: bytes, version: int = 0x0303) -> bytes:
    return bytes((ctype, version >> 8, version & 0xFF)) + len(payload).to_bytes(2, "big") + payload


def fed(s: RecordSplitter, data: bytes, size: int = 0) -> list[tuple[int, int, bytes]]:
    """(type, offset, payload) of the records ``data`` completes, fed in ``size`` pieces."""
    size = size or len(data) or 1
    out = []
    for i in range(0, len(data), size):
        out += s.feed(data[i : i + size])
    return [(r.content_type, r.offset, r.payload) for r in out]


# --- RecordSplitter --------------------------------------------------------------------

A = rec(23, bytes(range(256)) * 2)  # 517 bytes
B = rec(23, b"\xbb" * 40)
C = rec(21, b"\x02\x28")
D = rec(22, b"\x0e\x00\x00\x00")


@pytest.mark.parametrize("size", [1, 3, 5, 64, 0])
def test_resync_mid_record_lands_on_the_next_header(size):
    s = RecordSplitter()
    assert fed(s, A[:200]) == []
    s.resync(100)  # bytes 200..299 of A are missing
    got = fed(s, A[300:] + B + C, size)
    assert got == [(23, len(A), b"\xbb" * 40), (21, len(A) + len(B), b"\x02\x28")]
    assert s.skipped == len(A) - 300 and not s.scanning


def test_gap_at_a_record_boundary_skips_nothing():
    s = RecordSplitter()
    assert [r.content_type for r in s.feed(A)] == [23]
    s.resync(len(B))
    got = fed(s, C + D)
    assert got == [(21, len(A) + len(B), b"\x02\x28"), (22, len(A) + len(B) + len(C), D[5:])]
    assert s.skipped == 0


def test_unconfirmed_header_is_not_trusted_until_its_record_ends_at_another():
    # the tail of a payload holds a header-looking run whose "record" ends inside B
    fake = rec(23, b"\x00" * 30)[:5]
    tail = b"\x99" * 20 + fake + b"\x77" * 40
    s = RecordSplitter()
    s.resync(1000)
    assert fed(s, tail + B[:10]) == []  # the fake one's end is in view: not a header there
    assert s.scanning
    got = fed(s, B[10:] + C)
    assert got == [(23, 1000 + len(tail), b"\xbb" * 40), (21, 1000 + len(tail) + len(B), C[5:])]


def test_a_header_is_undecided_while_its_end_is_not_in_view():
    # a header-looking run claiming a record longer than what follows blocks later ones
    # until its end is seen, so a real boundary inside its claimed record is not skipped
    fake = rec(23, b"\x00" * 300)[:5]
    s = RecordSplitter()
    s.resync(7)
    assert fed(s, b"\x01" * 3 + fake + b"\x02" * 10 + B + C) == []
    assert s.scanning
    assert fed(s, D * 20) == []  # (its end, at 308, is not in view yet)
    got = fed(s, D * 20)  # the fake record's end falls inside these bytes, on no header
    assert [t for t, _, _ in got] == [23, 21] + [22] * 40
    assert s.skipped == 3 + 5 + 10


def test_false_chain_needs_the_same_version():
    # a TLS 1.0 header whose record ends at a TLS 1.2 header is not a chain
    s = RecordSplitter()
    s.resync(1)
    fake = rec(22, b"\x55" * 8, version=0x0301)
    assert fed(s, b"\x42" + fake + B + C)[0] == (23, 1 + 1 + len(fake), b"\xbb" * 40)


def test_known_record_version_is_required():
    s = RecordSplitter()
    s.resync(1, version=0x0303)
    other = rec(21, b"\x02\x28", version=0x0301)
    assert fed(s, other + other + B + C) == [(23, 1 + 2 * len(other), B[5:]),
                                             (21, 1 + 2 * len(other) + len(B), C[5:])]


def test_last_record_confirmed_when_the_bytes_stop_exactly_at_its_end():
    s = RecordSplitter()
    s.resync(50)
    assert fed(s, b"\xee" * 17 + C) == []  # alone, it could be payload: wait
    got = [(r.content_type, r.payload) for r in s.settle()]
    assert got == [(21, b"\x02\x28")] and s.skipped == 17


def test_settle_refuses_a_record_not_ending_with_the_bytes():
    s = RecordSplitter()
    s.resync(50)
    fed(s, b"\xee" * 17 + C + b"\x01")
    assert s.settle() == [] and s.scanning and s.scanned == 17 + len(C) + 1


def test_candidate_rules():
    assert plausible_header(23, 3, 3, 100, None) and plausible_header(24, 3, 4, 1, None)
    assert not plausible_header(25, 3, 3, 100, None)  # content type
    assert not plausible_header(23, 3, 5, 100, None)  # version
    assert not plausible_header(23, 3, 1, 100, 0x0303)  # not the connection's version
    assert not plausible_header(23, 3, 3, 0, None)  # empty
    assert not plausible_header(23, 3, 3, 2**14 + 2049, None)  # over the limit
    assert not plausible_header(20, 3, 3, 2, None)  # a ChangeCipherSpec is one byte


def test_scan_buffer_stays_bounded_on_endless_junk():
    s = RecordSplitter()
    s.resync(1, version=0x0303)
    junk = bytes(range(256)) * 64  # no "03 03" anywhere
    for _ in range(50):
        assert s.feed(junk) == []
    assert s._scan is not None and len(s._scan) < 10


# --- Observer on real TLS bytes ----------------------------------------------------------


@functools.cache
def gen(**kw) -> Transcript:
    return tlsgen.run(**kw)


def records(data: bytes) -> list[tuple[int, int, int]]:
    """(type, start, end) of each record in one chunk."""
    return [(r.content_type, r.offset, r.offset + 5 + r.length)
            for r in RecordSplitter().feed(data)]


def cut(t: Transcript, index: int, start: int, end: int) -> Transcript:
    """``t`` with bytes [start, end) of chunk ``index`` missing (a capture gap)."""
    c = t.chunks[index]
    offset = sum(len(x.data) for x in t.chunks[:index] if x.direction is c.direction)
    chunk = dataclasses.replace(c, data=c.data[:start] + c.data[end:])
    gap = Gap(direction=c.direction, offset=offset + start, length=end - start)
    chunks = (*t.chunks[:index], chunk, *t.chunks[index + 1 :])
    return dataclasses.replace(t, chunks=chunks, gaps=(*t.gaps, gap),
                               end=StreamEnd.CAPTURE_ENDED)


def test_gap_hiding_the_certificate_request_keeps_it_unknown_though_server_hello_done_is_read():
    t = gen(version="TLSv1.2", client_cert=None)  # SH, Cert, SKE, CR, SHD; later an alert
    full = observe(t)
    assert full.cert_request.seen is Seen.YES
    (_, cr_start, cr_end), shd = records(t.chunks[1].data)[3:]
    assert shd[0] == 22
    obs = observe(cut(t, 1, cr_start, cr_end))  # exactly the CertificateRequest record
    assert "n" in obs.history  # ServerHelloDone read after the gap...
    assert obs.cert_request.seen is Seen.UNKNOWN  # ...but it cannot prove the absence
    assert obs.renegotiation is Seen.UNKNOWN
    assert obs.client_chain_seen is Seen.YES and obs.client_chain == ()  # sent empty: a fact
    assert obs.server_chain_seen is Seen.YES  # read before the gap
    assert any("could hide one" in n for n in obs.notes)
    assert any("resynchronised on a record header 0 bytes after the gap" in n
               for n in obs.notes)
    # the server's plaintext alert after the gap is reported
    assert [(a.sender, a.description) for a in obs.alerts] == [(S2C, "handshake_failure")]
    assert obs.outcome is Outcome.REJECTED_BY_SERVER


def test_gap_inside_the_server_flight_mid_record():
    t = gen(version="TLSv1.2", verify=ssl.CERT_NONE, keylog=False)
    assert observe(t).cert_request.seen is Seen.NO
    (_, c_start, c_end) = records(t.chunks[1].data)[1]  # the Certificate record
    obs = observe(cut(t, 1, c_start + 30, c_end - 100))
    assert obs.history.startswith("Cskn")  # SKE and SHD read after the gap
    assert obs.cert_request.seen is Seen.UNKNOWN and obs.server_chain_seen is Seen.UNKNOWN
    assert obs.client_chain_seen is Seen.UNKNOWN
    assert not obs.resumed  # a CCS without Certificate/SHD seen proves nothing after a gap
    assert any("resynchronised on a record header 100 bytes after the gap" in n
               for n in obs.notes)


def test_gap_after_server_hello_done_keeps_the_answer_read_before_it():
    t = gen(version="TLSv1.2", verify=ssl.CERT_NONE, keylog=False,
            server_says=b"x" * 3000)
    last = len(t.chunks) - 1
    obs = observe(cut(t, last, 1000, 1500))  # inside the server's application data
    assert obs.cert_request.seen is Seen.NO and obs.client_chain_seen is Seen.NO
    assert obs.renegotiation is Seen.UNKNOWN  # a renegotiation could be in the gap
    assert obs.outcome is Outcome.ESTABLISHED


def split_certificate(t: Transcript) -> Transcript:
    """The server's Certificate message spread over two records, the second one also
    holding ServerKeyExchange and ServerHelloDone (as servers fragment big chains)."""
    data = t.chunks[1].data
    layout = records(data)
    messages = b"".join(data[start + 5 : end] for _, start, end in layout[1:])
    at = 4 + 3 + 3  # Certificate header, list length, first certificate's length: DER next
    flight = data[: layout[0][2]] + rec(22, messages[:at]) + rec(22, messages[at:])
    chunk = dataclasses.replace(t.chunks[1], data=flight)
    return dataclasses.replace(t, chunks=(t.chunks[0], chunk, *t.chunks[2:]))


def test_handshake_record_continuing_a_message_cut_by_the_gap_is_not_read():
    t = split_certificate(gen(version="TLSv1.2", verify=ssl.CERT_NONE, keylog=False))
    assert observe(t).cert_request.seen is Seen.NO  # the re-framed flight reads as before
    first = records(t.chunks[1].data)[1]
    obs = observe(cut(t, 1, first[1] + 7, first[2]))  # the gap ends with the first part
    # the second part is not whole messages: skipped (it is framed, and so read, only once
    # the next server record confirms it, after the client's flight)
    assert "".join(c for c in obs.history if c.islower()).startswith("set")
    assert "n" not in obs.history
    assert obs.cert_request.seen is Seen.UNKNOWN
    assert any("not read" in n for n in obs.notes)


def test_encrypted_finished_after_a_gap_hiding_the_ccs_is_not_read_as_plaintext():
    t = gen(version="TLSv1.2", verify=ssl.CERT_NONE, keylog=False)
    layout = records(t.chunks[3].data)  # NewSessionTicket, CCS, Finished
    assert [x[0] for x in layout] == [22, 20, 22]
    obs = observe(cut(t, 3, layout[1][1], layout[1][2]))  # exactly the server's CCS
    server = [c for c in obs.history if c.islower()]
    assert server[-2:] == ["t", "e"]  # NewSessionTicket, then an unreadable record
    assert obs.outcome is Outcome.INCOMPLETE  # the server's Finished was not seen
    assert obs.renegotiation is Seen.UNKNOWN and obs.alerts == ()


def encrypted_alert_after_bulk(t: Transcript) -> Transcript:
    """``t`` plus server application data records and a TLS 1.2 encrypted alert (the
    shape of close_notify under AES-GCM: 8-byte nonce + 2 + 16-byte tag)."""
    bulk = b"".join(rec(23, bytes([i]) * 1400) for i in range(1, 5))
    alert = rec(21, b"\x00" * 7 + b"\x09" + b"\xa5" * 18)
    extra = Chunk(direction=S2C, at=9.0, data=bulk + alert)
    return dataclasses.replace(t, chunks=(*t.chunks, extra))


@pytest.mark.parametrize("keylog", [False, True])
def test_encrypted_tls12_alert_after_a_gap_is_reported(keylog):
    t = encrypted_alert_after_bulk(gen(version="TLSv1.2", verify=ssl.CERT_NONE, keylog=keylog))
    whole = observe(t)
    last = len(t.chunks) - 1
    obs = observe(cut(t, last, 700, 2500))  # 1-2 KB missing, as in netflix.pcap
    alerts = [(a.sender, a.description, a.after_handshake) for a in obs.alerts]
    assert alerts == [(S2C, "encrypted", True)]
    assert obs.outcome is Outcome.ESTABLISHED and obs.renegotiation is Seen.UNKNOWN
    assert obs.cert_request == whole.cert_request  # decided before the gap
    if keylog:  # the fake records do not decrypt anyway; the gap note says why none is tried
        assert any("not decrypted" in n and "sequence number" in n for n in obs.notes)


def test_tls13_decryption_stops_at_a_gap():
    t = gen(version="TLSv1.3", client_cert="good", server_says=b"y" * 4000)
    assert observe(t).decrypted
    last = len(t.chunks) - 1
    assert t.chunks[last].direction is S2C and len(t.chunks[last].data) > 3000
    obs = observe(cut(t, last, 500, 1500))
    assert obs.client_chain_seen is Seen.YES and obs.cert_request.seen is Seen.YES
    assert obs.outcome is Outcome.ESTABLISHED
    assert any("server records after the gap are not decrypted" in n for n in obs.notes)
    assert not any("did not decrypt" in n for n in obs.notes)  # none tried with a stale seq


def test_client_gap_keeps_the_client_certificate_unknown():
    t = gen(version="TLSv1.2", client_cert="good", keylog=False)
    assert observe(t).client_chain_seen is Seen.YES
    layout = records(t.chunks[2].data)  # Certificate, CKE, CertificateVerify, CCS, Finished
    assert layout[0][0] == 22
    obs = observe(cut(t, 2, layout[0][1], layout[0][2]))  # exactly the client Certificate
    assert obs.cert_request.seen is Seen.YES
    assert obs.client_chain_seen is Seen.UNKNOWN  # CKE/Finished after the gap prove nothing


def test_gap_never_confirmed_is_noted():
    t = gen(version="TLSv1.2", client_cert=None, keylog=False)
    last = len(t.chunks) - 1
    assert t.chunks[last].data[0] == 21  # the server's alert
    obs = observe(cut(t, last, 0, 3))  # 4 bytes of it left: no header to trust
    assert obs.alerts == () and obs.outcome is Outcome.INCOMPLETE
    assert obs.cert_request.seen is Seen.YES
    assert any("no record header could be confirmed in the 4 server bytes" in n
               for n in obs.notes)


def test_capture_path_agrees_and_reads_the_alert_after_a_dropped_segment(tmp_path):
    t = encrypted_alert_after_bulk(gen(version="TLSv1.2", verify=ssl.CERT_NONE, keylog=False))
    messages = [("c" if c.direction is C2S else "s", c.data) for c in t.chunks]
    segs = pcapgen.conversation(messages, segment_size=1000)
    server_data = pcapgen.data_indexes(segs, 443)
    segs = pcapgen.drop(segs, server_data[-4])  # inside the application data
    [obs] = ObservationReader(pcapgen.capture(segs, tmp_path / "gap.pcap"))
    assert obs.gaps and [a.description for a in obs.alerts] == ["encrypted"]
    assert obs.renegotiation is Seen.UNKNOWN
    assert any("resynchronised" in n for n in obs.notes)


# --- never raise, never NO -------------------------------------------------------------

JUNK = st.one_of(
    st.binary(max_size=3000),
    st.lists(
        st.one_of(
            st.binary(max_size=40),
            st.builds(lambda t, p: rec(t, p), st.integers(18, 26), st.binary(max_size=60)),
            st.builds(lambda p: rec(22, p), st.binary(min_size=4, max_size=30)),
        ),
        max_size=12,
    ).map(b"".join),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(junk=JUNK, at=st.integers(0, 300), size=st.integers(1, 700))
def test_random_bytes_after_a_gap_never_raise_nor_make_a_no(junk, at, size):
    t = gen(version="TLSv1.2", client_cert=None, keylog=False)
    server = t.chunks[1].data
    keep = server[:at]
    tail = junk + server[-20:]  # part of a real flight end may follow the junk
    pieces = [tail[i : i + size] for i in range(0, len(tail), size)]
    chunks = (t.chunks[0], Chunk(direction=S2C, at=0.1, data=keep),
              *(Chunk(direction=S2C, at=0.2, data=p) for p in pieces), *t.chunks[2:])
    gap = Gap(direction=S2C, offset=at, length=500)
    obs = observe(dataclasses.replace(t, chunks=chunks, gaps=(gap,),
                                      end=StreamEnd.CAPTURE_ENDED))
    # the gap came before the end of the server's flight: nothing it decides may be NO
    assert obs.cert_request.seen is not Seen.NO
    assert obs.server_chain_seen is not Seen.NO and obs.client_chain_seen is not Seen.NO
    assert obs.renegotiation is not Seen.NO
