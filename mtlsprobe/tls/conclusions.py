"""Observer state -> Observation: what the bytes fed so far add up to.

The boundary: :class:`~mtlsprobe.tls.observer.Observer` reads records, keys, handshake
messages and alerts into its state (:class:`~mtlsprobe.tls.state.ObserverState`); this
module only reads that state (its one write is ``ObserverState.note``) and decides, fact by
fact, whether it was seen, not seen, or could not have been seen. It never looks at bytes.

The one rule that matters most: a fact we could not have seen is UNKNOWN, never NO.
NO needs positive evidence, e.g. (TLS 1.2) ServerHelloDone without a CertificateRequest,
or (TLS 1.3, decrypted) the server's Finished without one.

Gaps (bytes missing from a capture): every fact that needs *all* of a direction
(CertificateRequest NO, client certificate NO, server chain NO, renegotiation NO) stays
UNKNOWN when a gap came before the point that decides it. What was read after a gap (an
alert, a ServerHelloDone) counts.
"""

from __future__ import annotations

import functools

from mtlsprobe.model import (
    CertInfo,
    CertRequestInfo,
    Direction,
    HttpExchange,
    Observation,
    Outcome,
    Seen,
    Stage,
    StreamEnd,
    Transcript,
)
from mtlsprobe.model.certs import CertError, cert_info
from mtlsprobe.tls import fingerprint
from mtlsprobe.tls.constants import cipher_suite_name, signature_scheme_name, version_name
from mtlsprobe.tls.handshake_messages import Certificate
from mtlsprobe.tls.state import ObserverState, SideState

_C2S, _S2C = Direction.C2S, Direction.S2C

# DER -> CertInfo. The same few certificates recur across thousands of connections in a
# capture; CertInfo is frozen, so observations can share one. Bounded: cleared when full.
_CERT_CACHE: dict[bytes, CertInfo] = {}
_CERT_CACHE_MAX = 4096


def _cert_info(der: bytes) -> CertInfo:
    info = _CERT_CACHE.get(der)
    if info is None:
        info = cert_info(der)
        if len(_CERT_CACHE) >= _CERT_CACHE_MAX:
            _CERT_CACHE.clear()
        _CERT_CACHE[der] = info
    return info


# Certificate.certificates (DERs as sent) -> their CertInfos, when every one parsed.
_CHAIN_CACHE: dict[tuple[bytes, ...], tuple[CertInfo, ...]] = {}


@functools.lru_cache(maxsize=1024)
def _version_names(versions: tuple[int, ...]) -> tuple[str, ...]:
    """Names of offered versions (remembered: a capture's hellos offer a few lists)."""
    return tuple(version_name(v) for v in versions)


@functools.lru_cache(maxsize=1024)
def _seen_request(
    authorities: tuple[str, ...], schemes: tuple[int, ...], where: str | None
) -> CertRequestInfo:
    """A CertRequestInfo for a CertificateRequest seen (frozen: observations can share
    one, as they share CertInfos; a capture repeats the same request thousands of times)."""
    return CertRequestInfo(
        seen=Seen.YES,
        authorities=authorities,
        signature_algorithms=tuple(signature_scheme_name(s) for s in schemes),
        where=where,
    )


def conclude(
    obs: ObserverState, transcript: Transcript, *, first_client_at: float | None = None
) -> Observation:
    """The Observation for what ``obs`` read (its streams already ended, see
    ``Observer.close``). Never raises on network bytes.

    ``transcript`` gives the connection's metadata; its chunks are not read again.
    ``first_client_at``: seconds from the first packet to the client's first bytes
    (default: from ``transcript.chunks``), for telling an unanswered hello.
    """
    if first_client_at is None:
        first_client_at = next(
            (c.at for c in transcript.chunks if c.direction is Direction.C2S), None
        )
    if obs.not_tls is not None:
        obs.note(f"server did not answer with TLS: {obs.not_tls}")
    if obs.sides[_C2S].finished_inferred:
        obs.note("TLS 1.3 handshake completion inferred from record shapes (not decrypted)")
    ch, sh = obs.ch, obs.sh
    server_chain, server_seen = _server_chain(obs)
    cert_request = _cert_request_info(obs)
    client_chain, client_seen = _client_chain(obs, cert_request.seen)
    outcome = _outcome(obs, transcript, first_client_at)
    http = transcript.http if transcript.http is not None else _http_exchange(obs)
    alpn = None
    if sh is not None:
        alpn = obs.ee.alpn if obs.tls13 and obs.ee is not None else sh.alpn
    return Observation(
        label=transcript.label,
        client=transcript.client,
        server=transcript.server,
        route=transcript.route,
        observed_at=transcript.started_at,
        attempt=transcript.attempt,
        history="".join(obs.history),
        offered_versions=_version_names(ch.offered_versions) if ch else (),
        version=version_name(sh.version) if sh else None,
        cipher_suite=cipher_suite_name(sh.cipher_suite) if sh else None,
        sni=ch.sni if ch else None,
        alpn_offered=ch.alpn if ch else (),
        alpn=alpn,
        ja3=fingerprint.ja3(ch) if ch else None,
        hello_retry=obs.hello_retry,
        resumed=obs.resumed,
        server_chain=server_chain,
        server_chain_seen=server_seen,
        cert_request=cert_request,
        client_chain=client_chain,
        client_chain_seen=client_seen,
        alerts=tuple(obs.alerts),
        renegotiation=_renegotiation_seen(obs),
        post_handshake_auth_offered=bool(ch and ch.post_handshake_auth),
        outcome=outcome,
        stage=_stage(obs, transcript, http),
        end=transcript.end,
        decrypted=obs.decrypted,
        gaps=transcript.gaps,
        tcp=transcript.tcp,
        http=http,
        server_hello_ms=transcript.server_hello_ms,
        local_error=transcript.local_error,
        notes=(*transcript.notes, *obs.notes),
        ja4=fingerprint.ja4(ch) if ch else None,
        server_extensions=tuple(e.type for e in sh.extensions) if sh else (),
    )


