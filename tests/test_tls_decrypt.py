"""Record protection against RFC 8448 §3 vectors, key-log parsing, and the full RFC trace."""

from __future__ import annotations

import pytest
import tls_vectors as v
from tlsgen import STARTED

from mtlsprobe.model import Chunk, Direction, Endpoint, Outcome, Route, Seen, Transcript
from mtlsprobe.tls.decrypt import (
    DecryptError,
    Tls12Decryptor,
    Tls13Decryptor,
    UnsupportedSuite,
    aead_spec,
    tls12_keys,
    tls12_prf,
    traffic_key_iv,
)
from mtlsprobe.tls.handshake_framing import HandshakeAssembler
from mtlsprobe.tls.keylog import KeyLog
from mtlsprobe.tls.observer import observe


def test_traffic_keys_from_secrets():
    assert traffic_key_iv(v.SUITE, v.SERVER_HANDSHAKE_TRAFFIC_SECRET) == (
        v.SERVER_HS_KEY,
        v.SERVER_HS_IV,
    )
    assert traffic_key_iv(v.SUITE, v.CLIENT_HANDSHAKE_TRAFFIC_SECRET) == (
        v.CLIENT_HS_KEY,
        v.CLIENT_HS_IV,
    )
    assert traffic_key_iv(v.SUITE, v.SERVER_TRAFFIC_SECRET_0) == (v.SERVER_AP_KEY, v.SERVER_AP_IV)
    assert traffic_key_iv(v.SUITE, v.CLIENT_TRAFFIC_SECRET_0) == (v.CLIENT_AP_KEY, v.CLIENT_AP_IV)


def test_server_flight_decrypts_to_four_messages():
    d = Tls13Decryptor(v.SUITE, v.SERVER_HANDSHAKE_TRAFFIC_SECRET)
    ctype, content = d.decrypt(v.SERVER_FLIGHT_RECORD[:5], v.SERVER_FLIGHT_RECORD[5:])
    assert ctype == 22 and d.seq == 1
    assert content.startswith(v.ENCRYPTED_EXTENSIONS)
    msgs = HandshakeAssembler().feed(content)
    assert [m.msg_type for m in msgs] == [8, 11, 15, 20]


def test_client_finished_and_application_data():
    d = Tls13Decryptor.from_key_iv(v.SUITE, v.CLIENT_HS_KEY, v.CLIENT_HS_IV)
    ctype, content = d.decrypt(v.CLIENT_FINISHED_RECORD[:5], v.CLIENT_FINISHED_RECORD[5:])
    assert ctype == 22 and content[:4] == b"\x14\x00\x00\x20"
    app = Tls13Decryptor(v.SUITE, v.CLIENT_TRAFFIC_SECRET_0)
    assert app.decrypt(v.CLIENT_APP_RECORD[:5], v.CLIENT_APP_RECORD[5:]) == (23, v.APP_PAYLOAD)


def test_nonce_uses_the_sequence_number():
    rec = v.SERVER_APP_RECORD
    wrong = Tls13Decryptor(v.SUITE, v.SERVER_TRAFFIC_SECRET_0)
    with pytest.raises(DecryptError):
        wrong.decrypt(rec[:5], rec[5:])
    assert wrong.seq == 0
    right = Tls13Decryptor(v.SUITE, v.SERVER_TRAFFIC_SECRET_0, seq=v.SERVER_APP_SEQ)
    assert right.decrypt(rec[:5], rec[5:]) == (23, v.APP_PAYLOAD)


def test_aead_specs():
    assert aead_spec(0x1302).name == "AES-256-GCM" and aead_spec(0x1302).hash_name == "sha384"
    assert aead_spec(0x1303).name == "CHACHA20-POLY1305"
    assert aead_spec(0xC030).key_len == 32
    with pytest.raises(UnsupportedSuite):
        aead_spec(0xC013)  # CBC


