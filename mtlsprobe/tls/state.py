"""The observer's state: what one connection's bytes showed so far, per side and in all.

Plain state, no parsing: :class:`SideState` (one direction's framing, handshake and key
state), :class:`GapState` (what gaps did to a direction) and :class:`ObserverState` (the
connection's facts, both sides, the history and the notes). :mod:`mtlsprobe.tls.observer`
and :mod:`mtlsprobe.tls.message_reader` write it from the bytes;
:mod:`mtlsprobe.tls.conclusions` reads it into an Observation. Sans-IO.
"""

from __future__ import annotations

from mtlsprobe.model import AlertInfo, Direction
from mtlsprobe.tls.handshake_framing import HandshakeAssembler
from mtlsprobe.tls.handshake_messages import Certificate, CertificateRequest, EncryptedExtensions
from mtlsprobe.tls.hellos import ClientHello, ServerHello
from mtlsprobe.tls.http_head import HttpHeads
from mtlsprobe.tls.keylog import KeyLog
from mtlsprobe.tls.keystate import KeySchedule, KeyState
from mtlsprobe.tls.records import RecordSplitter

# ``SideState.dead`` while looking for a record boundary after a gap (parsing resumes there).
SCAN = "scan"

# History letters (the alphabet is in mtlsprobe.tls.observer): UPPER case for the client.
_LOWER = "csjoxkrnygfthuzmildeb"
_CLIENT_LETTERS = {c: c.upper() for c in _LOWER}
_SERVER_LETTERS = {c: c for c in _LOWER}


def who(direction: Direction) -> str:
    """The sender of one direction, for notes."""
    return "client" if direction is Direction.C2S else "server"


class SideState:
    """Parsing state of one direction. A __slots__ class built by hand: two per connection,
    and a dataclass with default factories cost several times more to construct."""

    __slots__ = (
        "after_done",
        "alert_shaped_last",
        "app_data",
        "assembler",
        "blind_ccs",
        "bytes",
        "ccs",
        "client",
        "dead",
        "dead_at_start",
        "direction",
        "finished",
        "finished_inferred",
        "gap",
        "head",
        "keys",
        "letters",
        "opaque_after_hello",
        "records",
        "splitter",
    )

    def __init__(self, direction: Direction) -> None:
        self.direction = direction
        self.client = direction is Direction.C2S
        # history letter per lower-case letter: UPPER case for the client (see _add)
        self.letters = _CLIENT_LETTERS if self.client else _SERVER_LETTERS
        self.splitter = RecordSplitter()
        self.assembler = HandshakeAssembler()
        self.head = bytearray()  # first bytes, for "not TLS" notes
        self.bytes = 0
        self.records = 0
        # why records are not framed: None (they are), SCAN (looking for a record boundary
        # after a gap), "decode" (framing lost), "truncated" (capture began mid-stream)
        self.dead: str | None = None
        self.dead_at_start = False
        # None until a gap hides part of this direction (then facts needing all of it
        # are UNKNOWN): one slot, so a connection without gaps pays one assignment
        self.gap: GapState | None = None
        self.ccs = False  # TLS 1.2: ChangeCipherSpec sent, later records are encrypted
        self.blind_ccs = False  # CCS sent before any ServerHello was seen (see Observer._record)
        self.finished = False  # Finished of the first handshake seen (or inferred)
        self.finished_inferred = False
        self.keys = KeyState(self.client)
        self.after_done = 0  # records since the handshake completed
        self.app_data = False  # application data after the handshake (maybe, if not decrypted)
        self.opaque_after_hello = 0
        self.alert_shaped_last = False  # the last record was an undecrypted alert-shaped one

    def letter(self, lower: str) -> str:
        return self.letters[lower]


class GapState:
    """What gaps did to one direction (created at its first gap)."""

    __slots__ = ("after_handshake", "count", "finished_after", "hs_lost", "maybe_encrypted")

    def __init__(self, after_handshake: bool) -> None:
        self.after_handshake = after_handshake  # the first gap came after the handshake
        self.count = 0  # gaps reported
        self.finished_after = False  # this side's Finished was read after a gap
        self.hs_lost = True  # handshake framing lost: the next record needs whole messages
        self.maybe_encrypted = False  # TLS <= 1.2: its ChangeCipherSpec may be in a gap


class ObserverState:
    """Everything one connection's bytes showed so far: the sides, the facts read from
    the handshake, the history and the notes. Written by the observer, read by
    :func:`mtlsprobe.tls.conclusions.conclude`."""

    def __init__(self, keylog: KeyLog | None) -> None:
        self.key_schedule = KeySchedule(keylog)
        self._client = SideState(Direction.C2S)
        self._server = SideState(Direction.S2C)
        self.sides = {Direction.C2S: self._client, Direction.S2C: self._server}
        # Both kept as plain attributes, updated where their inputs change (_set_finished,
        # _server_hello, the HelloRetryRequest): they are read several times per record.
        self.handshake_done = False  # both sides' Finished seen (or inferred)
        self.tls13 = False  # the ServerHello chose TLS 1.3 (before it: a HelloRetryRequest)
        self.notes: list[str] = []
        self._noted: set[str] = set()
        self.history: list[str] = []
        self.alerts: list[AlertInfo] = []
        # the first fatal alert (an unreadable one only during the handshake): the outcome
        self.fatal: AlertInfo | None = None
        self.ch: ClientHello | None = None
        self.ch_latest: ClientHello | None = None
        self.sh: ServerHello | None = None
        self.sh_latest: ServerHello | None = None
        self.hello_retry = False
        self.ee: EncryptedExtensions | None = None
        self.server_cert: Certificate | None = None
        self.server_cert_malformed = False
        self.client_cert: Certificate | None = None
        self.client_cert_malformed = False
        self.client_skipped_cert = False
        self.cert_request: CertificateRequest | None = None
        self.cert_request_where: str | None = None
        self.server_hello_done = False
        self.server_hello_done_after_gap = False
        self.resumed = False
        self.renegotiation = False
        self.renegotiation_hidden = False
        self.decrypted = False
        self.not_tls: str | None = None
        self.http = HttpHeads()  # the first HTTP/1.x exchange in decrypted application data

    def note(self, text: str) -> None:
        if text not in self._noted:
            self._noted.add(text)
            self.notes.append(text)

    def _set_finished(self, side: SideState, *, inferred: bool = False) -> None:
        """Mark one side's first-handshake Finished as seen (``inferred``: from shapes)."""
        side.finished = True
        if side.gap is not None:
            side.gap.finished_after = True
        if inferred:
            side.finished_inferred = True
        self.handshake_done = self._client.finished and self._server.finished

    def _add(self, side: SideState, lower: str, *, collapse: bool = False) -> None:
        """Append one side's letter to the history (``collapse``: not twice in a row)."""
        letter = side.letters[lower]
        if collapse and self.history and self.history[-1] == letter:
            return
        self.history.append(letter)
