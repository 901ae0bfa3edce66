"""A small pcapng writer: one section, interfaces, packets, comments and TLS key logs.

Boundary: container bytes only (little endian, microsecond timestamps). What goes in is
the caller's business; ``live.sniff`` writes the probe's own packets with it, and the key
log goes in a Decryption Secrets Block (type ``TLSK``) that Wireshark/tshark and
``capture.pcapfile.CaptureFile`` read. Blocks are written in call order: put the secrets
before the packets they decrypt.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

SHB, IDB, EPB, DSB = 0x0A0D0D0A, 0x00000001, 0x00000006, 0x0000000A
BYTE_ORDER_MAGIC = 0x1A2B3C4D
TLS_KEY_LOG = 0x544C534B  # "TLSK"
OPT_END, OPT_COMMENT = 0, 1
SHB_HARDWARE, SHB_OS, SHB_USERAPPL = 2, 3, 4
IF_NAME, IF_TSRESOL = 2, 9
EPB_FLAGS = 2
EPB_INBOUND, EPB_OUTBOUND = 1, 2  # epb_flags direction bits

LINKTYPE_ETHERNET, LINKTYPE_RAW = 1, 101


def _pad(data: bytes) -> bytes:
    return data + b"\x00" * (-len(data) % 4)


def _options(opts: list[tuple[int, bytes]]) -> bytes:
    if not opts:
        return b""
    out = b"".join(struct.pack("<HH", code, len(value)) + _pad(value) for code, value in opts)
    return out + struct.pack("<HH", OPT_END, 0)


def _block(btype: int, body: bytes) -> bytes:
    body = _pad(body)
    length = 12 + len(body)
    return struct.pack("<II", btype, length) + body + struct.pack("<I", length)


class PcapngWriter:
    """Write pcapng blocks to a binary file object (which the caller owns and closes)."""

    def __init__(
        self, out: BinaryIO, *, comment: str | None = None, application: str = "mtlsprobe"
    ) -> None:
        self.out = out
        self.interfaces = 0
        opts = [(SHB_USERAPPL, application.encode())]
        if comment:
            opts.insert(0, (OPT_COMMENT, comment.encode()))
        body = struct.pack("<IHHq", BYTE_ORDER_MAGIC, 1, 0, -1) + _options(opts)
        self.out.write(_block(SHB, body))

    def add_interface(
        self, linktype: int = LINKTYPE_RAW, *, name: str | None = None, snaplen: int = 262144
    ) -> int:
        """Describe an interface; returns its id for :meth:`add_packet`."""
        opts = [(IF_TSRESOL, b"\x06")]  # microseconds, the default, said explicitly
        if name:
            opts.insert(0, (IF_NAME, name.encode()))
        self.out.write(_block(IDB, struct.pack("<HHI", linktype, 0, snaplen) + _options(opts)))
        self.interfaces += 1
        return self.interfaces - 1

    def add_secrets(self, keylog: str) -> None:
        """A Decryption Secrets Block holding NSS key log lines (``TLSK``)."""
        data = keylog.encode("ascii", "replace")
        self.out.write(_block(DSB, struct.pack("<II", TLS_KEY_LOG, len(data)) + _pad(data)))

    def add_packet(
        self,
        interface: int,
        timestamp: float,
        data: bytes,
        *,
        original_length: int | None = None,
        comment: str | None = None,
        outbound: bool | None = None,
    ) -> None:
        """An Enhanced Packet Block; `timestamp` in seconds since the epoch."""
        if not 0 <= interface < self.interfaces:
            raise ValueError(f"no interface {interface}")
        ticks = round(timestamp * 1_000_000)
        opts: list[tuple[int, bytes]] = []
        if comment:
            opts.append((OPT_COMMENT, comment.encode()))
        if outbound is not None:
            opts.append((EPB_FLAGS, struct.pack("<I", EPB_OUTBOUND if outbound else EPB_INBOUND)))
        head = struct.pack(
            "<IIIII", interface, ticks >> 32, ticks & 0xFFFFFFFF, len(data),
            original_length if original_length is not None else len(data),
        )
        self.out.write(_block(EPB, head + _pad(data) + _options(opts)))
