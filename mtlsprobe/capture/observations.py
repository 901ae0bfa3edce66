"""Capture -> ``Observation`` per TLS connection, in one streaming pass (the analyze path).

Boundary: glue between ``capture.flowtable`` (connections) and ``tls.observer`` (facts). Once a
connection is known to carry TLS, its reassembled bytes go straight into one
``tls.Observer`` as they arrive; nothing of the stream is stored, so there is no cap on
how much of it is read (a 340 KB certificate flight is parsed whole) and memory stays flat
in the capture size. Each connection is observed when it closes and then dropped.

Before that point a connection's first bytes wait in its chunks: until its roles are known
and it is kept, until an HTTP CONNECT exchange is complete, and, for a connection whose
start was not captured, until both sides have sent something (``lose_start`` needs it).

Key logs: the caller's key log is parsed once; a key log embedded in the capture (pcapng
Decryption Secrets Blocks) is merged into it as soon as it appears. Connections that
closed before a late embedded key log are counted in ``undecrypted_before_late_keys``.

Results equal ``observe(transcript, keylog=merged)`` for every transcript ``CaptureReader``
yields with the same ``max_bytes`` (tests/test_capture_observations.py holds us to that).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from mtlsprobe.capture.connection import Connection, Side
from mtlsprobe.capture.flowtable import Progress
from mtlsprobe.capture.httpconnect import CONNECT_LIMIT, connect_pending, prelude
from mtlsprobe.capture.transcripts import CaptureReader
from mtlsprobe.model import Direction, Observation
from mtlsprobe.tls.keylog import KeyLog, merge_keylogs
from mtlsprobe.tls.observer import Observer, starts_with_hello

# A connection that began before the capture waits for both sides' first bytes, up to this,
# and all waiting connections together up to WAIT_TOTAL (then each starts with what it has).
WAIT_LIMIT = 64 * 1024
WAIT_TOTAL = 16 * 1024 * 1024


class _Feed:
    """Where one direction of one connection stands in its observer."""

    __slots__ = ("direction", "offset", "reported", "skip", "strip")

    def __init__(self, direction: Direction, skip: int) -> None:
        self.direction = direction
        self.skip = skip  # stream bytes before TLS (an HTTP CONNECT head)
        self.strip = skip  # of those, still to drop from the delivered bytes
        self.offset = 0  # stream offset of the next byte (missing bytes counted)
        self.reported = 0  # how many of the stream's gaps the observer was told of


class _ObserverSink:
    """A kept connection's bytes, fed to its ``Observer`` as they are reassembled."""

    __slots__ = ("feeds", "first_client_at", "observer")

    def __init__(self, observer: Observer, client: Side, server: Side,
                 skips: tuple[int, int]) -> None:
        self.observer = observer
        self.feeds = {client: _Feed(Direction.C2S, skips[0]),
                      server: _Feed(Direction.S2C, skips[1])}
        self.first_client_at: float | None = None

    def feed(self, side: Side, at: float, data: bytes) -> None:
        f = self.feeds[side]
        if f.reported < len(side.stream.gaps):
            self._gaps(side, f)
        if f.strip:
            cut = min(f.strip, len(data))
            f.strip -= cut
            f.offset += cut
            data = data[cut:]
            if not data:
                return
        if self.first_client_at is None and f.direction is Direction.C2S:
            self.first_client_at = at
        self.observer.feed(f.direction, data)
        f.offset += len(data)
        if f.reported < len(side.stream.gaps):
            self._gaps(side, f)

    def counting(self, side: Side) -> bool:
        return self.observer.counting(self.feeds[side].direction)

    def skippable(self, side: Side) -> int:
        f = self.feeds[side]
        if f.strip or f.reported < len(side.stream.gaps):
            return 0
        return self.observer.skippable(f.direction)

    def skip(self, side: Side, n: int) -> bool:
        f = self.feeds[side]
        if f.strip or f.reported < len(side.stream.gaps):
            return False
        if self.observer.skip(f.direction, n):
            f.offset += n
            return True
        return False

    def _gaps(self, side: Side, f: _Feed, *, all_left: bool = False) -> None:
        """Tell the observer of the gaps at the stream's current position (or all left)."""
        gaps = side.stream.gaps
        while f.reported < len(gaps):
            offset, length = gaps[f.reported]
            if offset > f.offset and not all_left:
                break  # after bytes still to come
            f.reported += 1
            if offset >= f.skip:
                self.observer.gap(f.direction, length, offset - f.skip)
            f.offset = max(f.offset, offset + length)

    def finish(self) -> None:
        for side, f in self.feeds.items():
            self._gaps(side, f, all_left=True)


