"""The shortcut for the bulk of a long capture: frames taken in the read buffer.

Boundary: raw frame bytes at fixed offsets, for connections ``capture.flowtable`` has
already decoded (``capture.connection``; this module does not import the flow table). Once
a streamed connection's sink only counts one direction's bytes (application data past the
handshake), that direction gets a ``Lease``: a claim, by raw address and port bytes, on the
capture file's read buffer (``CaptureFile.claims``). Frames are read at the offsets of the
first one (``Layout``): Ethernet with up to two VLAN tags, Linux cooked, raw IP or BSD
null/loop, carrying IPv4 without options or IPv6 straight to TCP. Tunnelled frames
(MPLS, Cisco MetaData, IP in IP, GRE and ERSPAN, VXLAN, Geneve) have no layout: their outer
header is not TCP, so the general path decodes every one of them. The lease
takes a frame there, without copying, decoding or reassembling it, when the frame changes
nothing but counters:

- the same link header bytes and addresses, no SYN, FIN or RST, ACK set, the TTL the
  direction had, not cut by the snap length;
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
from typing import TYPE_CHECKING, NamedTuple

from mtlsprobe.capture import core
from mtlsprobe.capture.linklayer import (
    ACK,
    ETHERNET,
    FIN,
    LOOP,
    NULL,
    RAW,
    RAW4,
    RAW6,
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
    from mtlsprobe.capture.connection import ByteSink, Connection, Side
    from mtlsprobe.capture.pcapfile import CaptureFile, Claimant

# IPv4 from its header: (version/IHL, total length, fragment field, TTL, protocol, seq,
# ack, data offset, flags); IPv6: (version/class, payload length, next header, hop
# limit, seq, ack, data offset, flags)
_fields4 = struct.Struct("!BxH2xHBB14xIIBB").unpack_from
_fields6 = struct.Struct("!B3xHBB36xIIBB").unpack_from
# Where the IP header starts after a link header without tags, per link type
IP_AT = {ETHERNET: 14, SLL: 16, SLL2: 20, RAW: 0, RAW4: 0, RAW6: 0, RAW_12: 0, RAW_14: 0,
         NULL: 4, LOOP: 4}
# The capture's first claim key offset per link type: that of an untagged IPv4 frame (the
# most common), or IPv6 for an IPv6-only link; others are added as leases need them
PRIMARY_KEY_AT = {linktype: ip + (32 if linktype == RAW6 else 12) for linktype, ip in IP_AT.items()}
_ETHERTYPE_AT = {ETHERNET: 12, SLL: 14, SLL2: 0}  # the link header's "this is IP" field
_ETHERTYPES = {4: b"\x08\x00", 6: b"\x86\xdd"}
_VLAN_TAGS = (b"\x81\x00", b"\x88\xa8", b"\x91\x00", b"\x92\x00")  # as linklayer.ETH_TAGS

NOT_BARE_ACK = SYN | FIN | RST
# raw keys of other shares' connections remembered, then forgotten (each is in a set and
# in the claims: about 31 MB at this size; a forgotten one costs one more decode)
OTHERS_MEMORY = 1 << 18


class Layout(NamedTuple):
    """Where one direction's frames hold their TCP segment, as the shortcut reads them."""

    ip: int  # offset of the IP header in the frame
    v6: bool  # IPv6 straight to TCP (else IPv4 without options or fragmentation)
    link_at: int  # where the link header bytes every frame must repeat start...
    link: bytes  # ...and what they are: EtherType and VLAN tags, the cooked header's
    # protocol, null/loop's family word (raw IP: none)

    @property
    def key_at(self) -> int:
        """Offset of the 12-byte claim key: addresses and ports (IPv4), or the low half
        of the destination address and the ports (IPv6)."""
        return self.ip + (32 if self.v6 else 12)


