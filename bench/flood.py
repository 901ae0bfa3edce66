"""Peak memory and CPU of ``mtlsprobe analyze`` on floods of one-packet flows, beside tshark.

Usage:
    python bench/flood.py [--flows 100000,200000,1000000] [--kind hello|syn]
                          [--servers 1] [--dir DIR] [--keep] [--no-tshark]

Writes, per N, a pcap of N one-packet TCP flows (what a scan or a SYN flood looks like on a
SPAN port): ``hello``, a single segment carrying a small ClientHello (SNI
``flood.example``, ``sK.flood.example`` in a scan), no SYN and no answer; ``syn``, a bare
SYN. Each flow comes from its own client address and port; ``--servers K`` spreads them
over K server addresses (a scan)
instead of one. Headers are packed with struct (no checksums): a million flows in a few
seconds. Then runs ``mtlsprobe analyze FILE --format json`` in a subprocess and reports its
peak RSS (``getrusage(RUSAGE_CHILDREN).ru_maxrss``, measured in a fresh child per run so
runs do not mask each other) and CPU time, and the same for
``tshark -r FILE -T fields -e tls.handshake.type -Y tls`` when tshark is installed, with
the ratios.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ETH = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00"
SERVER_PORT = 443


def client_hello(sni: bytes = b"flood.example") -> bytes:
    """A small but well-formed TLS 1.2 ClientHello record with an SNI (about 90 bytes)."""
    name = struct.pack("!BH", 0, len(sni)) + sni
    sni_ext = struct.pack("!HHH", 0, len(name) + 2, len(name)) + name
    body = (b"\x03\x03" + bytes(range(32)) + b"\x00" + struct.pack("!H", 4)
            + b"\xc0\x2f\x13\x01" + b"\x01\x00" + struct.pack("!H", len(sni_ext)) + sni_ext)
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def write_flood(path: Path, flows: int, kind: str = "hello", servers: int = 1,
                start: float = 1_700_000_000.0, step: float = 1e-5) -> int:
    """Write ``flows`` one-packet flows to ``path`` (pcap, Ethernet); returns the file size."""
    # one name per server address in a scan (a server is its SNI, else its address)
    hellos = [client_hello() if servers == 1 else client_hello(f"s{k}.flood.example".encode())
              for k in range(servers)] if kind == "hello" else [b""]
    flags = 0x18 if kind == "hello" else 0x02  # PSH|ACK with the hello, or a bare SYN
    pack_ip = struct.Struct("!BBHHHBBH4s4s").pack
    pack_tcp = struct.Struct("!HHIIBBHHH").pack
    pack_rec = struct.Struct("<IIII").pack
    out = bytearray()
    with path.open("wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        for i in range(flows):
            client = struct.pack("!BBH", 10, 1 + (i >> 24) % 200, i & 0xFFFF)
            server = struct.pack("!BBH", 192, 168, 1 + i % servers)
            sport = 1024 + (i * 7919) % 64000
            payload = hellos[i % len(hellos)]
            ip = pack_ip(0x45, 0, 40 + len(payload), 0, 0x4000, 64, 6, 0, client, server)
            tcp = pack_tcp(sport, SERVER_PORT, 1000 + i, 1 if flags & 0x10 else 0, 0x50, flags,
                           65535, 0, 0)
            frame = ETH + ip + tcp + payload
            ts = start + i * step
            sec = int(ts)
            out += pack_rec(sec, int((ts - sec) * 1e6), len(frame), len(frame))
            out += frame
            if len(out) > 1 << 22:
                f.write(out)
                out.clear()
        f.write(out)
    return path.stat().st_size


_CHILD = """
import resource, subprocess, sys, time
t = time.perf_counter()
p = subprocess.run(sys.argv[2:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
wall = time.perf_counter() - t
r = resource.getrusage(resource.RUSAGE_CHILDREN)
err = p.stderr.decode(errors="replace").strip().splitlines()
print(repr((p.returncode, wall, r.ru_utime + r.ru_stime, r.ru_maxrss, err[-1] if err else "")))
"""


def measure(cmd: list[str], env: dict[str, str] | None = None) -> tuple[int, float, float, float,
                                                                         str]:
    """(exit code, wall s, CPU s, peak RSS MB, last stderr line) of ``cmd`` run in a fresh
    child (so RUSAGE_CHILDREN is that command's alone)."""
    out = subprocess.run([sys.executable, "-c", _CHILD, "--", *cmd], capture_output=True,
                         text=True, env=env, check=True).stdout
    code, wall, cpu, rss_kb, last = ast.literal_eval(out)
    return code, wall, cpu, rss_kb / 1024, last


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flows", default="100000,200000,1000000")
    ap.add_argument("--kind", choices=("hello", "syn"), default="hello")
    ap.add_argument("--servers", type=int, default=1)
    ap.add_argument("--dir", type=Path)
    ap.add_argument("--keep", action="store_true", help="keep the generated captures")
    ap.add_argument("--no-tshark", action="store_true")
    ap.add_argument("--jobs", default="1", help="analyze --jobs")
    args = ap.parse_args()
    tmp = args.dir or Path(tempfile.mkdtemp(prefix="mtlsprobe-flood-"))
    tmp.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    tshark = None if args.no_tshark else shutil.which("tshark")
    try:
        for n in (int(x) for x in args.flows.split(",")):
            path = tmp / f"flood-{args.kind}-{n}-{args.servers}.pcap"
            t = time.perf_counter()
            size = write_flood(path, n, args.kind, args.servers)
            print(f"{n:>9,} {args.kind} flows to {args.servers} server(s): {size / 1e6:.1f} MB "
                  f"written in {time.perf_counter() - t:.1f} s", flush=True)
            cmd = [sys.executable, "-m", "mtlsprobe", "analyze", str(path), "--format", "json",
                   "--jobs", args.jobs]
            code, wall, cpu, rss, last = measure(cmd, env)
            print(f"  mtlsprobe analyze: exit {code}, {wall:.1f} s wall, {cpu:.1f} s CPU, "
                  f"peak RSS {rss:.0f} MB" + (f"  [{last}]" if code not in (10, 11, 12) else ""),
                  flush=True)
            if tshark:
                tcode, twall, tcpu, trss, _ = measure(
                    [tshark, "-r", str(path), "-T", "fields", "-e", "tls.handshake.type",
                     "-Y", "tls"])
                print(f"  tshark:            exit {tcode}, {twall:.1f} s wall, {tcpu:.1f} s CPU, "
                      f"peak RSS {trss:.0f} MB; ratio mtlsprobe/tshark: CPU {cpu / tcpu:.2f}, "
                      f"RSS {rss / trss:.2f}", flush=True)
            print(json.dumps({"flows": n, "kind": args.kind, "servers": args.servers,
                              "exit": code, "cpu_s": round(cpu, 2), "rss_mb": round(rss)}))
            if not args.keep:
                path.unlink()
    finally:
        if args.dir is None and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