def _infos(obs: ObserverState, cert: Certificate, who: str) -> tuple[CertInfo, ...]:
    chain = _CHAIN_CACHE.get(cert.certificates)
    if chain is not None:
        return chain
    out = []
    for i, der in enumerate(cert.certificates):
        try:
            out.append(_cert_info(der))
        except (CertError, ValueError, TypeError) as exc:
            obs.note(f"{who} certificate #{i} is not a valid certificate: {exc}")
    chain = tuple(out)
    if len(chain) == len(cert.certificates):  # no notes to repeat: safe to remember
        if len(_CHAIN_CACHE) >= _CERT_CACHE_MAX:
            _CHAIN_CACHE.clear()
        _CHAIN_CACHE[cert.certificates] = chain
    return chain


def _server_finished_seen(obs: ObserverState) -> bool:
    s = obs.sides[_S2C]
    return s.finished and not s.finished_inferred


def _server_flight_whole(obs: ObserverState) -> bool:
    """The server's first flight was read to its end (ServerHelloDone, or its Finished)
    with no gap before that end: a message it lacks was not sent."""
    s = obs.sides[_S2C]
    if obs.server_hello_done and not obs.server_hello_done_after_gap:
        return True
    return s.finished and not s.finished_inferred and not _finished_after_gap(s)


def _server_chain(obs: ObserverState) -> tuple[tuple[CertInfo, ...], Seen]:
    if obs.server_cert is not None:
        return _infos(obs, obs.server_cert, "server"), Seen.YES
    if obs.server_cert_malformed:
        return (), Seen.UNKNOWN
    if (obs.sh is not None and (obs.server_hello_done or _server_finished_seen(obs))
            and (obs.sides[_S2C].gap is None or _server_flight_whole(obs))):
        if obs.resumed:
            obs.note("resumed session: no certificates were exchanged on this connection")
        return (), Seen.NO
    return (), Seen.UNKNOWN


def _cert_request_info(obs: ObserverState) -> CertRequestInfo:
    cr = obs.cert_request
    if cr is not None:
        return _seen_request(cr.authority_names, cr.signature_algorithms,
                             obs.cert_request_where)
    if obs.sh is None:
        return CertRequestInfo(seen=Seen.UNKNOWN)
    ended_handshake = obs.server_hello_done or _server_finished_seen(obs)
    if not ended_handshake:
        return CertRequestInfo(seen=Seen.UNKNOWN)
    if obs.sides[_S2C].gap is not None and not _server_flight_whole(obs):
        obs.note(
            "no CertificateRequest read, but bytes missing from the server stream before "
            "the end of its handshake flight could hide one"
        )
        return CertRequestInfo(seen=Seen.UNKNOWN)
    if obs.resumed:
        obs.note(
            "resumed session: no CertificateRequest is sent on a resumed handshake, so it "
            "says nothing about whether the server asks for client certificates"
        )
        return CertRequestInfo(seen=Seen.UNKNOWN)
    if obs.renegotiation_hidden:
        obs.note(
            "no CertificateRequest in the initial handshake, but an encrypted "
            "renegotiation followed: a CertificateRequest in it would be hidden"
        )
        return CertRequestInfo(seen=Seen.UNKNOWN)
    if obs.tls13 and obs.ch is not None and obs.ch.post_handshake_auth:
        obs.note(
            "no CertificateRequest in the handshake; the client offered post-handshake "
            "auth, so the server could still ask later"
        )
    return CertRequestInfo(seen=Seen.NO)


