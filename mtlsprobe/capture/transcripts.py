"""Capture file -> one ``Transcript`` per TCP connection that carries TLS.

Boundary: ``CaptureReader`` runs a ``capture.flowtable.FlowTable`` over the file and turns
each kept connection it hands out into a value (a ``Transcript`` here; subclasses such as
``capture.observations.ObservationReader`` differ); ``transcript`` is that conversion.
TLS itself is parsed by ``mtlsprobe.tls``.

- HTTP CONNECT (``capture.httpconnect``): the request and reply are stripped from the
  chunks (gap offsets shift with them); they become ``route`` and ``server`` is the CONNECT
  target; a non-2xx reply sets ``failed_stage=Stage.PROXY``.
- Gap offsets are stream offsets counting the missing bytes (offset 0 = first byte after
  the SYN, or after the CONNECT reply); chunks hold only captured bytes.
- Labels are ``"<file> flow N"``, N counting TCP connections from 0 in order of their first
  packet (like tshark's ``tcp.stream``, so ``tcp.stream == N`` usually finds it).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

from mtlsprobe.capture.connection import Connection, Side
from mtlsprobe.capture.flowtable import FlowTable, Progress
from mtlsprobe.capture.httpconnect import prelude
from mtlsprobe.capture.linklayer import NOT_DECODED, not_decoded_note
from mtlsprobe.capture.pcapfile import CaptureFile
from mtlsprobe.model import (
    Chunk,
    Direction,
    Endpoint,
    Gap,
    Route,
    Stage,
    StreamEnd,
    TcpFacts,
    Transcript,
)

CAPTURE_ROUTE = Route(kind="capture", source="capture")


class CaptureReader:
    """Read a capture and iterate the TLS-carrying TCP connections as ``Transcript``s.

    ``notes`` (capture-level remarks), ``keylog_text`` (key log from pcapng Decryption
    Secrets Blocks, "" when none) and ``stats`` (counters) fill in as iteration proceeds.
    Opening raises ``InputError`` when the source is not a capture.
    """

    def __init__(
        self,
        source: str | Path | BinaryIO,
        *,
        ports: set[int] | None = None,
        max_bytes: int | None = 256 * 1024,
        progress: Progress | None = None,
        partition: tuple[int, int] | None = None,
    ) -> None:
        self.capture = CaptureFile(source)
        self.partition = partition  # see FlowTable; labels are then "flow @F"
        self.flows = FlowTable(self.capture, ports=ports or (), max_bytes=max_bytes,
                               partition=partition, progress=progress)
        self.stats = self.flows.stats
        self.skipped = self.flows.skipped  # frames not decoded, by reason
        self.first_frames = self.flows.first_frames
        self.capture.progress = progress
        self._notes: list[str] = []

    @property
    def progress(self) -> Progress | None:
        """Called with (file bytes read, file size or None); may be set before iterating."""
        return self.flows.progress

    @progress.setter
    def progress(self, progress: Progress | None) -> None:
        self.flows.progress = progress

    @property
    def keylog_text(self) -> str:
        return self.capture.keylog_text

    @property
    def notes(self) -> list[str]:
        out = list(self.capture.notes)
        for reason, n in sorted(self.skipped.items()):
            if reason == "not TCP" or reason.startswith(NOT_DECODED):
                continue
            out.append(f"skipped {n} frame(s): {reason}")
        undecoded = not_decoded_note(self.skipped)
        if undecoded is not None:
            out.append(undecoded)
        return out + self._notes

    def __iter__(self) -> Iterator[Transcript]:
        return self._run()

    def connections(self) -> Iterator[Connection]:
        """Read the capture; each kept connection as it closes, before it becomes what
        iteration yields (for tools that want its TCP facts: scripts/zeek)."""
        connections = self.flows.run(self._stream)
        try:
            yield from connections
        finally:
            connections.close()

    def _run(self) -> Iterator[Any]:
        """Read the capture; yield ``_emit(conn)`` for each kept connection as it closes."""
        emit = self._emit
        for conn in self.connections():
            yield emit(conn)

    # --- hooks ---------------------------------------------------------------------

    def _stream(self, conn: Connection) -> None:
        """Hook (the flow table's ``stream``): a kept connection got bytes and has no sink
        yet. A subclass may set ``conn.sink`` (and take over ``conn.chunks``); by default
        chunks are kept."""

    def _emit(self, conn: Connection) -> Transcript:
        """What iteration yields for a closed, kept connection (a subclass may differ)."""
        return self._transcript(conn)

    def _transcript(self, conn: Connection, *, chunks: bool = True) -> Transcript:
        """The connection as a Transcript; without its chunks when ``chunks`` is False
        (a sink took the bytes)."""
        label = f"{self.capture.name} flow {'@' if self.partition else ''}{conn.index}"
        return transcript(conn, label=label, keylog=self.capture.keylog, chunks=chunks)


def transcript(
    conn: Connection, *, label: str, keylog: str | None, chunks: bool = True
) -> Transcript:
    """A closed connection as a Transcript; without its chunks when ``chunks`` is False
    (a sink took the bytes)."""
    client, server, how = conn.roles()

    def endpoint(side: Side) -> Endpoint:
        return Endpoint(host=side.addr[0], port=side.addr[1], ip=side.addr[0])

    direction = {id(client): Direction.C2S, id(server): Direction.S2C}
    notes: list[str] = []
    if how not in ("syn", "syn-ack"):
        notes.append(
            {
                "clienthello": "no SYN seen: client is the side that sent a ClientHello",
                "serverhello": "no SYN seen: client is the peer of the ServerHello sender",
                "port": "no SYN seen: client guessed as the side with the higher port",
            }[how]
        )
    route, target, kept = CAPTURE_ROUTE, endpoint(server), conn.chunks
    failed_stage = None
    skip = {id(client): 0, id(server): 0}
    connect = prelude(conn)
    if connect is not None:
        route, target, skip[id(client)], skip[id(server)] = connect
        kept = _strip(conn.chunks, skip) if chunks else []
        if not 200 <= (route.connect_status or 0) < 300:
            failed_stage = Stage.PROXY
        notes.append(f"HTTP CONNECT through {route.proxy} to {target}")
    gaps: list[Gap] = []
    for side in (client, server):
        s = side.stream
        name = "client" if side is client else "server"
        cut = skip[id(side)]
        gaps += [
            Gap(direction=direction[id(side)], offset=o - cut, length=n)
            for o, n in s.gaps
            if o >= cut
        ]
        if s.gaps:
            missing = sum(n for _, n in s.gaps)
            notes.append(f"{name} stream: {len(s.gaps)} gap(s), {missing} byte(s) not captured")
        if s.beyond_cap:
            notes.append(
                f"{name} stream: kept the first {s.max_bytes} bytes; "
                f"{s.beyond_cap} more byte(s) counted, not stored"
            )
        if s.conflicting_bytes:
            notes.append(
                f"{name} stream: {s.conflicting_bytes} byte(s) differ between copies of "
                "retransmitted data (first copy kept)"
            )
    if conn.snapcut:
        notes.append(f"{conn.snapcut} segment(s) cut short by the capture snap length")
    if conn.copies > 1:
        notes.append(f"one of {conn.copies} copies of this connection in the capture, each with "
                     "its own sequence numbers (captured on both sides of a firewall that "
                     "randomises ISNs): this copy read on its own")
    try:
        started_at = datetime.fromtimestamp(conn.start, tz=timezone.utc)
    except (ValueError, OverflowError, OSError):  # a damaged or absurd packet timestamp
        started_at = datetime.fromtimestamp(0, tz=timezone.utc)
        notes.append(f"first packet's timestamp {conn.start!r} is not a date: shown as "
                     "1970-01-01, and certificates are judged at that time")
    truncated = client.stream.truncated_at_start or server.stream.truncated_at_start
    if truncated:
        notes.append("capture began mid-connection (no SYN seen)")
    end = (
        StreamEnd.RST if conn.rst
        else StreamEnd.FIN if conn.a.fin or conn.b.fin
        else StreamEnd.CAPTURE_ENDED
    )
    tcp = TcpFacts(
        syn_ttl=conn.syn_ttl,
        synack_ttl=conn.synack_ttl,
        client_ttls=tuple(client.ttls),
        server_ttls=tuple(server.ttls),
        rst_from=tuple(direction[id(s)] for s in conn.rst),
        rst_ttls=tuple(conn.rst_ttls),
        retransmissions=client.stream.retransmissions + server.stream.retransmissions,
        synack_options=conn.synack_options,
    )

    return Transcript(
        label=label,
        client=endpoint(client),
        server=target,
        route=route,
        started_at=started_at,
        chunks=tuple(
            Chunk(direction=direction[id(side)], at=at, data=data)
            for side, at, data in kept
        ) if chunks else (),
        gaps=tuple(gaps),
        end=end,
        keylog=keylog,
        attempt=conn.attempt,
        tcp=tcp,
        failed_stage=failed_stage,
        truncated_at_start=truncated,
        notes=tuple(notes),
    )


def _strip(
    chunks: list[tuple[Side, float, bytes]], skip: dict[int, int]
) -> list[tuple[Side, float, bytes]]:
    """Drop the first ``skip[id(side)]`` bytes each side sent."""
    out = []
    left = dict(skip)
    for side, at, data in chunks:
        n = left[id(side)]
        if n:
            cut = min(n, len(data))
            left[id(side)] -= cut
            data = data[cut:]
        if data:
            out.append((side, at, data))
    return out


def iter_transcripts(
    source: str | Path | BinaryIO,
    *,
    ports: set[int] | None = None,
    max_bytes: int | None = 256 * 1024,
) -> Iterator[Transcript]:
    """Transcripts of the TLS connections in a capture (see ``CaptureReader`` for notes)."""
    return iter(CaptureReader(source, ports=ports, max_bytes=max_bytes))
