"""Capture -> ``Observation`` per TLS connection, in one streaming pass (the analyze path).

Boundary: glue between ``capture.flows`` (connections) and ``tls.observer`` (facts). Each
connection is observed as soon as it closes and then dropped, so memory stays flat in the
capture size: the reader keeps at most ``max_bytes`` per direction of each *open*
connection (the handshake and first records; later bytes are only counted).

Key logs: the caller's key log is parsed once; a key log embedded in the capture (pcapng
Decryption Secrets Blocks) is merged into it as soon as it appears. Connections that
closed before a late embedded key log are counted in ``undecrypted_before_late_keys``.

Results are the same as ``observe(transcript, keylog=merged)`` for every transcript
``CaptureReader`` yields (tests/test_capture_observations.py holds us to that).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from mtlsprobe.capture.flows import CaptureReader
from mtlsprobe.model import Observation
from mtlsprobe.tls.keylog import KeyLog
from mtlsprobe.tls.observer import observe

Progress = Callable[[int, int | None], None]


def merge_keylogs(*logs: KeyLog | None) -> KeyLog | None:
    """One KeyLog holding every secret of ``logs`` (later logs win on conflicts)."""
    present = [k for k in logs if k is not None]
    if not present:
        return None
    if len(present) == 1:
        return present[0]
    entries: dict[bytes, dict[str, bytes]] = {}
    for log in present:
        for random, secrets in log.entries.items():
            entries.setdefault(random, {}).update(secrets)
    return KeyLog(entries=entries, skipped_lines=sum(k.skipped_lines for k in present))


class ObservationReader:
    """Iterate a capture's TLS connections as ``Observation``s (in order of closing).

    ``reader`` is the underlying ``CaptureReader``: its ``notes``, ``stats`` and
    ``keylog_text`` fill in as iteration proceeds. ``progress(bytes_read, file_size)`` is
    called every few thousand packets (see ``capture.progress``).
    """

    def __init__(
        self,
        source: str | Path | BinaryIO,
        *,
        keylog: KeyLog | str | None = None,
        ports: set[int] | None = None,
        max_bytes: int = 256 * 1024,
        progress: Progress | None = None,
    ) -> None:
        self.reader = CaptureReader(source, ports=ports, max_bytes=max_bytes, progress=progress)
        self.external = KeyLog.parse(keylog) if isinstance(keylog, str) else keylog
        self.keylog: KeyLog | None = self.external
        self.undecrypted_before_late_keys = 0

    @property
    def notes(self) -> list[str]:
        return self.reader.notes

    @property
    def stats(self) -> dict[str, int]:
        return self.reader.stats

    @property
    def keylog_text(self) -> str:
        return self.reader.keylog_text

    def __iter__(self) -> Iterator[Observation]:
        embedded = ""
        for transcript in self.reader:
            if self.reader.keylog_text != embedded:
                embedded = self.reader.keylog_text
                self.keylog = merge_keylogs(self.external, KeyLog.parse(embedded))
            obs = observe(transcript, keylog=self.keylog)
            if not obs.decrypted and obs.version is not None:
                self.undecrypted_before_late_keys += 1
            yield obs
        if self.reader.keylog_text == embedded:
            self.undecrypted_before_late_keys = 0  # no key log arrived after the last one


def iter_observations(
    source: str | Path | BinaryIO,
    *,
    keylog: KeyLog | str | None = None,
    ports: set[int] | None = None,
    progress: Progress | None = None,
) -> Iterator[Observation]:
    """Observations of the TLS connections in a capture (see ``ObservationReader``)."""
    return iter(ObservationReader(source, keylog=keylog, ports=ports, progress=progress))
