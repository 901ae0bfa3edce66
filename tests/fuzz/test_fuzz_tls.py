"""Fuzz the TLS core: records, handshake messages, the observer (with and without keys) and
key logs; re-chunking never changes the Observation; malformed bytes never escape."""

from __future__ import annotations

import contextlib
import dataclasses
import functools

import targets
import tlsgen
from fuzzing import budget, inputs
from hypothesis import given
from hypothesis import strategies as st

from mtlsprobe.model import Chunk, Direction, Transcript
from mtlsprobe.tls.handshake_framing import HandshakeAssembler
from mtlsprobe.tls.handshake_messages import (
    parse_certificate,
    parse_certificate_request,
    parse_encrypted_extensions,
    parse_new_session_ticket,
)
from mtlsprobe.tls.hellos import parse_client_hello, parse_server_hello
from mtlsprobe.tls.observer import observe
from mtlsprobe.tls.reader import DecodeError
from mtlsprobe.tls.records import RecordSplitter

SETTINGS = budget(40)


@functools.cache
def sample(version: str, cert: str | None, keylog: bool) -> Transcript:
    return tlsgen.run(version=version, client_cert=cert, keylog=keylog)


SAMPLES = st.sampled_from(
    [
        ("TLSv1.3", None, True),
        ("TLSv1.3", "good", True),
        ("TLSv1.3", None, False),
        ("TLSv1.2", None, True),
        ("TLSv1.2", "good", False),
    ]
)


def rechunk(t: Transcript, sizes: list[int]) -> Transcript:
    out: list[Chunk] = []
    k = 0
    for c in t.chunks:
        data = c.data
        i = 0
        while i < len(data):
            n = sizes[k % len(sizes)]
            k += 1
            out.append(Chunk(direction=c.direction, at=c.at, data=data[i : i + n]))
            i += n
    return dataclasses.replace(t, chunks=tuple(out))


@SETTINGS
@given(SAMPLES, st.lists(st.integers(min_value=1, max_value=700), min_size=1, max_size=20))
def test_segmentation_invariance(which, sizes):
    t = sample(*which)
    assert observe(rechunk(t, sizes)) == observe(t)


@SETTINGS
@given(SAMPLES, st.data())
def test_observe_never_raises_on_mutated_bytes(which, data):
    t = sample(*which)
    chunks = list(t.chunks)
    i = data.draw(st.integers(0, len(chunks) - 1))
    raw = bytearray(chunks[i].data)
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    chunks[i] = Chunk(direction=chunks[i].direction, at=chunks[i].at, data=bytes(raw))
    observe(dataclasses.replace(t, chunks=tuple(chunks)))


@SETTINGS
@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=300)), max_size=6))
def test_observe_never_raises_on_random_bytes(parts):
    t = sample("TLSv1.3", None, True)
    chunks = tuple(
        Chunk(direction=Direction.C2S if c else Direction.S2C, at=0, data=d) for c, d in parts
    )
    observe(dataclasses.replace(t, chunks=chunks))


PARSERS = [
    parse_client_hello,
    parse_server_hello,
    parse_encrypted_extensions,
    lambda b: parse_certificate(b, tls13=True),
    lambda b: parse_certificate(b, tls13=False),
    lambda b: parse_certificate_request(b, tls13=True),
    lambda b: parse_certificate_request(b, tls13=False),
    lambda b: parse_new_session_ticket(b, tls13=True),
]


@SETTINGS
@given(st.binary(max_size=400), st.sampled_from(range(len(PARSERS))))
def test_parsers_return_a_value_or_raise_decode_error(data, which):
    with contextlib.suppress(DecodeError):
        PARSERS[which](data)


@SETTINGS
@given(st.lists(st.binary(min_size=1, max_size=60), max_size=4), st.binary(max_size=8))
def test_certificate_request_with_random_names(names, prefix):
    # Valid framing around arbitrary DN bytes, some starting like a real Name.
    dns = [prefix + n if i % 2 else b"\x30" + bytes([len(n)]) + n for i, n in enumerate(names)]
    cas = b"".join(len(d).to_bytes(2, "big") + d for d in dns)
    body = b"\x01\x01\x00\x02\x04\x03" + len(cas).to_bytes(2, "big") + cas
    with contextlib.suppress(DecodeError):
        cr = parse_certificate_request(body, tls13=False)
        assert len(cr.authority_names) == len(dns)


@SETTINGS
@given(st.binary(max_size=400))
def test_splitter_and_assembler_contract(data):
    try:
        for r in RecordSplitter().feed(data):
            HandshakeAssembler().feed(r.payload)
    except DecodeError:
        pass


@budget(500)
@given(inputs("tls_records"))
def test_record_layer(data):
    targets.tls_records(data)


@budget(1000)
@given(inputs("tls_messages", max_size=600))
def test_handshake_messages_and_names(data):
    targets.tls_messages(data)


@budget(300)
@given(inputs("tls_observer"))
def test_observer_on_any_bytes_both_ways(data):
    targets.tls_observer(data)


@budget(500)
@given(inputs("keylog"))
def test_key_logs_parse_write_back_and_merge(data):
    targets.keylog(data)
