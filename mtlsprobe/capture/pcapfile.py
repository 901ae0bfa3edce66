"""Streaming readers for pcap and pcapng capture files: container bytes -> (time, linktype, frame).

Boundary: this module knows capture *containers* only (file headers, record and block
framing, interface link types and timestamp resolutions, embedded TLS key logs). It does
not look inside frames; ``linklayer`` does that.

- Sources: a path, ``"-"`` (standard input) or an open binary file; gzip is detected by magic.
- Reading is chunked (128 KiB reads), so memory stays flat whatever the file size.
- A file that is not a capture raises ``InputError`` when opened. Damage found later
  (truncation, a corrupt record or block) stops the iteration and leaves a line in ``notes``:
  the frames read before the damage are still delivered.
- Claims: a caller may register 12-byte keys (``claims``), read at a fixed offset per link
  type (``claim_at``, then ``claim_extra``). A frame whose bytes there are a key goes to the
  key's claimant, in the read buffer, without being copied or yielded; the claimant may
  decline it, and then it is yielded as usual. A pcapng packet with a comment is never
  claimed (the comment may name the probe's attempt). This is how ``capture.bulk`` counts
  the bulk of a long capture at about one dictionary lookup a frame. The file layer never
  interprets the bytes.
"""

from __future__ import annotations

import gzip
import os
import stat
import struct
import sys
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from mtlsprobe.capture import core
from mtlsprobe.model.errors import InputError

# 128 KiB reads: each refill copies the chunk once, and a bigger one falls out of the CPU
# cache (measured: 1 MiB reads made MTU-size frames 25 % slower to walk)
CHUNK = 1 << 17
MAX_FRAME = 262144  # like Wireshark: a bigger record length means the file is damaged
MAX_BLOCK = 64 << 20  # the largest pcapng block, and pcap frame whatever the snap length says
# embedded key log read (as --keylog FILE): a gzip'd capture can hold gigabytes of secrets
MAX_KEYLOG = 256 << 20

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
GZIP_MAGIC = b"\x1f\x8b"

# pcapng block types
SHB, IDB, PB, SPB, EPB, DSB = 0x0A0D0D0A, 1, 2, 3, 6, 0x0A
# the least length of a block with fixed fields: header, the fields, trailer
MIN_BLOCK = {EPB: 32, PB: 32, IDB: 20, DSB: 20}
TLS_KEY_LOG = 0x544C534B  # Decryption Secrets Block secrets type "TLSK"
OPT_COMMENT, OPT_TSRESOL, OPT_TSOFFSET = 1, 9, 14

Packet = tuple[float, int, bytes]  # (seconds since the epoch, link type, frame bytes)
# A claimant: (read buffer, frame start, frame end, timestamp, link type) -> taken?
Claimant = Callable[[bytes, int, int, float, int], bool]
PROGRESS_EVERY = 4095  # frames between two calls of the progress hook (a mask)
SKIP_NOTES = 5  # blocks skipped that are noted one by one; the rest are counted in one note


class _Prefixed:
    """A read-only stream that first returns ``head``, then the rest of ``raw``."""

    def __init__(self, head: bytes, raw: BinaryIO) -> None:
        self._head, self._raw = head, raw

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n < 0:
                data, self._head = self._head + self._raw.read(), b""
                return data
            data, self._head = self._head[:n], self._head[n:]
            return data if len(data) == n else data + self._raw.read(n - len(data))
        return self._raw.read(n)


