"""One connection captured more than once, in different sequence-number spaces.

Boundary: telling the copies of one 4-tuple apart, frame by frame; ``capture.flowtable``
decides when a tuple has copies and runs each copy as a connection of its own.

A capture taken on both sides of a firewall that randomises initial sequence numbers (Cisco
ASA "TCP sequence number randomization", and others), merged into one file, holds every
segment twice: the same addresses and ports, the client's sequence numbers (and the
server's acknowledgements of them) rewritten, often the server's too, the TTL a hop or more
apart. Read as one connection, the second copy's bytes land at random offsets: a lost
ClientHello, renegotiations, doubled alerts. The flow table recognises it by the second SYN:
another ISN from the same client on a tuple whose connection began moments ago and is
still open (``another_copy``). From then on each frame goes to the copy whose sequence
space it fits (``Copies.route``): its sequence number among what its sender sent in that
copy, its acknowledgement among what the peer sent. Copies are ranked by how many of the
two numbers fall outside their streams, then how many they cannot tell (a stream not
begun: the SYN-ACK not seen yet), then how far outside they fall; the TTL breaks a tie.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mtlsprobe.capture.linklayer import ACK, SYN, TcpSegment

if TYPE_CHECKING:
    from mtlsprobe.capture.connection import Addr, Connection, Side

# A second SYN this soon after the first (capture time) may be another capture point's
# copy: a firewall adds milliseconds, two sensors' clocks may differ by a little more.
COPY_WINDOW = 2.0


def another_copy(conn: Connection, src: Addr, seq: int, ts: float) -> bool:
    """A SYN from ``src`` with ISN ``seq`` on the tuple of ``conn``: whether it is the same
    connection seen at another capture point with rewritten sequence numbers (the same
    client, another ISN, ``COPY_WINDOW`` after ``conn`` began, ``conn`` still open)."""
    client = conn.syn_from
    return (
        client is not None and client.addr == src and client.isn is not None
        and client.isn != seq and not conn.rst and not (conn.a.fin or conn.b.fin)
        and ts - conn.start <= COPY_WINDOW
    )


class Copies:
    """The copies of one connection in a capture, each read as a connection of its own.
    A copy that closed stays (``Connection.retired``) so its stray segments find it."""

    __slots__ = ("conns", "start")

    def __init__(self, first: Connection) -> None:
        self.conns = [first]
        self.start = first.start

    def add(self, conn: Connection) -> None:
        self.conns.append(conn)

    def fresh(self, ts: float) -> bool:
        """Whether a SYN with a new ISN at ``ts`` is one more copy (not a new connection)."""
        return ts - self.start <= COPY_WINDOW and not any(
            c.rst or c.a.fin or c.b.fin for c in self.conns
        )

    def live(self) -> list[Connection]:
        return [c for c in self.conns if not c.retired]

    def answered(self) -> int:
        """How many copies the server answered (a SYN-ACK or data): a copy that is only a
        SYN is a client's retry on the same port, not a second capture point."""
        return sum(
            1 for c in self.conns
            if c.synack_from is not None or (c.a.stream.started and c.b.stream.started)
        )

    def route(self, src: Addr, seg: TcpSegment) -> Connection | None:
        """The copy ``seg`` (sent by ``src``) belongs to; for a SYN, the copy with its ISN,
        or None (it starts another copy or a new connection)."""
        flags = seg.flags
        if flags & SYN and not flags & ACK:
            for c in self.conns:
                client = c.syn_from
                if client is not None and client.addr == src and client.isn == seg.seq:
                    return c
            return None
        numbers = ((seg.seq, False), (seg.ack, True)) if flags & ACK else ((seg.seq, False),)
        best, best_cost = self.conns[0], None
        for c in self.conns:
            me, peer = c.side(src)
            outside = unknown = distance = 0
            for number, acked in numbers:
                stream = peer.stream if acked else me.stream
                if not stream.started:
                    unknown += 1
                    continue
                far = stream.distance(number)
                outside += far > 0
                distance += far
            cost = (outside, unknown, distance, seg.ttl not in _ttls(c, me))
            if best_cost is None or cost < best_cost:
                best, best_cost = c, cost
        return best


def _ttls(conn: Connection, side: Side) -> tuple[int | None, ...]:
    """The TTLs ``side`` sent with in ``conn``: its handshake segment's and the others'."""
    syn = conn.syn_ttl if side is conn.syn_from else (
        conn.synack_ttl if side is conn.synack_from else None)
    return (syn, *side.ttls)
