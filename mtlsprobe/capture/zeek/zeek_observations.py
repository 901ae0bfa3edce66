"""One ssl.log row (with the x509 index) -> the ``Observation`` the capture path produces.

The mapping follows Zeek's own scripts (zeek/zeek, scripts/base/protocols/ssl/main.zeek and
files.zeek, policy/protocols/ssl/certificate-request-info.zeek):

- ``ssl_history``: one letter per message, upper case sent by the client, lower case by the
  server (``^`` first: the TLS client is the connection's responder). ``c`` ClientHello,
  ``s`` ServerHello, ``j`` HelloRetryRequest, ``x`` Certificate, ``k`` ServerKeyExchange,
  ``r`` CertificateRequest, ``n`` ServerHelloDone, ``y`` CertificateVerify, ``g``
  ClientKeyExchange, ``i`` ChangeCipherSpec, ``l`` alert, ``t`` NewSessionTicket, ``o``
  EncryptedExtensions, ... It is the same convention as ``Observation.history``.
- ``cert_chain_fps``/``client_cert_chain_fps``: SHA-256 of each DER certificate, leaf first,
  filled by files.zeek's ``ssl_finishing`` hook; their certificates are in x509.log.
- ``last_alert``: the last alert only, without its level; the history says who sent it.
- ``established``: both sides started encrypting (``ssl_established``); Zeek then writes the
  row and stops reading (``disable_analyzer_after_detection``). In TLS 1.0-1.2 the server's
  ChangeCipherSpec follows its check of the client's certificate, so it is acceptance; in
  TLS 1.3 it proves nothing about client authentication.
- ``requested_client_certificate_authorities`` (certificate-request-info.zeek): the CA list.

What Zeek cannot see stays ``Seen.UNKNOWN``, never ``NO``, as for a capture without a key
log: in TLS 1.3 the CertificateRequest, both chains and a rejection are encrypted; a resumed
session shows no CertificateRequest or client Certificate whatever the server's policy; a row
that ended before the messages that would have carried a fact says nothing of it; a failed
row whose chain fingerprints are missing (older Zeek versions dropped them on protocol
errors) does not show what was sent. ``NO`` needs the message that would have preceded it
in the clear: ServerHelloDone (``n``) for CertificateRequest, ClientKeyExchange (``G``) for
the client's Certificate.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from mtlsprobe.capture.zeek.zeek_format import Row
from mtlsprobe.capture.zeek.zeek_x509 import EPOCH, X509Index, parse_time
from mtlsprobe.model import (
    AlertInfo,
    CertInfo,
    CertRequestInfo,
    Direction,
    Endpoint,
    Observation,
    Outcome,
    Route,
    Seen,
    Stage,
    StreamEnd,
)

ZEEK_ROUTE = Route(kind="capture", source="zeek")
REQUIRED = ("id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "ssl_history")
TLS13_NOTE = (
    "Zeek log, TLS 1.3: the CertificateRequest, both certificate chains and a rejection are "
    "encrypted, so they are unknown; established=T proves nothing about client authentication"
)
DROPPED_NOTE = (
    "Zeek log: the row failed with certificates in its history but no fingerprints (older Zeek "
    "versions drop them on protocol errors): the chains sent are unknown"
)
ONE_SIDED_NOTE = (
    "Zeek log: only the client's messages are in the history (one direction missed: "
    "asymmetric routing or a tap that sees one side), so how the server answered is unknown"
)
_NOT_FATAL = ("close_notify", "user_canceled")


def zeek_version(text: str | None) -> str | None:
    """Zeek's version names (``TLSv12``, ``TLSv13-draft14``) -> ours (``TLSv1.2``)."""
    if not text:
        return None
    base = text.split("-", 1)[0]
    if base.startswith("TLSv1") and len(base) == 6 and base[5].isdigit():
        return f"TLSv1.{base[5]}"
    return text


def _text(row: Row, key: str) -> str | None:
    value = row.get(key)
    return value if isinstance(value, str) and value else None


def _fps(row: Row, key: str) -> list[str] | None:
    value = row.get(key)
    if isinstance(value, list):
        return [v.lower() for v in value if v]
    return None if value is None else [value.lower()] if isinstance(value, str) else None


def _port(text: str | None) -> int:
    try:
        return int((text or "0").split("/")[0])
    except ValueError:
        return 0


