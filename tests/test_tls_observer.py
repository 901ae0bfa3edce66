"""Observer on real bytes (tlsgen) and on hand-cut transcripts: facts, UNKNOWNs, outcomes."""

from __future__ import annotations

import dataclasses
import functools
import ssl

import pytest
import tlsgen

from mtlsprobe.model import (
    Chunk,
    Direction,
    Gap,
    HttpExchange,
    Outcome,
    Seen,
    Stage,
    StreamEnd,
    TcpFacts,
    Transcript,
)
from mtlsprobe.tls.observer import observe

CA = "O=Example Agents,CN=tlsgen Client CA"
C2S, S2C = Direction.C2S, Direction.S2C


@functools.cache
def gen(**kw) -> Transcript:
    return tlsgen.run(**kw)


def rebuild(t: Transcript, **changes) -> Transcript:
    return dataclasses.replace(t, **changes)


# (version, client cert) -> expected (client_chain, alert from server, after_handshake,
#                                      outcome, stage) when the key log is available
MATRIX = {
    ("TLSv1.3", None): (
        (),
        "certificate_required",
        True,
        Outcome.REJECTED_BY_SERVER,
        Stage.FIRST_READ,
    ),
    ("TLSv1.3", "other"): (
        ("stranger",),
        "unknown_ca",
        True,
        Outcome.REJECTED_BY_SERVER,
        Stage.FIRST_READ,
    ),
    ("TLSv1.3", "good"): (("agent-1",), None, None, Outcome.ESTABLISHED, Stage.ESTABLISHED),
    ("TLSv1.2", None): (
        (),
        "handshake_failure",
        False,
        Outcome.REJECTED_BY_SERVER,
        Stage.HANDSHAKE,
    ),
    ("TLSv1.2", "other"): (
        ("stranger",),
        "unknown_ca",
        False,
        Outcome.REJECTED_BY_SERVER,
        Stage.HANDSHAKE,
    ),
    ("TLSv1.2", "good"): (("agent-1",), None, None, Outcome.ESTABLISHED, Stage.ESTABLISHED),
}


@pytest.mark.parametrize("keylog", [True, False], ids=["keylog", "nokeylog"])
@pytest.mark.parametrize(("version", "cert"), list(MATRIX))
def test_scenario_matrix(version, cert, keylog):
    t = gen(version=version, client_cert=cert, keylog=keylog)
    obs = observe(t)
    chain, alert, after, outcome, stage = MATRIX[(version, cert)]
    assert obs.version == version and obs.sni == "server.test"
    hidden = version == "TLSv1.3" and not keylog
    if hidden:
        # TLS 1.3 without keys: the mTLS facts are encrypted, so UNKNOWN (never NO).
        assert obs.server_chain_seen is Seen.UNKNOWN and obs.server_chain == ()
        assert obs.cert_request.seen is Seen.UNKNOWN
        assert obs.client_chain_seen is Seen.UNKNOWN
        assert obs.alerts == ()
        assert any("without a key log" in n for n in obs.notes)
        assert not obs.decrypted
        if alert:
            assert any("shape of an encrypted alert" in n for n in obs.notes)
            assert obs.outcome is Outcome.INCOMPLETE
            assert obs.stage is Stage.FIRST_READ
        else:
            assert obs.outcome is Outcome.ESTABLISHED
        return
    assert obs.server_chain_seen is Seen.YES
    assert obs.server_chain[0].san_dns == ("server.test",)
    assert obs.cert_request.seen is Seen.YES
    assert obs.cert_request.authorities == (CA,)
    assert obs.cert_request.where == "handshake"
    assert obs.cert_request.signature_algorithms
    assert obs.client_chain_seen is Seen.YES
    assert tuple(c.subject.split("CN=")[1] for c in obs.client_chain) == chain
    if alert:
        fatal = [a for a in obs.alerts if a.level == "fatal"]
        assert fatal[0].sender is S2C and fatal[0].description == alert
        assert fatal[0].after_handshake is after
        assert fatal[0].decrypted is (version == "TLSv1.3")
    else:
        assert obs.alerts == ()
    assert obs.outcome is outcome and obs.stage is stage
    assert obs.decrypted is keylog
    assert obs.label == t.label and obs.observed_at == t.started_at and obs.end is t.end
    assert obs.local_error == t.local_error and obs.ja3 and obs.offered_versions