def layout(frame: bytes, linktype: int) -> Layout | None:
    """The frame's ``Layout`` if the shortcut can read it: Ethernet (up to two VLAN tags),
    Linux cooked SLL/SLL2, raw IP or BSD null/loop, carrying IPv4 without options or
    fragmentation, or IPv6 with TCP as its first next header; else None (any other
    EtherType or IP protocol, so every tunnel ``capture.linklayer`` unwraps)."""
    et = _ETHERTYPE_AT.get(linktype)  # where the link header names the protocol
    ip = IP_AT.get(linktype)
    if ip is None:
        return None
    link_at, link_end = (0, ip) if et is None else (et, et + 2)  # null/loop: family word
    if et is not None and linktype == ETHERNET:
        while frame[et : et + 2] in _VLAN_TAGS and et < 20:
            et += 4
        ip = link_end = et + 2
    if len(frame) < ip + 40:
        return None
    version = frame[ip] >> 4
    if et is not None and frame[et : et + 2] != _ETHERTYPES.get(version):
        return None
    if version == 4:
        if frame[ip] != 0x45 or frame[ip + 9] != TCP or frame[ip + 6] & 0x3F or frame[ip + 7]:
            return None
    elif version != 6 or frame[ip + 6] != TCP or len(frame) < ip + 60:
        return None
    return Layout(ip, version == 6, link_at, frame[link_at:link_end])


def _keys(frame: bytes, lay: Layout) -> tuple[bytes, bytes, bytes, bytes]:
    """(claim key, the other direction's, and for IPv6 the address bytes each key leaves
    out: the source and the destination's high half; b"" for IPv4)."""
    ip = lay.ip
    if not lay.v6:
        key = frame[ip + 12 : ip + 24]
        return key, key[4:8] + key[0:4] + key[10:12] + key[8:10], b"", b""
    src, dst, ports = frame[ip + 8 : ip + 24], frame[ip + 24 : ip + 40], frame[ip + 40 : ip + 44]
    return (dst[8:] + ports, src[8:] + ports[2:] + ports[:2],
            src + dst[:8], dst + src[:8])


class _LayoutClaim:
    """A claimant of frames of one ``Layout`` (see ``pcapfile.Claimant``)."""

    __slots__ = ("headers", "ip", "link", "link_at", "link_end", "linktype", "v6")

    def __init__(self, linktype: int, lay: Layout) -> None:
        self.linktype, self.ip, self.v6 = linktype, lay.ip, lay.v6
        self.link, self.link_at, self.link_end = lay.link, lay.link_at, lay.link_at + len(lay.link)
        self.headers = 60 if lay.v6 else 40  # IP and TCP without options: read in one unpack

    def ip_at(self, buf: bytes, at: int, end: int, linktype: int) -> int:
        """Where the IP header of the frame at ``buf[at:end]`` starts, if the frame has
        this layout's link type, link header bytes and room for the headers; else -1."""
        ip = at + self.ip
        if (
            linktype != self.linktype or end - ip < self.headers
            or buf[at + self.link_at : at + self.link_end] != self.link
        ):
            return -1
        return ip


