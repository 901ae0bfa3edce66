"""The flow table: a capture file's frames -> its TCP connections, each handed out as it closes.

Boundary: the per-frame loop (decode, find or start the connection, reassemble, decide
roles and whether to keep it), and nothing about what a connection becomes; readers
(``capture.transcripts``, ``capture.observations``) turn the connections into values.
``FlowTable`` is the engine interface a compiled core could replace: a ``CaptureFile`` in,
kept connections out (``run``), one callback between (``stream``), counters in ``stats``.

Decisions, for reviewers:

- A connection is a 4-tuple over time: a SYN with a new ISN on a tuple whose connection
  ended (or that already carried data) starts a new connection. Stray packets on a tuple
  that just closed (the last ACK after FIN, late retransmissions) are dropped, not turned
  into a mid-stream connection.
- Copies: a SYN with another ISN from the same client, on a tuple whose connection began
  less than ``capture.copies.COPY_WINDOW`` ago and is still open, is that connection
  captured again on the far side of a firewall that rewrites sequence numbers. The tuple
  then moves from the table to ``copied`` (so other connections' frames cost nothing
  more), each frame goes to the copy whose sequence space it fits, and each copy is a
  connection of its own (numbered, kept and handed out like any; never leased by the bulk
  shortcut: its frames share raw addresses and ports with the other copy's).
  ``stats["captured_twice"]`` counts the connections whose server answered two copies.
- Client and server: see ``capture.connection``.
- Kept (handed out): the client stream starts with a TLS (or SSLv2-compatible hello) record
  header; or it starts with a gap and the server stream starts with a TLS record; or the
  server port is in ``ports``; or it opens with an HTTP CONNECT exchange (any status,
  ``capture.httpconnect``). Others are counted in ``stats["non_tls_connections"]`` and stop
  being reassembled once that is clear.
- Assumes one capture point: a peer's ACK past a hole means the capture lost those bytes,
  so the hole becomes a gap at once (chunk order then stays faithful).
- A connection is handed out when it closes (RST, or FIN both ways with both streams
  complete) so memory stays flat on large captures; the rest are handed out at the end of
  the capture. After a RST it lingers ``RST_LINGER`` seconds (capture time) first: segments
  its peer sent before the RST reached it are still in flight and are real bytes (e.g. the
  rest of a server's certificate flight after a client's RST).
- A pcapng packet comment ``mtlsprobe attempt: NAME; client certificate: KIND`` (the probe's
  own capture, ``live.sniff``) on a connection's packets becomes ``Connection.attempt``, so
  analyze tells the probe's attempts from a client's connections.
- Bytes: a kept connection's reassembled bytes are held as chunks (up to ``max_bytes`` per
  direction), unless the ``stream`` callback gives the connection a sink
  (``capture.observations.ObservationReader`` streams into an Observer): then nothing is
  held, and bytes the sink only counts skip reassembly (``ByteSink.skip``). Once a
  direction is only counted, its frames (IPv4 or IPv6, untagged or VLAN-tagged) are taken
  in the capture file's read buffer, never decoded or yielded (``capture.bulk``: leases,
  settled before any other frame of the connection is read).
- The table is capped (flood and scan captures: a SYN flood or a scan on a SPAN port is
  hundreds of thousands of one-packet flows that never close): past ``MAX_OPEN`` open
  connections, the eighth idle the longest (capture time of their last frame) are evicted.
  An evicted connection is finished like one still open at the end of the capture: judged
  with what it had when it showed TLS, else dropped; its tuple is remembered as closed (its
  later segments are counted in ``after_close``). ``stats["evicted"]`` counts them (of which
  ``stats["evicted_tls"]`` were kept), and the report says so (``run.captures``). A
  ``--jobs`` share holds ``MAX_OPEN // parts``, so all shares together hold as much as one
  reader. Copies (below) are not counted against the cap. A finished connection is let go
  as soon as it is handed out, at the end of the capture too.
- Compact entries (``capture.compact``): a flow that is one bare SYN so far is an
  ``Opening`` (expanded into its connection by its next segment), and a connection found
  not TLS becomes a ``NotTls`` once no copy of it can come (``COPY_WINDOW`` after its SYN),
  so floods, scans and plain traffic cost a few hundred bytes per open flow. They change
  nothing else (tests/test_capture_compact.py reads every capture with and without them).
- Undecided connections (seen without their start, one side silent) hold their bytes until
  both sides spoke; past ``UNDECIDED_BYTES`` each, or ``UNDECIDED_TOTAL`` all together,
  the one getting bytes is decided as at the end of the capture (``stats["decided_early"]``).
- Connections are numbered (``Connection.index``) from 0 in order of their first packet
  (like tshark's ``tcp.stream``); with ``partition``, by the frame number of their first
  packet instead (``first_frames``).
"""

