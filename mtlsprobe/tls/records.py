"""Split one direction of a TLS byte stream into records (RFC 8446 §5.1, RFC 5246 §6.2).

Sans-IO and incremental: feed bytes in any chunking, get whole records back. Payloads of
record types the caller does not need can be skipped without being buffered, so long
captures cost one header parse per record.

After bytes go missing (a capture gap), :meth:`RecordSplitter.resync` drops the record in
progress and scans what follows for the next record boundary it can trust: a plausible
header (see :func:`plausible_header`) whose record ends exactly where another plausible
header starts (a chain of two), or, once the bytes stop (:meth:`RecordSplitter.settle`:
end of stream or another gap), exactly at the last byte. Bytes before it are skipped.
"""

from __future__ import annotations

from collections.abc import Collection
from struct import Struct
from typing import NamedTuple

from mtlsprobe.tls.constants import ContentType
from mtlsprobe.tls.reader import DecodeError

HEADER_LEN = 5
# RFC 5246 §6.2.3: TLSCiphertext.length MUST NOT exceed 2^14 + 2048. (RFC 8446 §5.2 caps
# TLS 1.3 at 2^14 + 256; we accept the older, larger bound on purpose.)
MAX_RECORD_LEN = 2**14 + 2048
_CONTENT_TYPES = frozenset(int(t) for t in ContentType)
ALL_TYPES: frozenset[int] = _CONTENT_TYPES
_HEADER = Struct(">BHH")  # type, legacy_record_version, length
# (type, major, minor, length) of the header at an offset: one C call instead of five
# subscripts and a shift, once per record.
_read_header = Struct(">BBBH").unpack_from
# Content types a resynchronisation may land on: ChangeCipherSpec .. Heartbeat (20-24).
_RESYNC_TYPES = range(20, 25)


class Record(NamedTuple):
    """One TLS record. A NamedTuple rather than a frozen dataclass: just as immutable, and
    about three times cheaper to build, which counts at one per record of a capture."""

    content_type: int
    version: int  # legacy_record_version, e.g. 0x0303
    payload: bytes  # b"" when the payload was skipped (see ``skipped``)
    offset: int  # stream offset of the record header
    length: int  # payload length from the header
    skipped: bool = False

    @property
    def header(self) -> bytes:
        """The 5-byte header, which is the AEAD additional data in TLS 1.3 (§5.2)."""
        return _HEADER.pack(self.content_type, self.version, self.length)


# ``tuple.__new__(Record, fields)`` builds a Record without the Python-level ``__new__`` a
# NamedTuple call goes through: about three times cheaper, at one Record per TLS record.
_record = tuple.__new__


def _looks_like_sslv2_hello(head: bytes) -> bool:
    # SSL 2.0 record header: 2-byte length with the high bit set, then msg type 1
    # (CLIENT-HELLO), then the version (draft-hickman-netscape-ssl-00, RFC 6101 E.2).
    return len(head) >= 3 and bool(head[0] & 0x80) and head[2] == 1


def describe_start(head: bytes) -> str:
    """A short, printable description of bytes that did not start a TLS record."""
    if _looks_like_sslv2_hello(head):
        return "an SSLv2-style ClientHello"
    text = head[:24]
    if all(32 <= b < 127 or b in (9, 10, 13) for b in text):
        line = text.decode("ascii").splitlines()[0] if text.strip() else ""
        return f"plaintext {line!r}"
    return f"bytes {head[:8].hex()}"


def plausible_header(ctype: int, major: int, minor: int, length: int,
                     version: int | None) -> bool:
    """Whether a header may start a record after lost framing: content type 20-24, record
    version 3.0-3.4 (``version`` exactly, when known), a non-empty payload within the
    limit, and a ChangeCipherSpec of exactly one byte (RFC 5246 §7.1)."""
    if ctype not in _RESYNC_TYPES or major != 3 or not 0 < length <= MAX_RECORD_LEN:
        return False
    if version is None:
        if minor > 4:
            return False
    elif (major << 8) | minor != version:
        return False
    return ctype != 20 or length == 1


