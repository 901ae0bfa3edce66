"""A bounds-checked cursor over bytes, and the one error the TLS core raises.

Sans-IO: no sockets, files, clock or logging. Every read either returns a value or raises
:class:`DecodeError`; nothing here ever reads past the end of its window.
"""

from __future__ import annotations

import builtins  # in Reader, ``bytes`` names the method: annotations say builtins.bytes
from struct import unpack_from


class DecodeError(ValueError):
    """Malformed (not merely incomplete) bytes.

    ``offset`` is where the problem was found, relative to the start of the outermost
    buffer the reader was created on (or a stream offset, for record splitting);
    ``context`` names what was being decoded ("ClientHello.extensions").
    """

    def __init__(self, message: str, *, offset: int | None = None, context: str = "") -> None:
        self.message = message
        self.offset = offset
        self.context = context
        where = f" at offset {offset}" if offset is not None else ""
        what = f"{context}: " if context else ""
        super().__init__(f"{what}{message}{where}")


class Reader:
    """Read big-endian integers and length-prefixed vectors (RFC 8446 §3.4) from bytes.

    A sub-reader covers a slice of its parent; offsets in errors stay absolute.
    """

    __slots__ = ("_data", "_end", "_pos", "context")

    def __init__(
        self,
        data: bytes | bytearray | memoryview,
        context: str = "",
        *,
        start: int = 0,
        end: int | None = None,
    ) -> None:
        self._data = data
        self._pos = start
        self._end = len(data) if end is None else end
        self.context = context

    # --- position -------------------------------------------------------------------

    @property
    def offset(self) -> int:
        return self._pos

    @property
    def remaining(self) -> int:
        return self._end - self._pos

    def at_end(self) -> bool:
        return self._pos >= self._end

    def error(self, message: str) -> DecodeError:
        return DecodeError(message, offset=self._pos, context=self.context)

    def _take(self, n: int) -> int:
        if n < 0 or self._pos + n > self._end:
            raise self.error(f"needs {n} bytes, {self.remaining} left")
        start = self._pos
        self._pos += n
        return start

    # --- scalars --------------------------------------------------------------------

    # The scalar and vector readers inline the bounds check of ``_take``: they run for
    # every field of every ClientHello in a capture, and the extra call was most of their cost.

    def u8(self) -> int:
        i = self._pos
        if i >= self._end:
            raise self.error(f"needs 1 bytes, {self.remaining} left")
        self._pos = i + 1
        return self._data[i]

    def u16(self) -> int:
        i = self._pos
        if i + 2 > self._end:
            raise self.error(f"needs 2 bytes, {self.remaining} left")
        self._pos = i + 2
        d = self._data
        return (d[i] << 8) | d[i + 1]

    def u24(self) -> int:
        i = self._take(3)
        d = self._data
        return (d[i] << 16) | (d[i + 1] << 8) | d[i + 2]

    def u32(self) -> int:
        i = self._take(4)
        return int.from_bytes(self._data[i : i + 4], "big")

    def bytes(self, n: int) -> builtins.bytes:
        i = self._pos
        if n < 0 or i + n > self._end:
            raise self.error(f"needs {n} bytes, {self.remaining} left")
        self._pos = i + n
        return bytes(self._data[i : i + n])

    def rest(self) -> builtins.bytes:
        return self.bytes(self.remaining)

    def skip(self, n: int) -> None:
        self._take(n)

    # --- vectors --------------------------------------------------------------------

    def _length(self, prefix: int) -> int:
        if prefix == 1:
            return self.u8()
        if prefix == 2:
            return self.u16()
        if prefix == 3:
            return self.u24()
        raise ValueError(f"unsupported length prefix {prefix}")

    def vector(self, prefix: int) -> builtins.bytes:
        """An opaque vector with a 1-, 2- or 3-byte length prefix."""
        if prefix == 2:
            return self.bytes(self.u16())
        if prefix == 1:
            return self.bytes(self.u8())
        return self.bytes(self._length(prefix))

    def sub(self, n: int, context: str | None = None) -> Reader:
        """A reader over the next `n` bytes; this reader moves past them."""
        i = self._take(n)
        return Reader(self._data, self.context if context is None else context, start=i, end=i + n)

    def sub_vector(self, prefix: int, context: str | None = None) -> Reader:
        """A reader over a length-prefixed vector's contents."""
        return self.sub(self._length(prefix), context)

    def u16_list(self, prefix: int) -> tuple[int, ...]:
        """A vector of uint16 values (cipher suites, groups, signature schemes).

        One ``struct.unpack_from`` for the whole list: a ClientHello carries dozens of them.
        """
        n = self._length(prefix)
        i = self._take(n)
        if n % 2:
            raise DecodeError("odd length for a list of uint16", offset=i, context=self.context)
        return unpack_from(f">{n >> 1}H", self._data, i)

    def typed_vectors(self) -> list[tuple[int, builtins.bytes]]:
        """(uint16 type, opaque<0..2^16-1>) pairs up to the end: the extensions layout
        (RFC 8446 §4.2). Fast loop on the buffer; anything short is re-read field by field
        so the DecodeError is the same as from ``u16()``/``vector(2)``."""
        data, pos, end = self._data, self._pos, self._end
        out = []
        while pos + 4 <= end:
            n = (data[pos + 2] << 8) | data[pos + 3]
            stop = pos + 4 + n
            if stop > end:
                break
            out.append(((data[pos] << 8) | data[pos + 1], bytes(data[pos + 4 : stop])))
            pos = stop
        self._pos = pos
        while not self.at_end():  # only when malformed: raises the precise error
            out.append((self.u16(), self.vector(2)))
        return out

    def expect_end(self) -> None:
        if self._pos != self._end:
            raise self.error(f"{self.remaining} unexpected trailing bytes")
