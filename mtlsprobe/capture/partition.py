"""Which ``--jobs`` share a TCP connection belongs to: one hash of its two endpoints.

``share_hash`` is CRC-32 (``zlib.crc32``) of the connection's endpoints, each its address
bytes then its port big-endian, the lower one first; a connection is share ``hash % n``.
Its value depends on nothing but the frame's headers, so it is the same in every process
(no string-hash seed) and in both capture cores: the C walk (``_ccore.share_hash``) drops
the frames of other shares before they are decoded; the Python path decodes them and the
flow table drops them with ``ShareFilter``. The tests hold the two to the same value.
"""

from __future__ import annotations

import socket
import zlib

MEMORY = 65536  # connections whose share ShareFilter remembers (then it starts over)


def endpoint_bytes(addr: str, port: int) -> bytes:
    """An endpoint as the hash reads it: the address bytes, then the port (2 bytes, big)."""
    try:
        packed = socket.inet_pton(socket.AF_INET6 if ":" in addr else socket.AF_INET, addr)
    except (OSError, ValueError):  # not an address text (never from the decoders)
        packed = addr.encode("utf-8", "replace")
    return packed + (port & 0xFFFF).to_bytes(2, "big")


def share_hash(src: str, sport: int, dst: str, dport: int) -> int:
    """The hash of a TCP connection's endpoints, the same whichever side sent the frame."""
    a, b = endpoint_bytes(src, sport), endpoint_bytes(dst, dport)
    return zlib.crc32(a + b if a <= b else b + a)


class ShareFilter:
    """Whether a connection (its ordered address pair) is share ``part`` of ``parts``;
    remembered per pair, so a frame costs one dict lookup."""

    __slots__ = ("_known", "part", "parts")

    def __init__(self, part: int, parts: int) -> None:
        if not 0 <= part < parts:
            raise ValueError(f"share {part} of {parts}")
        self.part, self.parts = part, parts
        self._known: dict[tuple[tuple[str, int], tuple[str, int]], bool] = {}

    def mine(self, key: tuple[tuple[str, int], tuple[str, int]]) -> bool:
        known = self._known.get(key)
        if known is None:
            if len(self._known) >= MEMORY:
                self._known.clear()
            (a, ap), (b, bp) = key
            known = self._known[key] = share_hash(a, ap, b, bp) % self.parts == self.part
        return known