class RecordSplitter:
    """One direction of one connection. ``feed()`` never returns a partial record.

    Raises :class:`DecodeError` on a header that cannot be TLS; the error is sticky
    (every later ``feed`` raises it again), as a stream that lost framing cannot recover
    by itself. After a gap, :meth:`resync` looks for a confirmed record boundary instead.
    """

    # Resynchronisation state (see resync), class-level defaults: a splitter that never
    # sees a gap (nearly all, two per connection) does not pay for setting them.
    _scan: bytearray | None = None  # bytes after the gap still being scanned
    _scan_at = 0  # stream offset of _scan[0]
    _scan_pos = 0  # index in _scan of the first position not yet ruled out
    _scan_version: int | None = None
    _gap_end = 0  # stream offset just after the last gap
    skipped = 0  # bytes skipped after the last gap before the boundary found

    def __init__(self, *, keep: Collection[int] = ALL_TYPES) -> None:
        self.keep: Collection[int] = keep  # content types whose payload is returned
        self.error: DecodeError | None = None
        self._buf = bytearray()
        self._skip = 0  # payload bytes still to skip for a skipped record
        self._length = -1  # payload length of the record being assembled (-1: no header)
        self._offset = 0  # stream offset of the next byte fed
        self.records = 0

    @property
    def scanning(self) -> bool:
        """True after a gap until a record boundary is confirmed."""
        return self._scan is not None

    @property
    def scanned(self) -> int:
        """Bytes fed since the last gap (while scanning: none of them framed yet)."""
        return self._offset - self._gap_end

    @property
    def pending(self) -> int:
        """Bytes buffered for an incomplete record (header or payload)."""
        return len(self._buf)

    @property
    def incomplete(self) -> bool:
        """True when the stream stops inside a record."""
        return bool(self._buf) or self._skip > 0

    @property
    def offset(self) -> int:
        return self._offset

    def _parse_header(self, header: bytes, at: int, peek: bytes = b"") -> tuple[int, int, int]:
        ctype, major, minor = header[0], header[1], header[2]
        length = (header[3] << 8) | header[4]
        if ctype not in _CONTENT_TYPES or major != 3 or minor > 4:
            if at == 0:
                what = describe_start(header + peek)
                raise DecodeError(f"not TLS: {what}", offset=at, context="record")
            raise DecodeError(f"bad record header {header.hex()}", offset=at, context="record")
        if length > MAX_RECORD_LEN:
            raise DecodeError(f"record length {length} over the limit", offset=at, context="record")
        return ctype, (major << 8) | minor, length

    @property
    def skippable(self) -> int:
        """How many bytes :meth:`skip` would take now (the rest of a skipped record)."""
        return self._skip

    def skip(self, n: int) -> bool:
        """Take ``n`` bytes that all fall inside the payload of a record being skipped (a
        type not in ``keep``), without looking at them: the caller need not even have them.
        False, and nothing taken, unless they all do."""
        if n > self._skip:
            return False
        self._skip -= n
        self._offset += n
        return True

    def resync(self, gap: int, *, version: int | None = None) -> None:
        """``gap`` bytes are missing before the next byte fed: drop the record in progress
        and scan the bytes that follow for a confirmed record boundary (``version``: the
        record version every header must carry, when known). Call :meth:`settle` first
        if already scanning, or what was scanned is dropped unconfirmed."""
        if self.error is not None:
            return  # framing was lost before the gap: nothing to resume
        self._buf.clear()
        self._skip = 0
        self._length = -1
        self._offset += max(gap, 0)
        self._gap_end = self._offset
        self._scan = bytearray()
        self._scan_at = self._offset
        self._scan_pos = 0
        self._scan_version = version

    def settle(self) -> list[Record]:
        """The bytes of this direction stop here (end of stream, or another gap): while
        scanning, a header whose record ends exactly at the last byte is confirmed too.
        Returns the records from the boundary found (none: still scanning)."""
        if self._scan is None or self.error is not None:
            return []
        at = self._find(final=True)
        return [] if at is None else self._resume(at)

    def _scan_feed(self, data: bytes | bytearray | memoryview) -> list[Record]:
        scan = self._scan
        assert scan is not None
        scan += data
        self._offset += len(data)
        at = self._find(final=False)
        if at is not None:
            return self._resume(at)
        drop = self._scan_pos  # positions ruled out: their bytes are no longer needed
        if drop:
            del scan[:drop]
            self._scan_at += drop
            self._scan_pos = 0
        return []

    def _find(self, *, final: bool) -> int | None:
        """Index in the scan buffer of the first confirmed record boundary, or None (then
        ``_scan_pos`` is the first position that may still be one). Positions are decided
        in order: a later header is never trusted while an earlier one is undecided."""
        buf = self._scan
        assert buf is not None
        n = len(buf)
        pos = self._scan_pos
        want = self._scan_version
        # A candidate's version bytes, found by bytes.find (C speed) rather than trying
        # every position in Python: the record version, or just its major 3 when unknown.
        pattern = bytes((3,)) if want is None else bytes((want >> 8, want & 0xFF))
        while True:
            i = buf.find(pattern, pos + 1)
            if i < 0:
                self._scan_pos = max(pos, n - len(pattern))
                return None
            p = i - 1
            if n - p < HEADER_LEN:
                self._scan_pos = p
                return None
            ctype, major, minor, length = _read_header(buf, p)
            if not plausible_header(ctype, major, minor, length, want):
                pos = p + 1
                continue
            end = p + HEADER_LEN + length
            if n - end >= HEADER_LEN:
                ctype2, major2, minor2, length2 = _read_header(buf, end)
                if plausible_header(ctype2, major2, minor2, length2, (major << 8) | minor):
                    return p  # confirmed: the record ends where another one starts
                pos = p + 1
                continue
            if final:
                if end == n:
                    return p  # confirmed: the record ends exactly where the bytes stop
                pos = p + 1
                continue
            self._scan_pos = p  # undecided until more bytes come
            return None

    def _resume(self, index: int) -> list[Record]:
        """Frame normally from the confirmed boundary at ``index`` of the scan buffer."""
        buf = self._scan
        assert buf is not None
        at = self._scan_at + index
        self.skipped = at - self._gap_end
        rest = bytes(buf[index:])
        self._scan = None
        self._offset = at
        return self.feed(rest)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Record]:
        """Consume `data`; return the records it completed, in order. Raises DecodeError."""
        if self.error is not None:
            raise self.error
        if self._scan is not None:
            return self._scan_feed(data)
        out: list[Record] = []
        # bytes are indexed and sliced as they are (one copy per payload); other buffers
        # through a memoryview (slices of it are views, copied once by ``bytes()``)
        view = data if type(data) is bytes else memoryview(data)
        n = len(view)
        pos = 0
        buf = self._buf
        keep = self.keep
        while pos < n:
            # Fast path: no partial record pending and a whole header in view: frame the
            # records straight from the caller's bytes, without the staging buffer. Local
            # counters, written back once: this loop runs once per record of a capture.
            if not buf and not self._skip and self._length < 0 and n - pos >= HEADER_LEN:
                pos = self._frame_whole(view, pos, n, keep, out)
                if pos == n:
                    break
                # else on below: a partial header or a cut record is staged in ``buf``
            if self._skip:
                take = min(self._skip, n - pos)
                self._skip -= take
                pos += take
                self._offset += take
                continue
            if self._length < 0:
                take = min(HEADER_LEN - len(buf), n - pos)
                buf += view[pos : pos + take]
                pos += take
                self._offset += take
                if len(buf) < HEADER_LEN:
                    break
                at = self._offset - HEADER_LEN
                try:
                    peek = bytes(view[pos : pos + 19]) if at == 0 else b""
                    ctype, version, length = self._parse_header(bytes(buf), at, peek)
                except DecodeError as exc:
                    self.error = exc
                    raise
                if ctype not in self.keep:
                    buf.clear()
                    self._skip = length
                    self.records += 1
                    out.append(_record(Record, (ctype, version, b"", at, length, True)))
                    continue
                self._length = length
            need = HEADER_LEN + self._length - len(buf)
            take = min(need, n - pos)
            buf += view[pos : pos + take]
            pos += take
            self._offset += take
            if len(buf) == HEADER_LEN + self._length:
                at = self._offset - len(buf)
                version = (buf[1] << 8) | buf[2]
                out.append(_record(Record, (buf[0], version, bytes(buf[HEADER_LEN:]), at,
                                            self._length, False)))
                self.records += 1
                buf.clear()
                self._length = -1
        return out

    def _frame_whole(
        self, view: bytes | memoryview, pos: int, n: int, keep: Collection[int],
        out: list[Record],
    ) -> int:
        """Frame every record whose header is in ``view[pos:n]`` (the staging buffer is
        empty); a record cut at the end is left to the slow path, or skipped when its
        type is not kept. Returns the position reached."""
        at = self._offset
        records = 0
        while n - pos >= HEADER_LEN:
            ctype, major, minor, length = _read_header(view, pos)
            if ctype not in _CONTENT_TYPES or major != 3 or minor > 4 or length > MAX_RECORD_LEN:
                self._offset, self.records = at, self.records + records
                try:
                    peek = bytes(view[pos + HEADER_LEN : pos + HEADER_LEN + 19])
                    self._parse_header(bytes(view[pos : pos + HEADER_LEN]), at,
                                       peek if at == 0 else b"")
                except DecodeError as exc:
                    self.error = exc
                    raise
            end = pos + HEADER_LEN + length
            if ctype not in keep:
                records += 1
                out.append(_record(Record, (ctype, (major << 8) | minor, b"", at, length, True)))
                if end > n:
                    self._skip = end - n
                    at += n - pos
                    pos = n
                    break
                at += HEADER_LEN + length
                pos = end
                continue
            if end > n:
                break  # a kept record cut by the end of the data: buffered by the slow path
            out.append(_record(Record, (ctype, (major << 8) | minor,
                                        bytes(view[pos + HEADER_LEN : end]), at, length, False)))
            records += 1
            at += HEADER_LEN + length
            pos = end
        self._offset = at
        self.records += records
        return pos
