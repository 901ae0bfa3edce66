"""The shortcut for the bulk of a long capture: frames taken in the read buffer.

Boundary: raw frame bytes at fixed offsets, for connections ``capture.flows`` has already
decoded. Once a streamed connection's sink only counts one direction's bytes (application
data past the handshake), that direction gets a ``Lease``: a claim, by the raw address and
port bytes of its plain IPv4 frames, on the capture file's read buffer
(``CaptureFile.claims``). The lease takes a frame there, without copying, decoding or
reassembling it, when the frame changes nothing but counters:

- no SYN, FIN or RST, ACK set, the TTL the direction had, not cut by the snap length;
- data exactly at the stream's end, or no data (a bare ACK). Data within what the sink can
  skip now (the rest of the current TLS record) is only counted; a segment that runs
  past it has its tail (the next record header...) fed to the sink straight from the
  buffer, as the general path would after reassembling it;
- an acknowledgement that is not past the peer's bytes seen (that would be a gap).

Anything else is declined and takes the general path, which first ``settle``s the
connection's leases: what they took is applied to the stream and the sink as one count,
exactly as if each frame had gone the general way, and the leases stand down until
``resume`` renews them from the new state. ``--jobs`` workers claim other shares' frames
the same way, to drop them before decoding (``skip_others``).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from mtlsprobe.capture.linklayer import (
    ACK,
    ETHERNET,
    FIN,
    LOOP,
    NULL,
    RAW,
    RAW4,
    RAW_12,
    RAW_14,
    RST,
    SLL,
    SLL2,
    SYN,
    TCP,
)
from mtlsprobe.capture.tcp import HALF, MASK

if TYPE_CHECKING:
    from mtlsprobe.capture.flows import ByteSink, Connection, Side
    from mtlsprobe.capture.pcapfile import CaptureFile

# (version/IHL, total length, fragment field, TTL, protocol, seq, ack, data offset, flags)
_fields = struct.Struct("!BxH2xHBB14xIIBB").unpack_from
# Where an IPv4 header starts in a frame of each link type, when the frame holds one right
# after the link header (untagged Ethernet, Linux cooked SLL/SLL2, raw IP, BSD null/loop)...
IPV4_AT = {ETHERNET: 14, SLL: 16, SLL2: 20, RAW: 0, RAW4: 0, RAW_12: 0, RAW_14: 0,
           NULL: 4, LOOP: 4}
# ...and where the link header says "IPv4" (EtherType 0x0800); raw and null: the version
# nibble alone tells (see ``linklayer.decode``)
_ETHERTYPE_AT = {ETHERNET: 12, SLL: 14, SLL2: 0}
_IPV4 = b"\x08\x00"

NOT_BARE_ACK = SYN | FIN | RST
# raw keys of other shares' connections remembered, then forgotten (each is in a set and
# in the claims: about 31 MB at this size; a forgotten one costs one more decode)
OTHERS_MEMORY = 1 << 18


def plain_tcp(frame: bytes, linktype: int, ip: int, at: int = 0) -> bool:
    """Whether the frame at ``frame[at:]`` (of ``linktype``, IPv4 header at ``ip`` from
    its start: see IPV4_AT) holds an unfragmented IPv4 TCP segment with a 20-byte IPv4
    header: its addresses and ports are then at ``ip + 12 : ip + 24``."""
    et = _ETHERTYPE_AT.get(linktype)
    ip += at
    return (
        (et is None or frame[at + et : at + et + 2] == _IPV4) and len(frame) >= ip + 40
        and frame[ip] == 0x45 and frame[ip + 9] == TCP
        and not (frame[ip + 6] & 0x3F or frame[ip + 7])
    )


def _reversed_key(key: bytes) -> bytes:
    """The raw key of the other direction: addresses and ports swapped."""
    return key[4:8] + key[0:4] + key[10:12] + key[8:10]


class Lease:
    """One direction's claim on its frames (see the module docstring): ``take`` is the
    claimant; what it took waits in ``taken``/``frames``/``last`` until
    ``BulkFrames.settle``."""

    __slots__ = (
        "active", "conn", "counting", "credit", "et", "frames", "ip", "key", "last", "linktype",
        "me", "other", "peer", "seq", "taken", "ttl",
    )

    def __init__(self, conn: Connection, me: Side, peer: Side, key: bytes, linktype: int,
                 ip: int) -> None:
        self.conn, self.me, self.peer = conn, me, peer
        self.key, self.linktype, self.ip = key, linktype, ip
        self.et = _ETHERTYPE_AT.get(linktype, -1)  # offset of an EtherType to check, or -1
        self.ttl: int | None = None  # the TTL its frames carry; None: not seen yet
        self.seq: int | None = None  # the stream's next sequence number (None: not known)
        self.credit = 0  # data bytes the sink would skip now
        self.counting = False  # whether the sink only counts this side (see ByteSink)
        self.taken = self.frames = 0  # data bytes and frames taken since the last settle
        self.last = 0.0  # time of the last frame taken
        self.other: Lease | None = None  # the opposite direction's lease
        self.active = False  # registered in the capture's claims

    def take(self, buf: bytes, at: int, end: int, ts: float, linktype: int) -> bool:
        """The ``pcapfile.Claimant``: take the frame at ``buf[at:end]``, or decline it."""
        if linktype != self.linktype:
            return False
        ip = at + self.ip
        et = self.et
        if (et >= 0 and buf[at + et : at + et + 2] != _IPV4) or end - ip < 40:
            return False
        vhl, total, frag, ttl, proto, seq, ack, doff, flags = _fields(buf, ip)
        if (
            vhl != 0x45 or proto != TCP or frag & 0x3FFF or flags & NOT_BARE_ACK
            or not flags & ACK or ttl != self.ttl or ip + total > end
        ):
            return False
        header = 20 + (doff >> 4) * 4
        size = total - header
        if size < 0 or doff < 0x50:
            return False
        peer_seq = self.other.seq  # type: ignore[union-attr]  # always paired
        if peer_seq is not None and 0 < (ack - peer_seq) & MASK < HALF:
            return False  # acknowledges bytes the capture lacks: the general path decides
        if size:
            if seq != self.seq:
                return False
            if size <= self.credit:
                self.credit -= size
                self.taken += size
            elif self.counting:
                self._cross(buf[ip + header : ip + total], seq, ts)
            else:
                return False
            self.seq = (seq + size) & MASK
        self.frames += 1
        self.last = ts
        return True

    def apply(self) -> None:
        """Hand the data bytes taken so far to the sink and the stream, as one count."""
        if self.taken:
            sink = self.conn.sink
            if sink is None or not sink.skip(self.me, self.taken):
                raise AssertionError("a lease took bytes its sink does not skip")
            self.me.stream.advance(self.taken)
            self.taken = 0

    def _cross(self, payload: bytes, seq: int, ts: float) -> None:
        """A segment runs past the skipped record: settle what was taken, then reassemble
        and feed the segment as ``CaptureReader._add`` and ``_deliver`` would (the stream
        keeps its bytes for comparing retransmissions; the sink reads the record header)."""
        conn, me = self.conn, self.me
        sink = conn.sink
        assert sink is not None
        stream = me.stream
        self.apply()
        at = ts - conn.start
        for run in stream.segment(seq, payload):
            sink.feed(me, at, run)
        self.counting = sink.counting(me)
        self.credit = min(sink.skippable(me), stream.max_bytes - stream.next_offset)


class BulkFrames:
    """The leases of one reader's connections, claimed on its capture file."""

    __slots__ = ("capture", "frames", "others")

    def __init__(self, capture: CaptureFile) -> None:
        self.capture = capture
        capture.claim_at = {linktype: ip + 12 for linktype, ip in IPV4_AT.items()}
        self.frames = 0  # frames taken by leases, settled
        self.others: set[bytes] = set()  # keys claimed for other shares (see skip_others)

    def resume(self, conn: Connection, sink: ByteSink, frame: bytes, linktype: int, ip: int,
               me: Side, ttl: int | None) -> None:
        """After the general path read ``frame`` (sent by ``me``; ``ttl``: its TTL, None
        for a SYN or RST, whose TTL is not the direction's) of a streamed connection: lease
        the directions whose bytes are now only counted."""
        leases = conn.leases
        if not leases:
            if not sink.counting(me) or not plain_tcp(frame, linktype, ip):
                return
            peer = conn.b if me is conn.a else conn.a
            key = frame[ip + 12 : ip + 24]
            mine = Lease(conn, me, peer, key, linktype, ip)
            theirs = Lease(conn, peer, me, _reversed_key(key), linktype, ip)
            mine.other, theirs.other = theirs, mine
            leases.extend((mine, theirs))
        for lease in leases:
            if lease.me is me and ttl is not None:
                lease.ttl = ttl
            lease.seq = lease.me.stream.end_seq()
        claims = self.capture.claims
        for lease in leases:
            side, peer = lease.me, lease.peer
            stream = side.stream
            if (
                lease.seq is None or lease.ttl is None or side.fin or peer.fin or conn.rst
                or side.alt_isns is not None or peer.alt_isns is not None
                # the peer's bytes waiting out of order: an ACK may make them a gap
                or (peer.stream.started and lease.other.seq is None)  # type: ignore[union-attr]
            ):
                continue
            # a side still parsed (e.g. the client's requests) has its bare ACKs taken
            lease.counting = sink.counting(side)
            lease.credit = min(sink.skippable(side), stream.max_bytes - stream.next_offset)
            claims[lease.key] = lease.take
            lease.active = True

    def settle(self, conn: Connection) -> None:
        """Apply what the connection's leases took, and stand them down."""
        claims = self.capture.claims
        for lease in conn.leases:
            if lease.active:
                lease.active = False
                claims.pop(lease.key, None)
            if not lease.frames:
                continue
            lease.apply()
            if lease.last > conn.last:
                conn.last = lease.last
            self.frames += lease.frames
            lease.frames = 0

    def forget(self, conn: Connection) -> None:
        """The connection leaves the table: settle its leases and drop them."""
        self.settle(conn)
        conn.leases.clear()

    def skip_others(self, frame: bytes, linktype: int, ip: int) -> None:
        """``frame`` belongs to another ``--jobs`` share: claim its direction's frames so
        they are dropped before decoding (and counted as TCP segments)."""
        if not plain_tcp(frame, linktype, ip):
            return
        claims = self.capture.claims
        if len(self.others) > OTHERS_MEMORY:
            for key in self.others:
                if claims.get(key) is _other_share:
                    del claims[key]
            self.others.clear()
        key = frame[ip + 12 : ip + 24]
        self.others.add(key)
        claims[key] = _other_share


def _other_share(buf: bytes, at: int, end: int, ts: float, linktype: int) -> bool:
    """Claimant of other shares' frames: any plain IPv4 TCP frame (see ``plain_tcp``)."""
    ip = IPV4_AT.get(linktype)
    return ip is not None and end - at >= ip + 40 and plain_tcp(buf, linktype, ip, at)
