"""Capture containers: pcap (us/ns, both byte orders), pcapng (interfaces, block kinds, DSB),
gzip, stdin, damage and non-captures."""

from __future__ import annotations

import gzip
import io
import shutil
import struct
import subprocess
import sys

import pytest

from bench.flood import ETH, client_hello
from mtlsprobe.capture import pcapfile
from mtlsprobe.capture.observations import ObservationReader
from mtlsprobe.capture.pcapfile import CaptureFile
from mtlsprobe.capture.pcapng_writer import LINKTYPE_ETHERNET, PcapngWriter
from mtlsprobe.model.errors import InputError
from tests import pcapgen

FRAMES = [(1_700_000_000.123456, b"\x01" * 60), (1_700_000_001.5, b"\x02" * 1514),
          (1_700_000_002.000001, b"\x03" * 20)]


@pytest.mark.parametrize("nano", [False, True])
@pytest.mark.parametrize("big_endian", [False, True])
def test_pcap_both_resolutions_and_byte_orders(tmp_path, nano, big_endian):
    path = tmp_path / "x.pcap"
    pcapgen.write_pcap(path, FRAMES, 113, nano=nano, big_endian=big_endian)
    got = list(CaptureFile(path))
    assert [(lt, f) for _, lt, f in got] == [(113, f) for _, f in FRAMES]
    assert [t for t, _, _ in got] == pytest.approx([t for t, _ in FRAMES], abs=1e-6)


@pytest.mark.parametrize("big_endian", [False, True])
def test_pcapng_interfaces_resolutions_block_kinds_and_key_log(tmp_path, big_endian):
    keylog = "CLIENT_RANDOM " + "00" * 32 + " " + "11" * 48
    packets = [(0, 1000.25, b"a" * 40), (1, 2000.5, b"b" * 41), (2, 3000.125, b"c" * 43),
               (0, 4000.0, b"d" * 44)]
    path = pcapgen.write_pcapng(
        tmp_path / "x.pcapng", [(1, 6), (101, 9), (0, 0x80 | 10)], packets,
        big_endian=big_endian, keylog=keylog, kinds={3: "pb"},
    )
    cf = CaptureFile(path)
    got = list(cf)
    assert [(lt, f) for _, lt, f in got] == [(1, b"a" * 40), (101, b"b" * 41), (0, b"c" * 43),
                                            (1, b"d" * 44)]
    assert [t for t, _, _ in got] == pytest.approx([1000.25, 2000.5, 3000.125, 4000.0])
    assert cf.keylog_text == keylog + "\n"
    assert cf.notes == []


def test_pcapng_simple_packet_block_uses_the_first_interface(tmp_path):
    path = pcapgen.write_pcapng(tmp_path / "x.pcapng", [(113, 6)],
                                [(0, 5.0, b"e" * 30), (0, 6.0, b"f" * 31)], kinds={1: "spb"})
    assert [(lt, f) for _, lt, f in CaptureFile(path)] == [(113, b"e" * 30), (113, b"f" * 31)]


@pytest.mark.tools
@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_generated_pcapng_reads_the_same_in_tshark(tmp_path):
    segs = pcapgen.conversation([("c", b"\x16\x03\x01\x00\x01\x01")])
    frames = pcapgen.frames(segs)
    packets = [(i % 2, t, f) for i, (t, f) in enumerate(frames)]
    path = pcapgen.write_pcapng(tmp_path / "x.pcapng", [(1, 6), (1, 9)], packets,
                                big_endian=True, keylog="CLIENT_RANDOM 00 11", unknown_block=False)
    out = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "frame.len"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert [int(n) for n in out] == [len(f) for _, _, f in CaptureFile(path)]


def test_gzip_compressed_capture(tmp_path):
    path = tmp_path / "x.pcap.gz"
    path.write_bytes(gzip.compress(pcapgen.pcap_bytes(FRAMES, 1)))
    cf = CaptureFile(path)
    assert [f for _, _, f in cf] == [f for _, f in FRAMES]
    assert "gzip" in cf.notes[0]


def test_stdin_dash(monkeypatch):
    data = pcapgen.pcap_bytes(FRAMES, 1)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(io.BytesIO(data))))
    cf = CaptureFile("-")
    assert cf.name == "stdin" and len(list(cf)) == 3


def test_reads_in_chunks_smaller_than_records(tmp_path, monkeypatch):
    monkeypatch.setattr(pcapfile, "CHUNK", 7)
    path = pcapgen.write_pcap(tmp_path / "x.pcap", FRAMES, 1)
    assert [f for _, _, f in CaptureFile(path)] == [f for _, f in FRAMES]
    ng = pcapgen.write_pcapng(tmp_path / "x.pcapng", [(1, 6)], [(0, t, f) for t, f in FRAMES])
    assert [f for _, _, f in CaptureFile(ng)] == [f for _, f in FRAMES]


