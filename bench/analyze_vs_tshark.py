"""Time ``mtlsprobe analyze --format json`` against tshark and ssldump on one large capture.

Usage:
    python bench/analyze_vs_tshark.py [CAPTURE] [--keylog FILE] [--no-keylog] [--only NAMES]

Without CAPTURE, uses bench/out/loopback.pcap (and its ``.keys`` key log), recording it
first with bench/make_big_capture.py when absent (real TLS on loopback: 22,000 handshakes,
TLS 1.2 and 1.3, with and without client certificates, plus 1 GB of bulk data).

Every tool runs once, in this process's run, as a child process under ``/usr/bin/time``
(wall seconds, CPU seconds and peak RSS; falls back to ``getrusage(RUSAGE_CHILDREN)``;
CPU time is the steadier figure on a shared machine), and extracts
the same facts: SNI, version, certificate subjects, CertificateRequest, client
certificate and alerts. tshark gets them from a display filter on handshake types
1 2 11 13 plus alerts; ssldump prints every handshake message. Prints seconds, MB/s, the
speed ratio against tshark's single pass (and with the key log, tshark with the key log)
and against ssldump, and peak RSS.

``mtlsprobe analyze`` runs in one process (``--jobs 1``); ``mtlsprobe analyze -j`` with its
default, one process per CPU (wall time is what it shares out; CPU time is the sum over
processes; peak RSS is that of the largest process, so the total is about that many times).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT = HERE / "out" / "loopback.pcap"
FILTER = "tls.handshake.type in {1, 2, 11, 13} || tls.alert_message"
FIELDS = [
    "tcp.stream", "tcp.srcport", "tls.handshake.type", "tls.handshake.extensions_server_name",
    "tls.handshake.extensions.supported_version", "tls.handshake.version",
    "x509sat.uTF8String", "x509sat.printableString", "tls.handshake.certificate_length",
    "tls.alert_message.desc",
]


@dataclass
class Run:
    name: str
    seconds: float
    cpu: float  # user + system seconds: steadier than wall time on a busy machine
    peak_mb: float
    output_bytes: int
    returncode: int


def _timed(name: str, argv: list[str], out_path: Path, env: dict[str, str] | None = None,
           timeout: float | None = None) -> Run:
    """Run argv once, stdout to out_path; wall time, CPU time and peak RSS of the child."""
    gnu_time = Path("/usr/bin/time")
    stats = out_path.with_suffix(".time")
    if gnu_time.exists():
        argv = [str(gnu_time), "-f", "%e %M %U %S", "-o", str(stats), *argv]
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    before, cpu_before = usage.ru_maxrss, usage.ru_utime + usage.ru_stime
    start = time.perf_counter()
    sink = Path(os.devnull) if name == "cat" else out_path  # cat: read speed, not disk
    with sink.open("wb") as out:
        # a session of its own: at the time-out the tool goes too, not only /usr/bin/time
        # (a cut ssldump left running kept 16 GB and a CPU busy under the next runs)
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.DEVNULL, env=env,
                                start_new_session=True)
        try:
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            returncode = proc.wait()
            return Run(f"{name} (cut at {timeout:.0f} s)", time.perf_counter() - start, 0.0,
                       0.0, 0, returncode)  # CPU and peak RSS are not known for it
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak_kb, cpu = usage.ru_maxrss, usage.ru_utime + usage.ru_stime - cpu_before
    if gnu_time.exists() and stats.exists():
        fields = stats.read_text().split()[-4:]
        if len(fields) == 4 and fields[0].replace(".", "").isdigit():
            wall, peak_kb = float(fields[0]), int(fields[1])
            cpu = float(fields[2]) + float(fields[3])
    elif peak_kb <= before:
        peak_kb = 0  # an earlier child had a larger peak: not measurable this way
    size = out_path.stat().st_size if out_path.exists() else 0
    return Run(name, wall, cpu, peak_kb / 1024, size, returncode)


def _analyze_cmd(capture: Path, keylog: Path | None, jobs: int | None = 1) -> list[str]:
    cmd = [sys.executable, "-m", "mtlsprobe", "analyze", "--format", "json", str(capture)]
    if jobs is not None:
        cmd += ["--jobs", str(jobs)]
    return cmd + (["--keylog", str(keylog)] if keylog else [])


def _tshark_cmd(capture: Path, keylog: Path | None, two_pass: bool = False) -> list[str]:
    cmd = ["tshark", "-n", "-r", str(capture)]
    if two_pass:
        cmd.append("-2")
    if keylog:
        cmd += ["-o", f"tls.keylog_file:{keylog}"]
    cmd += ["-Y", FILTER, "-T", "fields"]
    for f in FIELDS:
        cmd += ["-e", f]
    return cmd


def _ssldump_cmd(capture: Path, keylog: Path | None) -> list[str]:
    cmd = ["ssldump", "-n", "-N", "-r", str(capture)]
    return cmd + (["-l", str(keylog)] if keylog else [])


def plan(capture: Path, keylog: Path | None) -> list[tuple[str, list[str]]]:
    runs: list[tuple[str, list[str]]] = [
        ("cat", ["cat", str(capture)]),
        ("mtlsprobe analyze", _analyze_cmd(capture, None)),
        ("mtlsprobe analyze -j", _analyze_cmd(capture, None, jobs=None)),
    ]
    if shutil.which("tshark"):
        runs += [("tshark", _tshark_cmd(capture, None)),
                 ("tshark -2", _tshark_cmd(capture, None, two_pass=True))]
    if shutil.which("ssldump"):
        runs.append(("ssldump", _ssldump_cmd(capture, None)))
    if keylog is not None:
        runs.append(("mtlsprobe analyze +keylog", _analyze_cmd(capture, keylog)))
        runs.append(("mtlsprobe analyze -j +keylog", _analyze_cmd(capture, keylog, jobs=None)))
        if shutil.which("tshark"):
            runs.append(("tshark +keylog", _tshark_cmd(capture, keylog)))
        if shutil.which("ssldump"):
            runs.append(("ssldump +keylog", _ssldump_cmd(capture, keylog)))
    return runs


def table(runs: list[Run], size: int) -> str:
    by = {r.name: r for r in runs}

    def ratio(r: Run, other: str) -> str:
        o = by.get(other)
        return f"{o.seconds / r.seconds:.2f}x" if o and r.seconds else "-"

    def cpu_ratio(r: Run, other: str) -> str:
        o = by.get(other)
        return f"{o.cpu / r.cpu:.2f}x" if o and r.cpu else "-"

    rows = [("tool", "seconds", "MB/s", "vs tshark", "vs ssldump", "CPU s", "CPU vs tshark",
             "peak RSS MB", "out MB")]
    for r in runs:
        keyed = r.name.endswith("+keylog")
        rows.append((
            r.name, f"{r.seconds:.2f}", f"{size / 1e6 / r.seconds:.0f}",
            ratio(r, "tshark +keylog" if keyed else "tshark"),
            ratio(r, "ssldump +keylog" if keyed else "ssldump"),
            f"{r.cpu:.2f}", cpu_ratio(r, "tshark +keylog" if keyed else "tshark"),
            f"{r.peak_mb:.0f}", f"{r.output_bytes / 1e6:.1f}",
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(row, widths, strict=True)))
             for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("capture", nargs="?", type=Path)
    ap.add_argument("--keylog", type=Path, help="key log (default: CAPTURE.keys when present)")
    ap.add_argument("--no-keylog", action="store_true", help="skip the key-log runs")
    ap.add_argument("--only", help="comma-separated tool names to run (e.g. 'cat,mtlsprobe')")
    ap.add_argument("--timeout", type=float, default=600,
                    help="stop a tool after this many seconds (its row then shows the cut-off)")
    args = ap.parse_args()
    capture = args.capture or DEFAULT
    if args.capture is None and not capture.exists():
        subprocess.run([sys.executable, str(HERE / "make_big_capture.py"), "--out", str(capture)],
                       check=True)
    keylog = args.keylog
    if keylog is None and not args.no_keylog:
        default_keys = capture.with_name(capture.name + ".keys")
        keylog = default_keys if default_keys.exists() else None
    if args.no_keylog:
        keylog = None
    size = capture.stat().st_size
    print(f"capture: {capture} ({size / 1e6:.0f} MB); key log: {keylog or 'none'}")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="mtlsprobe-bench-") as tmp:
        for i, (name, argv) in enumerate(plan(capture, keylog)):
            if args.only and not any(name.startswith(o) for o in args.only.split(",")):
                continue
            run = _timed(name, argv, Path(tmp) / f"run{i}.out", env=env, timeout=args.timeout)
            runs.append(run)
            print(f"  {name}: {run.seconds:.2f} s ({run.cpu:.2f} s CPU), peak "
                  f"{run.peak_mb:.0f} MB, exit {run.returncode}", file=sys.stderr)
    print(table(runs, size))


if __name__ == "__main__":
    main()
