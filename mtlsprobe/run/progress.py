"""A progress bar for reading large captures: bytes read / file size, on a terminal only.

Boundary: rendering one line on a text stream. The capture reader calls the hook with
(bytes read, file size); commands decide whether to show a bar with :func:`progress_for`.
Nothing is written when the stream is not a terminal (pipes, CI logs, JSON on stderr).
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

LARGE = 64 << 20  # inputs smaller than this finish before a bar is worth drawing
WIDTH = 30


class ProgressBar:
    """Callable hook ``bar(done, total)``; redraws at most every ``interval`` seconds."""

    def __init__(self, total: int, *, stream: TextIO | None = None, label: str = "reading",
                 interval: float = 0.2) -> None:
        self.total = max(total, 1)
        self.stream = stream if stream is not None else sys.stderr
        self.label = label
        self.interval = interval
        self._start = time.monotonic()
        self._last = 0.0
        self._drawn = False

    def __call__(self, done: int, total: int | None = None) -> None:
        if total:
            self.total = total
        now = time.monotonic()
        if now - self._last < self.interval and done < self.total:
            return
        self._last = now
        self.stream.write("\r" + self.line(done, now - self._start))
        self.stream.flush()
        self._drawn = True

    def line(self, done: int, elapsed: float) -> str:
        frac = min(max(done / self.total, 0.0), 1.0)
        filled = int(frac * WIDTH)
        rate = done / elapsed / 1e6 if elapsed > 0 else 0.0
        return (f"{self.label} [{'#' * filled}{'.' * (WIDTH - filled)}] {frac:4.0%} "
                f"{done / 1e6:.0f}/{self.total / 1e6:.0f} MB {rate:.0f} MB/s")

    def close(self) -> None:
        """Erase the bar (the report follows on stdout or in a file)."""
        if self._drawn:
            self.stream.write("\r" + " " * (len(self.line(self.total, 1.0)) + 8) + "\r")
            self.stream.flush()
            self._drawn = False


def progress_for(size: int | None, *, stream: TextIO | None = None,
                 threshold: int = LARGE) -> ProgressBar | None:
    """A bar when the input is large (``size`` bytes) and ``stream`` is a terminal."""
    stream = stream if stream is not None else sys.stderr
    if size is None or size < threshold:
        return None
    try:
        if not stream.isatty():
            return None
    except (AttributeError, ValueError):
        return None
    return ProgressBar(size, stream=stream)
