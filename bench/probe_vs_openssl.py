"""Benchmark: one full live probe of a loopback target vs sequential `openssl s_client` runs.

Starts a loopback ReferenceServer requiring client certificates, times `probe_target` (all
attempts: TLS 1.3/1.2 without a cert, untrusted cert, agent cert, repeats) and the same
number of sequential `openssl s_client -connect ... </dev/null` handshakes against the same
server, and prints both medians and their ratio (probe / openssl; below 1.0 is the aim).

    python3 bench/probe_vs_openssl.py [--rounds 5] [--repeat 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mtlsprobe.live import pki
from mtlsprobe.live.credentials import Credentials
from mtlsprobe.live.probe import ProbeOptions, attempts_for, probe_target
from mtlsprobe.model import Endpoint
from mtlsprobe_demo.server import ReferenceServer


def time_probe(target: Endpoint, options: ProbeOptions) -> float:
    started = time.perf_counter()
    routes = probe_target(target, options)
    elapsed = time.perf_counter() - started
    transcripts = [t for _, ts in routes for t in ts]
    if any(not t.chunks for t in transcripts):
        raise SystemExit("probe failed to reach the loopback server")
    return elapsed


def time_openssl(openssl: str, target: Endpoint, count: int) -> float:
    argv = [openssl, "s_client", "-connect", f"{target.host}:{target.port}",
            "-servername", "localhost"]
    started = time.perf_counter()
    for _ in range(count):
        subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False, timeout=30)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    openssl = shutil.which("openssl")
    if openssl is None:
        print("openssl not found", file=sys.stderr)
        return 2
    root = pki.CA("bench root")
    server_id = root.issue("localhost", sans=("localhost", "127.0.0.1"))
    agent = Credentials.from_issued(root.issue("bench-agent", eku=(pki.CLIENT_AUTH,)))
    options = ProbeOptions(sni="localhost", timeout=10, repeat=args.repeat, credentials=agent,
                           use_env_proxy=False)
    count = len(attempts_for(options))
    with ReferenceServer(server_id, client_ca=root, verify="required") as server:
        target = Endpoint(host=server.host, port=server.port)
        time_probe(target, options)  # warm up (imports, untrusted CA)
        probe_times, openssl_times = [], []
        for _ in range(args.rounds):
            probe_times.append(time_probe(target, options))
            openssl_times.append(time_openssl(openssl, target, count))
    probe_ms = statistics.median(probe_times) * 1000
    openssl_ms = statistics.median(openssl_times) * 1000
    print(f"handshakes per probe:        {count}")
    print(f"probe_target (median):       {probe_ms:8.1f} ms")
    print(f"{count} x openssl s_client (median): {openssl_ms:8.1f} ms")
    print(f"ratio probe/openssl:         {probe_ms / openssl_ms:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
