"""Time reading + reassembling a capture with mtlsprobe.capture, against tshark on the same file.

Usage:
    python bench/read_speed.py [CAPTURE] [--size-mb 200] [--segment 16384] [--keep]

Without CAPTURE, writes a loopback-like pcap (Ethernet, many TLS-looking connections: a
handshake, then bulk application data in ``--segment``-byte segments, FIN) to a temp dir.
Prints MB/s and packets/s for mtlsprobe and for ``tshark -r FILE -T fields -e frame.number``,
and their ratio. Headers are packed with struct (no checksums) so generation stays fast;
tests/pcapgen.py builds the same conversations with scapy for the tests.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mtlsprobe.capture.transcripts import CaptureReader
from tests import pcapgen

ETH = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00"


def fast_frame(s: pcapgen.Seg) -> bytes:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(s.payload), 0, 0x4000, s.ttl, 6, 0,
                     bytes(map(int, s.src.split("."))), bytes(map(int, s.dst.split("."))))
    tcp = struct.pack("!HHIIBBHHH", s.sport, s.dport, s.seq, s.ack, 0x50, s.flags, 65535, 0, 0)
    return ETH + ip + tcp + s.payload


def generate(path: Path, size_mb: int, segment: int) -> int:
    """Write ~size_mb MB of loopback-like TLS connections; returns the packet count."""
    bulk = os.urandom(1 << 20)
    hello = b"\x16\x03\x01\x02\x00\x01" + os.urandom(512 - 6)
    flight = b"\x16\x03\x03\x0f\xa0\x02" + os.urandom(4000)
    per_conn = 4 << 20  # 4 MiB of application data per connection
    packets, written, conn = 0, 0, 0
    with path.open("wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        while written < size_mb << 20:
            msgs = [("c", hello), ("s", flight), ("c", b"\x17\x03\x03\x00\x40" + bulk[:64])]
            msgs += [("s", bulk[: per_conn // 4])] * 4
            segs = pcapgen.conversation(msgs, client=("127.0.0.1", 30000 + conn % 30000),
                                        server=("127.0.0.1", 443), segment_size=segment,
                                        start=1_700_000_000 + conn, step=1e-5)
            for s in segs:
                frame = fast_frame(s)
                sec = int(s.ts)
                f.write(struct.pack("<IIII", sec, int((s.ts - sec) * 1e6), len(frame),
                                    len(frame)))
                f.write(frame)
                written += len(frame) + 16
                packets += 1
            conn += 1
    return packets


def time_mtlsprobe(path: Path) -> tuple[float, int, int]:
    start = time.perf_counter()
    reader = CaptureReader(path)
    flows = sum(1 for _ in reader)
    return time.perf_counter() - start, reader.stats["packets"], flows


def time_tshark(path: Path) -> float | None:
    if shutil.which("tshark") is None:
        return None
    start = time.perf_counter()
    subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "frame.number"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("capture", nargs="?", type=Path)
    ap.add_argument("--size-mb", type=int, default=200)
    ap.add_argument("--segment", type=int, default=16384)
    ap.add_argument("--keep", action="store_true", help="keep the generated capture")
    args = ap.parse_args()
    tmp = None
    path = args.capture
    if path is None:
        tmp = Path(tempfile.mkdtemp(prefix="mtlsprobe-bench-"))
        path = tmp / "loopback.pcap"
        n = generate(path, args.size_mb, args.segment)
        print(f"generated {path} ({n} packets, segment {args.segment} bytes)")
    try:
        mb = path.stat().st_size / 1e6
        ours, packets, flows = time_mtlsprobe(path)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"file: {mb:.1f} MB, {packets} packets")
        print(f"mtlsprobe: {ours:.2f} s  {mb / ours:.1f} MB/s  {packets / ours:,.0f} packets/s  "
              f"{flows} TLS flows  peak RSS {rss:.0f} MB")
        theirs = time_tshark(path)
        if theirs is None:
            print("tshark: not installed")
        else:
            print(f"tshark -T fields -e frame.number: {theirs:.2f} s  {mb / theirs:.1f} MB/s  "
                  f"{packets / theirs:,.0f} packets/s")
            print(f"ratio (mtlsprobe speed / tshark speed): {theirs / ours:.2f}x")
    finally:
        if tmp is not None and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