class Lease(_LayoutClaim):
    """One direction's claim on its frames (see the module docstring): ``take`` is the
    claimant; what it took waits in ``taken``/``frames``/``last`` until
    ``BulkFrames.settle``."""

    __slots__ = (
        "active", "addrs", "claimant", "conn", "counting", "credit", "frames", "key", "last",
        "me", "other", "peer", "seq", "taken", "ttl",
    )

    def __init__(self, conn: Connection[Lease], me: Side, peer: Side, linktype: int, lay: Layout,
                 key: bytes, addrs: bytes) -> None:
        super().__init__(linktype, lay)
        self.conn, self.me, self.peer = conn, me, peer
        self.key = key
        self.addrs = addrs  # IPv6: the address bytes the key leaves out (see _keys)
        self.ttl: int | None = None  # the TTL its frames carry; None: not seen yet
        self.seq: int | None = None  # the stream's next sequence number (None: not known)
        self.credit = 0  # data bytes the sink would skip now
        self.counting = False  # whether the sink only counts this side (see ByteSink)
        self.taken = self.frames = 0  # data bytes and frames taken since the last settle
        self.last = 0.0  # time of the last frame taken
        self.other: Lease | None = None  # the opposite direction's lease
        self.active = False  # registered in the capture's claims
        # one bound method, so a settle removes its own claim and not a twin key's (IPv6)
        self.claimant = self.take

    def take(self, buf: bytes, at: int, end: int, ts: float, linktype: int) -> bool:
        """The ``pcapfile.Claimant``: take the frame at ``buf[at:end]``, or decline it."""
        ip = self.ip_at(buf, at, end, linktype)
        if ip < 0:
            return False
        if self.v6:
            vtc, total, proto, ttl, seq, ack, doff, flags = _fields6(buf, ip)
            if vtc >> 4 != 6 or buf[ip + 8 : ip + 32] != self.addrs:
                return False
            total += 40  # the payload length leaves out the fixed header
            header = 40 + (doff >> 4) * 4
        else:
            vhl, total, frag, ttl, proto, seq, ack, doff, flags = _fields4(buf, ip)
            if vhl != 0x45 or frag & 0x3FFF:
                return False
            header = 20 + (doff >> 4) * 4
        if (
            proto != TCP or flags & NOT_BARE_ACK or not flags & ACK or ttl != self.ttl
            or ip + total > end
        ):
            return False
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
        and feed the segment as ``FlowTable._add`` and ``_deliver`` would (the stream
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


if TYPE_CHECKING:
    _LeaseCore = Lease  # the C core's lease is a Lease to the type checker
else:
    _LeaseCore = core.BUILT.LeaseCore if core.BUILT is not None else Lease


class CLease(_LeaseCore):
    """The C core's ``Lease``: the same state and ``take``, in C (``_ccore.LeaseCore``), so
    the C walk takes a bulk frame without a Python call; the lease object itself is its
    claimant. Settling and crossing (``apply``, ``_cross``) are ``Lease``'s."""

    __slots__ = ("active", "claimant", "conn", "key", "me", "peer")

    def __init__(self, conn: Connection[Lease], me: Side, peer: Side, linktype: int,
                 lay: Layout, key: bytes, addrs: bytes) -> None:
        super().__init__(conn, me, peer, linktype, lay, key, addrs)
        self.conn, self.me, self.peer, self.key = conn, me, peer, key
        self.active = False
        self.claimant = self

    apply = Lease.apply
    _cross = Lease._cross

    if TYPE_CHECKING:
        def __call__(self, buf: bytes, at: int, end: int, ts: float, linktype: int) -> bool:
            """``take``, the ``pcapfile.Claimant`` (``LeaseCore``'s call)."""
            return self.take(buf, at, end, ts, linktype)


class BulkFrames:
    """The leases of one reader's connections, claimed on its capture file."""

    __slots__ = ("_lease", "_share", "_sharers", "capture", "frames", "others")

    def __init__(self, capture: CaptureFile) -> None:
        self.capture = capture
        # the C core's leases when it runs (capture.core), else the Python twin's
        self._lease: type[Lease] = Lease if core.ACTIVE is None else CLease
        self._share: type[_OtherShare] = _OtherShare if core.ACTIVE is None else COtherShare
        capture.claim_at = dict(PRIMARY_KEY_AT)
        self.frames = 0  # frames taken by leases, settled
        # keys claimed for other shares, and their claimants (see skip_others)
        self.others: dict[bytes, Claimant] = {}
        self._sharers: dict[tuple[int, Layout], _OtherShare] = {}

    def resume(self, conn: Connection[Lease], sink: ByteSink, frame: bytes, linktype: int, me: Side,
               ttl: int | None) -> None:
        """After the general path read ``frame`` (sent by ``me``; ``ttl``: its TTL, None
        for a SYN or RST, whose TTL is not the direction's) of a streamed connection: lease
        the directions whose bytes are now only counted."""
        leases = conn.leases
        if not leases:
            if not sink.counting(me) or (lay := layout(frame, linktype)) is None:
                return
            peer = conn.b if me is conn.a else conn.a
            key, back, addrs, back_addrs = _keys(frame, lay)
            mine = self._lease(conn, me, peer, linktype, lay, key, addrs)
            theirs = self._lease(conn, peer, me, linktype, lay, back, back_addrs)
            mine.other, theirs.other = theirs, mine
            leases.extend((mine, theirs))
            self.capture.claim_also_at(linktype, lay.key_at)
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
            claims[lease.key] = lease.claimant
            lease.active = True

    def settle(self, conn: Connection[Lease]) -> None:
        """Apply what the connection's leases took, and stand them down."""
        claims = self.capture.claims
        for lease in conn.leases:
            if lease.active:
                lease.active = False
                if claims.get(lease.key) is lease.claimant:
                    del claims[lease.key]
            if not lease.frames:
                continue
            lease.apply()
            if lease.last > conn.last:
                conn.last = lease.last
            self.frames += lease.frames
            lease.frames = 0

    def forget(self, conn: Connection[Lease]) -> None:
        """The connection leaves the table: settle its leases and drop them."""
        self.settle(conn)
        conn.leases.clear()

    def skip_others(self, frame: bytes, linktype: int) -> None:
        """``frame`` belongs to another ``--jobs`` share: claim its direction's frames so
        they are dropped before decoding (and counted as TCP segments)."""
        lay = layout(frame, linktype)
        if lay is None:
            return
        claims = self.capture.claims
        if len(self.others) > OTHERS_MEMORY:
            for key, claimant in self.others.items():
                if claims.get(key) is claimant:
                    del claims[key]
            self.others.clear()
            self._sharers.clear()
        sharer = self._sharers.get((linktype, lay))
        if sharer is None:
            sharer = self._sharers[linktype, lay] = self._share(linktype, lay)
            self.capture.claim_also_at(linktype, lay.key_at)
        key, _, addrs, _ = _keys(frame, lay)
        if lay.v6:
            sharer.addrs[key] = addrs
        claims[key] = self.others[key] = sharer.take


class _OtherShare(_LayoutClaim):
    """Claimant of other ``--jobs`` shares' frames of one ``Layout``: any plain TCP frame
    of a known connection (IPv6: whose full addresses match its key's)."""

    __slots__ = ("addrs", "take")

    def __init__(self, linktype: int, lay: Layout) -> None:
        super().__init__(linktype, lay)
        self.addrs: dict[bytes, bytes] = {}  # IPv6: claim key -> the address bytes it leaves out
        self.take = self._take  # one bound method: claims hold it, forgetting compares it

    def _take(self, buf: bytes, at: int, end: int, ts: float, linktype: int) -> bool:
        ip = self.ip_at(buf, at, end, linktype)
        if ip < 0:
            return False
        if self.v6:
            return (buf[ip] >> 4 == 6 and buf[ip + 6] == TCP
                    and self.addrs.get(buf[ip + 32 : ip + 44]) == buf[ip + 8 : ip + 32])
        return (buf[ip] == 0x45 and buf[ip + 9] == TCP
                and not (buf[ip + 6] & 0x3F or buf[ip + 7]))


if TYPE_CHECKING:
    _ShareCore = _OtherShare  # the C core's is an _OtherShare to the type checker
else:
    _ShareCore = core.BUILT.ShareCore if core.BUILT is not None else _OtherShare


class COtherShare(_ShareCore):
    """The C core's ``_OtherShare``: the same ``_take``, in C (``_ccore.ShareCore``), called
    by the C walk without Python; the object itself is the claimant."""

    __slots__ = ("take",)

    def __init__(self, linktype: int, lay: Layout) -> None:
        super().__init__(linktype, lay)
        self.take = self

    if TYPE_CHECKING:
        def __call__(self, buf: bytes, at: int, end: int, ts: float, linktype: int) -> bool:
            """``_take``, the ``pcapfile.Claimant`` (``ShareCore``'s call)."""
            return self._take(buf, at, end, ts, linktype)