@pytest.mark.parametrize("suite", [0x1301, 0x1302, 0x1303])
def test_tls13_roundtrip_each_aead(suite):
    from mtlsprobe.tls.decrypt import _xor_nonce

    secret = bytes(range(48 if suite == 0x1302 else 32))
    key, iv = traffic_key_iv(suite, secret)
    header = b"\x17\x03\x03\x00\x00"
    inner = b"\x02\x74" + b"\x15" + b"\x00" * 5  # alert, type, padding
    sealed = (
        aead_spec(suite)
        .aead(key)
        .encrypt(_xor_nonce(iv, 3), inner, header[:3] + (len(inner) + 16).to_bytes(2, "big"))
    )
    header = header[:3] + len(sealed).to_bytes(2, "big")
    assert Tls13Decryptor(suite, secret, seq=3).decrypt(header, sealed) == (21, b"\x02\x74")


def test_tls12_gcm_roundtrip_and_prf_shape():
    master, cr, sr = b"m" * 48, b"c" * 32, b"s" * 32
    keys = tls12_keys(0xC02F, master, cr, sr)
    assert len(keys.client_key) == 16 and len(keys.client_iv) == 4
    assert len(tls12_prf("sha384", master, b"x", b"y", 100)) == 100
    explicit = b"\x00" * 7 + b"\x01"
    plain = b"\x14\x00\x00\x0c" + b"v" * 12
    aad = (0).to_bytes(8, "big") + b"\x16\x03\x03" + len(plain).to_bytes(2, "big")
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    body = explicit + AESGCM(keys.client_key).encrypt(keys.client_iv + explicit, plain, aad)
    header = b"\x16\x03\x03" + len(body).to_bytes(2, "big")
    d = Tls12Decryptor(0xC02F, keys.client_key, keys.client_iv)
    assert d.decrypt(header, body) == (22, plain) and d.seq == 1


def test_keylog_parsing_ignores_junk():
    r = "ab" * 32
    text = "\n".join(
        [
            "# comment",
            "",
            f"CLIENT_RANDOM {r} {'11' * 48}",
            f"SERVER_HANDSHAKE_TRAFFIC_SECRET {r} {'22' * 32}",
            f"EXPORTER_SECRET {r} {'33' * 32}",
            "garbage line",
            f"CLIENT_RANDOM {r[:10]} {'11' * 48}",
            f"CLIENT_RANDOM {r} nothex",
            f"UNKNOWN_LABEL {r} {'11' * 4}",
        ]
    )
    log = KeyLog.parse(text)
    rand = bytes.fromhex(r)
    assert len(log) == 1 and rand in log
    assert log.get(rand, "CLIENT_RANDOM") == b"\x11" * 48
    assert set(log.secrets(rand)) == {
        "CLIENT_RANDOM",
        "SERVER_HANDSHAKE_TRAFFIC_SECRET",
        "EXPORTER_SECRET",
    }
    assert log.skipped_lines == 4


def rfc8448_transcript(keylog: str | None) -> Transcript:
    c2s, s2c = Direction.C2S, Direction.S2C
    chunks = [
        (c2s, v.CLIENT_HELLO_RECORD),
        (s2c, v.SERVER_HELLO_RECORD + v.SERVER_FLIGHT_RECORD),
        (c2s, v.CLIENT_FINISHED_RECORD),
        (c2s, v.CLIENT_APP_RECORD),
    ]
    return Transcript(
        label="rfc8448",
        client=Endpoint(host="client", port=1),
        server=Endpoint(host="server", port=443),
        route=Route(kind="capture"),
        started_at=STARTED,
        chunks=tuple(Chunk(direction=d, at=i, data=b) for i, (d, b) in enumerate(chunks)),
        keylog=keylog,
    )


def test_observe_rfc8448_trace_with_keys():
    obs = observe(rfc8448_transcript(v.keylog_text()))
    assert obs.decrypted and obs.version == "TLSv1.3"
    assert obs.cipher_suite == "TLS_AES_128_GCM_SHA256" and obs.sni == "server"
    assert obs.history == "CsoxyfFD"
    assert obs.server_chain_seen is Seen.YES and obs.server_chain[0].subject == "CN=rsa"
    assert obs.cert_request.seen is Seen.NO and obs.client_chain_seen is Seen.NO
    assert obs.outcome is Outcome.ESTABLISHED


def test_observe_rfc8448_trace_without_keys():
    obs = observe(rfc8448_transcript(None))
    assert not obs.decrypted
    assert obs.server_chain_seen is Seen.UNKNOWN
    assert obs.cert_request.seen is Seen.UNKNOWN and obs.client_chain_seen is Seen.UNKNOWN
    assert any("without a key log" in n for n in obs.notes)