def test_history_letters():
    assert observe(gen(version="TLSv1.3", client_cert=None)).history == "CsiorxyfIXFl"
    assert observe(gen(version="TLSv1.2", client_cert="good")).history == "CsxkrnXGYIFtif"


def test_server_that_does_not_ask_for_a_certificate():
    for version in ("TLSv1.2", "TLSv1.3"):
        obs = observe(gen(version=version, verify=ssl.CERT_NONE, client_cert="good"))
        assert obs.cert_request.seen is Seen.NO
        assert obs.client_chain_seen is Seen.NO
        assert obs.outcome is Outcome.ESTABLISHED


def test_optional_client_auth_without_certificate():
    obs = observe(gen(version="TLSv1.3", verify=ssl.CERT_OPTIONAL, client_cert=None))
    assert obs.cert_request.seen is Seen.YES and obs.client_chain_seen is Seen.YES
    assert obs.client_chain == () and obs.outcome is Outcome.ESTABLISHED


def test_empty_ca_list_is_a_fact_too():
    obs = observe(gen(version="TLSv1.2", client_ca_list=False, client_cert="good"))
    assert obs.cert_request.seen is Seen.YES and obs.cert_request.authorities == ()


def test_post_handshake_auth():
    t = gen(version="TLSv1.3", post_handshake_auth=True, request_pha=True)
    obs = observe(t)
    assert obs.post_handshake_auth_offered
    assert obs.cert_request.seen is Seen.YES and obs.cert_request.where == "post_handshake"
    assert obs.cert_request.authorities == (CA,)
    assert obs.client_chain_seen is Seen.YES and obs.client_chain[0].subject.endswith("agent-1")


def test_pha_offered_but_not_used_is_noted():
    obs = observe(gen(version="TLSv1.3", verify=ssl.CERT_NONE, post_handshake_auth=True))
    assert obs.post_handshake_auth_offered and obs.cert_request.seen is Seen.NO
    assert any("post-handshake auth" in n for n in obs.notes)


def test_alpn_and_sni():
    for version in ("TLSv1.2", "TLSv1.3"):
        obs = observe(gen(version=version, alpn=("h2", "http/1.1"), server_alpn=("http/1.1",)))
        assert obs.alpn_offered == ("h2", "http/1.1") and obs.alpn == "http/1.1"
    obs = observe(gen(version="TLSv1.3", sni=None))
    assert obs.sni is None


def test_server_application_data_makes_it_established():
    obs = observe(rebuild(gen(version="TLSv1.3", server_says=b"hello"), end=StreamEnd.FIN))
    assert obs.stage is Stage.ESTABLISHED and obs.outcome is Outcome.ESTABLISHED
    obs = observe(rebuild(gen(version="TLSv1.3"), end=StreamEnd.FIN))
    assert obs.stage is Stage.FIRST_READ  # EOF right after the handshake


def test_http_stage():
    t = rebuild(gen(version="TLSv1.2", server_says=b"x"), http=HttpExchange(path="/", status=403))
    assert observe(t).stage is Stage.HTTP


def test_not_tls_answer():
    t = gen(version="TLSv1.3")
    ch = t.chunks[0]
    bad = Chunk(direction=S2C, at=0.1, data=b"HTTP/1.1 400 Bad Request\r\nServer: x\r\n\r\n")
    obs = observe(rebuild(t, chunks=(ch, bad), end=StreamEnd.FIN))
    assert obs.outcome is Outcome.NOT_TLS
    assert any("HTTP/1.1 400 Bad Request" in n for n in obs.notes)
    assert obs.server_chain_seen is Seen.UNKNOWN and obs.cert_request.seen is Seen.UNKNOWN


def test_no_answer_and_reset():
    t = gen(version="TLSv1.3")
    only_hello = rebuild(t, chunks=t.chunks[:1], end=StreamEnd.TIMEOUT)
    assert observe(only_hello).outcome is Outcome.NO_ANSWER
    assert observe(rebuild(only_hello, end=StreamEnd.RST)).outcome is Outcome.ABORTED
    # RST after the server's first flight, before the client answered (TLS 1.2: plaintext)
    t12 = gen(version="TLSv1.2")
    cut = rebuild(t12, chunks=t12.chunks[:2], end=StreamEnd.RST)
    obs = observe(cut)
    assert obs.outcome is Outcome.ABORTED and obs.stage is Stage.HANDSHAKE
    assert obs.cert_request.seen is Seen.YES  # already seen before the reset
    assert obs.client_chain_seen is Seen.UNKNOWN


