"""Capture file -> TCP connections -> one ``Transcript`` per connection that carries TLS.

Boundary: flow table, client/server roles, TCP facts and the TLS-or-not decision (the first
bytes of the client stream only). TLS itself is parsed by ``mtlsprobe.tls``.

Decisions, for reviewers:

- A connection is a 4-tuple over time: a SYN with a new ISN on a tuple whose connection
  ended (or that already carried data) starts a new connection. Stray packets on a tuple
  that just closed (the last ACK after FIN, late retransmissions) are dropped, not turned
  into a mid-stream connection.
- Client = sender of the SYN (or the peer of the SYN-ACK sender); else the side whose first
  payload is a ClientHello; else the peer of a side whose first payload is a ServerHello;
  else the side with the higher port (servers listen on low ports); equal ports: the side
  that sent the first packet.
- Kept (emitted): the client stream starts with a TLS (or SSLv2-compatible hello) record
  header; or it starts with a gap and the server stream starts with a TLS record; or the
  server port is in ``ports``; or it opens with an HTTP CONNECT exchange (any status). Others
  are counted in ``stats["non_tls_connections"]`` and stop being reassembled once that is clear.
- HTTP CONNECT: the request and reply are stripped from the chunks (gap offsets shift with
  them); they become ``route`` (kind "http_proxy", proxy URL, status, reply headers, auth
  schemes) and ``server`` is the CONNECT target; a non-2xx reply sets
  ``failed_stage=Stage.PROXY``.
- Gap offsets are stream offsets counting the missing bytes (offset 0 = first byte after
  the SYN, or after the CONNECT reply); chunks hold only captured bytes.
- Assumes one capture point: a peer's ACK past a hole means the capture lost those bytes,
  so the hole becomes a gap at once (chunk order then stays faithful).
- A connection is emitted when it closes (RST, or FIN both ways with both streams complete)
  so memory stays flat on large captures; the rest are emitted at the end of the capture.
  After a RST it lingers ``RST_LINGER`` seconds (capture time) first: segments its peer
  sent before the RST reached it are still in flight and are real bytes (e.g. the rest
  of a server's certificate flight after a client's RST).
- A pcapng packet comment ``mtlsprobe attempt: NAME; client certificate: KIND`` (the probe's
  own capture, ``live.sniff``) on a connection's packets becomes ``Transcript.attempt``, so
  analyze tells the probe's attempts from a client's connections.
- Bytes: a kept connection's reassembled bytes are held as chunks (up to ``max_bytes`` per
  direction) and emitted in a Transcript, unless a subclass gives the connection a sink
  (``_stream`` hook; ``capture.observations.ObservationReader`` streams into an Observer):
  then nothing is held, and bytes the sink only counts skip reassembly (``ByteSink.skip``).
  Once a direction is only counted, its frames (IPv4 or IPv6, untagged or VLAN-tagged) are
  taken in the capture file's read buffer, never decoded or yielded
  (``capture.bulk``: leases, settled before any other frame of the connection is read).
- Labels are ``"<file> flow N"``, N counting TCP connections from 0 in order of their first
  packet (like tshark's ``tcp.stream``, so ``tcp.stream == N`` usually finds it).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from mtlsprobe.capture.bulk import NOT_BARE_ACK, BulkFrames, Lease
from mtlsprobe.capture.linklayer import (
    ACK,
    FIN,
    RST,
    SYN,
    TcpSegment,
    decode,
)
from mtlsprobe.capture.pcapfile import PROGRESS_EVERY, CaptureFile
from mtlsprobe.capture.tcp import TcpReassembler
from mtlsprobe.model import (
    Attempt,
    CertKind,
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

CLOSED_MEMORY = 65536  # how many recently closed 4-tuples to remember
RST_LINGER = 1.0  # seconds a reset connection still takes in-flight segments
TLS_CONTENT_TYPES = frozenset(range(20, 25))  # change_cipher_spec .. heartbeat
MAX_RECORD = (1 << 14) + 2048
CAPTURE_ROUTE = Route(kind="capture", source="capture")
CONNECT_LIMIT = 16384  # an HTTP CONNECT request or response head longer than this is not one
ATTEMPT_PREFIX = "mtlsprobe attempt: "  # live.sniff.ATTEMPT_COMMENT

Addr = tuple[str, int]
# An HTTP CONNECT exchange opening a connection: (route, target, request and reply lengths)
_Prelude = tuple[Route, Endpoint, int, int]


class ByteSink(Protocol):
    """Takes a kept connection's reassembled bytes as they arrive (see ``_stream``)."""

    def feed(self, side: Side, at: float, data: bytes) -> None:
        """The next bytes ``side`` sent, in stream order."""

    def counting(self, side: Side) -> bool:
        """Whether ``side``'s bytes are now mostly only counted (see ``skip``)."""

    def skip(self, side: Side, n: int) -> bool:
        """Whether the next ``n`` bytes ``side`` sends are only counted (then they are
        taken as fed and never delivered); False: deliver them."""

    def skippable(self, side: Side) -> int:
        """How many next bytes of ``side`` ``skip`` would take now, in one call or several."""