class ObservationReader(CaptureReader):
    """Iterate a capture's TLS connections as ``Observation``s (in order of closing).

    ``notes``, ``stats`` and ``keylog_text`` fill in as iteration proceeds (see
    ``CaptureReader``). ``max_bytes`` caps how much of each direction is read (None: all).
    ``progress(bytes_read, file_size)`` is called every few thousand packets.
    """

    def __init__(
        self,
        source: str | Path | BinaryIO,
        *,
        keylog: KeyLog | str | None = None,
        ports: set[int] | None = None,
        max_bytes: int | None = None,
        progress: Progress | None = None,
        partition: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(source, ports=ports, max_bytes=max_bytes, progress=progress,
                         partition=partition)
        self.external = KeyLog.parse(keylog) if isinstance(keylog, str) else keylog
        self.keylog: KeyLog | None = self.external
        self.undecrypted_before_late_keys = 0
        self._embedded = 0  # how many of the capture's embedded key log parts are merged
        # bytes held by kept connections waiting for their observer (see _stream), by id
        self._waiting: dict[int, int] = {}
        self._waiting_bytes = 0

    def __iter__(self) -> Iterator[Observation]:  # type: ignore[override]
        yield from self._run()
        if len(self.capture.keylog_parts) == self._embedded:
            self.undecrypted_before_late_keys = 0  # no key log arrived after the last one

    def _current_keylog(self) -> KeyLog | None:
        parts = self.capture.keylog_parts
        if len(parts) > self._embedded:  # only the new parts are parsed: later lines win
            new = "".join(parts[self._embedded :])
            self._embedded = len(parts)
            self.keylog = merge_keylogs(self.keylog, KeyLog.parse(new))
        return self.keylog

    # --- CaptureReader hooks ---------------------------------------------------------

    def _stream(self, conn: Connection, *, final: bool = False) -> None:
        client, server, _ = conn.roles()
        truncated = client.stream.truncated_at_start or server.stream.truncated_at_start
        held = self._waiting.pop(id(conn), 0)
        self._waiting_bytes -= held
        if not final:
            waited = sum(len(data) for _, _, data in conn.chunks)
            if self._waiting_bytes + waited <= WAIT_TOTAL and (
                # lose_start needs both sides' first bytes
                (truncated and not (client.first and server.first) and waited < WAIT_LIMIT)
                or (waited < 2 * CONNECT_LIMIT and connect_pending(conn))
            ):
                self._waiting[id(conn)] = waited
                self._waiting_bytes += waited
                return
        observer = Observer(keylog=self._current_keylog())
        if truncated:
            observer.lose_start(keep=starts_with_hello(self._transcript(conn)))
        connect = prelude(conn)
        skips = (connect[2], connect[3]) if connect is not None else (0, 0)
        sink = conn.sink = _ObserverSink(observer, client, server, skips)
        chunks, conn.chunks = conn.chunks, []
        for side, at, data in chunks:
            sink.feed(side, at, data)

    def _emit(self, conn: Connection) -> Observation:  # type: ignore[override]
        if conn.sink is None:
            self._stream(conn, final=True)
        sink = conn.sink
        assert isinstance(sink, _ObserverSink)
        sink.finish()
        self._current_keylog()  # a key log embedded since: noted by the caller
        obs = sink.observer.close(
            self._transcript(conn, chunks=False), first_client_at=sink.first_client_at
        )
        if not obs.decrypted and obs.version is not None:
            self.undecrypted_before_late_keys += 1
        return obs


def iter_observations(
    source: str | Path | BinaryIO,
    *,
    keylog: KeyLog | str | None = None,
    ports: set[int] | None = None,
    max_bytes: int | None = None,
    progress: Progress | None = None,
) -> Iterator[Observation]:
    """Observations of the TLS connections in a capture (see ``ObservationReader``)."""
    return iter(ObservationReader(source, keylog=keylog, ports=ports, max_bytes=max_bytes,
                                  progress=progress))