def _read_exact(f: BinaryIO | _Prefixed, n: int) -> bytes:
    """Read up to ``n`` bytes, looping over short reads; fewer only at end of stream."""
    data = f.read(n)
    if len(data) in (0, n):
        return data
    parts = [data]
    got = len(data)
    while got < n:
        more = f.read(n - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


class CaptureFile:
    """One pcap or pcapng capture, read once, front to back.

    Iterate to get ``(timestamp, linktype, frame)``. After (or during) iteration:
    ``notes`` holds damage and oddities, ``keylog_text`` the NSS key log lines found in
    pcapng Decryption Secrets Blocks ("" when none). While iterating, ``comment`` is the
    first opt_comment of the packet just yielded (pcapng Enhanced Packet Blocks), or None.
    """

    def __init__(self, source: str | Path | BinaryIO) -> None:
        self.notes: list[str] = []
        # the text of each Decryption Secrets Block, in order (``keylog_text`` joins them)
        self.keylog_parts: list[str] = []
        self._keylog_joined = 0, ""  # (how many parts, their text) last joined
        self._keylog_bytes = 0
        self.comment: str | None = None
        self.format = ""
        self.claims: dict[bytes, Claimant] = {}  # see the module docstring
        self.claim_at: dict[int, int] = {}  # link type -> offset of the 12-byte key
        # link type -> further key offsets, tried when the first finds no claimant
        self.claim_extra: dict[int, tuple[int, ...]] = {}
        self.claimed = 0  # frames taken by claimants (never yielded)
        # (k, n): the C walk drops (claims) the frames of TCP connections of other --jobs
        # shares (capture.partition); the Python walk yields them, the flow table drops them
        self.share: tuple[int, int] | None = None
        self.skipped_blocks = 0  # pcapng blocks skipped (the first SKIP_NOTES are noted)
        # called with (file bytes read, file size or None) every few thousand claimed frames
        self.progress: Callable[[int, int | None], None] | None = None
        self._owned: BinaryIO | None = None
        if isinstance(source, (str, Path)):
            self.name = "stdin" if str(source) == "-" else Path(source).name
            if str(source) == "-":
                raw: BinaryIO = sys.stdin.buffer
            else:
                try:
                    raw = self._owned = open(source, "rb")  # noqa: SIM115 - closed by close()
                except OSError as e:
                    raise InputError(f"cannot open capture {source}: {e.strerror}") from e
        else:
            raw, self.name = source, getattr(source, "name", "capture")
        self._raw = raw
        self.size: int | None = None  # bytes in the (possibly compressed) file, when known
        try:
            st = os.fstat(raw.fileno())
            if stat.S_ISREG(st.st_mode):
                self.size = st.st_size
        except (AttributeError, OSError, ValueError):
            pass
        try:
            self._stream, self._head = self._detect(raw)
        except BaseException:
            self.close()
            raise

    def _detect(self, raw: BinaryIO) -> tuple[BinaryIO | _Prefixed, bytes]:
        head = _read_exact(raw, 4)
        stream: BinaryIO | _Prefixed = raw
        if head[:2] == GZIP_MAGIC:
            stream = gzip.GzipFile(fileobj=_Prefixed(head, raw), mode="rb")  # type: ignore[call-overload]
            try:
                head = _read_exact(stream, 4)
            except (OSError, EOFError, zlib.error) as e:  # zlib.error: a broken deflate stream
                raise InputError(f"{self.name}: broken gzip data: {e}") from e
            self.notes.append("capture is gzip-compressed")
        if head in PCAP_MAGICS:
            self.format = "pcap"
        elif head == PCAPNG_SHB:
            self.format = "pcapng"
        elif not head:
            raise InputError(f"{self.name}: empty file, not a pcap or pcapng capture")
        else:
            raise InputError(
                f"{self.name}: not a pcap or pcapng capture (starts with {head.hex()})"
            )
        return stream, head

    @property
    def position(self) -> int:
        """Bytes of the file consumed so far (compressed bytes for gzip); 0 when unknown."""
        try:
            return self._raw.tell()
        except (AttributeError, OSError, ValueError):
            return 0

    def close(self) -> None:
        if self._owned is not None:
            self._owned.close()
            self._owned = None

    def __enter__(self) -> CaptureFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def keylog(self) -> str | None:
        return self.keylog_text or None

    @property
    def keylog_text(self) -> str:
        """The key log lines of the Decryption Secrets Blocks read so far ("" when none).
        Kept as parts (``keylog_parts``), joined when asked: appending to one string was
        quadratic in the number of blocks (40,000 small ones took a minute)."""
        joined, text = self._keylog_joined
        if joined < len(self.keylog_parts):
            text = text + "".join(self.keylog_parts[joined:])
            self._keylog_joined = len(self.keylog_parts), text
        return text

    def __iter__(self) -> Iterator[Packet]:
        try:
            if core.ACTIVE is not None:  # the C twin of _pcap and _pcapng
                yield from core.ACTIVE.Walker(self, self._stream, self._head,
                                              self.format == "pcapng", CHUNK)
            elif self.format == "pcap":
                yield from self._pcap()
            else:
                yield from self._pcapng()
        except (OSError, EOFError, zlib.error) as e:  # gzip damage, I/O error mid-file
            self.notes.append(f"read error, stopped: {e}")
        if self.skipped_blocks > SKIP_NOTES:
            self.notes.append(f"{self.skipped_blocks - SKIP_NOTES:,} more block(s) skipped")

    def _secrets(self, stype: int, secrets: bytes) -> None:
        """A Decryption Secrets Block's secrets (the C walk hands them here too)."""
        if stype == TLS_KEY_LOG and self._keylog_bytes > MAX_KEYLOG:
            self._skip(f"ignored decryption secrets past {MAX_KEYLOG >> 20} MiB")
        elif stype == TLS_KEY_LOG:
            self._keylog_bytes += len(secrets)
            text = secrets.decode("utf-8", "replace")
            self.keylog_parts.append(text if text.endswith("\n") else text + "\n")
        else:
            self._skip(f"ignored decryption secrets of type {stype:#x}")

    def _skip(self, note: str) -> None:
        """A block skipped: noted while few, counted always (a note each would let a
        hostile capture write millions of lines into the report)."""
        self.skipped_blocks += 1
        if self.skipped_blocks <= SKIP_NOTES:
            self.notes.append(note)

    def _claims_at(self, linktype: int) -> tuple[dict[bytes, Claimant], int]:
        """(the claims, offset of the key from the frame start) for frames of ``linktype``;
        an empty dict of its own when there is no key offset for it."""
        key_at = self.claim_at.get(linktype)
        return ({}, 0) if key_at is None else (self.claims, key_at)

    def claim_also_at(self, linktype: int, key_at: int) -> None:
        """Claim keys of ``linktype`` frames may also be at ``key_at`` (a VLAN tag or IPv6
        moves them): frames no claimant takes by the first offset are looked up there."""
        extra = self.claim_extra.get(linktype, ())
        if key_at != self.claim_at.get(linktype) and key_at not in extra:
            self.claim_extra[linktype] = (*extra, key_at)

    def _claimant(self, buf: bytes, start: int, linktype: int) -> Claimant | None:
        """The claimant of the frame at ``buf[start:]`` by its further key offsets."""
        for key_at in self.claim_extra.get(linktype, ()):
            claimant = self.claims.get(buf[start + key_at : start + key_at + 12])
            if claimant is not None:
                return claimant
        return None

    def _took(self, count: int) -> None:
        """A claimant took frame number ``count``: count it, and report progress now and
        then (claimed frames are never yielded, so the caller cannot)."""
        self.claimed += 1
        if not count & PROGRESS_EVERY and self.progress is not None:
            self.progress(self.position, self.size)

    # --- pcap ----------------------------------------------------------------------

    def _pcap(self) -> Iterator[Packet]:
        f = self._stream
        rest = _read_exact(f, 20)
        if len(rest) < 20:
            self.notes.append("pcap file header truncated")
            return
        order, unit = PCAP_MAGICS[self._head]
        _vmaj, _vmin, _zone, _sig, snaplen, network = struct.unpack(order + "HHiIII", rest)
        linktype = network & 0x0FFFFFFF  # upper bits may carry an FCS length
        # a record over 64 MiB is damage whatever the snap length says (bounds the buffer)
        limit = min(max(MAX_FRAME, snaplen), MAX_BLOCK)
        rec = struct.Struct(order + "IIII")
        unpack_from = rec.unpack_from
        claims, key_at = self._claims_at(linktype)
        key_at += 16  # past the record header
        claim_extra = self.claim_extra  # empty until a VLAN or IPv6 claim
        buf, pos, count = b"", 0, 0
        while True:
            if len(buf) - pos < 16:
                buf = buf[pos:] + _read_exact(f, max(CHUNK, 16))
                pos = 0
                if len(buf) < 16:
                    if buf:
                        self.notes.append(f"capture truncated after {count} packets")
                    return
            sec, frac, incl, _orig = unpack_from(buf, pos)
            if incl > limit:
                self.notes.append(
                    f"corrupt pcap record after {count} packets ({incl}-byte frame), stopped"
                )
                return
            end = pos + 16 + incl
            if end > len(buf):
                buf = buf[pos:] + _read_exact(f, max(CHUNK, incl + 16))
                pos, end = 0, 16 + incl
                if end > len(buf):
                    self.notes.append(f"capture truncated after {count} packets")
                    return
            if claims:
                claimant = claims.get(buf[pos + key_at : pos + key_at + 12])
                if claimant is None and claim_extra:
                    claimant = self._claimant(buf, pos + 16, linktype)
                if claimant is not None and claimant(
                    buf, pos + 16, end, sec + frac * unit, linktype
                ):
                    self._took(count)
                    count += 1
                    pos = end
                    continue
            yield sec + frac * unit, linktype, buf[pos + 16 : end]
            count += 1
            pos = end

    # --- pcapng --------------------------------------------------------------------

    def _pcapng(self) -> Iterator[Packet]:
        f = self._stream
        buf, pos, count = self._head, 0, 0
        order = "<"
        # per interface: (linktype, seconds per tick, offset seconds)
        ifaces: list[tuple[int, float, int]] = []
        last_ts = 0.0
        claims, claim_at, claim_extra = self.claims, self.claim_at, self.claim_extra
        keys_at: list[int | None] = []  # per interface: where claim keys are (see claim_at)
        header, epb, u32 = _block_structs(order)
        while True:
            if len(buf) - pos < 12:
                buf = buf[pos:] + _read_exact(f, max(CHUNK, 16))
                pos = 0
                if len(buf) < 12:
                    if buf:
                        self.notes.append(f"capture truncated after {count} packets")
                    return
            btype, blen = header(buf, pos)
            if btype == SHB:  # the same bytes in either byte order
                bom = buf[pos + 8 : pos + 12]
                if bom == b"\x4d\x3c\x2b\x1a":
                    order = "<"
                elif bom == b"\x1a\x2b\x3c\x4d":
                    order = ">"
                else:
                    self.notes.append(f"corrupt pcapng section header after {count} packets")
                    return
                header, epb, u32 = _block_structs(order)
                btype, blen = header(buf, pos)
                ifaces, keys_at = [], []
            if blen < MIN_BLOCK.get(btype, 12) or blen % 4 or blen > MAX_BLOCK:
                self.notes.append(
                    f"corrupt pcapng block (type {btype:#x}, length {blen}) "
                    f"after {count} packets, stopped"
                )
                return
            end = pos + blen
            if end > len(buf):
                buf = buf[pos:] + _read_exact(f, max(CHUNK, blen))
                pos, end = 0, blen
                if end > len(buf):
                    self.notes.append(f"capture truncated after {count} packets")
                    return
            if u32(buf, end - 4)[0] != blen:
                self.notes.append(
                    f"corrupt pcapng block (type {btype:#x}: length fields differ) "
                    f"after {count} packets, stopped"
                )
                return
            body = pos + 8
            if btype in (EPB, PB):
                if btype == EPB:
                    ifid, tsh, tsl, caplen, _orig = epb(buf, body)
                else:
                    ifid, _drops, tsh, tsl, caplen, _orig = struct.unpack_from(
                        order + "HHIIII", buf, body
                    )
                data = body + 20
                if data + caplen > end - 4 or ifid >= len(ifaces):
                    what = "unknown interface" if ifid >= len(ifaces) else "bad length"
                    self._skip(f"skipped a packet block ({what}) after {count} packets")
                else:
                    linktype, tick, offset = ifaces[ifid]
                    last_ts = ((tsh << 32) | tsl) * tick + offset
                    opts = data + ((caplen + 3) & ~3)
                    if opts < end - 4:  # options: a comment may name the probe's attempt
                        self.comment = _comment(buf, opts, end - 4, order)
                    if (
                        claims and self.comment is None
                        and (key_at := keys_at[ifid]) is not None
                    ):
                        claimant = claims.get(buf[data + key_at : data + key_at + 12])
                        if claimant is None and claim_extra:
                            claimant = self._claimant(buf, data, linktype)
                        if claimant is not None and claimant(
                            buf, data, data + caplen, last_ts, linktype
                        ):
                            self._took(count)
                            count += 1
                            pos = end
                            continue
                    yield last_ts, linktype, buf[data : data + caplen]
                    count += 1
                    self.comment = None
            elif btype == SPB:
                if not ifaces:
                    self._skip("skipped a simple packet block (no interface)")
                else:
                    (orig,) = struct.unpack_from(order + "I", buf, body)
                    caplen = min(orig, blen - 16)
                    yield last_ts, ifaces[0][0], buf[body + 4 : body + 4 + caplen]
                    count += 1
            elif btype == IDB:
                ifaces.append(self._interface(buf, body, end - 4, order))
                keys_at.append(claim_at.get(ifaces[-1][0]))
            elif btype == DSB:
                stype, slen = struct.unpack_from(order + "II", buf, body)
                self._secrets(stype, buf[body + 8 : min(body + 8 + slen, end - 4)])
            # SHB, name resolution, statistics, custom and unknown blocks: nothing to yield
            pos = end

    def _interface(self, buf: bytes, start: int, stop: int, order: str) -> tuple[int, float, int]:
        linktype, _res, _snaplen = struct.unpack_from(order + "HHI", buf, start)
        tick, offset = 1e-6, 0
        pos = start + 8
        while pos + 4 <= stop:
            code, length = struct.unpack_from(order + "HH", buf, pos)
            if code == 0:
                break
            value = buf[pos + 4 : min(pos + 4 + length, stop)]  # not past the block
            if code == OPT_TSRESOL and value:
                v = value[0]
                tick = 2.0 ** -(v & 0x7F) if v & 0x80 else 10.0**-v
            elif code == OPT_TSOFFSET and len(value) >= 8:
                (offset,) = struct.unpack_from(order + "q", value)
            pos += 4 + ((length + 3) & ~3)
        return linktype, tick, offset


def _block_structs(order: str) -> tuple[Callable[..., tuple[int, ...]], ...]:
    """Unpackers for a pcapng section's byte order: block type and length, the Enhanced
    Packet Block's fixed fields, one 32-bit word."""
    return tuple(struct.Struct(order + f).unpack_from for f in ("II", "IIIII", "I"))


def _comment(buf: bytes, pos: int, stop: int, order: str) -> str | None:
    """The first opt_comment among the options in ``buf[pos:stop]``, or None."""
    while pos + 4 <= stop:
        code, length = struct.unpack_from(order + "HH", buf, pos)
        if code == 0:
            break
        if code == OPT_COMMENT:
            return bytes(buf[pos + 4 : min(pos + 4 + length, stop)]).decode("utf-8", "replace")
        pos += 4 + ((length + 3) & ~3)
    return None
