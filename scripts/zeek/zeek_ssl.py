"""One TLS connection's ssl.log row, as Zeek's SSL analyzer and scripts would fill it.

Used by ``zeek_logs_from_capture.py``; records and handshake messages are cut by the
project's own code (``mtlsprobe.tls.records``, ``handshake_framing``, ``hellos``,
``handshake_messages``). What Zeek does, from zeek/zeek (commit in ``zeek_consts.json``):

- ``src/analyzer/protocol/ssl/ssl-protocol.pac`` / ``ssl-dtls-protocol.pac``: a side is
  in clear until its ChangeCipherSpec (TLS <= 1.2; a CCS is ignored for the state in
  TLS 1.3) or, once TLS 1.3 is negotiated, its first application_data record; records of
  an encrypted side are ciphertext. The record version must be SSLv3 to TLS 1.2, the
  first record's type 20-30, else the analyzer stops (a violation).
- ``ssl-dtls-analyzer.pac``: a ciphertext record while both sides are encrypted raises
  ``ssl_established``; ``scripts/base/protocols/ssl/main.zeek`` then writes the row and
  detaches the analyzer, so nothing later (a TLS 1.3 client certificate, its rejection)
  reaches the log. Without that, the row is written at a violation or when the
  connection ends. A content gap stops the analyzer too (``SSL.cc``, ``had_gap``).
- ``main.zeek``: the ssl_history letters (client upper case; ``c`` s h v t e j o x k r n y
  g f w u a p m z, ``j`` for a ServerHello that is a HelloRetryRequest, ``i`` CCS, ``l``
  alert, ``b`` heartbeat; at most 100), version (supported_versions beats the ServerHello
  version), cipher, curve (ECDHE ServerKeyExchange or TLS 1.3 key_share), server_name
  (first SNI), resumed (session id echoed, a ticket with an empty id and a CCS before any
  ClientKeyExchange, or a PSK accepted), last_alert, next_protocol (server ALPN).
- ``files.zeek``: cert_chain_fps / client_cert_chain_fps (SHA-256 of the DER, as sent;
  both become empty vectors at the first certificate of either side), subject / issuer /
  client_subject / client_issuer of each leaf, sni_matches_cert.
- ``policy/protocols/ssl/certificate-request-info.zeek``: the CertificateRequest's CA
  names (TLS <= 1.2; in TLS 1.3 it is encrypted).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from zeek_x509 import X509Facts, dn_string, hostname_matches, x509_facts

from mtlsprobe.tls.extensions import parse_extensions
from mtlsprobe.tls.handshake_framing import HandshakeAssembler
from mtlsprobe.tls.handshake_messages import parse_certificate, parse_certificate_request
from mtlsprobe.tls.hellos import ServerHello, parse_client_hello, parse_server_hello
from mtlsprobe.tls.reader import DecodeError, Reader
from mtlsprobe.tls.records import Record, RecordSplitter

CONSTS = json.loads((Path(__file__).with_name("zeek_consts.json")).read_text())
TLS13 = 0x0304
_RECORD_VERSIONS = frozenset({0x0300, 0x0301, 0x0302, 0x0303})
_PRE13 = frozenset({0x0002, 0x0300, 0x0301, 0x0302, 0x0303})
_LETTERS = {0: "h", 1: "c", 2: "s", 3: "v", 4: "t", 5: "e", 6: "j", 8: "o", 11: "x",
            12: "k", 13: "r", 14: "n", 15: "y", 16: "g", 20: "f", 21: "w", 22: "u",
            23: "a", 24: "p", 254: "m"}
MAX_HISTORY = 100  # SSL::max_ssl_history_length
MAX_ALERTS_PER_RECORD = 10  # SSL::max_alerts_per_record (src/const.bif)
_SESSION_TICKET, _PRE_SHARED_KEY, _KEY_SHARE, _KEY_SHARE_OLD = 35, 41, 51, 40  # 40: drafts <= 22


def zeek_name(table: str, number: int) -> str:
    """A name from one of Zeek's SSL tables, or Zeek's ``&default`` for it."""
    name = CONSTS[table].get(str(number))
    if name is not None:
        return str(name)
    if table == "version_strings" and number // 0xFF == 0x7F:
        return f"TLSv13-draft{number % 0x7F}"
    return f"unknown-{number}"


def _draft_server_hello(body: bytes) -> ServerHello:
    """A TLS 1.3 draft (0x7fXX) ServerHello: version, random, cipher, extensions; no
    session id or compression (draft-ietf-tls-tls13-14 §4.1.3; Zeek's ServerHello parser
    in tls-handshake-protocol.pac reads it so)."""
    r = Reader(body, "ServerHello")
    version = r.u16()
    random = r.bytes(32)
    suite = r.u16()
    exts = parse_extensions(r)
    group = next((int.from_bytes(e.data[:2], "big") for e in exts
                  if e.type in (_KEY_SHARE, _KEY_SHARE_OLD) and len(e.data) >= 2), None)
    return ServerHello(legacy_version=version, random=random, session_id=b"",
                       cipher_suite=suite, compression_method=0, extensions=exts,
                       key_share_group=group,
                       psk_selected=any(e.type == _PRE_SHARED_KEY for e in exts))


@dataclass
class CertFile:
    """One certificate as Zeek's file analysis sees it (one x509.log row)."""

    ts: float
    der: bytes
    fingerprint: str
    host_cert: bool
    client_cert: bool
    facts: X509Facts | None


