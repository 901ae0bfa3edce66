"""The compiled build against the pure-Python one and tshark, side by side on one capture.

Usage:
    python bench/core_speed.py CAPTURE [--keylog FILE] [--jobs 2] [--no-tshark]

Runs ``mtlsprobe analyze --format json`` on the pure-Python build (MTLSPROBE_PURE_PYTHON=1)
and on the compiled one (the C capture core ``mtlsprobe.capture._ccore``, plus the mypyc
modules of mtlsprobe/compiled.py when they are built; in place or installed), each once in
one process and once with ``--jobs N``, and tshark's single pass with the filter and fields of
bench/analyze_vs_tshark.py; with a key log (CAPTURE.keys when present), each again with it.
Every run is a child process under ``/usr/bin/time`` (CPU seconds, wall seconds, peak RSS).
The two builds' reports must be byte-identical apart from their time stamp: the script
says so, or exits 1. Fails at once when the C core is not built.

Make the capture with bench/make_big_capture.py (``--ethernet`` for MTU-size frames).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from analyze_vs_tshark import Run, _analyze_cmd, _timed, _tshark_cmd  # noqa: E402

from mtlsprobe import compiled  # noqa: E402
from mtlsprobe.capture import core  # noqa: E402

PURE = core.PURE_PYTHON_ENV
PYTHON = "Python"
NATIVE = "C core + mypyc" if compiled.active() else "C core"


def _env(pure: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != PURE}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    if pure:
        env[PURE] = "1"
    return env


def _report(path: Path) -> str:
    return re.sub(r'"generated_at": "[^"]*"', "", path.read_text(errors="replace"))


def _warm(*paths: Path | None) -> None:
    """Read the inputs once, so the first timed run does not pay for the disk."""
    for path in paths:
        if path is not None:
            with path.open("rb") as f:
                while f.read(1 << 24):
                    pass


def table(runs: list[Run]) -> str:
    by = {r.name: r for r in runs}
    rows = [("run", "CPU s", "wall s", "peak RSS MB", "CPU vs tshark", "CPU vs Python")]
    for r in runs:
        keyed = "+keylog" in r.name
        tshark = by.get("tshark +keylog" if keyed else "tshark")
        python = by.get(r.name.replace(NATIVE, PYTHON))
        rows.append((
            r.name, f"{r.cpu:.2f}", f"{r.seconds:.2f}", f"{r.peak_mb:.0f}",
            f"{tshark.cpu / r.cpu:.2f}x" if tshark and r.cpu else "-",
            f"{python.cpu / r.cpu:.2f}x" if python and r.cpu and NATIVE in r.name else "-",
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
             for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("capture", type=Path)
    ap.add_argument("--keylog", type=Path, help="key log (default: CAPTURE.keys when present)")
    ap.add_argument("--no-keylog", action="store_true", help="skip the key-log runs")
    ap.add_argument("--jobs", type=int, default=2, help="processes for the -j runs (0: none)")
    ap.add_argument("--no-tshark", action="store_true")
    ap.add_argument("--timeout", type=float, default=900)
    args = ap.parse_args()
    if core.BUILT is None:
        print("core_speed: the C core is not built (python3 setup.py build_ext --inplace)",
              file=sys.stderr)
        return 2
    keylog = None if args.no_keylog else args.keylog
    if keylog is None and not args.no_keylog:
        default = args.capture.with_name(args.capture.name + ".keys")
        keylog = default if default.exists() else None
    size = args.capture.stat().st_size
    print(f"capture: {args.capture} ({size / 1e6:.0f} MB); key log: {keylog or 'none'}")
    plan: list[tuple[str, list[str], dict[str, str] | None]] = []
    for keys in (None, keylog) if keylog else (None,):
        tag = " +keylog" if keys else ""
        for pure, name in ((True, PYTHON), (False, NATIVE)):
            plan.append((f"{name}{tag}", _analyze_cmd(args.capture, keys), _env(pure)))
            if args.jobs > 1:
                plan.append((f"{name} -j {args.jobs}{tag}",
                             _analyze_cmd(args.capture, keys, jobs=args.jobs), _env(pure)))
        if not args.no_tshark and shutil.which("tshark"):
            plan.append((f"tshark{tag}", _tshark_cmd(args.capture, keys), None))
    _warm(args.capture, keylog)
    runs: list[Run] = []
    same = True
    with tempfile.TemporaryDirectory(prefix="mtlsprobe-core-speed-") as tmp:
        outs: dict[str, Path] = {}
        for i, (name, argv, env) in enumerate(plan):
            out = Path(tmp) / f"run{i}.out"
            run = _timed(name, argv, out, env=env, timeout=args.timeout)
            runs.append(run)
            outs[name] = out
            print(f"  {name}: {run.cpu:.2f} s CPU, {run.seconds:.2f} s wall, peak "
                  f"{run.peak_mb:.0f} MB, exit {run.returncode}", file=sys.stderr)
            twin = outs.get(name.replace(NATIVE, PYTHON))
            if NATIVE in name and twin is not None and _report(out) != _report(twin):
                print(f"core_speed: {name}: the report differs from the Python build's",
                      file=sys.stderr)
                same = False
    print(table(runs))
    print("reports: " + ("identical on both builds (apart from the time stamp)" if same
                         else "DIFFERENT between the builds"))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
