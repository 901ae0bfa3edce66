"""One large capture read by several processes at once, each taking a share of its TCP
connections (analyze's ``--jobs``).

Boundary: process orchestration and merging only. Each worker is forked from this process
and runs the ordinary streaming reader on its share (``CaptureReader(partition=...)``: a
connection's share is a hash of its endpoints, ``capture.partition``, the same in every
process); it returns its per-server tallies, the raw material of the capture notes and the
first-frame numbers of its connections. The parent renumbers connections as one reader
would have ("flow N": the N-th TCP connection by first packet, like tshark's
``tcp.stream``) and merges the tallies, so the report is the same however the capture was
read.

Every worker still reads the whole file. With the C core, a frame of another share is
dropped in the walk before it is decoded (its headers parsed and hashed in C, ~50 ns); with
the Python core the flow table drops it after decoding and claims that direction's later
frames (``bulk.skip_others``). So what is shared out is the per-connection work: decoding,
reassembly, TLS parsing, decryption, observations. Used only where that is safe and worth
it: ``fork`` exists (not Windows), the capture is a regular uncompressed file (gzip would be
inflated once per worker; standard input cannot be read twice), more than one CPU, and,
unless the caller asks for a number of jobs, a file of at least ``MIN_SIZE`` bytes.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from mtlsprobe.capture.pcapfile import GZIP_MAGIC, CaptureFile
from mtlsprobe.run.captures import CaptureObservations, Source, capture_notes
from mtlsprobe.run.tallies import ServerTallies
from mtlsprobe.tls.keylog import KeyLog

MIN_SIZE = 64 << 20  # smaller captures take about a second: not worth forking
MAX_SHARES = 8


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def shares_for(source: Source, jobs: int | None) -> int:
    """How many processes should read ``source``: 1 unless sharing is possible and worth it.

    ``jobs``: None chooses (one per CPU, up to MAX_SHARES, for a file of MIN_SIZE or more);
    a number is taken as asked where sharing is possible.
    """
    if jobs == 1 or "fork" not in mp.get_all_start_methods():
        return 1
    if not isinstance(source, (str, Path)) or str(source) == "-":
        return 1
    path = Path(source)
    try:
        if not path.is_file():
            return 1
        size = path.stat().st_size
        with path.open("rb") as f:
            if f.read(2) == GZIP_MAGIC:
                return 1
    except OSError:
        return 1  # the ordinary reader reports it
    if jobs is None:
        return min(_cpus(), MAX_SHARES) if size >= MIN_SIZE else 1
    return max(1, jobs)


@dataclass
class _Share:
    """What one worker read."""

    name: str
    tallies: ServerTallies
    reader_notes: list[str]
    stats: dict[str, int]
    first_frames: list[int]
    undecrypted: int
    keylog_skipped: int


def _read_share(
    source: Source, keylog: KeyLog | None, ports: tuple[int, ...], part: int, parts: int,
    progress_from: int | None,
) -> _Share:
    stream = CaptureObservations(source, keylog=keylog, ports=ports, partition=(part, parts),
                                 progress_from=progress_from)
    tallies = ServerTallies()
    for obs in stream:
        tallies.add(obs)
    reader = stream.reader
    assert reader is not None  # a source that is not a capture raised InputError
    return _Share(
        name=stream.name,
        tallies=tallies,
        reader_notes=reader.notes,
        stats=dict(reader.stats),
        first_frames=reader.first_frames,
        undecrypted=reader.undecrypted_before_late_keys,
        keylog_skipped=reader.keylog.skipped_lines if reader.keylog is not None else 0,
    )


def _renumber(shares: list[_Share]) -> None:
    """Labels "flow @F" (F: first frame) -> "flow N", N counting connections of all shares."""
    number = {f: n for n, f in enumerate(sorted(f for s in shares for f in s.first_frames))}
    for share in shares:
        for tally in share.tallies.tallies.values():
            for b in tally.behaviours.values():
                head, sep, frame = b.first.label.rpartition(" flow @")
                if sep and frame.isdigit():
                    b.first = replace(b.first, label=f"{head} flow {number[int(frame)]}")


def read_in_shares(
    source: Source, parts: int, tallies: ServerTallies, capture_index: int, *,
    keylog: KeyLog | None, ports: Iterable[int] = (),
    progress_from: int | None = None,
) -> tuple[str, list[str]]:
    """Read ``source`` in ``parts`` forked processes into ``tallies``; (name, notes).

    Raises InputError (from the first worker) when ``source`` is not a capture.
    """
    port_list = tuple(ports)
    CaptureFile(source).close()  # not a capture: InputError here, not in a worker
    with ProcessPoolExecutor(max_workers=parts, mp_context=mp.get_context("fork")) as pool:
        futures = [
            pool.submit(_read_share, source, keylog, port_list, k, parts,
                        progress_from if k == 0 else None)
            for k in range(parts)
        ]
        shares = [f.result() for f in futures]
    _renumber(shares)
    for share in shares:
        tallies.merge(share.tallies, capture_index)
    first = shares[0]  # every worker walked every frame: file-level facts are the same
    stats = dict(first.stats)
    for key in ("connections", "tls_connections", "non_tls_connections", "after_close",
                "bulk_frames", "captured_twice", "evicted", "evicted_tls",
                "decided_early"):
        stats[key] = sum(s.stats.get(key, 0) for s in shares)
    notes = capture_notes(first.name, first.reader_notes, stats,
                          sum(s.undecrypted for s in shares), first.keylog_skipped)
    return first.name, notes
