"""Mutate real captures and run analyze on them: anything but a report or InputError is a bug.

Usage:
    python scripts/fuzz_captures.py [--seconds 60] [--seed 1] [--reader-only]

Takes the fixture captures and, when present, ../shared/pcaps (files under 3 MB), flips,
deletes and inserts random bytes past the file header, and runs the whole of analyze on
the result (reader, observer, rules, JSON/table/Markdown renderers; ``--reader-only``: the
streaming reader alone, about ten times more runs per second). The first crash stops it,
prints the traceback and keeps the input as ``fuzz-crash.<ext>`` in the temp directory it
names. Not a test (it runs until its time is up); it found the five crashes fixed in
session 2 (dates, certificates, non-ASCII digits, the key-material guard).
"""

from __future__ import annotations

import argparse
import io
import random
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mtlsprobe.capture.observations import ObservationReader  # noqa: E402
from mtlsprobe.model.errors import InputError  # noqa: E402
from mtlsprobe.report import jsonout, markdown, table  # noqa: E402
from mtlsprobe.run import expectations, pipeline  # noqa: E402
from mtlsprobe.run.analyze import analyze  # noqa: E402
from mtlsprobe.tls.keylog import KeyLog  # noqa: E402

SOURCES = (ROOT / "fixtures" / "pcaps", ROOT.parent / "shared" / "pcaps")


def captures() -> list[Path]:
    return sorted(
        p for d in SOURCES if d.is_dir() for p in d.rglob("*")
        if p.suffix in (".pcap", ".pcapng") and 200 < p.stat().st_size < 3_000_000
    )


def mutate(data: bytes, rnd: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rnd.randint(1, 12)):
        if len(out) <= 25:
            break
        i = rnd.randrange(24, len(out))  # past the pcap header: damage, not a non-capture
        r = rnd.random()
        if r < 0.65:
            out[i] = rnd.randrange(256)
        elif r < 0.82:
            del out[i : i + rnd.randint(1, 150)]
        else:
            out[i:i] = rnd.randbytes(rnd.randint(1, 40))  # seeded: a mutant replays
    return bytes(out)


def run_once(path: Path, keylog: str | None, reader_only: bool) -> None:
    if reader_only:
        list(ObservationReader(io.BytesIO(path.read_bytes()),
                               keylog=KeyLog.parse(keylog) if keylog else None))
        return
    run = analyze([path], expectations.build(ca=(), pins=(), baseline=None),
                  keylog_texts=[keylog] if keylog else [], jobs=1)
    report = pipeline.make_report("analyze", run.results, {}, run.notes)
    jsonout.dumps(report)
    table.render_table(report)
    markdown.render_markdown(report)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--reader-only", action="store_true")
    args = ap.parse_args()
    rnd = random.Random(args.seed)
    files = captures()
    work = Path(tempfile.mkdtemp(prefix="mtlsprobe-fuzz-"))
    deadline, runs = time.monotonic() + args.seconds, 0
    while time.monotonic() < deadline:
        source = rnd.choice(files)
        keys = source.with_name(source.name + ".keys")
        path = work / f"fuzz{source.suffix}"
        path.write_bytes(mutate(source.read_bytes(), rnd))
        try:
            run_once(path, keys.read_text() if keys.exists() else None, args.reader_only)
        except InputError:
            pass
        except Exception:
            crash = work / f"fuzz-crash{source.suffix}"
            path.rename(crash)
            traceback.print_exc()
            print(f"crash after {runs} runs, mutated from {source}; input kept as {crash}",
                  file=sys.stderr)
            return 1
        runs += 1
    print(f"{runs} runs, no crash (seed {args.seed})")
    shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