@dataclass
class SslInfo:
    """The ``SSL::Info`` fields we log, filled as the records go by."""

    ts: float | None = None
    version: str | None = None
    version_num: int | None = None
    cipher: str | None = None
    cipher_num: int | None = None
    curve: str | None = None
    server_name: str | None = None
    session_id: str | None = None
    resumed: bool = False
    ticket_empty_session: bool = False
    client_key_exchange_seen: bool = False
    client_psk_seen: bool = False
    last_alert: str | None = None
    next_protocol: str | None = None
    established: bool = False
    history: str = ""
    hrr_seen: bool = False
    server_certs: list[CertFile] | None = None
    client_certs: list[CertFile] | None = None
    requested_cas: list[str] | None = None
    logged_at: float | None = None  # when Zeek writes the row (None: connection end)


@dataclass
class _Side:
    client: bool
    splitter: RecordSplitter = field(default_factory=RecordSplitter)
    assembler: HandshakeAssembler = field(default_factory=HandshakeAssembler)
    encrypted: bool = False
    fed: bytearray = field(default_factory=bytearray)  # every byte fed (handshakes are small)
    done: int = 0  # records processed


class ZeekSsl:
    """Feed one connection's bytes in capture order; read ``info`` (and ``files``)."""

    def __init__(self) -> None:
        self.info = SslInfo()
        self.files: list[CertFile] = []
        self.stopped = False  # analyzer detached (established, violation or gap)
        self._sides = {True: _Side(True), False: _Side(False)}
        self._record_version: int | None = None
        self._now = 0.0

    # --- input ------------------------------------------------------------------

    def feed(self, client: bool, at: float, data: bytes) -> None:
        if self.stopped:
            return
        self._now = at
        side = self._sides[client]
        side.fed += data
        try:
            records = side.splitter.feed(data)
        except DecodeError:
            records = self._before_error(side)
        for rec in records:
            if self.stopped:
                return
            self._record(side, rec)
            side.done += 1
        if side.splitter.error is not None:
            self._violation()

    @staticmethod
    def _before_error(side: _Side) -> list[Record]:
        """The records before a bad header that one ``feed`` call completed with it (the
        splitter's error drops them): the side's bytes again, a byte at a time. Zeek
        parses them before it meets the bad header."""
        splitter = RecordSplitter()
        records: list[Record] = []
        for i in range(len(side.fed)):
            try:
                records += splitter.feed(side.fed[i : i + 1])
            except DecodeError:
                break
        return records[side.done :]

    def gap(self, at: float) -> None:
        """Bytes missing: Zeek's SSL analyzer delivers nothing more (``had_gap``)."""
        self.stopped = True

    # --- records ----------------------------------------------------------------

    def _session(self) -> None:
        if self.info.ts is None:
            self.info.ts = self._now

    def _violation(self) -> None:
        if self.info.ts is not None and self.info.logged_at is None:
            self.info.logged_at = self._now
        self.stopped = True

    def _add(self, client: bool, letter: str) -> None:
        if len(self.info.history) < MAX_HISTORY:
            self.info.history += letter.upper() if client else letter.lower()

    def _negotiated(self) -> int:
        return self.info.version_num if self.info.version_num is not None else 0

    def _tls13(self) -> bool:
        v = self._negotiated()
        return v == TLS13 or v // 0xFF == 0x7F

    def _record(self, side: _Side, rec: Record) -> None:
        if rec.version not in _RECORD_VERSIONS or (
                self._record_version is None and not 20 <= rec.content_type <= 30):
            self._violation()
            return
        self._record_version = rec.version
        ctype = rec.content_type
        if not side.encrypted and ctype == 23 and self._negotiated() not in _PRE13:
            side.encrypted = True
        if side.encrypted:
            other = self._sides[not side.client]
            if other.encrypted and not self.info.established:
                self.info.established = True
                self.info.logged_at = self._now
                self.stopped = True  # disable_analyzer_after_detection
            return
        self._session()
        if ctype == 20:
            self._add(side.client, "i")
            if self.info.client_key_exchange_seen is False and side.client and \
                    self.info.ticket_empty_session:
                self.info.resumed = True
            if not self._tls13():
                side.encrypted = True
        elif ctype == 21:
            limit = 1 if self._tls13() else MAX_ALERTS_PER_RECORD
            payload = rec.payload[: 2 * limit]
            for i in range(0, len(payload) - 1, 2):
                self._add(side.client, "l")
                self.info.last_alert = zeek_name("alert_descriptions", payload[i + 1])
        elif ctype == 22:
            try:
                messages = side.assembler.feed(rec.payload)
            except DecodeError:
                self._violation()
                return
            for msg in messages:
                self._handshake(side.client, msg.msg_type, msg.body)
        elif ctype == 24:
            self._add(side.client, "b")
        elif ctype != 23:
            self._violation()

    # --- handshake messages -----------------------------------------------------

    def _handshake(self, client: bool, mtype: int, body: bytes) -> None:
        letter = _LETTERS.get(mtype, "z")
        try:
            if mtype == 1 and client:
                self._client_hello(body)
            elif mtype == 2 and not client:
                self._server_hello(body)
                if self.info.hrr_seen:
                    letter, self.info.hrr_seen = "j", False
            elif mtype == 11:
                self._certificate(client, body)
            elif mtype == 12 and not client:
                self._server_key_exchange(body)
            elif mtype == 13 and not client and not self._tls13():
                req = parse_certificate_request(body, tls13=False)
                self.info.requested_cas = [dn_string(ca) for ca in req.authorities]
        except (DecodeError, ValueError):
            pass  # Zeek's parser would raise a violation; the letter is still added
        if mtype == 16 and client:
            self.info.client_key_exchange_seen = True
        self._add(client, letter)

    def _client_hello(self, body: bytes) -> None:
        ch = parse_client_hello(body)
        info = self.info
        for ext in ch.extensions:
            if ext.type == _SESSION_TICKET and ext.data:
                info.ticket_empty_session = True
            elif ext.type == _PRE_SHARED_KEY:
                info.client_psk_seen = True
        if ch.sni is not None:
            info.server_name = ch.sni
        if ch.session_id and ch.session_id != bytes(32):
            info.session_id = ch.session_id.hex()
            info.ticket_empty_session = False

    def _server_hello(self, body: bytes) -> None:
        sh = _draft_server_hello(body) if body[:1] == b"\x7f" else parse_server_hello(body)
        info = self.info
        if sh.selected_version is not None:
            info.version_num = sh.selected_version
            info.version = zeek_name("version_strings", sh.selected_version)
        group = sh.key_share_group
        if group is None:  # drafts <= 22 (and experiments on them) numbered key_share 40
            group = next((int.from_bytes(e.data[:2], "big") for e in sh.extensions
                          if e.type == _KEY_SHARE_OLD and len(e.data) >= 2), None)
        if group is not None:
            info.curve = zeek_name("ec_curves", group)
        if sh.alpn is not None:
            info.next_protocol = sh.alpn
        if sh.psk_selected and info.client_psk_seen:
            info.resumed = True
        if info.version_num is None:
            info.version_num = sh.legacy_version
            info.version = zeek_name("version_strings", sh.legacy_version)
        info.cipher_num = sh.cipher_suite
        info.cipher = zeek_name("cipher_desc", sh.cipher_suite)
        if sh.is_hello_retry:
            info.hrr_seen = True
        v = info.version_num
        if (info.session_id is not None and info.session_id == sh.session_id.hex()
                and v // 0xFF != 0x7F and v != TLS13):
            info.resumed = True

    def _server_key_exchange(self, body: bytes) -> None:
        cipher = self.info.cipher or ""
        if ("_ECDHE_" in cipher or "_ECDH_anon_" in cipher) and len(body) >= 3 \
                and body[0] == 3:  # ECParameters: named_curve
            self.info.curve = zeek_name("ec_curves", int.from_bytes(body[1:3], "big"))

    def _certificate(self, client: bool, body: bytes) -> None:
        chain = parse_certificate(body, tls13=self._tls13()).certificates
        info = self.info
        for depth, der in enumerate(chain):
            try:
                facts: X509Facts | None = x509_facts(der)
            except ValueError:
                facts = None
            cert = CertFile(ts=self._now, der=der, fingerprint=hashlib.sha256(der).hexdigest(),
                            host_cert=depth == 0, client_cert=client, facts=facts)
            self.files.append(cert)
            if info.server_certs is None or info.client_certs is None:
                info.server_certs, info.client_certs = [], []
            (info.client_certs if client else info.server_certs).append(cert)

    # --- the row ----------------------------------------------------------------

    def sni_matches_cert(self) -> bool | None:
        certs = self.info.server_certs
        if not certs or self.info.server_name is None or certs[0].facts is None:
            return None
        return hostname_matches(certs[0].facts.dns_names, self.info.server_name)
