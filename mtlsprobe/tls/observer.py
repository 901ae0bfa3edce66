"""Transcript -> Observation: what one TLS connection showed, and what it hid.

Sans-IO: bytes in, values out; no sockets, files, clock or logging. Remarks go to
``Observation.notes``. :func:`observe` never raises on network bytes: malformed input
becomes a note, and the facts it hid stay ``Seen.UNKNOWN``.

The boundary: :class:`Observer` is the incremental state machine that reads records, keys,
handshake messages and alerts. It is the record layer; the layers it stands on have their
own modules: :mod:`mtlsprobe.tls.message_reader` (handshake messages and alerts),
:mod:`mtlsprobe.tls.keystate` (the key log's keys per side, opening records) and
:mod:`mtlsprobe.tls.state` (the state both layers write). What that state adds up to (seen,
not seen, or UNKNOWN: "a fact we could not have seen is UNKNOWN, never NO") is decided in
:mod:`mtlsprobe.tls.conclusions`, which ``Observer.close`` calls.

History alphabet (Zeek ``ssl_history``-like; UPPER case = client, lower case = server):

    c client_hello        s server_hello         j hello_retry_request
    o encrypted_ext.      x certificate          k server_key_exchange
    r certificate_request n server_hello_done    y certificate_verify
    g client_key_exchange f finished             t new_session_ticket
    h hello_request       u certificate_status   m key_update
    z other handshake     i change_cipher_spec   l alert
    d application data    e encrypted record we could not read     b heartbeat

Gaps (bytes missing from a capture): record framing is lost there, so the direction is
scanned for the next record header that can be confirmed (records.RecordSplitter.resync)
and read again from it. The handshake message cut by the gap is lost, decryption of that
direction stops (the AEAD sequence number is unknown until a TLS 1.2 ChangeCipherSpec
resets it), and the state records where gaps came (``GapState``), so that facts needing
*all* of a direction can stay UNKNOWN (see :mod:`mtlsprobe.tls.conclusions`). What is read
after a gap (an alert, a ServerHelloDone) counts.

Runs of ``d``/``e`` from one side collapse to one letter, and once the handshake is done
only the first POST_HANDSHAKE_RECORDS records per direction are examined in full; later
ones are only counted from their headers (cheap on long captures), which still catches
TLS 1.2 alerts and renegotiation.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from mtlsprobe.model import Direction, Observation, Transcript
from mtlsprobe.tls.conclusions import conclude
from mtlsprobe.tls.constants import ContentType, HandshakeType
from mtlsprobe.tls.decrypt import Tls12Decryptor
from mtlsprobe.tls.handshake_framing import HandshakeAssembler
from mtlsprobe.tls.keylog import KeyLog
from mtlsprobe.tls.message_reader import MessageReader
from mtlsprobe.tls.reader import DecodeError
from mtlsprobe.tls.records import Record, describe_start
from mtlsprobe.tls.state import SCAN, GapState, SideState, who

POST_HANDSHAKE_RECORDS = 8
# After the budget: payloads of these types are still read (TLS 1.2 alerts and
# renegotiation records); application data is only counted.
_LATE_KEEP = frozenset({ContentType.CHANGE_CIPHER_SPEC, ContentType.ALERT, ContentType.HANDSHAKE})
# Smallest TLS 1.3 record that can hold a Finished: 4 + 32 + 1 (type) + 16 (tag).
_MIN_FINISHED_RECORD = 53
# An encrypted TLS 1.3 alert: 2 bytes + 1 (inner type) + 16 (tag).
_ALERT_SHAPED_RECORD = 19

# Content types as plain ints: compared for every record (an IntEnum attribute lookup each
# time was measurable).
_APPLICATION_DATA = int(ContentType.APPLICATION_DATA)
_HANDSHAKE = int(ContentType.HANDSHAKE)
_CHANGE_CIPHER_SPEC = int(ContentType.CHANGE_CIPHER_SPEC)
_ALERT = int(ContentType.ALERT)
_HEARTBEAT = int(ContentType.HEARTBEAT)
UNLIMITED = 1 << 62  # skippable bytes of a side whose parsing stopped for good
# Gaps noted one by one per direction; later ones only counted.
_GAP_NOTES = 3
_C2S = Direction.C2S  # read per feed() call: a module global is cheaper than the enum attribute
# Handshake messages sent in plaintext before the sender's ChangeCipherSpec (TLS <= 1.2),
# per sender: after a gap, a handshake record is read only if it holds whole messages of
# these types (anything else may continue a message cut by the gap, or be encrypted).
_PLAIN_HANDSHAKE = {
    True: frozenset({HandshakeType.CLIENT_HELLO, HandshakeType.CERTIFICATE,
                     HandshakeType.CERTIFICATE_VERIFY, HandshakeType.CLIENT_KEY_EXCHANGE,
                     HandshakeType.CERTIFICATE_URL, HandshakeType.SUPPLEMENTAL_DATA}),
    False: frozenset({HandshakeType.SERVER_HELLO, HandshakeType.NEW_SESSION_TICKET,
                      HandshakeType.CERTIFICATE, HandshakeType.SERVER_KEY_EXCHANGE,
                      HandshakeType.CERTIFICATE_REQUEST, HandshakeType.SERVER_HELLO_DONE,
                      HandshakeType.CERTIFICATE_STATUS, HandshakeType.SUPPLEMENTAL_DATA}),
}
# TLS 1.3: only the hellos travel in plaintext handshake records.
_PLAIN_HANDSHAKE_13 = {True: frozenset({HandshakeType.CLIENT_HELLO}),
                       False: frozenset({HandshakeType.SERVER_HELLO})}


class Observer(MessageReader):
    """Incremental observer for one connection (h2-style: feed bytes, then close).

    The record layer: framing, gaps, ChangeCipherSpec and record keys; handshake messages
    and alerts go up to :class:`~mtlsprobe.tls.message_reader.MessageReader`, and the state
    both write is :class:`~mtlsprobe.tls.state.ObserverState`.
    """

    def __init__(self, *, keylog: KeyLog | str | None = None) -> None:
        if isinstance(keylog, str):
            keylog = KeyLog.parse(keylog)
        super().__init__(keylog)

    # --- public API -----------------------------------------------------------------

    def feed(self, direction: Direction, data: bytes | memoryview) -> None:
        """Consume bytes one side sent, in the order they were sent. Never raises."""
        side = self._client if direction is _C2S else self._server
        side.bytes += len(data)
        if len(side.head) < 32:
            side.head += data[: 32 - len(side.head)]
        if side.dead is not None:
            if side.dead == SCAN:
                self._scan(side, data)
            return
        try:
            records = side.splitter.feed(data)
        except DecodeError as exc:
            self._lose(side, exc)
            return
        try:
            for rec in records:
                self._record(side, rec)
        except DecodeError as exc:
            self._lose(side, exc)

    def counting(self, direction: Direction) -> bool:
        """Whether one side's application data is now only counted (past the
        post-handshake budget, or parsing stopped): ``skip`` may then take its bytes."""
        side = self._client if direction is _C2S else self._server
        dead = side.dead
        if dead is None:
            return side.splitter.keep is _LATE_KEEP
        return dead != SCAN  # after a gap, every byte is looked at until a record boundary

    def skippable(self, direction: Direction) -> int:
        """How many next bytes of one side ``skip`` would take now, in one call or several
        (``UNLIMITED`` once parsing of that side stopped for good)."""
        side = self._client if direction is _C2S else self._server
        if side.dead is not None:
            return 0 if len(side.head) < 32 or side.dead == SCAN else UNLIMITED
        return side.splitter.skippable

    def skip(self, direction: Direction, n: int) -> bool:
        """Take the next ``n`` bytes of one side as fed, without them, when they would only
        be counted: all inside an application-data record past the post-handshake budget
        (or after parsing stopped). False: they are needed, ``feed`` them instead."""
        side = self._client if direction is _C2S else self._server
        if side.dead is not None:
            if len(side.head) < 32 or side.dead == SCAN:
                return False
        elif not side.splitter.skip(n):
            return False
        side.bytes += n
        return True

    def gap(self, direction: Direction, length: int, offset: int | None = None) -> None:
        """Bytes of one direction are missing: framing is lost, so records are read again
        from the next record header that can be confirmed (see the module docstring)."""
        side = self.sides[direction]
        sender = who(direction)
        gap = side.gap
        if gap is None:
            gap = side.gap = GapState(self.handshake_done)
        gap.count += 1
        if gap.count <= _GAP_NOTES:
            where = f" at offset {offset}" if offset is not None else ""
            self.note(
                f"{length} bytes missing from the {sender} stream{where}: messages in them are "
                "unknown; records are read again from the next header that can be confirmed"
            )
        elif gap.count == _GAP_NOTES + 1:
            self.note(f"more bytes missing from the {sender} stream (further gaps not listed)")
        if side.dead == SCAN:  # still scanning: a record ending just where this gap starts
            self._resume(side, side.splitter.settle())
        if _lost(side):
            return  # not framed anyway (not TLS, framing lost, or capture began mid-stream)
        side.assembler = HandshakeAssembler()  # a message cut by the gap is lost
        gap.hs_lost = True
        if not self.tls13 and not side.ccs:
            gap.maybe_encrypted = True
        if side.keys.drop():
            self.note(
                f"{sender} records after the gap are not decrypted: the number of records lost "
                "in it, so the AEAD sequence number, is unknown"
            )
        side.splitter.resync(length, version=self._record_version())
        side.dead = SCAN

    def _record_version(self) -> int | None:
        """The legacy_record_version every record carries from the ServerHello on (None:
        not known yet, or a pre-RFC 8446 draft)."""
        sh = self.sh
        if sh is None:
            return None
        if self.tls13:
            return 0x0303  # RFC 8446 §5.1
        return sh.version if 0x0300 <= sh.version <= 0x0303 else None

    def _scan(self, side: SideState, data: bytes | memoryview) -> None:
        """Bytes after a gap: looked through for a record boundary, then read from it."""
        try:
            records = side.splitter.feed(data)
        except DecodeError as exc:
            self._lose(side, exc)
            return
        self._resume(side, records)

    def _resume(self, side: SideState, records: list[Record]) -> None:
        """Read the records from a boundary found after a gap (none found: still scanning)."""
        if side.splitter.scanning:
            return
        side.dead = None
        self.note(
            f"{who(side.direction)} stream resynchronised on a record header "
            f"{side.splitter.skipped} bytes after the gap"
        )
        try:
            for rec in records:
                self._record(side, rec)
        except DecodeError as exc:
            self._lose(side, exc)

    def lose_start(self, keep: Iterable[Direction] = ()) -> None:
        """The capture began mid-connection: nothing can be framed, except in the
        directions in ``keep`` (their first captured bytes are known to be a hello)."""
        kept = set(keep)
        for side in self.sides.values():
            if side.direction not in kept:
                side.dead = "truncated"
                side.dead_at_start = True
        if len(kept) == len(self.sides):
            self.note("no SYN captured, but both sides start with their hello: the handshake "
                      "is read from there")
        else:
            self.note("capture began mid-connection: the handshake was not captured")

    # --- records --------------------------------------------------------------------

    def _lose(self, side: SideState, exc: DecodeError) -> None:
        side.dead = "decode"
        if exc.context == "record" and exc.offset == 0:
            if side.client:
                self.note(f"client did not speak TLS: {describe_start(bytes(side.head))}")
            else:
                self.not_tls = describe_start(bytes(side.head))
            return
        self.note(f"{who(side.direction)} stream unreadable from here: {exc}")

    def _record(self, side: SideState, rec: Record) -> None:
        side.records += 1
        done = self.handshake_done
        if done:
            side.after_done += 1
            if side.after_done > POST_HANDSHAKE_RECORDS:
                side.splitter.keep = _LATE_KEEP
                if rec.content_type == _APPLICATION_DATA:
                    side.alert_shaped_last = False
                    self._count_only(side)
                    return
        ctype = rec.content_type
        side.alert_shaped_last = False
        if ctype == _APPLICATION_DATA:
            self._application_record(side, rec, done)
        elif ctype == _HANDSHAKE:
            if side.ccs and not self.tls13:
                plain = self._open12(side, rec)
                if plain is None:
                    self._opaque_handshake12(side)
                else:
                    self._handshake_bytes(side, plain)
            elif side.blind_ccs and not _plain_client_hello(rec.payload):
                self._opaque_handshake12(side)
            elif side.gap is not None and side.gap.hs_lost:
                self._handshake_after_gap(side, rec.payload)
            else:
                side.blind_ccs = False
                self._handshake_bytes(side, rec.payload)
        elif ctype == _CHANGE_CIPHER_SPEC:
            self._add(side, "i")
            if side.gap is not None and side.gap.maybe_encrypted and rec.payload != b"\x01":
                # an encrypted (renegotiation) CCS: the first one was in a gap
                side.gap.maybe_encrypted = False
                side.ccs = True
                side.keys.dec = None
            else:
                self._change_cipher_spec(side)
        elif ctype == _ALERT:
            if side.ccs and not self.tls13:
                plain = self._open12(side, rec)
                if plain is None:
                    self._alert(side, None, decrypted=False)
                else:
                    self._alert(side, plain, decrypted=True)
            elif (side.blind_ccs or (side.gap is not None and side.gap.maybe_encrypted)) \
                    and not _plain_alert(rec.payload):
                self._alert(side, None, decrypted=False)
            else:
                self._alert(side, rec.payload, decrypted=False)
        elif ctype == _HEARTBEAT:
            self._add(side, "b")

    def _handshake_after_gap(self, side: SideState, payload: bytes) -> None:
        """The first handshake records after a gap: read only from one that holds whole
        plaintext messages (the message framing is confirmed by ending with the record)."""
        plain = (_PLAIN_HANDSHAKE_13 if self.tls13 else _PLAIN_HANDSHAKE)[side.client]
        if _whole_messages(payload, plain):
            gap = side.gap
            assert gap is not None
            gap.hs_lost = gap.maybe_encrypted = False  # plaintext: its CCS is still to come
            self._handshake_bytes(side, payload)
            return
        self._add(side, "e", collapse=True)
        self.note(
            f"{who(side.direction)} handshake record after the gap not read: it does not "
            "hold whole plaintext handshake messages (it may continue one the gap cut, or be "
            "encrypted)"
        )

    def _count_only(self, side: SideState) -> None:
        side.app_data = True
        side.keys.count()

    def _application_record(self, side: SideState, rec: Record, done: bool) -> None:
        if not self.tls13 or self.sh is None:
            if self.sh is None and side.client and not side.finished:
                self.note("client sent encrypted data before the ServerHello (0-RTT)")
                self._add(side, "e", collapse=True)
                return
            if isinstance(side.keys.dec, Tls12Decryptor):
                if self.http.wants(side.direction):
                    plain = self._open12(side, rec)
                    if plain is not None:
                        self.http.feed(side.direction, plain)
                else:
                    side.keys.dec.skip()  # only the sequence number matters now
            self._add(side, "d", collapse=True)
            if done:
                side.app_data = True
            return
        if not side.keys.ready():  # no keys (e.g. no key log)
            self._opaque13(side, rec, done)
            return
        opened = side.keys.open13(rec, self.note)
        if opened is None:
            self._opaque13(side, rec, done)
            return
        self.decrypted = True
        inner, content = opened
        if inner == ContentType.HANDSHAKE:
            self._handshake_bytes(side, content)
        elif inner == ContentType.ALERT:
            self._alert(side, content, decrypted=True)
        elif inner == ContentType.APPLICATION_DATA:
            self._add(side, "d", collapse=True)
            self.http.feed(side.direction, content)
            if self.handshake_done:
                side.app_data = True
        else:
            self.note(f"{who(side.direction)} sent inner content type {inner}")

    def _opaque13(self, side: SideState, rec: Record, done: bool) -> None:
        """A TLS 1.3 record we could not decrypt: only its shape is known."""
        self._add(side, "e", collapse=True)
        side.opaque_after_hello += 1
        other = self._server if side.client else self._client
        if rec.length == _ALERT_SHAPED_RECORD and (side.client or other.finished_inferred):
            side.alert_shaped_last = True
            when = " after the client's handshake flight" if not side.client else ""
            self.note(
                f"{who(side.direction)} sent a {rec.length}-byte encrypted record{when}: "
                "the shape of an encrypted alert (not decrypted, so not counted as one)"
            )
        elif (side.client and not side.finished and rec.length >= _MIN_FINISHED_RECORD
              and side.gap is None):
            # The client only encrypts under handshake keys after the server's whole
            # flight, and its flight ends with Finished: the handshake completed (shape).
            # Not after a client gap: a record framed late (confirmed by the next header)
            # may be 0-RTT data sent before the ServerHello, whose ClientHello offer the
            # gap may have hidden.
            self._set_finished(side, inferred=True)
            server = self._server
            if not server.finished:
                self._set_finished(server, inferred=True)
        elif done and not side.client:
            side.app_data = True

    def _change_cipher_spec(self, side: SideState) -> None:
        if self.sh is None and not self.hello_retry:
            # No ServerHello seen (one-way capture, or lost): TLS <= 1.2 encrypts from here,
            # while a TLS 1.3 client's compatibility CCS may precede a second, plaintext
            # ClientHello. Records after it are told apart by their shape.
            side.blind_ccs = True
        if self.tls13 or self.sh is None:
            return  # RFC 8446 §5: middlebox-compatibility CCS, no meaning
        side.ccs = True
        if side.gap is not None:
            side.gap.maybe_encrypted = False
        side.keys.dec = None  # TLS 1.2 sequence numbers restart at 0 after a CCS (RFC 5246 §6.1)
        if (not side.client and not self.server_hello_done and self.server_cert is None
                and side.gap is None):
            self.resumed = True  # abbreviated handshake: CCS right after ServerHello
        ch, sh = self.ch_latest, self.sh_latest
        if ch is not None and sh is not None:
            self.key_schedule.tls12(side.keys, sh.cipher_suite, ch.random, sh.random, self.note)

    def _open12(self, side: SideState, rec: Record) -> bytes | None:
        """A TLS 1.2 record's plaintext (None: no key for it, or it did not decrypt)."""
        plain = side.keys.open12(rec, self.note)
        if plain is not None:
            self.decrypted = True
        return plain

    def _opaque_handshake12(self, side: SideState) -> None:
        """An encrypted TLS 1.2 handshake record we cannot read."""
        if not side.finished:
            self._add(side, "f")  # the first one after CCS is Finished (RFC 5246 §7.4.9)
            self._finished(side)
            return
        if not self.handshake_done:
            # Still the first handshake: a renegotiation needs it complete. A client that
            # agreed NPN (or Channel ID) sends NextProtocol (EncryptedExtensions) after its
            # CCS and before Finished, so its first encrypted record was not the Finished.
            self._add(side, "e")
            return
        self._add(side, "e")
        self.renegotiation = True
        self.renegotiation_hidden = True
        self.note(
            f"{who(side.direction)} sent an encrypted handshake record after both Finished: "
            "a renegotiation (its messages are hidden without a key log)"
        )

    # --- result -------------------------------------------------------------------------

    def close(
        self, transcript: Transcript, *, first_client_at: float | None = None
    ) -> Observation:
        """The Observation for everything fed so far. Never raises on network bytes.

        ``transcript`` gives the connection's metadata; its chunks are not read again.
        ``first_client_at``: seconds from the first packet to the client's first bytes
        (default: from ``transcript.chunks``), for telling an unanswered hello.
        What the state adds up to is decided in :mod:`mtlsprobe.tls.conclusions`.
        """
        self._end_streams()
        return conclude(self, transcript, first_client_at=first_client_at)

    def _end_streams(self) -> None:
        """The bytes stop: read what a pending resync can still confirm, and note the
        streams that ended inside a record or a handshake message."""
        for side in self.sides.values():
            if side.dead == SCAN:  # the bytes stop: a record ending with them confirms it
                self._resume(side, side.splitter.settle())
                if _scanning(side) and side.splitter.scanned:
                    self.note(
                        f"no record header could be confirmed in the {side.splitter.scanned} "
                        f"{who(side.direction)} bytes after the last gap: the rest of that "
                        "stream is unknown"
                    )
        for side in self.sides.values():
            if side.dead is None and side.splitter.incomplete:
                self.note(
                    f"{who(side.direction)} stream ended inside a record "
                    f"({side.splitter.pending} bytes pending)"
                )
            elif side.dead is None and side.assembler.pending:
                self.note(f"{who(side.direction)} stream ended inside a handshake message")