def test_cut_before_server_hello_done_leaves_certificate_request_unknown():
    t = gen(version="TLSv1.2", verify=ssl.CERT_NONE)
    server_flight = t.chunks[1].data
    cut = rebuild(
        t,
        chunks=(t.chunks[0], Chunk(direction=S2C, at=1, data=server_flight[:200])),
        end=StreamEnd.CAPTURE_ENDED,
    )
    obs = observe(cut)
    assert obs.cert_request.seen is Seen.UNKNOWN and obs.outcome is Outcome.INCOMPLETE
    assert any("ended inside a record" in n for n in obs.notes)
    full = observe(t)
    assert full.cert_request.seen is Seen.NO


def test_gap_in_server_stream_makes_facts_unknown():
    t = gen(version="TLSv1.2", verify=ssl.CERT_NONE)
    gap = Gap(direction=S2C, offset=100, length=50)
    s = t.chunks[1].data
    chunks = (t.chunks[0], Chunk(direction=S2C, at=1, data=s[:100] + s[150:]), *t.chunks[2:])
    obs = observe(rebuild(t, chunks=chunks, gaps=(gap,), end=StreamEnd.CAPTURE_ENDED))
    assert obs.cert_request.seen is Seen.UNKNOWN and obs.server_chain_seen is Seen.UNKNOWN
    assert obs.client_chain_seen is Seen.UNKNOWN and obs.renegotiation is Seen.UNKNOWN
    # parsing resumes after the gap: the server's CCS and Finished (decrypted: TLS 1.2
    # sequence numbers restart at the CCS) show the handshake completed
    assert obs.outcome is Outcome.ESTABLISHED and obs.gaps == (gap,)
    assert any("bytes missing" in n for n in obs.notes)
    assert any("resynchronised" in n for n in obs.notes)


def test_tls12_renegotiation_detected_from_record_type():
    t = gen(version="TLSv1.2", verify=ssl.CERT_NONE, keylog=False)
    reneg = Chunk(direction=S2C, at=9, data=b"\x16\x03\x03\x00\x20" + b"\x42" * 32)
    obs = observe(rebuild(t, chunks=(*t.chunks, reneg)))
    assert obs.renegotiation is Seen.YES
    assert obs.cert_request.seen is Seen.UNKNOWN  # a request inside it would be hidden
    assert observe(t).renegotiation is Seen.NO


def test_bad_certificate_der_is_a_note():
    from mtlsprobe.tls.handshake_framing import HandshakeAssembler  # noqa: F401
    from mtlsprobe.tls.handshake_messages import parse_certificate  # noqa: F401

    t = gen(version="TLSv1.2", verify=ssl.CERT_NONE)
    s = bytearray(t.chunks[1].data)
    der = tlsgen.pki().server.der
    i = bytes(s).index(der)
    s[i + 10 : i + 20] = b"\xff" * 10  # corrupt the certificate's inner structure
    chunks = (t.chunks[0], Chunk(direction=S2C, at=1, data=bytes(s)), *t.chunks[2:])
    obs = observe(rebuild(t, chunks=chunks))
    assert obs.server_chain_seen is Seen.YES
    assert any("not a valid certificate" in n for n in obs.notes)


def test_certificate_with_an_impossible_version_is_a_note():
    # cryptography raises InvalidVersion (not a ValueError) for it: found by fuzzing captures
    t = gen(version="TLSv1.2", verify=ssl.CERT_NONE)
    s = bytearray(t.chunks[1].data)
    der = tlsgen.pki().server.der
    version = bytes(s).index(der) + der.index(bytes([0xA0, 0x03, 0x02, 0x01, 0x02])) + 4
    s[version] = 47
    chunks = (t.chunks[0], Chunk(direction=S2C, at=1, data=bytes(s)), *t.chunks[2:])
    obs = observe(rebuild(t, chunks=chunks))
    assert obs.server_chain_seen is Seen.YES
    assert any("47 is not a valid X509 version" in n for n in obs.notes)


def test_truncated_at_start():
    t = gen(version="TLSv1.2")
    obs = observe(rebuild(t, truncated_at_start=True, chunks=t.chunks[3:]))
    assert obs.outcome is Outcome.INCOMPLETE and obs.cert_request.seen is Seen.UNKNOWN


