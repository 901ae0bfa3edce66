"""Time `analyze` over a large Zeek ssl.log: CPU microseconds per row and peak memory.

Usage:
    python bench/zeek_rows.py [--rows 1000000] [--agents 20000] [--capture FILE]

Writes a Zeek ASCII ssl.log of ``--rows`` rows (agents of a fleet reaching two management
servers: mutual TLS accepted, an empty Certificate refused, TLS 1.3, a foreign chain) and
an x509.log for its certificates to a temporary folder under /tmp, removed afterwards; then
runs ``analyze`` over them in a child process and reports its CPU seconds, CPU per row and
peak RSS. With ``--capture FILE`` it does the same for a capture and reports CPU per TLS
handshake, the capture path's cost to compare with (bench/out/loopback.pcap from
bench/make_big_capture.py is the usual one; the README's figure is about 250 µs).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = (
    "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tssl\n"
    "#open\t2026-12-01-00-00-00\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\t"
    "version\tcipher\tcurve\tserver_name\tresumed\tlast_alert\tnext_protocol\testablished\t"
    "ssl_history\tcert_chain_fps\tclient_cert_chain_fps\tsni_matches_cert\n#types\ttime\tstring\t"
    "addr\tport\taddr\tport\tstring\tstring\tstring\tstring\tbool\tstring\tstring\tbool\tstring\t"
    "vector[string]\tvector[string]\tbool\n"
)
X509_HEADER = (
    "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tx509\n"
    "#fields\tts\tfingerprint\tcertificate.subject\tcertificate.issuer\t"
    "certificate.not_valid_before\tcertificate.not_valid_after\tbasic_constraints.ca\n"
    "#types\ttime\tstring\tstring\tstring\ttime\ttime\tbool\n"
)
LEAF, ROOT_FP, FOREIGN = "1" * 64, "2" * 64, "3" * 64


def _kinds(agent_fp: str) -> list[tuple[str, ...]]:
    """(version, established, history, server fps, client fps, last_alert) of each kind."""
    chain = f"{LEAF},{ROOT_FP}"
    return [
        ("TLSv12", "T", "CsxkrnXGYIi", chain, agent_fp, "-"),
        ("TLSv12", "F", "CsxkrnXGIl", chain, "(empty)", "handshake_failure"),
        ("TLSv13", "T", "CsiI", "-", "-", "-"),
        ("TLSv12", "T", "CsxknGIi", FOREIGN, "(empty)", "-"),
    ]


def write_logs(folder: Path, rows: int, agents: int) -> int:
    start = 1764979200.0
    with (folder / "x509.log").open("w") as f:
        f.write(X509_HEADER)
        f.write(f"{start}\t{LEAF}\tCN=ec.corp.example,O=Corp\tCN=Corp Root,O=Corp\t"
                "1735689600.0\t1893456000.0\tF\n")
        f.write(f"{start}\t{ROOT_FP}\tCN=Corp Root,O=Corp\tCN=Corp Root,O=Corp\t"
                "1735689600.0\t1893456000.0\tT\n")
        f.write(f"{start}\t{FOREIGN}\tCN=ec.corp.example\tCN=Inspection CA\t"
                "1764900000.0\t1796436000.0\tF\n")
        for a in range(agents):
            f.write(f"{start}\t{a:064x}\tCN=agent-{a}\tCN=Corp Agents,O=Corp\t"
                    "1735689600.0\t1893456000.0\tF\n")
    with (folder / "ssl.log").open("w") as f:
        f.write(HEADER)
        batch = []
        for i in range(rows):
            a = i % agents
            version, est, hist, sfps, cfps, alert = _kinds(f"{a:064x}")[i % 4]
            server = "10.0.0.1" if i % 2 else "10.0.0.2"
            batch.append(
                f"{start + i * 0.01:.6f}\tC{i:x}\t10.{a >> 16 & 255}.{a >> 8 & 255}.{a & 255}\t"
                f"{1024 + i % 60000}\t{server}\t8383\t{version}\t"
                f"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384\tx25519\tec.corp.example\tF\t{alert}\t-\t"
                f"{est}\t{hist}\t{sfps}\t{cfps}\t-\n")
            if len(batch) == 10000:
                f.writelines(batch)
                batch.clear()
        f.writelines(batch)
    return (folder / "ssl.log").stat().st_size


CHILD = """
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from mtlsprobe.model import Expectations
from mtlsprobe.run.analyze import analyze
t = time.process_time()
run = analyze(sys.argv[2:], Expectations(), jobs=1)
cpu = time.process_time() - t
conns = sum(sum(o.repeats for o in r.observations) for r in run.results)
print(json.dumps({"cpu": cpu, "connections": conns, "results": len(run.results),
                  "verdicts": sorted({r.verdict.value for r in run.results}),
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(paths: list[str]) -> dict[str, object]:
    wall = time.monotonic()
    out = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), *paths], check=True,
                         capture_output=True, text=True).stdout
    result: dict[str, object] = json.loads(out)
    result["wall"] = time.monotonic() - wall
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--agents", type=int, default=20_000)
    parser.add_argument("--capture", type=Path)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="mtlsprobe-zeek-bench-", dir="/tmp"))
    try:
        size = write_logs(folder, args.rows, args.agents)
        zeek = measure([str(folder / "x509.log"), str(folder / "ssl.log")])
    finally:
        shutil.rmtree(folder)
    per_row = float(zeek["cpu"]) / args.rows * 1e6  # type: ignore[arg-type]
    print(f"Zeek ssl.log: {args.rows:,} rows ({size / 1e6:.0f} MB), {args.agents:,} agents: "
          f"{zeek['cpu']:.1f} s CPU, {per_row:.1f} us/row, peak RSS {zeek['rss_mb']:.0f} MB, "
          f"{zeek['results']} server(s) judged {zeek['verdicts']}")
    if args.capture:
        cap = measure([str(args.capture)])
        conns = int(cap["connections"]) or 1  # type: ignore[call-overload]
        per = float(cap["cpu"]) / conns * 1e6  # type: ignore[arg-type]
        print(f"capture {args.capture.name}: {conns:,} TLS connections, {cap['cpu']:.1f} s CPU "
              f"({per:.0f} us/handshake incl. bulk), peak RSS {cap['rss_mb']:.0f} MB; "
              f"ratio per row / per handshake {per_row / per:.2f}")


if __name__ == "__main__":
    main()