# Read through functions after _resume, which may change side.dead: type checkers (and
# mypyc, which trusts them) keep an attribute narrowed across a method call.
def _scanning(side: SideState) -> bool:
    """Still looking for a record boundary after a gap."""
    return side.dead == SCAN


def _lost(side: SideState) -> bool:
    """Not framed any more (not TLS, framing lost, or the capture began mid-stream)."""
    return side.dead is not None and side.dead != SCAN


def _plain_client_hello(payload: bytes) -> bool:
    """Whether a handshake record's payload starts like a plaintext ClientHello."""
    return (
        len(payload) >= 4
        and payload[0] == HandshakeType.CLIENT_HELLO
        and len(payload) - 4 <= int.from_bytes(payload[1:4], "big") <= 0xFFFF
    )


def _whole_messages(payload: bytes, types: frozenset[int]) -> bool:
    """Whether a handshake record's payload is whole messages of ``types``, the last ending
    exactly with the record."""
    n = len(payload)
    pos = 0
    while n - pos >= 4 and payload[pos] in types:
        pos += 4 + int.from_bytes(payload[pos + 1 : pos + 4], "big")
    return pos == n and n > 0


def _plain_alert(payload: bytes) -> bool:
    """Whether an alert record's payload is a plaintext alert (level, description)."""
    return len(payload) == 2 and payload[0] in (1, 2)