from __future__ import annotations

import heapq
from collections import OrderedDict, deque
from collections.abc import Callable, Generator, Iterable, Sequence

from mtlsprobe.capture.bulk import NOT_BARE_ACK, BulkFrames, Lease
from mtlsprobe.capture.compact import NotTls, Opening
from mtlsprobe.capture.connection import Addr, Connection, Side, tls_record_start
from mtlsprobe.capture.copies import COPY_WINDOW, Copies, another_copy
from mtlsprobe.capture.httpconnect import connect_prelude
from mtlsprobe.capture.linklayer import (
    ACK,
    FIN,
    RST,
    SYN,
    TcpSegment,
    frame_decoder,
)
from mtlsprobe.capture.partition import ShareFilter
from mtlsprobe.capture.pcapfile import PROGRESS_EVERY, CaptureFile
from mtlsprobe.capture.tcp import reassembler
from mtlsprobe.model import Attempt, CertKind

CLOSED_MEMORY = 65536  # how many recently closed 4-tuples to remember
# open connections held at once (each a few KB); past it the longest idle are evicted
MAX_OPEN = 16384
RST_LINGER = 1.0  # seconds a reset connection still takes in-flight segments
# bytes a connection not decided yet (no SYN, no hello, one side silent) holds before it is
# decided as at the end of the capture, and all such connections together (see _classify)
UNDECIDED_BYTES = 64 * 1024
UNDECIDED_TOTAL = 16 * 1024 * 1024
ATTEMPT_PREFIX = "mtlsprobe attempt: "  # live.sniff.ATTEMPT_COMMENT

Progress = Callable[[int, int | None], None]
# what the table holds for a tuple: a connection, or a compact entry for one that holds no
# bytes (``capture.compact``)
Entry = Connection[Lease] | Opening | NotTls


def _hold_chunks(conn: Connection) -> None:
    """The default ``stream`` callback: no sink, a kept connection's bytes stay in chunks."""


