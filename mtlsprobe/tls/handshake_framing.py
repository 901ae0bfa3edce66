"""Handshake message framing: whole messages out of handshake-record payloads.

Sans-IO. :class:`HandshakeAssembler` turns handshake-record payloads (plaintext, or
decrypted) into whole messages, whatever the record boundaries (RFC 8446 §5.1: messages
may span records, and one record may hold several). The message bodies go to the parsers
in :mod:`~mtlsprobe.tls.hellos` and :mod:`~mtlsprobe.tls.handshake_messages`.
"""

from __future__ import annotations

from typing import NamedTuple

from mtlsprobe.tls.reader import DecodeError

HANDSHAKE_HEADER_LEN = 4
# RFC 8446 allows 2^24-1; no message we parse comes close to this (a long chain is ~20 KB).
MAX_HANDSHAKE_LEN = 1 << 20


class HandshakeMessage(NamedTuple):
    """One whole handshake message (NamedTuple: immutable and cheap to build)."""

    msg_type: int
    body: bytes


# ``tuple.__new__(HandshakeMessage, fields)`` skips the NamedTuple's Python-level __new__:
# several times cheaper, at one call per handshake message of a capture.
_message = tuple.__new__


class HandshakeAssembler:
    """Whole handshake messages out of a sequence of handshake-record payloads.

    ``feed`` raises DecodeError for a declared length over MAX_HANDSHAKE_LEN; the error is
    sticky, as framing is lost.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.error: DecodeError | None = None

    @property
    def pending(self) -> int:
        """Bytes of an incomplete message held back."""
        return len(self._buf)

    def feed(self, payload: bytes) -> list[HandshakeMessage]:
        if self.error is not None:
            raise self.error
        buf = self._buf
        if buf:
            buf += payload
            data: bytes | bytearray = buf
        else:  # the usual case: read the record's payload in place, keep only a remainder
            data = payload
        out: list[HandshakeMessage] = []
        pos = 0
        n = len(data)
        while n - pos >= HANDSHAKE_HEADER_LEN:
            length = (data[pos + 1] << 16) | (data[pos + 2] << 8) | data[pos + 3]
            if length > MAX_HANDSHAKE_LEN:
                self.error = DecodeError(
                    f"handshake message length {length} over the limit", context="handshake"
                )
                raise self.error
            end = pos + HANDSHAKE_HEADER_LEN + length
            if end > n:
                break
            out.append(_message(HandshakeMessage,
                                (data[pos], bytes(data[pos + HANDSHAKE_HEADER_LEN : end]))))
            pos = end
        if data is buf:
            del buf[:pos]
        elif pos < n:
            buf += data[pos:]
        return out


__all__ = ["HANDSHAKE_HEADER_LEN", "MAX_HANDSHAKE_LEN", "HandshakeAssembler", "HandshakeMessage"]
