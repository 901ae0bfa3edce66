"""Time the sans-IO TLS observer alone: microseconds of CPU per connection.

Usage:
    python bench/observe_speed.py [--n 4000] [--repeat 1] [--save-ref | --check] [--profile]

The first run extracts the first ``--n`` TLS transcripts of bench/out/loopback.pcap (made by
bench/make_big_capture.py) into bench/out/transcripts.pickle; later runs reuse that pickle, so
the timing does not move when the capture code changes. Then it times
``observe(transcript, keylog=...)`` over them with ``time.process_time()``, once without and
once with the capture's key log (bench/out/loopback.pcap.keys, parsed once, outside the timing).

``--save-ref`` pickles both runs' observations to bench/out/observations.ref.pickle;
``--check`` compares against that reference with ``==`` (Observation is a frozen dataclass)
and exits 1 on any difference, naming the first few connections that differ.
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import pickle
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mtlsprobe.model import Observation, Transcript  # noqa: E402
from mtlsprobe.tls.keylog import KeyLog  # noqa: E402
from mtlsprobe.tls.observer import observe  # noqa: E402

OUT = ROOT / "bench" / "out"
CAPTURE = OUT / "loopback.pcap"
KEYS = OUT / "loopback.pcap.keys"
TRANSCRIPTS = OUT / "transcripts.pickle"
REFERENCE = OUT / "observations.ref.pickle"


def load_transcripts(n: int) -> list[Transcript]:
    """The first ``n`` transcripts of the capture, extracted once and cached in a pickle."""
    if TRANSCRIPTS.exists():
        with TRANSCRIPTS.open("rb") as f:
            cached: list[Transcript] = pickle.load(f)
        if len(cached) >= n:
            return cached[:n]
    from mtlsprobe.capture.transcripts import iter_transcripts

    transcripts = list(itertools.islice(iter_transcripts(CAPTURE), n))
    tmp = TRANSCRIPTS.with_suffix(".tmp")
    with tmp.open("wb") as f:
        pickle.dump(transcripts, f, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(TRANSCRIPTS)
    return transcripts


def run(transcripts: list[Transcript], keylog: KeyLog | None) -> tuple[float, list[Observation]]:
    """CPU seconds for observing every transcript once, and the observations."""
    start = time.process_time()
    observations = [observe(t, keylog=keylog) for t in transcripts]
    return time.process_time() - start, observations


def compare(name: str, got: list[Observation], want: list[Observation]) -> int:
    """Print the first differences; returns how many observations differ."""
    if len(got) != len(want):
        print(f"{name}: {len(got)} observations, reference has {len(want)}")
        return max(len(got), len(want))
    bad = [i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b]
    for i in bad[:3]:
        a, b = got[i], want[i]
        fields = [f for f in a.__dataclass_fields__ if getattr(a, f) != getattr(b, f)]
        print(f"{name}: connection {i} differs in {fields}")
        for f in fields[:3]:
            print(f"    got  {f} = {getattr(a, f)!r:.300}")
            print(f"    want {f} = {getattr(b, f)!r:.300}")
    return len(bad)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4000, help="connections to observe")
    parser.add_argument("--repeat", type=int, default=1, help="best of this many runs")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--save-ref", action="store_true", help="write the reference pickle")
    mode.add_argument("--check", action="store_true", help="compare with the reference")
    parser.add_argument("--profile", action="store_true", help="cProfile the key-log run")
    args = parser.parse_args()

    transcripts = load_transcripts(args.n)
    keylog = KeyLog.parse(KEYS.read_text(encoding="ascii", errors="replace"))
    results: dict[str, list[Observation]] = {}
    for name, kl in (("plain", None), ("keylog", keylog)):
        best = float("inf")
        for _ in range(args.repeat):
            seconds, results[name] = run(transcripts, kl)
            best = min(best, seconds)
        print(f"{name:>7}: {best / len(transcripts) * 1e6:7.1f} us/connection "
              f"({len(transcripts)} connections, {best:.2f} s CPU)")
    if args.profile:
        prof = cProfile.Profile()
        prof.runcall(run, transcripts, keylog)
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    if args.save_ref:
        with REFERENCE.open("wb") as f:
            pickle.dump(results, f, protocol=pickle.HIGHEST_PROTOCOL)
        print(f"reference saved: {REFERENCE}")
    if args.check:
        with REFERENCE.open("rb") as f:
            want = pickle.load(f)
        bad = sum(compare(name, results[name], want[name][: args.n]) for name in results)
        print("check: OK" if not bad else f"check: {bad} observations differ")
        return 1 if bad else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
