"""Reader, constants and RecordSplitter: bounds, framing under any chunking, not-TLS input."""

from __future__ import annotations

import pytest

from mtlsprobe.tls.constants import (
    AlertDescription,
    cipher_suite_name,
    is_grease,
    signature_scheme_name,
    version_name,
)
from mtlsprobe.tls.reader import DecodeError, Reader
from mtlsprobe.tls.records import MAX_RECORD_LEN, RecordSplitter


def rec(ctype: int, payload: bytes, version: int = 0x0303) -> bytes:
    return bytes((ctype, version >> 8, version & 0xFF)) + len(payload).to_bytes(2, "big") + payload


def test_reader_reads_scalars_and_vectors():
    r = Reader(bytes.fromhex("01 0203 040506 0708090a 02 aabb 0003 ccddee".replace(" ", "")))
    assert (r.u8(), r.u16(), r.u24(), r.u32()) == (1, 0x0203, 0x040506, 0x0708090A)
    assert r.vector(1) == b"\xaa\xbb"
    sub = r.sub_vector(2, "inner")
    assert sub.bytes(3) == b"\xcc\xdd\xee" and sub.at_end() and r.at_end()


def test_reader_errors_carry_offset_and_context():
    r = Reader(b"\x00\x05abc", "Thing")
    with pytest.raises(DecodeError) as info:
        r.vector(2)
    assert info.value.offset == 2 and info.value.context == "Thing"
    assert "Thing" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_sub_reader_cannot_read_past_its_window():
    r = Reader(b"\x00\x01\xff\xee")
    sub = r.sub_vector(2)
    sub.u8()
    with pytest.raises(DecodeError):
        sub.u8()
    assert r.u8() == 0xEE


def test_u16_list_rejects_odd_length():
    with pytest.raises(DecodeError):
        Reader(b"\x00\x03\x13\x01\x13").u16_list(2)


def test_names():
    assert version_name(0x0304) == "TLSv1.3" and version_name(0x0300) == "SSLv3"
    assert cipher_suite_name(0x1302) == "TLS_AES_256_GCM_SHA384"
    assert cipher_suite_name(0xC02F) == "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
    assert cipher_suite_name(0xBEEF) == "0xbeef"
    assert signature_scheme_name(0x0804) == "rsa_pss_rsae_sha256"
    assert AlertDescription(116).name == "certificate_required"
    assert is_grease(0x0A0A) and is_grease(0xFAFA) and not is_grease(0x0A1A)
    assert cipher_suite_name(0x2A2A) == "GREASE"


def test_splitter_any_chunking_gives_same_records():
    stream = rec(22, b"hello") + rec(20, b"\x01") + rec(23, b"x" * 300) + rec(21, b"\x02\x28")
    whole = RecordSplitter().feed(stream)
    assert [(r.content_type, r.payload) for r in whole] == [
        (22, b"hello"),
        (20, b"\x01"),
        (23, b"x" * 300),
        (21, b"\x02\x28"),
    ]
    for size in (1, 2, 5, 7, 64):
        s = RecordSplitter()
        got = []
        for i in range(0, len(stream), size):
            got += s.feed(stream[i : i + size])
        assert got == whole
        assert s.pending == 0 and not s.incomplete


def test_splitter_reports_pending_partial_record():
    s = RecordSplitter()
    assert s.feed(rec(22, b"abcdef")[:8]) == []
    assert s.pending == 8 and s.incomplete


def test_splitter_skips_payloads_it_is_told_to_skip():
    s = RecordSplitter(keep={21})
    stream = rec(23, b"y" * 1000) + rec(21, b"\x01\x00")
    got = []
    for i in range(0, len(stream), 100):
        got += s.feed(stream[i : i + 100])
    assert got[0].skipped and got[0].length == 1000 and got[0].payload == b""
    assert got[1].payload == b"\x01\x00" and got[1].offset == 1005
    assert s.pending == 0


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", "HTTP/1.1 400"),
        (b"SSH-2.0-OpenSSH_9.6\r\n", "SSH-2.0"),
        (bytes.fromhex("802e0103010015"), "SSLv2"),
    ],
)
def test_splitter_detects_non_tls(data, needle):
    s = RecordSplitter()
    with pytest.raises(DecodeError) as info:
        s.feed(data)
    assert needle in str(info.value) and info.value.offset == 0
    with pytest.raises(DecodeError):  # sticky
        s.feed(b"\x16\x03\x03\x00\x00")


def test_splitter_rejects_oversized_and_bad_headers_later_in_stream():
    with pytest.raises(DecodeError, match="over the limit"):
        RecordSplitter().feed(b"\x17\x03\x03" + (MAX_RECORD_LEN + 1).to_bytes(2, "big"))
    with pytest.raises(DecodeError) as info:
        RecordSplitter().feed(rec(22, b"ok") + b"\x63\x03\x03\x00\x01z")
    assert info.value.offset == 7
