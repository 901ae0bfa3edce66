"""A bounds-checked cursor over bytes, and the one error the TLS core raises.

Sans-IO: no sockets, files, clock or logging. Every read either returns a value or raises
:class:`DecodeError`; nothing here ever reads past the end of its window.
"""

from __future__ import annotations


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

    def u8(self) -> int:
        return self._data[self._take(1)]

    def u16(self) -> int:
        i = self._take(2)
        d = self._data
        return (d[i] << 8) | d[i + 1]

    def u24(self) -> int:
        i = self._take(3)
        d = self._data
        return (d[i] << 16) | (d[i + 1] << 8) | d[i + 2]

    def u32(self) -> int:
        i = self._take(4)
        return int.from_bytes(self._data[i : i + 4], "big")

    def bytes(self, n: int) -> bytes:
        i = self._take(n)
        return bytes(self._data[i : i + n])

    def rest(self) -> bytes:
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

    def vector(self, prefix: int) -> bytes:
        """An opaque vector with a 1-, 2- or 3-byte length prefix."""
        return self.bytes(self._length(prefix))

    def sub(self, n: int, context: str | None = None) -> Reader:
        """A reader over the next `n` bytes; this reader moves past them."""
        i = self._take(n)
        return Reader(self._data, self.context if context is None else context, start=i, end=i + n)

    def sub_vector(self, prefix: int, context: str | None = None) -> Reader:
        """A reader over a length-prefixed vector's contents."""
        return self.sub(self._length(prefix), context)

    def u16_list(self, prefix: int) -> tuple[int, ...]:
        """A vector of uint16 values (cipher suites, groups, signature schemes)."""
        r = self.sub_vector(prefix)
        if r.remaining % 2:
            raise r.error("odd length for a list of uint16")
        return tuple(r.u16() for _ in range(r.remaining // 2))

    def expect_end(self) -> None:
        if self._pos != self._end:
            raise self.error(f"{self.remaining} unexpected trailing bytes")
