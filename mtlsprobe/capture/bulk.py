"""The shortcut for the bulk of a long capture: frames that need no decoding.

Boundary: raw frame bytes at fixed offsets, for connections ``capture.flows`` has already
decoded once. Frames of a streamed connection whose bytes its sink only counts
(application data past the handshake), and bare ACKs that acknowledge exactly what was
seen, are matched by the raw address and port bytes of plain IPv4 frames (``plain_tcp``)
and accounted from fixed offsets, without ``linklayer.decode`` or the flow table. Anything
else (TCP flags, options in IP, a hole, FIN seen, the sink wanting the bytes) declines and
the frame takes the general path. ``--jobs`` workers use the same raw keys to drop other
shares' frames before decoding.
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

if TYPE_CHECKING:
    from mtlsprobe.capture.flows import ByteSink, Connection, Side

_late_fields = struct.Struct("!H2xHBB14xIIBB").unpack_from  # from the IPv4 total length on
# Where an IPv4 header starts in a frame of each link type, when the frame holds one right
# after the link header (untagged Ethernet, Linux cooked SLL/SLL2, raw IP, BSD null/loop)...
IPV4_AT = {ETHERNET: 14, SLL: 16, SLL2: 20, RAW: 0, RAW4: 0, RAW_12: 0, RAW_14: 0,
           NULL: 4, LOOP: 4}
# ...and where the link header says "IPv4" (EtherType 0x0800); raw and null: the version
# nibble alone tells (see ``linklayer.decode``)
_ETHERTYPE_AT = {ETHERNET: 12, SLL: 14, SLL2: 0}
_IPV4 = b"\x08\x00"

NOT_BARE_ACK = SYN | FIN | RST
OTHERS_MEMORY = 1 << 20  # raw keys of other shares' connections remembered (then forgotten)


def plain_tcp(frame: bytes, linktype: int, ip: int) -> bool:
    """Whether ``frame`` (of ``linktype``, IPv4 header at ``ip``: see IPV4_AT) holds an
    unfragmented IPv4 TCP segment with a 20-byte IPv4 header: its addresses and ports are
    then at ``ip + 12 : ip + 24``."""
    at = _ETHERTYPE_AT.get(linktype)
    return (
        (at is None or frame[at : at + 2] == _IPV4) and len(frame) >= ip + 40
        and frame[ip] == 0x45 and frame[ip + 9] == TCP
        and not (frame[ip + 6] & 0x3F or frame[ip + 7])
    )


class BulkFrames:
    """The registered directions of streamed connections, by raw key (see the module
    docstring); ``take`` accounts a frame or declines it."""

    __slots__ = ("entries",)

    def __init__(self) -> None:
        # frame[ip+12:ip+24] (source, destination address, ports) -> (connection, sender,
        # peer, sink)
        self.entries: dict[bytes, tuple[Connection, Side, Side, ByteSink]] = {}

    def register(self, frame: bytes, linktype: int, ip: int, conn: Connection, me: Side,
                 peer: Side) -> None:
        if conn.sink is None or not plain_tcp(frame, linktype, ip):
            return
        key = frame[ip + 12 : ip + 24]
        if key not in self.entries:
            self.entries[key] = (conn, me, peer, conn.sink)
            conn.late_keys.append(key)

    def forget(self, conn: Connection) -> None:
        for key in conn.late_keys:
            self.entries.pop(key, None)
        conn.late_keys.clear()

    def take(self, frame: bytes, linktype: int, ip: int, ts: float) -> bool:
        """Account one frame if it is a late frame of a registered connection."""
        entry = self.entries.get(frame[ip + 12 : ip + 24])
        if entry is None or not plain_tcp(frame, linktype, ip):
            return False
        conn, me, peer, sink = entry
        total, frag, ttl, proto, seq, ack, doff, flags = _late_fields(frame, ip + 2)
        if flags & NOT_BARE_ACK or proto != TCP or frag & 0x3FFF or me.fin or peer.fin:
            return False
        size = total - 20 - (doff >> 4) * 4  # payload bytes
        if size < 0 or ip + total > len(frame) or doff >> 4 < 5:
            return False  # malformed, or cut by the snap length
        if flags & ACK and peer.stream.started and not peer.stream.acked_to_end(ack):
            return False  # a hole may become a gap: the general path decides
        if size:
            stream = me.stream
            if not stream.expects(seq) or not sink.skip(me, size):
                return False
            stream.advance(size)
        conn.last = ts
        me.ttls[ttl] = None
        return True
