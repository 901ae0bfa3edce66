"""Handshake messages and alerts -> the observer's state (the layer above the records).

:class:`MessageReader` reads one side's reassembled handshake messages (hellos,
certificates, CertificateRequest, Finished, KeyUpdate, renegotiation) and its alerts into
the :class:`~mtlsprobe.tls.state.ObserverState` it extends, and starts the TLS 1.3 keys at
the ServerHello. :class:`~mtlsprobe.tls.observer.Observer` feeds it from the record layer.
Sans-IO; a malformed message becomes a note.
"""

from __future__ import annotations

from mtlsprobe.model import AlertInfo
from mtlsprobe.tls.constants import (
    TLS13,
    AlertDescription,
    HandshakeType,
    alert_name,
    handshake_name,
)
from mtlsprobe.tls.handshake_framing import HandshakeMessage
from mtlsprobe.tls.handshake_messages import (
    CertificateRequest,
    parse_alerts,
    parse_certificate,
    parse_certificate_request,
    parse_encrypted_extensions,
    parse_key_update,
)
from mtlsprobe.tls.hellos import ServerHello, parse_client_hello, parse_server_hello
from mtlsprobe.tls.reader import DecodeError
from mtlsprobe.tls.state import ObserverState, SideState, who

LETTERS = {
    HandshakeType.HELLO_REQUEST: "h",
    HandshakeType.CLIENT_HELLO: "c",
    HandshakeType.SERVER_HELLO: "s",
    HandshakeType.NEW_SESSION_TICKET: "t",
    HandshakeType.ENCRYPTED_EXTENSIONS: "o",
    HandshakeType.CERTIFICATE: "x",
    HandshakeType.SERVER_KEY_EXCHANGE: "k",
    HandshakeType.CERTIFICATE_REQUEST: "r",
    HandshakeType.SERVER_HELLO_DONE: "n",
    HandshakeType.CERTIFICATE_VERIFY: "y",
    HandshakeType.CLIENT_KEY_EXCHANGE: "g",
    HandshakeType.FINISHED: "f",
    HandshakeType.CERTIFICATE_STATUS: "u",
    HandshakeType.KEY_UPDATE: "m",
}
# Handshake types as plain ints for the dispatch in MessageReader._handshake (an IntEnum
# attribute lookup costs ~100 ns, and the chain compares up to ten per message).
_CERTIFICATE = int(HandshakeType.CERTIFICATE)
_CERTIFICATE_REQUEST = int(HandshakeType.CERTIFICATE_REQUEST)
_CLIENT_HELLO = int(HandshakeType.CLIENT_HELLO)
_CLIENT_KEY_EXCHANGE = int(HandshakeType.CLIENT_KEY_EXCHANGE)
_ENCRYPTED_EXTENSIONS = int(HandshakeType.ENCRYPTED_EXTENSIONS)
_FINISHED = int(HandshakeType.FINISHED)
_HELLO_REQUEST = int(HandshakeType.HELLO_REQUEST)
_KEY_UPDATE = int(HandshakeType.KEY_UPDATE)
_SERVER_HELLO = int(HandshakeType.SERVER_HELLO)
_SERVER_HELLO_DONE = int(HandshakeType.SERVER_HELLO_DONE)
_NON_FATAL_13 = frozenset({AlertDescription.close_notify, AlertDescription.user_canceled})


