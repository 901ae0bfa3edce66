"""The first HTTP/1.x exchange read from decrypted application data (captures).

Unit: ``tls.http_head.HttpHeads`` on plain bytes. Observer: real TLS 1.2 (GCM, ChaCha20) and
TLS 1.3 sessions from Python's ssl, in memory, with and without the key log; the lab's real
HAProxy capture, whose Set-Cookie SERVERID only shows inside TLS.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import ssl
import tempfile
from pathlib import Path

import pytest
import tlsgen
from hypothesis import given
from hypothesis import strategies as st

from mtlsprobe.model import (
    Chunk,
    Direction,
    Endpoint,
    HttpExchange,
    Route,
    Stage,
    StreamEnd,
    Transcript,
)
from mtlsprobe.run.captures import read_capture
from mtlsprobe.tls.http_head import BODY_EXCERPT, HEAD_LIMIT, HttpHeads
from mtlsprobe.tls.observer import POST_HANDSHAKE_RECORDS, observe

C2S, S2C = Direction.C2S, Direction.S2C
LAB = Path(__file__).resolve().parents[1] / "fixtures" / "pcaps" / "lab"
REQUEST = b"GET /health?x=1 HTTP/1.1\r\nHost: server.test\r\nAccept: */*\r\n\r\n"
RESPONSE = (b"HTTP/1.1 403 Forbidden\r\nServer: BigIP\r\nSet-Cookie: BIGipServerpool=1.2.3\r\n"
            b"Content-Length: 9\r\n\r\nforbidden")


def heads(request: bytes, response: bytes) -> HttpExchange | None:
    h = HttpHeads()
    h.feed(C2S, request)
    h.feed(S2C, response)
    return h.exchange()


# --- HttpHeads on plain bytes -----------------------------------------------------------


def test_request_line_and_response_head():
    x = heads(REQUEST, RESPONSE)
    assert x == HttpExchange(
        path="/health?x=1", status=403, reason="Forbidden",
        headers=(("Server", "BigIP"), ("Set-Cookie", "BIGipServerpool=1.2.3"),
                 ("Content-Length", "9")),
        body_excerpt="forbidden",
    )


@given(st.lists(st.integers(min_value=1, max_value=len(RESPONSE)), max_size=8))
def test_any_split_of_the_bytes_gives_the_same_exchange(cuts):
    h = HttpHeads()
    for data, d in ((REQUEST, C2S), (RESPONSE, S2C)):
        edges = [0, *sorted({c % (len(data) + 1) for c in cuts}), len(data)]
        for a, b in itertools.pairwise(edges):
            h.feed(d, data[a:b])
    assert h.exchange() == heads(REQUEST, RESPONSE)


def test_interim_responses_are_skipped():
    x = heads(REQUEST, b"HTTP/1.1 100 Continue\r\n\r\n" + RESPONSE)
    assert x is not None and x.status == 403 and x.body_excerpt == "forbidden"


def test_body_excerpt_is_bounded_and_collection_stops():
    h = HttpHeads()
    h.feed(C2S, REQUEST)
    h.feed(S2C, b"HTTP/1.0 200 OK\r\n\r\n" + b"a" * 300)
    assert h.wants(S2C)
    h.feed(S2C, b"b" * 300)
    assert not h.wants(S2C) and not h.wants(C2S)
    x = h.exchange()
    assert x is not None and x.body_excerpt == "a" * 300 + "b" * (BODY_EXCERPT - 300)


@pytest.mark.parametrize("request_bytes", [
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",  # HTTP/2 preface: not HTTP/1.x
    b"\x00\x01binary protocol",
    b"hello there\r\n",
    b"GET / HTTP/1.1",  # never finished: no request line
])
def test_no_http1_request_no_exchange(request_bytes):
    assert heads(request_bytes, RESPONSE) is None


@pytest.mark.parametrize("response", [b"", b"HTTP/1.", b"SSH-2.0-x\r\n", b"HTTP/1.1 OK\r\n\r\n"])
def test_no_status_line_no_exchange(response):
    assert heads(REQUEST, response) is None


def test_head_over_the_limit_ends_collection_with_the_lines_read():
    h = HttpHeads()
    h.feed(C2S, REQUEST)
    h.feed(S2C, b"HTTP/1.1 200 OK\r\nServer: x\r\n" + b"X-Pad: " + b"p" * HEAD_LIMIT)
    assert not h.wants(S2C) and not h.head_complete
    x = h.exchange()
    assert x is not None and x.status == 200 and x.headers == (("Server", "x"),)
    h = HttpHeads()
    h.feed(C2S, b"GET /" + b"a" * HEAD_LIMIT)
    assert not h.wants(C2S) and h.path is None


# --- the observer on real TLS ------------------------------------------------------------


def session(version: str, request: bytes, response: bytes | list[bytes], *,
            ciphers: str | None = None, keylog: bool = True) -> Transcript:
    """One real in-memory TLS session: handshake, the request, the response (a list: one
    record per piece), then the client's close_notify. Returns its Transcript."""
    p = tlsgen.pki()
    chunks: list[Chunk] = []
    with tempfile.TemporaryDirectory(prefix="httphead-") as tmp:
        os.chmod(tmp, 0o700)
        for name, data in (("s.pem", p.server.chain_pem), ("s.key", p.server.key_pem())):
            fd = os.open(os.path.join(tmp, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        sctx.load_cert_chain(os.path.join(tmp, "s.pem"), os.path.join(tmp, "s.key"))
        if ciphers:
            sctx.set_ciphers(ciphers)
        cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        cctx.load_verify_locations(cadata=p.server_ca.cert_pem.decode())
        cctx.maximum_version = ssl.TLSVersion[version.replace(".", "_")]
        keys = os.path.join(tmp, "keys.txt")
        cctx.keylog_filename = keys
        bios = [ssl.MemoryBIO() for _ in range(4)]
        client = cctx.wrap_bio(bios[0], bios[1], server_hostname="server.test")
        server = sctx.wrap_bio(bios[2], bios[3], server_side=True)

        def move() -> None:
            for src, dst, d in ((bios[1], bios[2], C2S), (bios[3], bios[0], S2C)):
                data = src.read()
                if data:
                    chunks.append(Chunk(direction=d, at=len(chunks) / 1000, data=data))
                    dst.write(data)

        def attempt(fn) -> None:  # type: ignore[no-untyped-def]
            with contextlib.suppress(ssl.SSLWantReadError, ssl.SSLWantWriteError):
                fn()
            move()

        def read_all(side: ssl.SSLObject) -> None:
            with contextlib.suppress(ssl.SSLWantReadError):
                while side.read(65536):
                    pass

        for _ in range(6):
            attempt(client.do_handshake)
            attempt(server.do_handshake)
        attempt(lambda: client.write(request))
        read_all(server)
        for piece in response if isinstance(response, list) else [response]:
            attempt(lambda piece=piece: server.write(piece))
        read_all(client)
        attempt(client.unwrap)
        text = Path(keys).read_text(encoding="ascii") if keylog else None
    return Transcript(
        label="http", client=Endpoint(host="client.test", port=40000),
        server=Endpoint(host="server.test", port=443), route=Route(kind="capture"),
        started_at=tlsgen.STARTED, chunks=tuple(chunks), end=StreamEnd.FIN, keylog=text,
    )


@pytest.mark.parametrize(("version", "ciphers"), [
    ("TLSv1.3", None),
    ("TLSv1.2", "ECDHE+AESGCM"),
    ("TLSv1.2", "ECDHE+CHACHA20"),
])
def test_decrypted_session_yields_the_exchange(version, ciphers):
    obs = observe(session(version, REQUEST, RESPONSE, ciphers=ciphers))
    assert obs.decrypted and obs.version == version
    assert obs.http == heads(REQUEST, RESPONSE)
    assert obs.stage is Stage.HTTP  # a 403 answer
    without_keys = observe(session(version, REQUEST, RESPONSE, ciphers=ciphers, keylog=False))
    assert without_keys.http is None and without_keys.stage is Stage.ESTABLISHED


def test_the_adapters_exchange_is_kept():
    live = HttpExchange(path="/", status=200, reason="OK")
    t = session("TLSv1.3", REQUEST, RESPONSE)
    from dataclasses import replace

    assert observe(replace(t, http=live)).http == live


def test_a_head_over_several_records_is_read_within_the_budget():
    pieces = [RESPONSE[i : i + 30] for i in range(0, len(RESPONSE), 30)]
    assert 3 < len(pieces) < POST_HANDSHAKE_RECORDS - 2  # TLS 1.3 tickets count too
    for version in ("TLSv1.2", "TLSv1.3"):
        obs = observe(session(version, REQUEST, pieces))
        assert obs.http == heads(REQUEST, RESPONSE), version


def test_only_the_first_records_after_the_handshake_are_read():
    head = RESPONSE[: RESPONSE.index(b"Set-Cookie")]
    pieces = [head, *(b"X-Pad: 1\r\n" for _ in range(POST_HANDSHAKE_RECORDS)), b"\r\nbody"]
    obs = observe(session("TLSv1.2", REQUEST, pieces, ciphers="ECDHE+AESGCM"))
    assert obs.http is not None and obs.http.status == 403
    # the head and the next POST_HANDSHAKE_RECORDS - 1 records were read, no more
    pads = (("X-Pad", "1"),) * (POST_HANDSHAKE_RECORDS - 1)
    assert obs.http.headers == (("Server", "BigIP"), *pads)
    assert any("head not complete" in n for n in obs.notes)


def test_server_answering_without_http_gives_no_exchange():
    obs = observe(session("TLSv1.2", REQUEST, b"x" * 10 + RESPONSE, ciphers="ECDHE+AESGCM"))
    assert obs.decrypted and obs.http is None


@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_records_after_the_exchange_still_decrypt(version):
    obs = observe(session(version, REQUEST, RESPONSE, ciphers="ECDHE+AESGCM"))
    assert obs.http is not None
    closes = [a for a in obs.alerts if a.description == "close_notify"]
    assert [(a.sender, a.decrypted) for a in closes] == [(C2S, True)]


def test_lab_haproxy_terminator_shows_its_cookie_inside_tls():
    result = read_capture(LAB / "haproxy-terminator.pcapng")
    versions = set()
    for obs in result.observations:
        versions.add(obs.version)
        assert obs.http is not None and obs.http.path == "/"
        assert obs.http.status == 400
        assert any(k.lower() == "set-cookie" and v.startswith("SERVERID=")
                   for k, v in obs.http.headers)
    assert versions == {"TLSv1.2", "TLSv1.3"}


# --- key material a server serves never reaches a report -------------------------------------

PEM = ("-----BEGIN PRIVATE KEY-----\nMIIEvAIBADANBgkqhkiG9w0BAQEFAASC\n"
       "-----END PRIVATE KEY-----\n")
KEYLOG = "CLIENT_RANDOM " + "ab" * 32 + " " + "cd" * 48


@pytest.mark.parametrize("body", [PEM, "before\n" + PEM + "after", PEM[:40], KEYLOG])
def test_served_key_material_is_redacted_on_both_paths(body):
    from mtlsprobe.live.handshake import parse_http_response
    from mtlsprobe.report.jsonout import dumps
    from mtlsprobe.tls.http_head import HttpHeads

    raw = f"HTTP/1.1 200 OK\r\nX-Key: {KEYLOG}\r\n\r\n{body}".encode()
    heads = HttpHeads()
    heads.feed(Direction.C2S, b"GET /key.pem HTTP/1.1\r\n\r\n")
    heads.feed(Direction.S2C, raw)
    for exchange in (heads.exchange(), parse_http_response("/key.pem", raw, None)):
        assert exchange is not None
        text = dumps(exchange)  # would raise SecretError on key material
        assert "MIIEvAIB" not in text and "cd" * 48 not in text
        assert "redacted by mtlsprobe" in exchange.body_excerpt
        assert dict(exchange.headers)["X-Key"].startswith("CLIENT_RANDOM [secret redacted")