_HELLO = {Direction.C2S: HandshakeType.CLIENT_HELLO, Direction.S2C: HandshakeType.SERVER_HELLO}


def starts_with_hello(transcript: Transcript) -> set[Direction]:
    """Directions whose first captured bytes are a handshake record holding their hello.

    A capture that missed the SYN (e.g. filtered to TLS packets only) may still hold the
    whole handshake: a stream that starts with a ClientHello/ServerHello record is framed
    from its first byte, so it can be read like one whose SYN was seen.
    """
    out: set[Direction] = set()
    missing_first = {g.direction for g in transcript.gaps if g.offset == 0}
    first: dict[Direction, bytes] = {}
    for chunk in transcript.chunks:
        if chunk.direction not in first:
            first[chunk.direction] = chunk.data
    for direction, data in first.items():
        if direction in missing_first or len(data) < 6:
            continue
        if data[0] == ContentType.HANDSHAKE and data[1] == 3 and data[5] == _HELLO[direction]:
            out.add(direction)
    server = first.get(Direction.S2C, b"")
    if (
        Direction.C2S in out
        and Direction.S2C not in missing_first
        and server[:2] == bytes((ContentType.ALERT, 3))
        and server[3:5] == b"\x00\x02"
    ):
        out.add(Direction.S2C)  # the server refused the ClientHello with a plaintext alert
    return out


