"""Offline inputs: capture sources, key log files, and one capture read as Observations.

Boundary: file handling for ``analyze`` (and its forked shares, ``run.shares``): which files
to read, the --keylog texts, a streaming reader over one capture that turns its damage into
report notes. Capture decoding is ``mtlsprobe.capture``'s job; key log parsing and merging
is ``tls.keylog``'s. Damage inside a capture (truncation, corrupt records, unknown link
types) is a note and the rest is read; a source that is not a capture is an ``InputError``,
raised before anything is written (a file in a folder given as CAPTURE is skipped, noted).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mtlsprobe.capture import flowtable
from mtlsprobe.capture.observations import ObservationReader
from mtlsprobe.live.files import read_limited
from mtlsprobe.model import Observation
from mtlsprobe.model.errors import InputError
from mtlsprobe.run.progress import ProgressBar, progress_for
from mtlsprobe.tls.keylog import KeyLog, parse_keylogs

Source = str | Path


# --- the operator's files ----------------------------------------------------------------


def capture_sources(paths: Sequence[Source]) -> list[Source]:
    """Files to read: each path, every regular file inside a folder (sorted, recursive,
    hidden files skipped), or ``"-"`` (stdin, at most once)."""
    out: list[Source] = []
    for p in paths:
        if str(p) == "-":
            if "-" in out:
                raise InputError("stdin ('-') can be read only once")
            out.append("-")
            continue
        path = Path(p)
        if path.is_dir():
            files = sorted(
                f for f in path.rglob("*")
                if f.is_file() and not any(part.startswith(".") for part in
                                           f.relative_to(path).parts)
            )
            if not files:
                raise InputError(f"capture folder {path} holds no files")
            out.extend(files)
        elif path.exists():
            out.append(path)
        else:
            raise InputError(f"cannot open capture {path}: No such file or directory")
    return out


def read_keylogs(paths: Iterable[Path]) -> list[str]:
    """The text of each --keylog file (NSS key log format)."""
    texts = []
    for path in paths:
        texts.append(read_limited(path, "key log").decode("utf-8", errors="replace"))
    return texts


# --- one capture -------------------------------------------------------------------------


@dataclass
class CaptureResult:
    """What one capture gave: observations (capture order) and notes about the file."""

    name: str
    observations: list[Observation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class CaptureObservations:
    """Stream one capture's TLS connections as Observations (in order of closing).

    Iterate once; then ``notes`` holds the capture's notes. ``name`` is the capture's name
    (the path when the source could not be opened as a capture and was skipped).
    Raises InputError when ``source`` is not a capture, unless ``in_folder`` (a file in a
    folder given as CAPTURE): then it yields nothing and says so in ``notes``.
    """

    def __init__(
        self,
        source: Source,
        *,
        keylog: KeyLog | None = None,
        ports: Iterable[int] = (),
        in_folder: bool = False,
        progress_from: int | None = None,
        partition: tuple[int, int] | None = None,
    ) -> None:
        self.reader: ObservationReader | None = None
        self.notes: list[str] = []
        self.name = str(source)
        try:
            self.reader = ObservationReader(source, keylog=keylog, ports=set(ports) or None,
                                            partition=partition)
        except InputError as exc:
            if not in_folder:
                raise
            self.notes.append(f"skipped {source}: {exc}")
            return
        self.name = self.reader.capture.name
        self.bar: ProgressBar | None = None
        if progress_from is not None:  # a bar on stderr, for a large file on a terminal
            self.bar = progress_for(self.reader.capture.size, threshold=progress_from)
            self.reader.progress = self.bar

    def __iter__(self) -> Iterator[Observation]:
        reader, name = self.reader, self.name
        if reader is None:
            return
        try:
            yield from reader
        finally:
            if self.bar is not None:
                self.bar.close()
        keylog = reader.keylog
        self.notes += capture_notes(
            name, reader.notes, reader.stats, reader.undecrypted_before_late_keys,
            keylog.skipped_lines if keylog is not None else 0,
        )


def capture_notes(
    name: str, reader_notes: Sequence[str], stats: dict[str, int], undecrypted: int,
    keylog_skipped: int,
) -> list[str]:
    """The report notes about one capture read."""
    notes = []
    if undecrypted:
        notes.append(
            f"{name}: a key log embedded late in the capture was not applied to "
            f"{undecrypted} earlier connection(s)"
        )
    notes.extend(f"{name}: {n}" for n in reader_notes)
    if stats.get("captured_twice"):
        notes.append(
            f"{name}: {stats['captured_twice']} connection(s) were captured twice with rewritten "
            "sequence numbers (a firewall randomising ISNs between two capture points); each "
            "copy read on its own"
        )
    if stats.get("evicted"):
        notes.append(
            f"{name}: {stats['evicted']:,} flow(s) evicted from the flow table (cap "
            f"{flowtable.MAX_OPEN:,} open connections; a flood or a scan?), the longest idle "
            f"first: {stats.get('evicted_tls', 0):,} that had shown TLS were judged with what "
            "they had, the rest dropped; their later segments, if any, were not read"
        )
    if stats.get("decided_early"):
        notes.append(
            f"{name}: {stats['decided_early']:,} connection(s) seen without their start, one "
            f"side silent, were decided by their ports once they held "
            f"{flowtable.UNDECIDED_BYTES // 1024} KiB (or all such together "
            f"{flowtable.UNDECIDED_TOTAL // 2**20} MiB), as at the end of the capture"
        )
    if keylog_skipped:
        notes.append(f"{name}: {keylog_skipped} key log line(s) not understood")
    notes.append(
        f"{name}: {stats['packets']} packets, {stats['connections']} TCP connections, "
        f"{stats['tls_connections']} with TLS"
    )
    return notes


def read_capture(
    source: Source,
    *,
    keylog_texts: Sequence[str] = (),
    ports: Iterable[int] = (),
    in_folder: bool = False,
) -> CaptureResult:
    """Every observation of one capture, in first-seen order (see ``CaptureObservations``).

    Keeps them all: for tests and small captures; ``analyze`` streams instead.
    """
    stream = CaptureObservations(
        source, keylog=parse_keylogs(keylog_texts), ports=ports, in_folder=in_folder
    )
    observations = list(stream)
    observations.sort(key=lambda o: o.observed_at)  # emitted at close: first-seen order
    return CaptureResult(name=stream.name, observations=observations, notes=stream.notes)
