"""One TCP connection being read from a capture: its two sides and what the capture showed.

Boundary: per-connection and per-direction state, no reading and no decisions about the
table. ``capture.flowtable`` fills it in frame by frame, ``capture.bulk`` leases its
directions' frames, ``capture.transcripts`` and ``capture.observations`` turn it into the
model's values. This module imports none of them.

Client = sender of the SYN (or the peer of the SYN-ACK sender); else the side whose first
payload is a ClientHello; else the peer of a side whose first payload is a ServerHello;
else the side with the higher port (servers listen on low ports); equal ports: the side
that sent the first packet.
"""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar

from mtlsprobe.capture.tcp import TcpReassembler, reassembler
from mtlsprobe.model import Attempt, Endpoint, Route

TLS_CONTENT_TYPES = frozenset(range(20, 25))  # change_cipher_spec .. heartbeat
MAX_RECORD = (1 << 14) + 2048

Addr = tuple[str, int]
# An HTTP CONNECT exchange opening a connection: (route, target, request and reply lengths)
Prelude = tuple[Route, Endpoint, int, int]
# The type of a connection's leases: ``capture.bulk.Lease``, a parameter here because bulk
# builds on this module (it reads and settles connections), not the reverse.
L = TypeVar("L")


class ByteSink(Protocol):
    """Takes a kept connection's reassembled bytes as they arrive (the flow table's
    ``stream`` callback may set one as ``Connection.sink``)."""

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

    __slots__ = ("_stream", "addr", "alt_isns", "fin", "first", "first_gaps", "isn",
                 "max_bytes", "ttls")

    def __init__(self, addr: Addr, max_bytes: int | None) -> None:
        self.addr = addr
        self.max_bytes = max_bytes
        # made on first use (``stream``): a side that never sends costs none (floods, scans)
        self._stream: TcpReassembler | None = None
        self.isn: int | None = None  # sequence number of its SYN / SYN-ACK
        self.alt_isns: set[int] | None = None  # later SYN-ACKs' other ISNs (see _rebase)
        self.fin = False
        self.first = b""  # first bytes delivered (up to 6), to classify the stream
        self.first_gaps = 0  # gaps before the first delivered bytes
        self.ttls: tuple[int, ...] = ()  # distinct TTLs after the handshake, in order

    @property
    def stream(self) -> TcpReassembler:
        """Its reassembler, made on first use (started at its SYN when one was seen)."""
        stream = self._stream
        if stream is None:
            stream = self._stream = reassembler(self.max_bytes)  # the C core's when it runs
            if self.isn is not None:
                stream.syn(self.isn)
        return stream

    @stream.setter
    def stream(self, stream: TcpReassembler) -> None:
        self._stream = stream

    @property
    def started(self) -> bool:
        """Whether its stream has started (a SYN or bytes seen), without making it."""
        return self.isn is not None if self._stream is None else self._stream.started

    def release(self) -> None:
        """Its connection is not kept: its stream keeps no bytes (see ``TcpReassembler``)."""
        if self._stream is not None:
            self._stream.release()

    def syn(self, seq: int) -> None:
        """Its SYN (or SYN-ACK): the stream starts after ``seq``, now or when it is made."""
        self.isn = seq
        if self._stream is not None:
            self._stream.syn(seq)


class Connection(Generic[L]):
    """One TCP connection being read: its two sides and what the capture showed of it.
    Readers of the flow table see it in their hooks (``stream``, ``_emit``)."""

    __slots__ = (
        "a", "attempt", "b", "chunks", "copies", "held", "index", "keep", "last", "leases",
        "lingering",
        "prelude", "retired", "rst", "rst_ttls", "sink", "snapcut", "start",
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
        self.held = 0  # bytes in chunks while not decided (the flow table's budget)
        self.syn_from: Side | None = None
        self.synack_from: Side | None = None
        self.syn_ttl: int | None = None
        self.synack_ttl: int | None = None
        self.synack_options: tuple[str, ...] = ()
        self.rst: tuple[Side, ...] = ()  # who reset it (tuples: most connections have none)
        self.rst_ttls: tuple[int, ...] = ()  # distinct TTLs of the resets, in order
        self.snapcut = 0
        self.attempt: Attempt | None = None  # named by a packet comment (probe captures)
        self.lingering = False  # reset, waiting RST_LINGER for in-flight segments
        self.prelude: Prelude | bool | None = False  # False: not looked for yet
        self.sink: ByteSink | None = None  # set by a reader: bytes go there, not to chunks
        self.leases: list[L] = []  # its directions' claims on bulk frames (BulkFrames)
        # captured this many times in other sequence-number spaces (capture.copies), each
        # copy a Connection; a copy that closed is ``retired`` but still takes its strays
        self.copies = 1
        self.retired = False

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

    def roles(self) -> tuple[Side, Side, str]:
        """(client side, server side, how the client was told)."""
        client, how = self.client()
        if client is None:
            client, how = self.port_guess(), "port"
        return client, (self.b if client is self.a else self.a), how

    def closed(self) -> bool:
        if self.rst:
            return True
        if not (self.a.fin and self.b.fin):
            return False
        return self.keep is False or (self.a.stream.complete and self.b.stream.complete)