def tls_record_start(data: bytes) -> bool | None:
    """Whether ``data`` starts like a TLS record (or an SSLv2-compatible ClientHello).

    None: fewer than 5 bytes, cannot tell yet.
    """
    if len(data) < 5:
        return None
    b0, b1, b2 = data[0], data[1], data[2]
    if b0 in TLS_CONTENT_TYPES and b1 == 3 and b2 <= 4:
        return (data[3] << 8 | data[4]) <= MAX_RECORD
    # SSLv2 record header with the high bit set, then msg type 1 (client hello), version
    return bool(b0 & 0x80) and b2 == 1 and (data[3], data[4]) in ((0, 2), (3, 0), (3, 1), (3, 2),
                                                                   (3, 3), (3, 4))


def _hello_type(data: bytes) -> int | None:
    """Handshake message type of a first TLS handshake record (1 ClientHello, 2 ServerHello)."""
    if len(data) >= 6 and data[0] == 0x16 and data[1] == 3:
        return data[5]
    if len(data) >= 3 and data[0] & 0x80 and data[2] == 1:
        return 1  # SSLv2-compatible ClientHello
    return None


class Side:
    """What one endpoint of a connection sent (its stream, first bytes, TTLs, FIN)."""

    __slots__ = ("addr", "alt_isns", "fin", "first", "first_gaps", "isn", "stream", "ttls")

    def __init__(self, addr: Addr, max_bytes: int | None) -> None:
        self.addr = addr
        self.stream = TcpReassembler(max_bytes)
        self.isn: int | None = None  # sequence number of its SYN / SYN-ACK
        self.alt_isns: set[int] | None = None  # later SYN-ACKs' other ISNs (see _rebase)
        self.fin = False
        self.first = b""  # first bytes delivered (up to 6), to classify the stream
        self.first_gaps = 0  # gaps before the first delivered bytes
        self.ttls: dict[int, None] = {}  # distinct TTLs after the handshake, in order


