"""Compact flow-table entries for flows that hold no bytes: floods, scans and plain traffic.

Boundary: two small records the flow table keeps instead of a ``Connection`` (two sides,
reassemblers, lists: about 900 bytes) while a flow has nothing worth more:

- ``Opening``: a flow that so far is one bare SYN (what a SYN flood or a port scan is made
  of). Any second segment on its tuple expands it into the ``Connection`` it would have
  been (``expand``), and the segment is read as usual.
- ``NotTls``: a connection already known not to be TLS, once nothing can turn it back into
  something read (not reset, and past ``COPY_WINDOW``, when a second capture point's copy
  could still need its streams). It keeps what ends it: each side's ISN (a SYN with another
  ISN is a new connection), its FINs, a RST.

Neither is ever handed out: at the end they count as connections that were not TLS.
``capture.flowtable`` decides when to use them; this module knows nothing of the table.
"""

from __future__ import annotations

from mtlsprobe.capture.connection import Addr, Connection
from mtlsprobe.capture.linklayer import ACK, FIN, RST, SYN

_FIN_LO, _FIN_HI, _RESET, _RETIRED = 1, 2, 4, 8


class Opening:
    """A flow whose only segment so far is a bare SYN from ``key[0]`` (``lo``) or ``key[1]``."""

    __slots__ = ("index", "last", "seq", "ttl")  # ttl: the TTL, plus 256 if sent by key[1]

    leases = ()  # the flow table's duck-typed view of an entry: nothing leased, no sink
    sink = None
    retired = False

    def __init__(self, index: int, ts: float, seq: int, ttl: int, lo: bool) -> None:
        self.index = index
        self.last = ts
        self.seq = seq
        self.ttl = ttl if lo else ttl | 256

    @staticmethod
    def fits(flags: int, payload: bytes, truncated: bool) -> bool:
        """Whether a flow's first segment can be held as an Opening."""
        return flags & (SYN | ACK | FIN | RST) == SYN and not payload and not truncated

    def expand(self, key: tuple[Addr, Addr], max_bytes: int | None) -> Connection:
        """The connection this flow would have been had its SYN been read the general way
        (``FlowTable._add`` of a bare SYN: the ISN, who sent it and with which TTL)."""
        src, dst = (key[1], key[0]) if self.ttl & 256 else key
        conn: Connection = Connection(self.index, src, dst, self.last, max_bytes)
        conn.a.syn(self.seq)
        conn.syn_from, conn.syn_ttl = conn.a, self.ttl & 255
        return conn


class NotTls:
    """A connection known not to be TLS, reduced to what ends it (see the module docstring)."""

    __slots__ = ("index", "isn_hi", "isn_lo", "last", "state")

    leases = ()
    sink = None

    def __init__(self, conn: Connection, key: tuple[Addr, Addr]) -> None:
        lo, hi = (conn.a, conn.b) if conn.a.addr == key[0] else (conn.b, conn.a)
        self.index = conn.index
        self.last = conn.last
        self.isn_lo, self.isn_hi = lo.isn, hi.isn
        self.state = (_FIN_LO if lo.fin else 0) | (_FIN_HI if hi.fin else 0)

    @property
    def retired(self) -> bool:
        return bool(self.state & _RETIRED)

    def retire(self) -> None:
        self.state |= _RETIRED

    @property
    def rst(self) -> bool:
        return bool(self.state & _RESET)

    @property
    def both_fin(self) -> bool:
        """FIN both ways (its bytes are not read, so nothing else has to complete)."""
        return self.state & (_FIN_LO | _FIN_HI) == _FIN_LO | _FIN_HI

    def take(self, lo: bool, flags: int, seq: int, ts: float) -> bool:
        """A segment from ``key[0]`` (``lo``) or ``key[1]``: False when it is a SYN that
        starts a new connection on the tuple (another ISN: the caller retires this one),
        else True (taken: a retransmitted SYN, a RST, a FIN, anything else)."""
        if flags & SYN:
            isn = self.isn_lo if lo else self.isn_hi
            if isn is None:
                if not flags & ACK:
                    return False  # it carried bytes before: a SYN now is a new connection
                if lo:
                    self.isn_lo = seq
                else:
                    self.isn_hi = seq
            elif isn != seq and not flags & ACK:
                return False
        self.last = ts
        if flags & RST:
            self.state |= _RESET
        elif flags & FIN:
            self.state |= _FIN_LO if lo else _FIN_HI
        return True