def observe(transcript: Transcript, keylog: KeyLog | str | None = None) -> Observation:
    """Observe one transcript. Never raises on malformed network bytes.

    ``keylog`` (parsed once by the caller, e.g. every key log of a capture merged) is used
    instead of ``transcript.keylog`` when given.
    """
    obs = Observer(keylog=keylog if keylog is not None else transcript.keylog)
    if transcript.truncated_at_start:
        obs.lose_start(keep=starts_with_hello(transcript))
    if not transcript.gaps:  # the usual case: every chunk goes in whole
        feed = obs.feed
        for chunk in transcript.chunks:
            feed(chunk.direction, chunk.data)
        return obs.close(transcript)
    pending = {
        d: deque(sorted((g for g in transcript.gaps if g.direction is d), key=lambda g: g.offset))
        for d in Direction
    }
    offset = dict.fromkeys(Direction, 0)  # stream offset of the next byte, gaps included
    for chunk in transcript.chunks:
        d = chunk.direction
        view = memoryview(chunk.data)
        i = 0
        gaps = pending[d]
        while gaps and gaps[0].offset <= offset[d] + len(view) - i:
            g = gaps.popleft()
            cut = max(g.offset - offset[d], 0)
            if cut:
                obs.feed(d, view[i : i + cut])
                i += cut
                offset[d] += cut
            obs.gap(d, g.length, g.offset)
            offset[d] = max(offset[d], g.offset) + g.length
        if i < len(view):
            obs.feed(d, view[i:] if i else chunk.data)  # whole chunk: its bytes, no view
            offset[d] += len(view) - i
    for d, gaps in pending.items():
        for g in gaps:
            obs.gap(d, g.length, g.offset)
    return obs.close(transcript)