def test_long_connection_only_walks_headers():
    t = gen(version="TLSv1.3", client_cert="good")
    many = tuple(
        Chunk(direction=S2C, at=10 + i, data=b"\x17\x03\x03\x40\x00" + b"\x00" * 0x4000)
        for i in range(200)
    )
    obs = observe(rebuild(t, chunks=(*t.chunks, *many)))
    assert obs.outcome is Outcome.ESTABLISHED and obs.cert_request.seen is Seen.YES
    assert len(obs.history) < 40


def test_capture_ending_on_a_retransmitted_hello_is_no_answer():
    t = gen(version="TLSv1.3")
    hello = dataclasses.replace(t.chunks[0], at=0.003)
    dropped = TcpFacts(syn_ttl=64, synack_ttl=62, client_ttls=(64,), retransmissions=4)
    silent = rebuild(t, chunks=(hello,), end=StreamEnd.CAPTURE_ENDED, tcp=dropped)
    assert observe(silent).outcome is Outcome.NO_ANSWER
    # cut off right after the hello: no retransmission, nothing to tell
    cut = rebuild(silent, tcp=dataclasses.replace(dropped, retransmissions=0))
    assert observe(cut).outcome is Outcome.INCOMPLETE
    # the server acknowledged (a segment after its SYN-ACK): held, not dropped
    acked = rebuild(silent, tcp=dataclasses.replace(dropped, server_ttls=(62,)))
    assert observe(acked).outcome is Outcome.INCOMPLETE
    # hello sent after 1 s: the retransmission may have been the SYN's
    late = rebuild(silent, chunks=(dataclasses.replace(hello, at=1.2),))
    assert observe(late).outcome is Outcome.INCOMPLETE
    assert observe(rebuild(silent, tcp=None)).outcome is Outcome.INCOMPLETE


def test_npn_next_protocol_before_the_client_finished_is_not_a_renegotiation():
    # NPN / Channel ID: the client sends one more encrypted handshake message after its CCS
    # and before Finished (ntop zoom.pcap, KakaoTalk_chat.pcap), i.e. two encrypted handshake
    # records before the server's Finished. Without keys both are opaque.
    t = gen(version="TLSv1.2", verify=ssl.CERT_NONE, keylog=False)
    flight = t.chunks[2].data  # ClientKeyExchange, CCS, Finished
    assert flight[42:48] == b"\x14\x03\x03\x00\x01\x01"
    next_protocol = b"\x16\x03\x03\x00\x3c" + bytes(range(60))
    npn = Chunk(direction=C2S, at=t.chunks[2].at, data=flight[:48] + next_protocol + flight[48:])
    obs = observe(rebuild(t, chunks=(*t.chunks[:2], npn, *t.chunks[3:])))
    assert obs.renegotiation is Seen.NO and obs.cert_request.seen is Seen.NO
    assert obs.outcome is Outcome.ESTABLISHED and "GIFE" in obs.history


def test_one_way_capture_of_a_tls12_client_reads_its_encrypted_records_as_such():
    # Only the client side captured (ntop tls_1.2_unidirectional_client_no_cert.pcapng): with
    # no ServerHello, the records after the client's CCS are encrypted, not plaintext.
    t = gen(version="TLSv1.2", verify=ssl.CERT_NONE, keylog=False)
    client = tuple(c for c in t.chunks if c.direction is C2S)
    alert = Chunk(direction=C2S, at=9, data=b"\x15\x03\x03\x00\x1a" + bytes(range(26)))
    obs = observe(rebuild(t, chunks=(*client, alert), end=StreamEnd.FIN))
    assert [(a.sender, a.description) for a in obs.alerts] == [(C2S, "encrypted")]
    assert obs.history.startswith("CGIF") and obs.history.endswith("L")
    assert not any("unreadable" in n or "0-RTT" in n for n in obs.notes)
    # a TLS 1.3 client's compatibility CCS before its second (plaintext) ClientHello
    hello = t.chunks[0].data
    again = Chunk(direction=C2S, at=1, data=b"\x14\x03\x03\x00\x01\x01" + hello)
    obs = observe(rebuild(t, chunks=(t.chunks[0], again), end=StreamEnd.FIN))
    assert obs.history == "CIC" and obs.alerts == ()
