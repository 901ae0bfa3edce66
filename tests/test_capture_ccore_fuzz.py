"""Hostile captures through the C capture core and its Python twin: identical results, no crash.

A fixed budget (seeded, so a failure replays): scripts/fuzz_captures.py's mutations (byte
flips, deletions, insertions) and truncations of real and generated captures, huge length
fields written over record and block headers, and hypothesis-made files and frames. Each
input goes through both cores' walk and decode (``tests/coretwins.py``); some through the
whole of analyze, bulk shortcut included. scripts/sanitizer-check runs this file on a build
with AddressSanitizer and UndefinedBehaviorSanitizer. MTLSPROBE_FUZZ_SCALE=N multiplies
the budget (N times the mutants and examples, other seeds) for a longer run by hand.
"""

from __future__ import annotations

import importlib.util
import os
import random
import ssl
import struct
from pathlib import Path

import pytest
import tlsgen
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtlsprobe.capture import pcapfile
from mtlsprobe.run import expectations
from mtlsprobe.run.analyze import analyze
from tests import pcapgen
from tests.coretwins import (
    ROOT,
    assert_same,
    captures,
    decode_all,
    needs_ccore,
    observe,
    running,
)

pytestmark = needs_ccore

_spec = importlib.util.spec_from_file_location("fuzz_captures",
                                               ROOT / "scripts" / "fuzz_captures.py")
assert _spec is not None and _spec.loader is not None
fuzz_captures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz_captures)

