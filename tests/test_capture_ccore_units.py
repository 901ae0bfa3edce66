"""The C capture core's own edges: no leaked references, misuse refused, bounded reads.

Skipped, with the reason, when the extension is not built (CI builds it).
"""

from __future__ import annotations

import gc
import io
import struct
import sys

import pytest

from mtlsprobe.capture import linklayer
from mtlsprobe.capture.pcapfile import CaptureFile
from tests import pcapgen
from tests.coretwins import CCORE, ROOT, assert_same, needs_ccore, observe, running

pytestmark = needs_ccore
FIXTURES = ROOT / "fixtures" / "pcaps"


def _blocks_after(work, rounds: int) -> int:
    """Allocated interpreter blocks after ``rounds`` more runs of ``work`` than a warm-up."""
    for _ in range(3):
        work()
    gc.collect()
    before = sys.getallocatedblocks()
    for _ in range(rounds):
        work()
    gc.collect()
    return sys.getallocatedblocks() - before


@pytest.mark.skipif(sys.getallocatedblocks() == 0, reason="not on pymalloc (sanitizer run)")
def test_walking_decoding_and_leasing_leak_nothing(tmp_path):
    """A lost reference per frame, lease or note would leave thousands of blocks behind."""
    bulk = pcapgen.conversation([("c", b"\x16\x03\x01\x00\x05hello"),
                                 ("s", (b"\x17\x03\x03\x40\x00" + b"r" * 16384) * 4)])
    path = pcapgen.capture(bulk, tmp_path / "bulk.pcap", "vlan")
    damaged = (FIXTURES / "direct-tls13.pcapng").read_bytes()[:-100]

    def work() -> None:
        with running(True):
            decode = linklayer.frame_decoder()
            skipped: dict[str, int] = {}
            for _, lt, frame in CaptureFile(io.BytesIO(damaged)):
                decode(lt, frame, skipped)
            for _, lt, frame in CaptureFile(FIXTURES / "lab" / "haproxy-tcp.pcapng"):
                decode(lt, frame[:30], skipped)  # cut frames: the skip paths
            observe(path, True)

    left = _blocks_after(work, 40)  # about 150 (caches filling); a leak per frame: 4,800
    assert left < 600, left


def test_a_walker_walks_one_capture_once():
    data = pcapgen.pcap_bytes([], 1)
    cap = CaptureFile(io.BytesIO(data))
    walker = CCORE.Walker(cap, io.BytesIO(data[4:]), data[:4], False)
    with pytest.raises(TypeError):
        walker.__init__(cap, io.BytesIO(data[4:]), data[:4], False)
    assert list(walker) == []
    with pytest.raises(TypeError, match="not initialised"):
        next(CCORE.Walker.__new__(CCORE.Walker))


def test_a_lease_without_its_layout_takes_nothing():
    lease = CCORE.LeaseCore.__new__(CCORE.LeaseCore)
    assert lease(b"\0" * 100, 0, 100, 0.0, 1) is False
    share = CCORE.ShareCore.__new__(CCORE.ShareCore)
    assert share(b"\0" * 100, 0, 100, 0.0, 1) is False


def test_a_huge_snap_length_does_not_make_a_huge_read():
    """A record past 64 MiB is damage even under a 4 GiB snap length: noted, not read."""
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 0xFFFFFFFF, 1)
    data = header + struct.pack("<IIII", 1, 0, 0xFFFFFFF0, 0xFFFFFFF0) + b"x" * 100
    result = assert_same(data, "huge snap length")
    assert result["notes"] == ["corrupt pcap record after 0 packets (4294967280-byte frame), "
                               "stopped"]


def test_decode_hands_odd_arguments_to_the_python_decoder():
    with running(True):
        decode = linklayer.frame_decoder()
    frame = pcapgen.frame("ether", pcapgen.ip_tcp(pcapgen.Seg("10.0.0.1", 1, "10.0.0.2", 2, 5, 0,
                                                              0x02)))
    seg = decode(1, frame, None)
    assert seg is not None and seg == linklayer.decode(1, frame)
    assert decode(1, bytearray(frame)) == seg  # not bytes: the Python decoder's
    assert decode(1 << 70, frame, {}) is None  # a link type past 64 bits: unsupported
    assert decode(linktype=1, frame=frame) == seg


def test_a_stale_build_is_not_run(monkeypatch):
    """A C core built from older sources (another API version) is ignored, and said so."""
    import importlib

    from mtlsprobe.capture import core

    monkeypatch.delenv(core.PURE_PYTHON_ENV, raising=False)
    monkeypatch.setattr(CCORE, "API_VERSION", core.API_VERSION + 1)
    try:
        importlib.reload(core)
        assert core.ACTIVE is None and core.STALE
        assert "out of date" in core.name()
    finally:
        monkeypatch.undo()
        importlib.reload(core)
    assert core.BUILT is CCORE and not core.STALE