def _client_chain(obs: ObserverState, cr_seen: Seen) -> tuple[tuple[CertInfo, ...], Seen]:
    if obs.client_cert is not None:
        return _infos(obs, obs.client_cert, "client"), Seen.YES
    if obs.client_cert_malformed:
        return (), Seen.UNKNOWN
    if cr_seen is Seen.NO:
        return (), Seen.NO
    client = obs.sides[_C2S]
    if (
        cr_seen is Seen.YES
        and obs.cert_request_where == "handshake"
        and (obs.client_skipped_cert or (client.finished and not client.finished_inferred
                                          and not _finished_after_gap(client)))
    ):
        return (), Seen.NO
    return (), Seen.UNKNOWN


def _renegotiation_seen(obs: ObserverState) -> Seen:
    if obs.renegotiation:
        return Seen.YES
    if obs.tls13:
        return Seen.NO  # RFC 8446 has no renegotiation
    if obs.sides[_C2S].gap is not None or obs.sides[_S2C].gap is not None:
        return Seen.UNKNOWN  # a gap may hide the end of the handshake and what followed
    if obs.sh is None or not obs.handshake_done:
        return Seen.NO
    if any(s.dead is not None for s in obs.sides.values()):
        return Seen.UNKNOWN  # a later part of the stream was not walked
    return Seen.NO


def _outcome(obs: ObserverState, t: Transcript, first_client_at: float | None) -> Outcome:
    client, server = obs.sides[_C2S], obs.sides[_S2C]
    if obs.not_tls is not None:
        return Outcome.NOT_TLS
    if obs.fatal is not None:
        if obs.fatal.sender is Direction.S2C:
            return Outcome.REJECTED_BY_SERVER
        return Outcome.REJECTED_BY_CLIENT
    if any(s.alert_shaped_last for s in obs.sides.values()):
        return Outcome.INCOMPLETE  # looks like an alert, but we could not read it
    if obs.handshake_done:
        return Outcome.ESTABLISHED
    if any(s.dead_at_start for s in obs.sides.values()):
        return Outcome.INCOMPLETE
    if server.bytes == 0:
        if client.bytes == 0:
            return Outcome.INCOMPLETE
        if t.end in (StreamEnd.RST, StreamEnd.FIN):
            return Outcome.ABORTED
        if t.end in (StreamEnd.TIMEOUT, StreamEnd.CLOSED_BY_US) or _hello_ignored(
            t, first_client_at
        ):
            return Outcome.NO_ANSWER
        return Outcome.INCOMPLETE
    if t.gaps or obs.sides[_C2S].gap is not None or obs.sides[_S2C].gap is not None:
        return Outcome.INCOMPLETE
    if t.end in (StreamEnd.RST, StreamEnd.FIN, StreamEnd.CLOSED_BY_US):
        return Outcome.ABORTED
    return Outcome.INCOMPLETE


def _http_exchange(obs: ObserverState) -> HttpExchange | None:
    """The first HTTP/1.x exchange read from decrypted application data (captures)."""
    exchange = obs.http.exchange()
    if exchange is not None and not obs.http.head_complete:
        obs.note(
            "HTTP response head not complete in the application data examined: "
            "its headers are partial"
        )
    return exchange


def _stage(obs: ObserverState, t: Transcript, http: HttpExchange | None) -> Stage:
    if t.failed_stage is not None:
        return t.failed_stage
    if not obs.handshake_done:
        return Stage.HANDSHAKE
    server = obs.sides[_S2C]
    fatal_after = obs.fatal is not None and obs.fatal.after_handshake
    ended = t.end in (StreamEnd.RST, StreamEnd.FIN) or any(
        s.alert_shaped_last for s in obs.sides.values()
    )
    if fatal_after or (ended and not server.app_data):
        return Stage.FIRST_READ
    if http is not None and (http.error or (http.status is not None and http.status >= 400)):
        return Stage.HTTP
    return Stage.ESTABLISHED


def _finished_after_gap(side: SideState) -> bool:
    """Whether a side's Finished was read only after a gap in its direction."""
    return side.gap is not None and side.gap.finished_after


# RFC 6298 §2.1 / RFC 9293: the first retransmission of a SYN or SYN-ACK comes after an
# initial RTO of 1 s (Linux TCP_TIMEOUT_INIT; 3 s in older stacks), never sooner.
_SYN_RTO = 1.0


def _hello_ignored(t: Transcript, first: float | None) -> bool:
    """A capture that ended with the client's hello retransmitted and no segment at all
    from the server after its SYN-ACK: the hello went unanswered (dropped on the path).

    ``tcp.retransmissions`` also counts repeated SYNs and SYN-ACKs, so it is only taken as
    the hello's when the client's first bytes came within one initial RTO of the first
    packet: a SYN or SYN-ACK retransmission cannot have happened that early. A capture
    merely cut off after the hello has no retransmission and stays INCOMPLETE.
    """
    tcp = t.tcp
    if t.end is not StreamEnd.CAPTURE_ENDED or tcp is None or t.gaps or t.truncated_at_start:
        return False
    if tcp.retransmissions == 0 or tcp.server_ttls or tcp.rst_from or tcp.synack_ttl is None:
        return False
    return first is not None and first < _SYN_RTO