SCALE = max(1, int(os.environ.get("MTLSPROBE_FUZZ_SCALE", "1")))
SEEDS = [p for p in captures(ROOT / "fixtures" / "pcaps") if p.stat().st_size < 400_000]
FUZZ = settings(max_examples=300 * SCALE, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
HUGE = (0xFFFFFFFF, 0x80000000, 0x7FFFFFFF, 0x04000001, 262145, 0x10000, 13, 12, 11, 0)


def _generated() -> dict[str, bytes]:
    """Small captures of every link type, encapsulation and pcapng block kind."""
    segs = pcapgen.conversation([("c", b"\x16\x03\x01\x00\x05hello"),
                                 ("s", b"\x16\x03\x03\x00\x02hi" + b"x" * 2000)])
    out = {}
    for link in [*pcapgen.LINKTYPES, *pcapgen.ENCAPSULATIONS, "mpls/vlan/vxlan"]:
        out[link] = pcapgen.pcap_bytes(pcapgen.frames(segs, link), pcapgen.linktype(link),
                                       nano=link.startswith("v"), big_endian="6" in link)
    frames = pcapgen.frames(segs, "qinq")
    packets = [(i % 2, ts, frame) for i, (ts, frame) in enumerate(frames)]
    for big in (False, True):
        out[f"pcapng-{big}"] = pcapgen.pcapng_bytes(
            [(1, 6), (1, 0x89)], packets, big_endian=big, keylog="CLIENT_RANDOM 00 11",
            kinds={1: "pb", 3: "spb"}, epb_options={2: [(1, b"a comment \xff")]})
    return out


GENERATED = _generated()


def _seed_bytes() -> list[tuple[str, bytes]]:
    return [(p.name, p.read_bytes()) for p in SEEDS] + sorted(GENERATED.items())


def test_mutated_captures_give_the_same_results_on_both_cores():
    rnd = random.Random(14 * SCALE)
    runs = 0
    for name, data in _seed_bytes():
        for i in range(12 * SCALE):
            assert_same(fuzz_captures.mutate(data, rnd), f"{name} mutant {i}")
            runs += 1
    assert runs >= 400


def test_truncated_captures_give_the_same_results_on_both_cores():
    rnd = random.Random(15 * SCALE)
    for name, data in _seed_bytes():
        for cut in {0, 1, 4, 23, 24, 27, 40, len(data) - 1, *rnd.sample(range(len(data)), 6)}:
            assert_same(data[:cut], f"{name} cut at {cut}")


def _headers(data: bytes) -> list[int]:
    """Offsets of the record (pcap) or block (pcapng) headers of a well-formed capture."""
    if data[:4] == b"\x0a\x0d\x0d\x0a":
        order = "<" if data[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
        out, pos = [], 0
        while pos + 8 <= len(data):
            out.append(pos)
            pos += max(12, struct.unpack_from(order + "I", data, pos + 4)[0])
        return out
    order = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    out, pos = [], 24
    while pos + 16 <= len(data):
        out.append(pos)
        pos += 16 + struct.unpack_from(order + "I", data, pos + 8)[0]
    return out


def test_huge_and_tiny_length_fields_give_the_same_results_on_both_cores():
    rnd = random.Random(16)
    for name, data in _seed_bytes():
        heads = _headers(data)
        for head in rnd.sample(heads, min(6, len(heads))):
            for field in (4, 8, 12, 16, 20, 24):  # block length, record/packet lengths
                for value in rnd.sample(HUGE, 3):
                    for order in "<>":
                        mutant = bytearray(data)
                        if head + field + 4 <= len(mutant):
                            struct.pack_into(order + "I", mutant, head + field, value)
                        assert_same(bytes(mutant), f"{name} @{head}+{field}={value:#x}")


PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
PCAPNG_START = pcapgen.pcapng_bytes([(1, 6)], [], unknown_block=False)


@FUZZ
@given(st.sampled_from([PCAP_HEADER, PCAPNG_START, PCAPNG_START[:28]]), st.binary(max_size=600))
def test_hypothesis_files_give_the_same_results_on_both_cores(head, tail):
    assert_same(head + tail, "hypothesis file")


@FUZZ
@given(st.sampled_from(sorted(GENERATED)), st.data())
def test_hypothesis_mutated_frames_decode_the_same_on_both_cores(link, data):
    frames = [(lt, frame) for _, lt, frame, _ in assert_same(GENERATED[link], link)["packets"]]
    linktype, frame = data.draw(st.sampled_from(frames))
    mutant = bytearray(frame)
    for _ in range(data.draw(st.integers(1, 6))):
        if not mutant:
            break
        at = data.draw(st.integers(0, len(mutant) - 1))
        mutant[at] = data.draw(st.integers(0, 255))
    mutant = mutant[: data.draw(st.integers(0, len(mutant)))]
    linktype = data.draw(st.sampled_from([linktype, 0, 1, 12, 101, 108, 113, 228, 229, 276, 147]))
    cases = [(linktype, bytes(mutant))]
    assert decode_all(cases, False) == decode_all(cases, True)


@pytest.fixture(scope="module")
def bulk_capture() -> bytes:
    """A TLS 1.3 session with 300 KB of bulk (the lease shortcut engages), on VLAN."""
    session = tlsgen.run(version="TLSv1.3", verify=ssl.CERT_NONE,
                         server_says=bytes(range(256)) * 1200)
    segs = pcapgen.conversation(pcapgen.messages_of(session))
    return pcapgen.pcap_bytes(pcapgen.frames(segs, "vlan"), 1)


def test_mutated_bulk_captures_give_the_same_analysis_on_both_cores(bulk_capture, tmp_path):
    rnd = random.Random(17 * SCALE)
    expect = expectations.build(ca=(), pins=(), baseline=None)
    path = tmp_path / "mutant.pcap"
    for i in range(25 * SCALE):
        path.write_bytes(bulk_capture if i == 0 else fuzz_captures.mutate(bulk_capture, rnd))
        with running(False):
            python = analyze([path], expect, jobs=1)
        with running(True):
            c = analyze([path], expect, jobs=1)
        assert (c.results, c.notes) == (python.results, python.notes), f"mutant {i}"
        streamed = observe(path, True)
        assert streamed == observe(path, False), f"mutant {i}"
        if i == 0:  # the bulk shortcut ran: most frames were taken by leases
            assert streamed["stats"]["bulk_frames"] > 100  # type: ignore[index]


def test_small_read_chunks_give_the_same_results_on_both_cores(monkeypatch):
    """Refills of a few bytes move every record across the read buffer's end."""
    rnd = random.Random(18)
    seeds = _seed_bytes()[::4]
    for chunk in (1, 7, 64, 1500):
        monkeypatch.setattr(pcapfile, "CHUNK", chunk)
        for name, data in seeds:
            assert_same(data, f"{name} in {chunk}-byte reads")
            assert_same(fuzz_captures.mutate(data, rnd), f"{name} mutant, {chunk}-byte reads")


def test_the_seeds_are_there():
    assert len(SEEDS) >= 15 and all(Path(p).is_file() for p in SEEDS)