class Connection:
    """One TCP connection being read: its two sides and what the capture showed of it.
    Subclasses of ``CaptureReader`` see it in their hooks (``_stream``, ``_emit``)."""

    __slots__ = (
        "a", "attempt", "b", "chunks", "index", "keep", "last", "leases", "lingering",
        "prelude", "rst", "rst_ttls", "sink", "snapcut", "start",
        "syn_from", "syn_ttl", "synack_from", "synack_options", "synack_ttl",
    )

    def __init__(
        self, index: int, src: Addr, dst: Addr, ts: float, max_bytes: int | None
    ) -> None:
        self.index = index
        self.a, self.b = Side(src, max_bytes), Side(dst, max_bytes)  # a sent the first packet
        self.start = self.last = ts
        self.chunks: list[tuple[Side, float, bytes]] = []
        self.keep: bool | None = None  # None: not decided yet
        self.syn_from: Side | None = None
        self.synack_from: Side | None = None
        self.syn_ttl: int | None = None
        self.synack_ttl: int | None = None
        self.synack_options: tuple[str, ...] = ()
        self.rst: list[Side] = []
        self.rst_ttls: dict[int, None] = {}
        self.snapcut = 0
        self.attempt: Attempt | None = None  # named by a packet comment (probe captures)
        self.lingering = False  # reset, waiting RST_LINGER for in-flight segments
        self.prelude: _Prelude | bool | None = False  # False: not looked for yet
        self.sink: ByteSink | None = None  # set by a subclass: bytes go there, not to chunks
        self.leases: list[Lease] = []  # its directions' claims on bulk frames (BulkFrames)

    def side(self, addr: Addr) -> tuple[Side, Side]:
        return (self.a, self.b) if addr == self.a.addr else (self.b, self.a)

    def client(self) -> tuple[Side | None, str]:
        """(client side or None when undecided, how it was decided)."""
        if self.syn_from is not None:
            return self.syn_from, "syn"
        if self.synack_from is not None:
            return (self.b if self.synack_from is self.a else self.a), "syn-ack"
        for s, peer in ((self.a, self.b), (self.b, self.a)):
            kind = _hello_type(s.first)
            if kind == 1:
                return s, "clienthello"
            if kind == 2:
                return peer, "serverhello"
        if len(self.a.first) < 6 or len(self.b.first) < 6:
            return None, ""
        return self.port_guess(), "port"

    def port_guess(self) -> Side:
        if self.a.addr[1] == self.b.addr[1]:
            return self.a
        return self.a if self.a.addr[1] > self.b.addr[1] else self.b

    def closed(self) -> bool:
        if self.rst:
            return True
        if not (self.a.fin and self.b.fin):
            return False
        return self.keep is False or (self.a.stream.complete and self.b.stream.complete)


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
        progress: Callable[[int, int | None], None] | None = None,
        partition: tuple[int, int] | None = None,
    ) -> None:
        self.capture = CaptureFile(source)
        # (k, n): read only the connections whose address pair hashes to k modulo n, so n
        # processes forked from one parent (one hash seed) share a capture out between them.
        # Connections are then numbered by the frame number of their first packet
        # ("flow @F"); the caller renumbers them (``first_frames``) once all parts are read.
        self.partition = partition
        self.first_frames: list[int] = []
        self.progress = progress  # called with (file bytes read, file size or None)
        self.ports = frozenset(ports or ())
        self.max_bytes = max_bytes
        self.stats: dict[str, int] = {
            "packets": 0, "tcp_segments": 0, "connections": 0, "tls_connections": 0,
            "non_tls_connections": 0, "after_close": 0, "bulk_frames": 0,
        }
        self.skipped: dict[str, int] = {}  # frames not decoded, by reason
        self._late = BulkFrames(self.capture)
        self.capture.progress = progress
        self._notes: list[str] = []

    @property
    def keylog_text(self) -> str:
        return self.capture.keylog_text

    @property
    def notes(self) -> list[str]:
        out = list(self.capture.notes)
        for reason, n in sorted(self.skipped.items()):
            if reason in ("not TCP", "not IP"):
                continue
            out.append(f"skipped {n} frame(s): {reason}")
        return out + self._notes

    def __iter__(self) -> Iterator[Transcript]:
        return self._run()

    def _run(self) -> Iterator[Any]:
        """Read the capture; yield ``_emit(conn)`` for each kept connection as it closes."""
        table: dict[tuple[Addr, Addr], Connection] = {}
        closed: OrderedDict[tuple[Addr, Addr], None] = OrderedDict()
        lingering: deque[tuple[float, tuple[Addr, Addr], Connection]] = deque()
        stats = self.stats
        skipped = self.skipped
        progress = self.progress
        capture = self.capture
        add = self._add
        late = self._late
        part, parts = self.partition or (None, 1)
        # per-packet counters live in locals and are written to ``stats`` (with the frames
        # the capture's claimants took) before every yield and at the end, so readers of
        # ``stats`` see them current
        packets, segments = stats["packets"], stats["tcp_segments"]

        def sync() -> None:
            taken = capture.claimed
            stats["packets"], stats["tcp_segments"] = packets + taken, segments + taken
            stats["bulk_frames"] = late.frames

        try:
            for ts, linktype, frame in capture:
                packets += 1
                if progress is not None and not packets & PROGRESS_EVERY:
                    progress(capture.position, capture.size)
                while lingering and ts >= lingering[0][0]:
                    _, old_key, old = lingering.popleft()
                    if table.get(old_key) is old:  # not replaced by a new SYN meanwhile
                        t = self._retire(table, closed, old_key)
                        if t is not None:
                            sync()
                            yield t
                seg = decode(linktype, frame, skipped)
                if seg is None:
                    continue
                segments += 1
                src, dst = (seg.src, seg.sport), (seg.dst, seg.dport)
                key = (src, dst) if src < dst else (dst, src)
                if part is not None and hash(key) % parts != part:
                    late.skip_others(frame, linktype)
                    continue  # another process's connection
                conn = table.get(key)
                if conn is not None and conn.leases:
                    late.settle(conn)  # what its leases took, before this frame
                flags = seg.flags
                if flags & SYN and not flags & ACK:
                    if conn is not None and self._new_connection(conn, src, seg.seq):
                        del table[key]
                        t = self._finish(conn)
                        if t is not None:
                            sync()
                            yield t
                        conn = None
                    closed.pop(key, None)
                elif conn is None and key in closed:
                    stats["after_close"] += 1
                    continue
                if conn is None:
                    if part is None:
                        index = stats["connections"]
                    else:
                        index = packets + capture.claimed  # renumbered by the caller
                        self.first_frames.append(index)
                    conn = table[key] = Connection(index, src, dst, ts, self.max_bytes)
                    stats["connections"] += 1
                add(conn, src, seg, ts)
                sink = conn.sink
                if sink is not None and capture.comment is None:
                    me = conn.a if src == conn.a.addr else conn.b
                    late.resume(conn, sink, frame, linktype, me,
                                None if flags & (SYN | RST) else seg.ttl)
                if capture.comment is not None and conn.attempt is None:
                    conn.attempt = attempt_from_comment(capture.comment)
                if conn.rst:
                    if not conn.lingering:
                        conn.lingering = True
                        lingering.append((ts + RST_LINGER, key, conn))
                elif conn.a.fin and conn.b.fin and conn.closed():
                    t = self._retire(table, closed, key)
                    if t is not None:
                        sync()
                        yield t
            sync()
            if progress is not None:
                progress(capture.size or capture.position, capture.size)
            for conn in sorted(table.values(), key=lambda c: c.index):
                t = self._finish(conn)
                sync()
                if t is not None:
                    yield t
            table.clear()
        finally:
            sync()
            self.capture.close()

    def _retire(
        self, table: dict[tuple[Addr, Addr], Connection],
        closed: OrderedDict[tuple[Addr, Addr], None], key: tuple[Addr, Addr],
    ) -> Any:
        """A closed connection leaves the table (its tuple is remembered as closed, so
        stray late segments are not a new connection); what ``_finish`` gives for it."""
        conn = table.pop(key)
        closed[key] = None
        if len(closed) > CLOSED_MEMORY:
            closed.popitem(last=False)
        return self._finish(conn)

    # --- per packet ----------------------------------------------------------------

    @staticmethod
    def _new_connection(conn: Connection, src: Addr, seq: int) -> bool:
        """A SYN on a known tuple: a new connection unless it repeats the one we saw."""
        side, _ = conn.side(src)
        if side.isn is not None:
            return side.isn != seq
        return bool(conn.rst) or any(s.fin or s.stream.started for s in (conn.a, conn.b))

    def _add(self, conn: Connection, src: Addr, seg: TcpSegment, ts: float) -> None:
        me, peer = conn.side(src)
        flags = seg.flags
        conn.last = ts
        if not (seg.payload or flags & NOT_BARE_ACK):  # a bare ACK: most segments
            me.ttls[seg.ttl] = None
            if seg.truncated:
                conn.snapcut += 1
            if conn.keep is not False and flags & ACK and peer.stream.started:
                self._acked(conn, peer, seg.ack, ts - conn.start)
            return
        if flags & SYN:
            if me.isn is not None:
                me.stream.retransmissions += 1
                if flags & ACK and seg.seq != me.isn:
                    me.alt_isns = (me.alt_isns or set()) | {seg.seq}
            else:
                me.isn = seg.seq
                me.stream.syn(seg.seq)
                if flags & ACK:
                    conn.synack_from, conn.synack_ttl = me, seg.ttl
                    conn.synack_options = seg.option_summary
                else:
                    conn.syn_from, conn.syn_ttl = me, seg.ttl
        elif flags & RST:
            if me not in conn.rst:
                conn.rst.append(me)
            conn.rst_ttls[seg.ttl] = None
            return  # data on a RST is not stream data
        else:
            me.ttls[seg.ttl] = None
        if flags & FIN:
            me.fin = True
        if seg.truncated:
            conn.snapcut += 1
        if conn.keep is False:
            return
        at = ts - conn.start
        payload = seg.payload
        sink = conn.sink
        if (
            sink is not None and not flags & (SYN | FIN) and payload
            and me.stream.expects(seg.seq) and sink.skip(me, len(payload))
        ):
            me.stream.advance(len(payload))  # bytes the sink only counts: no reassembly
            runs: Sequence[bytes] = ()
        else:
            seq = (seg.seq + 1) & 0xFFFFFFFF if flags & SYN else seg.seq  # TCP Fast Open data
            runs = me.stream.segment(seq, payload, bool(flags & FIN))
        for run in runs:
            self._deliver(conn, me, at, run)
        if flags & ACK and peer.stream.started:
            self._acked(conn, peer, seg.ack, at)
        if runs and conn.keep is None:
            self._classify(conn)

    def _acked(self, conn: Connection, peer: Side, ack: int, at: float) -> None:
        """``peer``'s stream was acknowledged up to ``ack``: a hole before it is a gap."""
        if peer.alt_isns is not None and (ack - 1) & 0xFFFFFFFF in peer.alt_isns:
            self._rebase(peer, (ack - 1) & 0xFFFFFFFF)
        for run in peer.stream.acked(ack):
            self._deliver(conn, peer, at, run)

    def _rebase(self, side: Side, isn: int) -> None:
        """The peer acknowledged a later SYN-ACK's ISN, not the first one seen: that one is
        the connection (e.g. a SYN retransmitted after TCP Fast Open data was ignored got a
        new SYN-ACK). Restart the side's stream on it, if it delivered nothing yet."""
        side.alt_isns = None
        if side.stream.stored or side.stream.gaps:
            return
        stream = TcpReassembler(self.max_bytes)
        stream.retransmissions = side.stream.retransmissions
        stream.syn(isn)
        side.isn, side.stream = isn, stream

    def _deliver(self, conn: Connection, side: Side, at: float, run: bytes) -> None:
        if len(side.first) < 6:
            gaps = len(side.stream.gaps)
            if not side.first:
                side.first_gaps = gaps
            if side.first_gaps == gaps:  # only bytes contiguous with the first run
                side.first += run[: 6 - len(side.first)]
        sink = conn.sink
        if sink is not None:
            sink.feed(side, at, run)
            return
        conn.chunks.append((side, at, run))
        if conn.keep:
            self._stream(conn)

    def _classify(self, conn: Connection) -> None:
        """Decide early whether to keep a connection, to stop storing non-TLS ones."""
        conn.keep = self._keep(conn, final=False)
        if conn.keep is False:
            conn.chunks.clear()
        elif conn.keep:
            self._stream(conn)

    def _stream(self, conn: Connection) -> None:
        """Hook: a kept connection got bytes and has no sink yet. A subclass may set
        ``conn.sink`` (and take over ``conn.chunks``); by default chunks are kept."""

    def _keep(self, conn: Connection, *, final: bool) -> bool | None:
        client, _how = conn.client()
        if client is None:
            client = conn.port_guess() if final else None
            if client is None:
                return None
        server = conn.b if client is conn.a else conn.a
        if server.addr[1] in self.ports:
            return True
        if client.first.startswith(b"CONNEC"):
            if conn.prelude or _connect_prelude(conn, client, server, final=final) is not None:
                return True
            return False if final else None
        starts_with_gap = bool(client.stream.gaps) and client.stream.gaps[0][0] == 0
        if starts_with_gap:
            verdict = tls_record_start(server.first)
        else:
            verdict = tls_record_start(client.first)
        if verdict is None:
            return False if final else None
        return verdict

    # --- per connection ------------------------------------------------------------

    def _finish(self, conn: Connection) -> Any:
        self._late.forget(conn)
        if conn.keep is not False:
            for side in (conn.a, conn.b):
                for run in side.stream.flush():
                    self._deliver(conn, side, conn.last - conn.start, run)
            conn.keep = self._keep(conn, final=True)
        if not conn.keep:
            self.stats["non_tls_connections"] += 1
            return None
        self.stats["tls_connections"] += 1
        return self._emit(conn)

    def _emit(self, conn: Connection) -> Transcript:
        """What iteration yields for a closed, kept connection (a subclass may differ)."""
        return self._transcript(conn)

    def roles(self, conn: Connection) -> tuple[Side, Side, str]:
        """(client side, server side, how the client was told)."""
        client, how = conn.client()
        if client is None:
            client, how = conn.port_guess(), "port"
        return client, (conn.b if client is conn.a else conn.a), how

    def prelude(self, conn: Connection) -> _Prelude | None:
        """The connection's HTTP CONNECT exchange, if it opens with one (looked for once
        its roles are known, from the chunks then held)."""
        if conn.prelude is False:
            client, server, _ = self.roles(conn)
            # only a client stream that can start with "CONNECT" is searched for a request
            # head: joining and scanning 16 KiB per TLS connection was a tenth of the flow cost
            could_connect = b"CONNEC".startswith(client.first)  # first: up to 6 bytes
            conn.prelude = (
                _connect_prelude(conn, client, server, final=True) if could_connect else None
            )
        return conn.prelude  # type: ignore[return-value]

    def connect_pending(self, conn: Connection) -> bool:
        """Whether the client may be sending an HTTP CONNECT exchange not complete yet."""
        if conn.prelude is not False:
            return False
        client, server, _ = self.roles(conn)
        return b"CONNEC".startswith(client.first) and (
            _connect_prelude(conn, client, server, final=False) is None
        )

    def _transcript(self, conn: Connection, *, chunks: bool = True) -> Transcript:
        """The connection as a Transcript; without its chunks when ``chunks`` is False
        (a sink took the bytes)."""
        client, server, how = self.roles(conn)

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
        prelude = self.prelude(conn)
        if prelude is not None:
            route, target, skip[id(client)], skip[id(server)] = prelude
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
            label=f"{self.capture.name} flow {'@' if self.partition else ''}{conn.index}",
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
            keylog=self.capture.keylog,
            attempt=conn.attempt,
            tcp=tcp,
            failed_stage=failed_stage,
            truncated_at_start=truncated,
            notes=tuple(notes),
        )