@pytest.mark.parametrize("content", [b"hello, this is text\n", b"\x89PNG\r\n\x1a\n....", b""])
def test_not_a_capture_raises_input_error_with_one_line(tmp_path, content):
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    with pytest.raises(InputError) as e:
        CaptureFile(path)
    assert "notes.txt" in str(e.value) and "\n" not in str(e.value)


def test_missing_file_raises_input_error(tmp_path):
    with pytest.raises(InputError, match="cannot open"):
        CaptureFile(tmp_path / "absent.pcap")


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_truncated_file_yields_the_packets_before_the_cut_and_a_note(tmp_path, fmt):
    if fmt == "pcap":
        data = pcapgen.pcap_bytes(FRAMES, 1)
    else:
        data = pcapgen.pcapng_bytes([(1, 6)], [(0, t, f) for t, f in FRAMES])
    path = tmp_path / f"x.{fmt}"
    path.write_bytes(data[:-10])
    cf = CaptureFile(path)
    assert [f for _, _, f in cf] == [f for _, f in FRAMES[:2]]
    assert any("truncated after 2 packets" in n for n in cf.notes)


def test_corrupt_record_length_stops_with_a_note(tmp_path):
    data = bytearray(pcapgen.pcap_bytes(FRAMES, 1))
    second = 24 + 16 + 60
    data[second + 8 : second + 12] = (5_000_000).to_bytes(4, "little")
    path = tmp_path / "x.pcap"
    path.write_bytes(bytes(data))
    cf = CaptureFile(path)
    assert len(list(cf)) == 1
    assert any("corrupt" in n for n in cf.notes)


def test_corrupt_pcapng_block_stops_with_a_note(tmp_path):
    data = bytearray(pcapgen.pcapng_bytes([(1, 6)], [(0, t, f) for t, f in FRAMES],
                                          unknown_block=False))
    data[-4:] = b"\xff\xff\xff\xff"  # trailing length of the last block no longer matches
    path = tmp_path / "x.pcapng"
    path.write_bytes(bytes(data))
    cf = CaptureFile(path)
    assert len(list(cf)) == 2
    assert any("corrupt pcapng block" in n for n in cf.notes)


def _pcapng_block(btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    return struct.pack("<II", btype, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))


def test_skipped_blocks_are_noted_a_few_then_counted_in_one_note():
    # each note goes into the report: a capture of 10,000 packet blocks naming no interface
    # must not write 10,000 lines there
    unknown_interface = _pcapng_block(6, struct.pack("<IIIII", 5, 0, 0, 4, 4) + b"abcd")
    other_secrets = _pcapng_block(10, struct.pack("<II", 0x57475344, 4) + b"wgsd")
    data = pcapgen.pcapng_bytes([(1, 6)], [], unknown_block=False)
    cf = CaptureFile(io.BytesIO(data + unknown_interface * 10_000 + other_secrets))
    assert list(cf) == []
    assert cf.notes == [
        *["skipped a packet block (unknown interface) after 0 packets"] * pcapfile.SKIP_NOTES,
        f"{10_001 - pcapfile.SKIP_NOTES:,} more block(s) skipped",
    ]


def test_each_secrets_block_is_a_part_of_the_key_log_and_later_lines_win():
    random = "ab" * 32
    first = f"CLIENT_RANDOM {random} {'01' * 48}\nnot a key log line\n"
    second = f"CLIENT_RANDOM {random} {'02' * 48}"
    out = io.BytesIO()
    writer = PcapngWriter(out)
    writer.add_interface(LINKTYPE_ETHERNET)
    writer.add_secrets(first)
    writer.add_secrets(second)
    writer.add_packet(0, 1_700_000_000.0, ETH + _ipv4_tcp(client_hello()))
    cf = CaptureFile(io.BytesIO(out.getvalue()))
    assert len(list(cf)) == 1
    assert cf.keylog_parts == [first, second + "\n"]
    assert cf.keylog_text == first + second + "\n" == cf.keylog
    reader = ObservationReader(io.BytesIO(out.getvalue()))
    assert len(list(reader)) == 1
    assert reader.keylog is not None and reader.keylog.skipped_lines == 1
    assert reader.keylog.get(bytes.fromhex(random), "CLIENT_RANDOM") == b"\x02" * 48


def _ipv4_tcp(payload: bytes) -> bytes:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 0, 0x4000, 64, 6, 0,
                     bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    return ip + struct.pack("!HHIIBBHHH", 40000, 443, 1, 0, 0x50, 0x18, 65535, 0, 0) + payload