class RowMapper:
    """ssl.log rows of one file -> Observations (``observation``), sharing the x509 index."""

    def __init__(self, name: str, index: X509Index) -> None:
        self.name = name
        self.index = index
        self.unreadable_ts = 0

    def observation(self, row: Row, line_no: int) -> Observation:
        """The row's Observation; ``line_no`` (its number among the file's rows) labels it."""
        history = _text(row, "ssl_history") or ""
        flipped = history.startswith("^")
        history = history.lstrip("^")
        orig = Endpoint(host=_text(row, "id.orig_h") or "", port=_port(_text(row, "id.orig_p")),
                        ip=_text(row, "id.orig_h"))
        resp = Endpoint(host=_text(row, "id.resp_h") or "", port=_port(_text(row, "id.resp_p")),
                        ip=_text(row, "id.resp_h"))
        client, server = (resp, orig) if flipped else (orig, resp)
        version = zeek_version(_text(row, "version"))
        established = row.get("established") is True
        resumed = row.get("resumed") is True
        failed = not established
        notes: list[str] = []
        hidden = version == "TLSv1.3"
        if hidden:
            notes.append(TLS13_NOTE)

        server_fps, client_fps = _fps(row, "cert_chain_fps"), _fps(row, "client_cert_chain_fps")
        dropped = failed and ("x" in history or "X" in history) and not (server_fps or client_fps)
        if dropped:
            notes.append(DROPPED_NOTE)
        server_chain, server_seen = self._server_chain(history, server_fps, hidden, resumed,
                                                       dropped)
        client_chain, client_seen = self._client_chain(history, client_fps, hidden, resumed,
                                                       dropped)
        server_chain = _named_leaf(server_chain, row, "subject", "issuer")
        client_chain = _named_leaf(client_chain, row, "client_subject", "client_issuer")
        alerts = self._alerts(row, history, established)
        outcome = _outcome(established, alerts)
        if not established and history[1:] and history.isupper():  # the client's side alone
            notes.append(ONE_SIDED_NOTE)
            outcome = Outcome.INCOMPLETE
        uid = _text(row, "uid") or ""
        return Observation(
            label=f"{self.name}:{line_no} {uid}".strip(),
            client=client,
            server=server,
            route=ZEEK_ROUTE,
            observed_at=self._when(row),
            history=history,
            version=version,
            cipher_suite=_text(row, "cipher"),
            sni=_text(row, "server_name"),
            alpn=_text(row, "next_protocol"),
            hello_retry="j" in history,
            resumed=resumed,
            server_chain=server_chain,
            server_chain_seen=server_seen,
            cert_request=self._cert_request(row, history, hidden, resumed),
            client_chain=client_chain,
            client_chain_seen=client_seen,
            alerts=alerts,
            outcome=outcome,
            stage=Stage.ESTABLISHED if established else Stage.HANDSHAKE,
            end=StreamEnd.CAPTURE_ENDED,
            notes=tuple(notes),
        )

    def _when(self, row: Row) -> datetime:
        when = parse_time(row.get("ts"))
        if when is None:
            self.unreadable_ts += 1
            return EPOCH
        return when

    def _server_chain(self, history: str, fps: list[str] | None, hidden: bool, resumed: bool,
                      dropped: bool) -> tuple[tuple[CertInfo, ...], Seen]:
        if "x" in history:
            if fps:
                return self.index.chain(fps), Seen.YES
            return (), Seen.UNKNOWN  # sent, but Zeek could not hash it (or dropped it)
        if hidden or dropped or not ("n" in history or "G" in history or resumed):
            return (), Seen.UNKNOWN
        return (), Seen.NO  # past the point where a TLS 1.0-1.2 server sends it

    def _client_chain(self, history: str, fps: list[str] | None, hidden: bool, resumed: bool,
                      dropped: bool) -> tuple[tuple[CertInfo, ...], Seen]:
        if "X" in history:
            if dropped:
                return (), Seen.UNKNOWN
            return self.index.chain(fps or []), Seen.YES  # () is an empty Certificate message
        if hidden or resumed or "G" not in history:
            return (), Seen.UNKNOWN
        return (), Seen.NO  # ClientKeyExchange came without a Certificate before it

    def _cert_request(self, row: Row, history: str, hidden: bool,
                      resumed: bool) -> CertRequestInfo:
        if "r" in history:
            cas = row.get("requested_client_certificate_authorities", False)
            if cas is False:  # no certificate-request-info column: the CA list is not known
                return CertRequestInfo(seen=Seen.YES, where="handshake", authorities_seen=False)
            authorities = tuple(cas) if isinstance(cas, list) else ()
            return CertRequestInfo(seen=Seen.YES, authorities=authorities, where="handshake")
        if hidden or resumed or "n" not in history:
            return CertRequestInfo(seen=Seen.UNKNOWN)
        return CertRequestInfo(seen=Seen.NO)

    @staticmethod
    def _alerts(row: Row, history: str, established: bool) -> tuple[AlertInfo, ...]:
        """The last alert (Zeek keeps no other), from whoever sent the last ``l``/``L``."""
        at = max(history.rfind("l"), history.rfind("L"))
        if at < 0:
            return ()
        sender = Direction.C2S if history[at] == "L" else Direction.S2C
        handshake_end = max(history.rfind("i"), history.rfind("I"))
        return (AlertInfo(
            sender=sender,
            level="unknown",
            description=_text(row, "last_alert") or "encrypted",
            after_handshake=established and at > handshake_end,
        ),)


def _named_leaf(chain: tuple[CertInfo, ...], row: Row, subject_key: str,
                issuer_key: str) -> tuple[CertInfo, ...]:
    """A leaf without an x509.log row, named from ssl.log's own subject/issuer columns
    (files.zeek's ``log_include_server_certificate_subject_issuer`` and its client twin)."""
    subject, issuer = _text(row, subject_key), _text(row, issuer_key)
    if not chain or chain[0].known_by != "fingerprint" or not (subject and issuer):
        return chain
    leaf = dataclasses.replace(chain[0], subject=subject, issuer=issuer,
                               self_issued=subject == issuer, known_by="names")
    return (leaf, *chain[1:])


def _outcome(established: bool, alerts: tuple[AlertInfo, ...]) -> Outcome:
    if established:
        return Outcome.ESTABLISHED
    if alerts and alerts[-1].description not in _NOT_FATAL:
        return (Outcome.REJECTED_BY_SERVER if alerts[-1].sender is Direction.S2C
                else Outcome.REJECTED_BY_CLIENT)
    return Outcome.ABORTED
