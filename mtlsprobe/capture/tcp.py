"""TCP stream reassembly for one direction of one connection: segments in, ordered bytes out.

Boundary: sequence numbers and payloads only; no IP, no flow table, no TLS.

Stream offsets count from the first byte after the SYN (0), or from the first seen
segment when the capture began mid-connection (``truncated_at_start``). Sequence numbers
are compared modulo 2**32 (RFC 9293 section 3.4), so a stream may wrap.

- Retransmitted bytes are dropped; the first copy wins. Bytes that differ between copies
  are counted in ``conflicting_bytes`` (a sign of injection or a broken middlebox).
- Out-of-order segments wait in a buffer until the hole before them fills.
- A hole becomes a ``gap`` (offset, length) when the peer acknowledges past it (the capture
  missed bytes the peer received) or when the stream is flushed at its end. Missing bytes
  are never zero-filled: the bytes after a gap are delivered as a new run.
- Only stream offsets below ``max_bytes`` are delivered (None: no limit); bytes beyond
  are counted in ``beyond_cap``. Beyond the cap, retransmissions are counted
  approximately (a segment that ends at or below the highest offset seen counts as one).
- For the overlap check, only the last ``RETAIN`` delivered bytes are kept, so an uncapped
  stream costs constant memory: a retransmission of older bytes is counted, not compared.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from mtlsprobe.capture import core

MASK = 0xFFFFFFFF
HALF = 1 << 31
NOTHING: tuple[bytes, ...] = ()
_NONE: tuple[()] = ()  # the empty gaps, _pending and _runs of every stream, until it has some
RETAIN = 256 * 1024  # delivered bytes kept for comparing retransmitted copies
UNLIMITED = 1 << 62


def _differing(a: bytes | memoryview, b: bytes | memoryview) -> int:
    if a == b:
        return 0
    return sum(1 for x, y in zip(a, b, strict=True) if x != y)


class TcpReassembler:
    """Reassemble one direction. Each call returns the runs of newly contiguous bytes."""

    __slots__ = ("_base", "_high", "_pending", "_retained", "_runs", "conflicting_bytes",
                 "fin_offset", "gaps", "max_bytes", "next_offset", "retransmissions",
                 "started", "stored", "truncated_at_start")

    def __init__(self, max_bytes: int | None = 256 * 1024) -> None:
        self.max_bytes = UNLIMITED if max_bytes is None else max_bytes
        self.started = False
        self.truncated_at_start = False
        self.next_offset = 0  # offset of the next byte expected
        self.fin_offset: int | None = None  # offset the FIN occupies
        # (offset, length); a shared empty tuple until the first gap
        self.gaps: Sequence[tuple[int, int]] = _NONE
        self.retransmissions = 0
        self.conflicting_bytes = 0
        self.stored = 0
        self._base = 0  # sequence number of offset 0
        self._high = 0  # highest end offset seen (for counting beyond the cap)
        # sorted, non-overlapping; a list once the first segment waits (most streams have none)
        self._pending: list[tuple[int, bytes]] = _NONE  # type: ignore[assignment]
        # [offset, bytearray]: delivered and kept, for overlap checks; a list from the first
        self._runs: list[list] = _NONE  # type: ignore[assignment]
        self._retained = 0  # bytes in _runs

    # --- inputs --------------------------------------------------------------------

    def syn(self, seq: int) -> None:
        """The SYN (or SYN-ACK) of this direction: the stream starts at ``seq + 1``."""
        if not self.started:
            self._base = (seq + 1) & MASK
            self.started = True

    def offset(self, seq: int) -> int:
        """The stream offset of sequence number ``seq`` (nearest to the expected one)."""
        d = (seq - self._base - self.next_offset) & MASK
        return self.next_offset + (d - (1 << 32) if d >= HALF else d)

    def segment(self, seq: int, payload: bytes, fin: bool = False) -> Sequence[bytes]:
        """Add one segment; returns the runs of bytes that became contiguous."""
        if not self.started:
            if not payload and not fin:
                return NOTHING
            self._base = seq
            self.started = self.truncated_at_start = True
        elif not payload and not fin:
            return NOTHING  # a bare ACK (most segments of a handshake): nothing to place
        off = self.offset(seq)
        end = off + len(payload)
        if fin and self.fin_offset is None:
            self.fin_offset = end
        if not payload:
            return NOTHING
        if end > self._high:
            self._high = end
        if end <= self.next_offset:
            self.retransmissions += 1
            self._check_delivered(off, payload)
            return NOTHING
        if self.next_offset >= self.max_bytes:
            return NOTHING  # beyond the cap: counted through _high only
        if off < self.next_offset:
            self.retransmissions += 1
            cut = self.next_offset - off
            self._check_delivered(off, payload[:cut])
            payload, off = payload[cut:], self.next_offset
        if off == self.next_offset:
            out = [self._deliver(payload)]
            if self._pending:
                out[-1] += self._drain()
            return out
        if off < self.max_bytes:
            self._buffer(off, payload)
        return NOTHING

    def expects(self, seq: int) -> bool:
        """Whether a segment at ``seq`` would extend the stream exactly: started, nothing
        waiting out of order, ``seq`` the next byte expected."""
        at_end = not (seq - self._base - self.next_offset) & MASK
        return at_end and self.started and not self._pending

    def distance(self, seq: int) -> int:
        """How far ``seq`` lies outside the sequence numbers this direction used so far (its
        SYN, the bytes up to the highest seen, its FIN): 0 within. An acknowledgement of
        it lies within too. Tells apart copies of a connection in other ISN spaces."""
        off = self.offset(seq)
        if off < -1:
            return -1 - off
        high = max(self.next_offset, self._high) + 1
        return off - high if off > high else 0

    def end_seq(self) -> int | None:
        """The sequence number of the next byte expected, when the stream has started and
        nothing waits out of order (so a segment there extends it exactly); else None."""
        if not self.started or self._pending:
            return None
        return (self._base + self.next_offset) & MASK

    def advance(self, n: int) -> None:
        """Count ``n`` bytes at the stream's end (see ``expects``) as received, without
        delivering or keeping them: the reader needs nothing from them. Up to the cap."""
        end = min(self.next_offset + n, self.max_bytes)
        self.next_offset = end
        if end > self._high:
            self._high = end

    def acked(self, ack: int) -> Sequence[bytes]:
        """The peer acknowledged up to ``ack``: bytes before it that we lack are a gap."""
        if not self.started or not (ack - self._base - self.next_offset) & MASK:
            return NOTHING  # acknowledges exactly what we have (the usual case)
        limit = self.offset(ack)
        if self.fin_offset is not None:
            limit = min(limit, self.fin_offset)
        if limit <= self.next_offset or self.next_offset >= self.max_bytes:
            return NOTHING
        return self._skip_to(min(limit, self.max_bytes))

    def flush(self) -> Sequence[bytes]:
        """End of stream: remaining holes (up to the FIN, when seen) become gaps."""
        if not self.started or self.next_offset >= self.max_bytes:
            return NOTHING
        limit = self.next_offset
        if self._pending:
            limit = self._pending[-1][0] + len(self._pending[-1][1])
        if self.fin_offset is not None:
            limit = max(limit, self.fin_offset)
        limit = min(limit, self.max_bytes)  # a segment waiting across the cap: no gap past it
        return self._skip_to(limit) if limit > self.next_offset else NOTHING

    def release(self) -> None:
        """Keep no bytes any more: the stream is not read on (a connection not kept)."""
        self._runs = self._pending = _NONE  # type: ignore[assignment]
        self._retained = 0

    # --- state ---------------------------------------------------------------------

    @property
    def beyond_cap(self) -> int:
        """Bytes seen past the cap (not stored)."""
        return max(0, self._high - max(self.max_bytes, self.next_offset))

    @property
    def complete(self) -> bool:
        """Everything up to the FIN has been delivered (or the cap was reached)."""
        if self.fin_offset is None:
            return False
        return self.next_offset >= min(self.fin_offset, self.max_bytes)

    # --- internals -----------------------------------------------------------------

    def _deliver(self, data: bytes) -> bytes:
        room = self.max_bytes - self.next_offset
        if len(data) > room:
            data = data[:room]
        runs = self._runs
        if runs and runs[-1][0] + len(runs[-1][1]) == self.next_offset:
            runs[-1][1].extend(data)
        elif runs:
            runs.append([self.next_offset, bytearray(data)])
        else:
            self._runs = [[self.next_offset, bytearray(data)]]
        self.next_offset += len(data)
        self.stored += len(data)
        self._retained += len(data)
        if self._retained > 2 * RETAIN:
            self._forget(self._retained - RETAIN)
        return data

    def _forget(self, excess: int) -> None:
        """Drop the oldest ``excess`` retained bytes."""
        runs = self._runs
        self._retained -= excess
        while excess:
            start, run = runs[0]
            if len(run) <= excess:
                excess -= len(run)
                runs.pop(0)
            else:
                del run[:excess]
                runs[0][0] = start + excess
                excess = 0

    def _drain(self) -> bytes:
        """Deliver pending segments that now touch the contiguous end."""
        parts = []
        pending = self._pending
        while pending and pending[0][0] <= self.next_offset:
            off, data = pending.pop(0)
            end = off + len(data)
            if end <= self.next_offset:
                continue
            parts.append(self._deliver(data[self.next_offset - off :]))
        return b"".join(parts)

    def _skip_to(self, limit: int) -> list[bytes]:
        out: list[bytes] = []
        while self.next_offset < limit:
            pending = self._pending
            if pending and pending[0][0] <= self.next_offset:
                out.append(self._drain())
                continue
            stop = min(pending[0][0], limit) if pending else limit
            gap = (self.next_offset, stop - self.next_offset)
            if isinstance(self.gaps, list):
                self.gaps.append(gap)
            else:
                self.gaps = [gap]
            self.next_offset = stop
        if self._pending and self._pending[0][0] <= self.next_offset:
            out.append(self._drain())
        return [run for run in out if run]

    def _buffer(self, off: int, data: bytes) -> None:
        """Keep an out-of-order segment, minus what earlier copies already cover."""
        pieces = [(off, data)]
        overlapped = False
        end = off + len(data)
        pending = self._pending
        i = max(0, bisect.bisect_left(pending, (off,)) - 1)
        while i < len(pending) and pending[i][0] < end:
            o, d = pending[i]
            oe = o + len(d)
            kept = []
            for po, pd in pieces:
                pe = po + len(pd)
                a, b = max(po, o), min(pe, oe)
                if a >= b:
                    kept.append((po, pd))
                    continue
                overlapped = True
                self.conflicting_bytes += _differing(pd[a - po : b - po], d[a - o : b - o])
                if po < a:
                    kept.append((po, pd[: a - po]))
                if pe > b:
                    kept.append((b, pd[b - po :]))
            pieces = kept
            i += 1
        if overlapped:
            self.retransmissions += 1
        if not pending:
            pending = self._pending = []
        for piece in pieces:
            bisect.insort(pending, piece)

    def _check_delivered(self, off: int, data: bytes) -> None:
        end = off + len(data)
        for start, run in self._runs:
            a, b = max(off, start), min(end, start + len(run))
            if a < b:
                self.conflicting_bytes += _differing(
                    data[a - off : b - off], memoryview(run)[a - start : b - start]
                )


def reassembler(max_bytes: int | None = 256 * 1024) -> TcpReassembler:
    """A ``TcpReassembler``, or its C twin (``_ccore.StreamCore``) when the C core runs."""
    if core.ACTIVE is None:
        return TcpReassembler(max_bytes)
    stream: TcpReassembler = core.ACTIVE.StreamCore(max_bytes)
    return stream
