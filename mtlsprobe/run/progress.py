"""Progress on a terminal only: a bar for reading large captures (bytes read / file size),
and a status line for a live probe (which target and route, which attempt).

Boundary: rendering one line on a text stream. The capture reader calls the bar with
(bytes read, file size), the live probe calls the status line with a ``ProbeStep``;
commands decide whether to show either with :func:`progress_for` and :func:`status_for`.
Nothing is written when the stream is not a terminal (pipes, CI logs, JSON on stderr).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import TYPE_CHECKING, TextIO

from mtlsprobe.report.escape import terminal

if TYPE_CHECKING:  # analyze draws a bar without loading the live probe
    from mtlsprobe.live.probe import ProbeStep

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


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def progress_for(size: int | None, *, stream: TextIO | None = None,
                 threshold: int = LARGE) -> ProgressBar | None:
    """A bar when the input is large (``size`` bytes) and ``stream`` is a terminal."""
    stream = stream if stream is not None else sys.stderr
    if size is None or size < threshold or not _is_terminal(stream):
        return None
    return ProgressBar(size, stream=stream)


ATTEMPTS = {
    "tls13-nocert": "TLS 1.3, no client cert",
    "tls12-nocert": "TLS 1.2, no client cert",
    "untrusted-cert": "untrusted client cert",
    "agent-cert": "the agent's client cert",
    "other-name": "an unrelated server name",
    "hop-trace": "tracing the path hop by hop (--trace)",
}


def describe(step: ProbeStep) -> str:
    """``probing ec.corp:8383 via proxy http://10.0.0.1:3128 ... attempt 2/7: TLS 1.2, no
    client cert`` (the attempt named is the last one to finish; they run at once)."""
    route = f"via proxy {step.proxy}" if step.proxy else "direct"
    head = f"probing {step.target} {route} ..."
    if step.attempt is None:
        return f"{head} {step.total} attempts"
    what = ATTEMPTS.get(step.attempt) or step.attempt.replace("repeat-", "repeat ")
    if not step.total:  # a step of its own, not one of the attempts
        return f"{head} {what}"
    return f"{head} attempt {step.done}/{step.total}: {what}"


class StatusLine:
    """Callable hook ``status(step)`` for a live probe: one line, redrawn in place (from any
    thread), cut to the terminal's width so that it never wraps; :meth:`close` erases it."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._lock = threading.Lock()
        self._width = 0  # of the line drawn last; 0: nothing to erase

    def __call__(self, step: ProbeStep) -> None:
        self.show(describe(step))

    def show(self, text: str) -> None:
        try:
            columns = os.get_terminal_size(self.stream.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0  # a terminal that does not say its size: 80
        line = terminal(text)[: (columns or 80) - 1]  # escaped: names come from DNS and files
        with self._lock:
            self.stream.write("\r" + line.ljust(self._width))
            self.stream.flush()
            self._width = len(line)

    def close(self) -> None:
        """Erase the line (the report or an error follows)."""
        with self._lock:
            if self._width:
                self.stream.write("\r" + " " * self._width + "\r")
                self.stream.flush()
                self._width = 0


def status_for(stream: TextIO | None = None) -> StatusLine | None:
    """A status line when ``stream`` (stderr) is a terminal, else None."""
    stream = stream if stream is not None else sys.stderr
    return StatusLine(stream) if _is_terminal(stream) else None
