"""--jobs shares (capture.partition): one hash of a connection's endpoints, the same in both
cores, and the C walk drops the other shares' frames before anything decodes them.

Every frame of every capture (fixtures/pcaps, and ../shared/pcaps when present) that the C
core hashes gets the hash the Python twin computes from its decoded segment; a C walk with
``capture.share`` set yields only its own share's frames and counts the rest as claimed.
"""

from __future__ import annotations

import io
import zlib

import pytest

from mtlsprobe.capture import linklayer
from mtlsprobe.capture.partition import ShareFilter, share_hash
from mtlsprobe.capture.pcapfile import CaptureFile
from mtlsprobe.model.errors import InputError
from tests.coretwins import CCORE, ROOT, SHARED, captures, needs_ccore, running

ALL = captures(ROOT / "fixtures" / "pcaps", SHARED)


def _frames(data: bytes) -> list[tuple[int, bytes]]:
    with running(False):
        try:
            cap = CaptureFile(io.BytesIO(data))
        except InputError:
            return []
        frames: list[tuple[int, bytes]] = []
        try:
            for _, linktype, frame in cap:
                frames.append((linktype, frame))
        except Exception:  # a damaged capture: the frames before the damage
            pass
        return frames


def test_the_hash_is_crc32_of_both_endpoints_lower_first_whichever_side_sent():
    a = bytes([10, 0, 0, 9]) + (443).to_bytes(2, "big")
    b = bytes([10, 0, 0, 10]) + (50000).to_bytes(2, "big")
    assert share_hash("10.0.0.10", 50000, "10.0.0.9", 443) == zlib.crc32(a + b)
    assert share_hash("10.0.0.9", 443, "10.0.0.10", 50000) == zlib.crc32(a + b)
    six = share_hash("2001:db8::1", 1, "2001:db8::2", 2)
    assert six == share_hash("2001:db8:0::2", 2, "2001:db8::1", 1)


def test_shares_split_connections_and_every_connection_has_exactly_one():
    keys = [((f"10.1.{i >> 8}.{i & 255}", 40000 + i % 999), ("10.9.0.1", 443))
            for i in range(4000)]
    filters = [ShareFilter(k, 3) for k in range(3)]
    counts = [sum(f.mine(key) for key in keys) for f in filters]
    assert sum(counts) == len(keys)
    assert min(counts) > len(keys) / 3 * 0.9  # spread evenly, not by address parity
    with pytest.raises(ValueError):
        ShareFilter(2, 2)


@needs_ccore
@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_the_c_walk_hashes_every_frame_as_the_python_twin(path):
    assert CCORE is not None
    hashed = 0
    for linktype, frame in _frames(path.read_bytes()):
        c = CCORE.share_hash(linktype, frame)
        if c is None:
            continue
        seg = linklayer.decode(linktype, frame)
        assert seg is not None, "C hashed a frame the Python decoder does not take"
        assert c == share_hash(seg.src, seg.sport, seg.dst, seg.dport)
        hashed += 1
    if path.is_relative_to(ROOT):
        assert hashed or "nontcp" in path.name


@needs_ccore
def test_a_c_walk_with_a_share_yields_only_its_own_frames():
    path = ROOT / "fixtures" / "pcaps" / "connect-tunnel.pcap"
    data = path.read_bytes()
    total = len(_frames(data))
    seen = []
    for k in range(2):
        with running(True):
            cap = CaptureFile(io.BytesIO(data))
            cap.share = (k, 2)
            frames = list(cap)
        for _, linktype, frame in frames:
            seg = linklayer.decode(linktype, frame)
            assert seg is not None
            assert share_hash(seg.src, seg.sport, seg.dst, seg.dport) % 2 == k
        assert len(frames) + cap.claimed == total
        seen.append(len(frames))
    assert sum(seen) == total and all(seen)