class FlowTable:
    """The TCP connections of one capture file, read frame by frame (see the module
    docstring): ``run(stream)`` yields each kept connection once, when it has closed.

    ``stream(conn)`` is called when a kept connection without a sink got bytes (they are
    in ``conn.chunks``); it may set ``conn.sink`` and take the chunks. ``progress(bytes
    read, file size or None)`` is called every few thousand frames. ``stats`` (counters),
    ``skipped`` (frames not decoded, by reason) and ``first_frames`` (with ``partition``)
    fill in as ``run`` proceeds; they are current whenever it yields.
    """

    def __init__(
        self,
        capture: CaptureFile,
        *,
        ports: Iterable[int] = (),
        max_bytes: int | None = 256 * 1024,
        partition: tuple[int, int] | None = None,
        progress: Progress | None = None,
        max_open: int | None = None,
    ) -> None:
        self.capture = capture
        parts = partition[1] if partition else 1
        self.max_open = max(1, (MAX_OPEN if max_open is None else max_open) // parts)
        # (k, n): read only the connections whose endpoints hash to k modulo n
        # (``capture.partition``), so n processes share a capture out between them; the C
        # walk drops the other shares' frames before they are decoded (``capture.share``).
        # Connections are then numbered by the frame number of their first packet
        # ("flow @F"); the caller renumbers them (``first_frames``) once all parts are read.
        self.partition = partition
        self._mine = ShareFilter(*partition).mine if partition else None
        capture.share = partition
        self.first_frames: list[int] = []
        self.progress = progress
        self.stream: Callable[[Connection], None] = _hold_chunks  # run's, while it runs
        self.ports = frozenset(ports)
        self.max_bytes = max_bytes
        self.stats: dict[str, int] = {
            "packets": 0, "tcp_segments": 0, "connections": 0, "tls_connections": 0,
            "non_tls_connections": 0, "after_close": 0, "bulk_frames": 0, "captured_twice": 0,
            "evicted": 0, "evicted_tls": 0, "decided_early": 0,
        }
        self.undecided_total = max(UNDECIDED_BYTES, UNDECIDED_TOTAL // parts)
        self._undecided = 0  # bytes held by connections not decided yet
        self.skipped: dict[str, int] = {}  # frames not decoded, by reason
        self._late = BulkFrames(capture)

    def run(
        self, stream: Callable[[Connection], None] = _hold_chunks
    ) -> Generator[Connection[Lease], None, None]:
        """Read the capture; yield each kept connection as it closes (the rest at the end).
        Closes the capture file when done or closed."""
        self.stream = stream  # held only while running: no cycle with a reader's hook
        table: dict[tuple[Addr, Addr], Entry] = {}
        closed: OrderedDict[tuple[Addr, Addr], None] = OrderedDict()
        lingering: deque[tuple[float, tuple[Addr, Addr], Connection[Lease] | NotTls]] = deque()
        # connections found not TLS, to be reduced to a NotTls once no copy can come: (when,
        # tuple, index); as many as the table holds, the oldest dropped (no reference to the
        # connection: an evicted one is not kept alive by this)
        settling: deque[tuple[float, tuple[Addr, Addr], int]] = deque(maxlen=self.max_open)
        # tuples captured more than once in other ISN spaces: out of ``table``, so a frame
        # of any other connection costs nothing more (``capture.copies``)
        copied: dict[tuple[Addr, Addr], Copies] = {}
        stats = self.stats
        skipped = self.skipped
        progress = self.progress
        capture = self.capture
        add = self._add
        decode = frame_decoder()  # the C core's or the Python one (capture.core)
        late = self._late
        mine = self._mine
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
                    # not replaced by a new SYN meanwhile (a finished connection is retired)
                    if not old.retired and (table.get(old_key) is old or old_key in copied):
                        t = self._retire(table, closed, copied, old_key, old)
                        if t is not None:
                            sync()
                            yield t
                while settling and ts >= settling[0][0]:
                    _, old_key, index = settling.popleft()
                    self._settle(table, old_key, index)
                seg = decode(linktype, frame, skipped)
                if seg is None:
                    continue
                segments += 1
                src, dst = (seg.src, seg.sport), (seg.dst, seg.dport)
                key = (src, dst) if src < dst else (dst, src)
                if mine is not None and not mine(key):
                    late.skip_others(frame, linktype)
                    continue  # another process's connection
                flags = seg.flags
                conn = table.get(key)
                if conn is not None and type(conn) is not Connection:
                    if type(conn) is Opening:
                        conn = table[key] = conn.expand(key, self.max_bytes)
                    else:
                        assert isinstance(conn, NotTls)
                        reset = conn.rst
                        if conn.take(src == key[0], flags, seg.seq, ts):
                            if conn.rst and not reset:
                                lingering.append((ts + RST_LINGER, key, conn))
                            elif conn.both_fin and not conn.rst:
                                self._retire(table, closed, copied, key, conn)
                            continue
                        del table[key]  # a SYN with another ISN: a new connection
                        self._finish(conn)
                        conn = None
                copies = None
                if conn is None and copied:
                    copies = copied.get(key)
                    if copies is not None:
                        conn = copies.route(src, seg)
                        if conn is not None and conn.retired:
                            stats["after_close"] += 1
                            continue
                if conn is not None and conn.leases:
                    late.settle(conn)  # what its leases took, before this frame
                if flags & SYN and not flags & ACK:
                    if copies is not None:
                        if conn is None and not copies.fresh(ts):  # a new connection
                            del copied[key]
                            for t in self._end_copies(copies):
                                sync()
                                yield t
                            copies = None
                    elif conn is not None and self._new_connection(conn, src, seg.seq):
                        del table[key]
                        if another_copy(conn, src, seg.seq, ts):
                            copies = copied[key] = Copies(conn)
                            late.forget(conn)  # copies are read the general way
                        else:
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
                    if mine is None:
                        index = stats["connections"]
                    else:
                        index = packets + capture.claimed  # renumbered by the caller
                        self.first_frames.append(index)
                    if copies is None and len(table) >= self.max_open:
                        for t in self._evict(table, closed):
                            sync()
                            yield t
                    stats["connections"] += 1
                    if (
                        copies is None and capture.comment is None
                        and Opening.fits(flags, seg.payload, seg.truncated)
                        and seg.dport not in self.ports
                    ):
                        table[key] = Opening(index, ts, seg.seq, seg.ttl, src == key[0])
                        continue
                    conn = Connection(index, src, dst, ts, self.max_bytes)
                    if copies is None:
                        table[key] = conn
                    else:
                        copies.add(conn)
                undecided = conn.keep is None
                add(conn, src, seg, ts)
                sink = conn.sink
                if sink is not None and capture.comment is None and copies is None:
                    me = conn.a if src == conn.a.addr else conn.b
                    if conn.leases or sink.counting(me):  # else resume() leases nothing
                        late.resume(conn, sink, frame, linktype, me,
                                    None if flags & (SYN | RST) else seg.ttl)
                if capture.comment is not None and conn.attempt is None:
                    conn.attempt = attempt_from_comment(capture.comment)
                if conn.rst:
                    if not conn.lingering:
                        conn.lingering = True
                        lingering.append((ts + RST_LINGER, key, conn))
                elif conn.a.fin and conn.b.fin and conn.closed():
                    t = self._retire(table, closed, copied, key, conn)
                    if t is not None:
                        sync()
                        yield t
                elif undecided and conn.keep is False and copies is None:
                    if conn.syn_from is None:  # no SYN, so no copy can be told: at once
                        self._settle(table, key, conn.index)
                    else:
                        settling.append((conn.start + COPY_WINDOW, key, conn.index))
            sync()
            if progress is not None:
                progress(capture.size or capture.position, capture.size)
            left = list(table.values())
            for copies in copied.values():
                left += self._counted(copies)
            table.clear()
            copied.clear()
            lingering.clear()
            settling.clear()
            left.sort(key=lambda c: c.index, reverse=True)
            while left:  # each let go once handed out: memory does not grow at the end
                t = self._finish(left.pop())
                sync()
                if t is not None:
                    yield t
                    t = None
        finally:
            sync()
            self.stream = _hold_chunks
            self.capture.close()

    @staticmethod
    def _settle(table: dict[tuple[Addr, Addr], Entry], key: tuple[Addr, Addr], index: int) -> None:
        """Reduce the connection numbered ``index`` on ``key`` to a ``NotTls``, if it is still
        there, not TLS, and not reset (a reset one lingers as it is)."""
        conn = table.get(key)
        if type(conn) is Connection and conn.index == index and conn.keep is False and not (
            conn.rst or conn.leases or conn.sink is not None
        ):
            table[key] = NotTls(conn, key)

    def _retire(
        self, table: dict[tuple[Addr, Addr], Entry],
        closed: OrderedDict[tuple[Addr, Addr], None],
        copied: dict[tuple[Addr, Addr], Copies], key: tuple[Addr, Addr],
        conn: Entry,
    ) -> Connection[Lease] | None:
        """A closed connection leaves the table (its tuple is remembered as closed, so
        stray late segments are not a new connection); what ``_finish`` gives for it. A
        copy stays among its copies, retired, until they have all closed."""
        copies = copied.get(key) if table.get(key) is not conn else None
        if copies is not None:
            assert isinstance(conn, Connection)
            conn.copies = max(1, copies.answered())
            if len(copies.live()) > 1:
                return self._finish(conn)
            del copied[key]
            self._counted(copies)
        else:
            del table[key]
        closed[key] = None
        if len(closed) > CLOSED_MEMORY:
            closed.popitem(last=False)
        return self._finish(conn)

    def _evict(
        self, table: dict[tuple[Addr, Addr], Entry],
        closed: OrderedDict[tuple[Addr, Addr], None],
    ) -> Generator[Connection[Lease], None, None]:
        """The table is full: evict the eighth of it idle the longest; yield those kept."""
        late = self._late
        for conn in table.values():
            if conn.leases:
                late.settle(conn)  # bulk frames its leases took make it recent
        n = len(table) - self.max_open + max(1, self.max_open // 8)
        oldest = heapq.nsmallest(n, table.items(), key=lambda kv: (kv[1].last, kv[1].index))
        oldest.reverse()
        self.stats["evicted"] += len(oldest)
        while oldest:
            key, conn = oldest.pop()
            del table[key]
            closed[key] = None
            if len(closed) > CLOSED_MEMORY:
                closed.popitem(last=False)
            t = self._finish(conn)
            del conn
            if t is not None:
                self.stats["evicted_tls"] += 1
                yield t
                t = None

    def _end_copies(self, copies: Copies) -> list[Connection[Lease]]:
        """A new connection replaces the copies of the last one: what ``_finish`` gives."""
        out = []
        for conn in self._counted(copies):
            t = self._finish(conn)
            if t is not None:
                out.append(t)
        return out

    def _counted(self, copies: Copies) -> list[Connection[Lease]]:
        """The copies are done: counted when the server answered more than one (else it
        was a client's retry on the same port); those still open, each told how many."""
        answered = copies.answered()
        if answered > 1:
            self.stats["captured_twice"] += 1
        live = copies.live()
        for conn in live:
            conn.copies = max(1, answered)
        return live

    # --- per packet ----------------------------------------------------------------

    @staticmethod
    def _new_connection(conn: Connection, src: Addr, seq: int) -> bool:
        """A SYN on a known tuple: a new connection unless it repeats the one we saw."""
        side, _ = conn.side(src)
        if side.isn is not None:
            return side.isn != seq
        return bool(conn.rst) or any(s.fin or s.started for s in (conn.a, conn.b))

    def _add(self, conn: Connection, src: Addr, seg: TcpSegment, ts: float) -> None:
        me, peer = conn.side(src)
        flags = seg.flags
        conn.last = ts
        if not (seg.payload or flags & NOT_BARE_ACK):  # a bare ACK: most segments
            if seg.ttl not in me.ttls:
                me.ttls += (seg.ttl,)
            if seg.truncated:
                conn.snapcut += 1
            if conn.keep is not False and flags & ACK and peer.started:
                self._acked(conn, peer, seg.ack, ts - conn.start)
            return
        if flags & SYN:
            if me.isn is not None:
                me.stream.retransmissions += 1
                if flags & ACK and seg.seq != me.isn:
                    me.alt_isns = (me.alt_isns or set()) | {seg.seq}
            else:
                me.syn(seg.seq)
                if flags & ACK:
                    conn.synack_from, conn.synack_ttl = me, seg.ttl
                    conn.synack_options = seg.option_summary
                else:
                    conn.syn_from, conn.syn_ttl = me, seg.ttl
        elif flags & RST:
            if me not in conn.rst:
                conn.rst += (me,)
            if seg.ttl not in conn.rst_ttls:
                conn.rst_ttls += (seg.ttl,)
            return  # data on a RST is not stream data
        elif seg.ttl not in me.ttls:
            me.ttls += (seg.ttl,)
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
            # a bare SYN places nothing: its side's stream is not made for it
            runs = me.stream.segment(seq, payload, bool(flags & FIN)) if (
                payload or flags & FIN) else ()
        for run in runs:
            self._deliver(conn, me, at, run)
        if flags & ACK and peer.started:
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
        stream = reassembler(self.max_bytes)
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
            self.stream(conn)
        elif conn.keep is None:
            conn.held += len(run)
            self._undecided += len(run)

    def _classify(self, conn: Connection) -> None:
        """Decide early whether to keep a connection, to stop storing non-TLS ones."""
        conn.keep = self._keep(conn, final=False)
        if conn.keep is None and (
            conn.held > UNDECIDED_BYTES or self._undecided > self.undecided_total
        ):
            conn.keep = self._keep(conn, final=True)  # decided now as at the end
            self.stats["decided_early"] += 1
        if conn.keep is not None:
            self._undecided -= conn.held
            conn.held = 0
        if conn.keep is False:
            conn.chunks.clear()
            conn.a.release()
            conn.b.release()
        elif conn.keep:
            self.stream(conn)

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
            if conn.prelude or connect_prelude(conn, client, server, final=final) is not None:
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

    def _finish(self, conn: Entry) -> Connection[Lease] | None:
        """The connection is done: flush its streams and decide, finally, whether it is
        kept; the connection if so (counted in ``stats`` either way)."""
        if type(conn) is not Connection:  # a compact entry: never TLS (capture.compact)
            if isinstance(conn, NotTls):
                conn.retire()
            self.stats["non_tls_connections"] += 1
            return None
        self._late.forget(conn)
        conn.retired = True
        if conn.keep is not False:
            for side in (conn.a, conn.b):
                for run in side.stream.flush():
                    self._deliver(conn, side, conn.last - conn.start, run)
            conn.keep = self._keep(conn, final=True)
            self._undecided -= conn.held
            conn.held = 0
        if not conn.keep:
            self.stats["non_tls_connections"] += 1
            return None
        self.stats["tls_connections"] += 1
        return conn


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
