"""Test helper: the C capture core and its pure-Python twin on the same input, side by side.

``capture.core.ACTIVE`` picks the core for each capture file opened; ``running(ccore)``
switches it for a block. ``boundary(data, ccore)`` is everything the two cores produce at
their boundary for one capture's bytes: the file layer's frames (time, link type, bytes,
packet comment), notes, key log and format, an exception's type and text, then each
frame's ``TcpSegment`` (or None), its ``--jobs`` share hash and the ``skipped`` counts.
The cores must give equal values; tests compare them with ``==`` (floats exactly).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from mtlsprobe.capture import core, linklayer
from mtlsprobe.capture.observations import ObservationReader
from mtlsprobe.capture.partition import share_hash
from mtlsprobe.capture.pcapfile import CaptureFile
from mtlsprobe.model.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "pcaps"
CCORE = core.BUILT
needs_ccore = pytest.mark.skipif(
    CCORE is None,
    reason="the C capture core is not built (pip install -e . or python3 setup.py "
           "build_ext --inplace); CI builds it",
)


@contextmanager
def running(ccore: bool) -> Iterator[None]:
    """Run the C core (``ccore``) or the Python one inside the block."""
    saved = core.ACTIVE
    core.ACTIVE = CCORE if ccore else None
    try:
        yield
    finally:
        core.ACTIVE = saved


def captures(*folders: Path) -> list[Path]:
    """The pcap and pcapng files under ``folders`` (gzip-compressed ones too)."""
    found: list[Path] = []
    for folder in folders:
        if folder.is_dir():
            found += (p for p in folder.rglob("*") if p.is_file() and _is_capture(p))
    return sorted(found)


def _is_capture(path: Path) -> bool:
    name = path.name.removesuffix(".gz")
    return name.endswith((".pcap", ".pcapng", ".cap"))


def walk(data: bytes, ccore: bool) -> dict[str, object]:
    """What the file layer gives for ``data`` on one core."""
    with running(ccore):
        try:
            cap = CaptureFile(io.BytesIO(data))
        except InputError as e:
            return {"input_error": str(e)}
        packets: list[tuple[float, int, bytes, str | None]] = []
        error = None
        try:
            for ts, linktype, frame in cap:
                packets.append((ts, linktype, frame, cap.comment))
        except Exception as e:  # compared between the cores
            error = (type(e).__name__, str(e))
        return {"packets": packets, "notes": cap.notes, "keylog": cap.keylog_text,
                "format": cap.format, "claimed": cap.claimed, "comment": cap.comment,
                "error": error}


def decode_all(frames: list[tuple[int, bytes]], ccore: bool) -> dict[str, object]:
    """Each frame's segment (or None) and the skip reasons counted, on one core."""
    with running(ccore):
        decode = linklayer.frame_decoder()
    skipped: dict[str, int] = {}
    segments = [decode(linktype, frame, skipped) for linktype, frame in frames]
    # without a skipped mapping too: the same segments, nothing counted
    uncounted = [decode(linktype, frame, None) for linktype, frame in frames[:50]]
    return {"segments": segments, "skipped": skipped, "uncounted": uncounted,
            "shares": _shares(frames, segments, ccore)}


def _shares(frames: list[tuple[int, bytes]], segments: list[linklayer.TcpSegment | None],
            ccore: bool) -> list[int | None]:
    """Each frame's --jobs share hash: the C walk's where it hashes the frame (it drops
    other shares' frames undecoded), else the flow table's, from the decoded segment."""
    out: list[int | None] = []
    for (linktype, frame), seg in zip(frames, segments, strict=True):
        value = CCORE.share_hash(linktype, frame) if ccore and CCORE is not None else None
        if value is None and seg is not None:
            value = share_hash(seg.src, seg.sport, seg.dst, seg.dport)
        out.append(value)
    return out


def boundary(data: bytes, ccore: bool) -> dict[str, object]:
    """Everything the core gives at its boundary for one capture's bytes."""
    walked = walk(data, ccore)
    frames = [(lt, frame) for _, lt, frame, _ in walked.get("packets", ())]  # type: ignore[attr-defined]
    return {**walked, **decode_all(frames, ccore)}


def observe(path: Path, ccore: bool) -> dict[str, object]:
    """The streaming reader's observations, counters, skip reasons and notes, on one core
    (the flow table and the bulk shortcut's leases run on it)."""
    with running(ccore):
        reader = ObservationReader(path)
        observations = list(reader)
    return {"observations": observations, "stats": reader.stats, "skipped": reader.skipped,
            "notes": reader.notes}


def assert_same(data: bytes, what: str) -> dict[str, object]:
    """Both cores give the same boundary values for ``data``; the Python core's."""
    python, c = boundary(data, False), boundary(data, True)
    if python != c:
        for key in python:
            if python[key] != c.get(key):
                raise AssertionError(f"{what}: the cores differ in {key}: "
                                     f"{_first_difference(python[key], c.get(key))}")
    return python


def _first_difference(a: object, b: object) -> str:
    if isinstance(a, list) and isinstance(b, list):
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            if x != y:
                return f"item {i}: Python {x!r:.300} / C {y!r:.300}"
        return f"lengths {len(a)} / {len(b)}"
    return f"Python {a!r:.300} / C {b!r:.300}"