def attempt_from_comment(text: str) -> Attempt | None:
    """The attempt a probe capture's packet comment names, or None for other comments."""
    if not text.startswith(ATTEMPT_PREFIX):
        return None
    name, _, kind = text[len(ATTEMPT_PREFIX) :].partition("; client certificate: ")
    try:
        cert = CertKind(kind.strip())
    except ValueError:
        cert = CertKind.UNKNOWN
    return Attempt(name=name.strip(), client_cert=cert) if name.strip() else None


def _head(conn: Connection, side: Side, limit: int = CONNECT_LIMIT) -> bytes:
    parts, n = [], 0
    for s, _at, data in conn.chunks:
        if s is side:
            parts.append(data)
            n += len(data)
            if n >= limit:
                break
    return b"".join(parts)


def _decimal(text: str) -> bool:
    """ASCII digits only: str.isdigit() also takes "³" and the like, which int() refuses."""
    return text.isascii() and text.isdigit()


def _http_head(data: bytes) -> tuple[list[str], int] | None:
    """(lines, length) of an HTTP message head ending with an empty line, or None."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    return data[:end].decode("latin-1").split("\r\n"), end + 4


def _connect_prelude(
    conn: Connection, client: Side, server: Side, *, final: bool
) -> _Prelude | None:
    """An HTTP CONNECT exchange opening the connection: (route, target, request length,
    response length). None while incomplete or when it is not one."""
    request = _http_head(_head(conn, client))
    response = _http_head(_head(conn, server))
    if request is None or response is None:
        return None
    (req_lines, req_len), (resp_lines, resp_len) = request, response
    method, _, rest = req_lines[0].partition(" ")
    authority = rest.split(" ")[0]
    host, _, port = authority.rpartition(":")
    status_line = resp_lines[0].split(" ", 2)
    if method != "CONNECT" or not _decimal(port) or not status_line[0].startswith("HTTP/"):
        return None
    if len(status_line) < 2 or not _decimal(status_line[1]):
        return None
    headers = tuple(
        (k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in resp_lines[1:])
    )
    schemes = tuple(v.split(" ")[0] for k, v in headers if k.lower() == "proxy-authenticate")
    proxy = server.addr
    route = Route(
        kind="http_proxy",
        proxy=f"http://{'[' + proxy[0] + ']' if ':' in proxy[0] else proxy[0]}:{proxy[1]}",
        source="capture",
        connect_status=int(status_line[1]),
        connect_reason=status_line[2] if len(status_line) > 2 else "",
        connect_headers=headers,
        proxy_auth_schemes=schemes,
    )
    target = Endpoint(host=host.strip("[]"), port=int(port))
    return route, target, req_len, resp_len


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
