"""Benchmark: `mtlsprobe summarize` over 100,000 JSON Lines reports: time and peak memory.

Runs real loopback probes once (direct pass, SSL-intercepting proxy, TLS-terminating LB,
closed port), renders each as `--format jsonl`, then writes N reports, each one of those
real lines mutated per agent (hostname, addresses, agent version, time, an occasional
malformed line). Every summarize run is a fresh subprocess; its peak RSS comes from
os.wait4's rusage (ru_maxrss, KiB on Linux).

Two populations show what memory follows:
  fixed   A agents report again and again (N/A reports each): memory must stay flat in N
  unique  every report is a new agent: memory grows with agents (one small state each)

    python3 bench/summarize_scale.py [--counts 10000 100000] [--agents 5000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mtlsprobe.live import pki  # noqa: E402
from mtlsprobe.live.credentials import Credentials  # noqa: E402
from mtlsprobe.live.probe import ProbeOptions  # noqa: E402
from mtlsprobe.model import Endpoint, Expectations  # noqa: E402
from mtlsprobe.model.certs import cert_info  # noqa: E402
from mtlsprobe.report.jsonl import line_objects  # noqa: E402
from mtlsprobe.run import pipeline  # noqa: E402
from mtlsprobe_demo.intercepting_proxy import InterceptingProxy, inspection_ca  # noqa: E402
from mtlsprobe_demo.server import ReferenceServer  # noqa: E402
from mtlsprobe_demo.terminating_proxy import TerminatingProxy  # noqa: E402


def real_lines() -> dict[str, dict]:
    """One real jsonl object per scenario, from live probes on loopback."""
    server_root = pki.CA("bench Server Root")
    client_ca = pki.CA("bench Client CA")
    server_id = server_root.issue("localhost", sans=("localhost", "127.0.0.1"),
                                  eku=(pki.SERVER_AUTH,))
    agent = client_ca.issue("bench-agent", eku=(pki.CLIENT_AUTH,))
    creds = Credentials.from_issued(agent)
    expect = Expectations(roots=(cert_info(server_root.der),),
                          pins=(cert_info(server_id.der).spki_pin,),
                          agent_cert=cert_info(agent.der), agent_chain=(cert_info(agent.der),))
    opts = ProbeOptions(sni="localhost", timeout=3, repeat=1, use_env_proxy=False,
                        credentials=creds)
    lb_id = server_root.issue("localhost", sans=("localhost", "127.0.0.1"),
                              eku=(pki.SERVER_AUTH,))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    out: dict[str, dict] = {}
    with ReferenceServer(server_id, client_ca=client_ca) as server, \
            InterceptingProxy(inspection_ca(), upstream=server.address) as mitm, \
            TerminatingProxy(lb_id, server.address) as lb:
        for name, (host, port) in [("pass", server.address), ("inspected", mitm.address),
                                   ("terminated", lb.address),
                                   ("unreachable", ("127.0.0.1", closed))]:
            results = pipeline.probe([(Endpoint(host=host, port=port), "flag")], opts, expect)
            report = pipeline.make_report("probe", results, {
                "agent_cert": cert_info(agent.der).sha256, "agent_subject": "CN=bench-agent"})
            [obj] = line_objects(report)
            out[name] = obj
    return out


MIX = (["pass"] * 80) + (["inspected"] * 10) + (["terminated"] * 5) + (["unreachable"] * 5)


def write_reports(path: Path, lines: dict[str, dict], count: int, agents: int | None,
                  seed: int = 7) -> None:
    """`count` jsonl reports; agents=None: every report a new agent."""
    rng = random.Random(seed)
    now = datetime.now(timezone.utc)
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(count):
            a = i if agents is None else i % agents
            obj = dict(lines[MIX[(a * 7919 + i // max(agents or count, 1)) % len(MIX)]])
            obj["host"] = {**obj["host"], "hostname": f"pc-{a:06d}.corp.example",
                           "addresses": [f"10.{a // 65536 % 256}.{a // 256 % 256}.{a % 256}"],
                           "agent_version": "11.3.2400.1" if a % 3 else "11.2.2300.5"}
            when = now - timedelta(hours=rng.randrange(0, 24 * 14))
            obj["generated_at"] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
            text = json.dumps(obj, separators=(",", ":"))
            if i % 5000 == 4999:
                text = text[: len(text) // 2]  # a line cut by a log shipper
            fh.write(text + "\n")


def measure(path: Path, fmt: str = "json") -> tuple[float, int, int]:
    """(seconds, peak RSS KiB, exit code) of one summarize subprocess."""
    out = path.with_suffix(f".summary.{fmt}")
    argv = [sys.executable, "-m", "mtlsprobe", "summarize", str(path), "--format", fmt,
            "--output", str(out)]
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 10, 11, 12):
        raise SystemExit(f"summarize failed ({proc.returncode}): {proc.stderr.read().decode()}")
    proc.stderr.close()
    return elapsed, usage.ru_maxrss, proc.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--agents", type=int, default=5_000,
                        help="agent population of the 'fixed' runs")
    parser.add_argument("--keep", type=Path, help="keep the generated files in DIR")
    args = parser.parse_args()
    lines = real_lines()
    print("real verdicts:", {k: v["verdict"] for k, v in lines.items()})
    with tempfile.TemporaryDirectory(prefix="mtlsprobe-bench-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        tiny = work / "tiny.jsonl"
        write_reports(tiny, lines, 10, None)
        _, base_kib, _ = measure(tiny)
        print(f"baseline (10 reports): peak RSS {base_kib / 1024:.1f} MiB "
              "(interpreter + imports)")
        print(f"{'population':<10} {'reports':>8} {'agents':>8} {'MiB':>8} {'seconds':>8} "
              f"{'reports/s':>10} {'exit':>5}")
        for population, agents in (("fixed", args.agents), ("unique", None)):
            for count in args.counts:
                path = work / f"{population}-{count}.jsonl"
                write_reports(path, lines, count, agents)
                seconds, kib, code = measure(path)
                summary = json.loads(path.with_suffix(".summary.json").read_text())
                print(f"{population:<10} {count:>8} {summary['agents']:>8} {kib / 1024:>8.1f} "
                      f"{seconds:>8.2f} {count / seconds:>10.0f} {code:>5}"
                      f"   (malformed {summary['input']['malformed']}, "
                      f"size {path.stat().st_size / 2**20:.0f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