class MessageReader(ObserverState):
    """The handshake-message and alert layer of the observer: what they say, into the state."""

    # --- handshake messages -------------------------------------------------------------

    def _handshake_bytes(self, side: SideState, payload: bytes) -> None:
        for msg in side.assembler.feed(payload):  # DecodeError: framing lost, side dies
            self._handshake(side, msg)

    def _handshake(self, side: SideState, msg: HandshakeMessage) -> None:
        t = msg.msg_type
        post = self.handshake_done
        letter = LETTERS.get(t, "z")  # type: ignore[call-overload]
        try:
            if t == _CLIENT_HELLO and side.client:
                self._client_hello(msg, post)
            elif t == _SERVER_HELLO and not side.client:
                sh = parse_server_hello(msg.body)
                if sh.is_hello_retry:
                    letter = "j"
                    self.hello_retry = True
                    if self.sh is None:
                        self.tls13 = True
                else:
                    self._server_hello(sh)
            elif t == _ENCRYPTED_EXTENSIONS and not side.client:
                self.ee = parse_encrypted_extensions(msg.body)
            elif t == _CERTIFICATE:
                self._certificate(side, msg, post)
            elif t == _CERTIFICATE_REQUEST and not side.client:
                self._certificate_request(msg, post)
            elif t == _SERVER_HELLO_DONE and not side.client and not post:
                self.server_hello_done = True
                self.server_hello_done_after_gap = side.gap is not None
            elif t == _CLIENT_KEY_EXCHANGE and side.client and not post:
                if (self.cert_request is not None and self.client_cert is None
                        and side.gap is None):
                    self.client_skipped_cert = True
            elif t == _FINISHED:
                self._finished(side)
            elif t == _HELLO_REQUEST and not side.client and post:
                self._renegotiation(side)
            elif t == _KEY_UPDATE and self.tls13:
                parse_key_update(msg.body)
                self._key_update(side)
        except DecodeError as exc:
            self.note(f"malformed {who(side.direction)} {handshake_name(t)}: {exc}")
        self._add(side, letter)

    def _client_hello(self, msg: HandshakeMessage, post: bool) -> None:
        try:
            ch = parse_client_hello(msg.body)
        except DecodeError:
            if post:
                self._renegotiation(self._client)
            raise
        self.ch_latest = ch
        if self.ch is None:
            self.ch = ch
        elif post:
            self._renegotiation(self._client)

    def _server_hello(self, sh: ServerHello) -> None:
        self.sh_latest = sh
        if self.sh is not None:
            return  # renegotiation: the first handshake's facts stay
        self.sh = sh
        self.tls13 = sh.version == TLS13
        if self.tls13:
            self.resumed = sh.psk_selected
            self._setup13()
        elif self.ch is not None and sh.session_id and sh.session_id == self.ch.session_id:
            self.resumed = True

    def _setup13(self) -> None:
        """TLS 1.3 ServerHello: both sides' traffic keys from the key log (see keystate)."""
        if self.sh is None or self.ch is None:
            return
        self.key_schedule.tls13(
            self.sh.cipher_suite,
            self.ch.random,
            ((s.keys, s.gap is not None) for s in (self._client, self._server)),
            self.note,
        )

    def _certificate(self, side: SideState, msg: HandshakeMessage, post: bool) -> None:
        try:
            cert = parse_certificate(msg.body, tls13=self.tls13)
        except DecodeError:
            if side.client:
                self.client_cert_malformed = True
            else:
                self.server_cert_malformed = True
            raise
        if side.client:
            self.client_cert = cert  # the latest: a PHA or renegotiation answer counts
        elif self.server_cert is None:
            self.server_cert = cert

    def _certificate_request(self, msg: HandshakeMessage, post: bool) -> None:
        where = "handshake" if not post else ("post_handshake" if self.tls13 else "renegotiation")
        if self.cert_request is None:
            self.cert_request_where = where
            self.cert_request = CertificateRequest()  # seen, even if the body is malformed
        try:
            cr = parse_certificate_request(msg.body, tls13=self.tls13)
        except DecodeError:
            raise
        if self.cert_request_where == where:
            self.cert_request = cr

    def _finished(self, side: SideState) -> None:
        if side.finished:
            return
        self._set_finished(side)
        if self.tls13:
            side.keys.finished()

    def _key_update(self, side: SideState) -> None:
        # Later records of this side use the next application key (RFC 8446 §7.2).
        if self.sh is None:
            return
        side.keys.key_update(self.sh.cipher_suite)

    def _renegotiation(self, side: SideState) -> None:
        if not self.renegotiation:
            self.renegotiation = True
            self.note(f"{who(side.direction)} started a renegotiation after the handshake")

    # --- alerts -------------------------------------------------------------------------

    def _alert(self, side: SideState, payload: bytes | None, *, decrypted: bool) -> None:
        after = self.handshake_done
        self._add(side, "l")
        if payload is None:
            info = AlertInfo(
                sender=side.direction,
                level="unknown",
                description="encrypted",
                after_handshake=after,
            )
            self.alerts.append(info)
            if not after and self.fatal is None:
                self.fatal = info
            return
        try:
            alerts = parse_alerts(payload)
        except DecodeError as exc:
            self.note(f"malformed {who(side.direction)} alert: {exc}")
            return
        for a in alerts:
            level = {1: "warning", 2: "fatal"}.get(a.level, "unknown")
            info = AlertInfo(
                sender=side.direction,
                level=level,
                description=alert_name(a.description),
                code=a.description,
                after_handshake=after,
                decrypted=decrypted,
            )
            self.alerts.append(info)
            # RFC 8446 §6: in TLS 1.3 every alert but close_notify/user_canceled is fatal.
            fatal = a.level == 2 or (self.tls13 and a.description not in _NON_FATAL_13)
            if fatal and self.fatal is None:
                self.fatal = info
