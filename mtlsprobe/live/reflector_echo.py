"""The reflector's signed echo: the contract between `mtlsprobe serve` and `probe --reflector`.

Boundary: the echo format only, shared by the listener (``live.reflector``) and the probe
side (``run.reflector``): build the echo record, serialise it (compact JSON, sorted keys:
the canonical bytes that get signed), sign it (HMAC-SHA256 with a shared secret), carry it
in a response header and read it back, verifying the signature. No sockets; the one I/O is
``read_secret`` (the secret file, else the environment), which both sides call.

Why the ClientHello digest: JA3 only summarises the offer; the ClientHello bytes include our
random, so a digest match proves the far end received *our* ClientHello, not a re-made one.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import os
from collections.abc import Sequence
from pathlib import Path

from mtlsprobe.live.files import read_text_limited
from mtlsprobe.model.errors import InputError
from mtlsprobe.tls import fingerprint
from mtlsprobe.tls.constants import HandshakeType, cipher_suite_name, version_name
from mtlsprobe.tls.handshake_framing import HandshakeAssembler
from mtlsprobe.tls.hellos import ClientHello, parse_client_hello
from mtlsprobe.tls.reader import DecodeError
from mtlsprobe.tls.records import RecordSplitter

ECHO_PATH = "/mtlsprobe/echo"
ECHO_HEADER = "X-Mtlsprobe-Echo"
HMAC_HEADER = "X-Mtlsprobe-Echo-Hmac"
SECRET_ENV = "MTLSPROBE_REFLECTOR_SECRET"
ECHO_VERSION = 1
#: Where `mtlsprobe serve` listens by default (a spare port; see cli/serve.py).
DEFAULT_PORT = 18383


# --- the ClientHello, from raw bytes (both sides use this) --------------------------------


def first_client_hello(stream: bytes) -> tuple[ClientHello, str] | None:
    """The first ClientHello in a client->server byte stream and the SHA-256 (hex) of the
    whole handshake message (header + body); None when the bytes do not hold one."""
    splitter = RecordSplitter()
    assembler = HandshakeAssembler()
    try:
        for rec in splitter.feed(stream):
            if rec.content_type != 22:  # handshake
                return None
            for msg in assembler.feed(rec.payload):
                if msg.msg_type != HandshakeType.CLIENT_HELLO:
                    return None
                raw = bytes([msg.msg_type]) + len(msg.body).to_bytes(3, "big") + msg.body
                return parse_client_hello(msg.body), hashlib.sha256(raw).hexdigest()
    except DecodeError:
        return None
    return None


def hello_facts(hello: ClientHello, digest: str) -> dict[str, object]:
    return {
        "sha256": digest,
        "ja3": fingerprint.ja3(hello),
        "ja3_string": fingerprint.ja3_string(hello),
        "versions": [version_name(v) for v in hello.offered_versions],
        "cipher_suites": [cipher_suite_name(c) for c in hello.cipher_suites],
        "sni": hello.sni,
        "alpn": list(hello.alpn),
    }


# --- the echo record -----------------------------------------------------------------------


def build_echo(
    *,
    peer: tuple,
    hello: ClientHello,
    digest: str,
    version: str | None,
    cipher: str | None,
    client_chain_sha256: list[str],
    server_chain_sha256: list[str],
    client_ca_names: list[str],
    request: bytes,
    at: dt.datetime,
) -> bytes:
    """The canonical echo bytes (compact JSON, sorted keys): what gets signed."""
    line = request.split(b"\r\n", 1)[0][:200].decode("latin-1") if request else None
    body = {
        "mtlsprobe_reflector": ECHO_VERSION,
        "peer": _address(peer),
        "client_hello": hello_facts(hello, digest),
        "tls": {"version": version, "cipher": cipher},
        "client_chain_sha256": client_chain_sha256,
        "server_chain_sha256": server_chain_sha256,
        "client_ca_names": client_ca_names,
        "request": line,
        "at": at.replace(microsecond=0).isoformat(),
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _address(peer: tuple) -> str:
    host = str(peer[0])
    return f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}"


def encode_echo(echo: bytes) -> str:
    """The echo as the value of ECHO_HEADER (URL-safe base64, unpadded)."""
    return base64.urlsafe_b64encode(echo).decode().rstrip("=")


# --- signing -------------------------------------------------------------------------------


def sign(echo: bytes, secret: bytes) -> str:
    return hmac.new(secret, echo, hashlib.sha256).hexdigest()


def read_secret(path: Path | None, environ: dict[str, str] | None = None) -> bytes | None:
    """The shared secret from FILE (first line, stripped), else $MTLSPROBE_REFLECTOR_SECRET."""
    env = os.environ if environ is None else environ
    if path is not None:
        text = read_text_limited(path, "secret").splitlines()
        secret = text[0].strip() if text else ""
        if not secret:
            raise InputError(f"secret file {path} is empty")
        return secret.encode()
    value = env.get(SECRET_ENV, "").strip()
    return value.encode() if value else None


# --- reading it back -----------------------------------------------------------------------


def parse_echo(
    headers: Sequence[tuple[str, str]], secret: bytes | None
) -> tuple[str, dict[str, object] | None, bool, str | None]:
    """(status, echo, signed, error) from the HTTP response headers of one connection."""
    found = {n.lower(): v for n, v in headers}
    encoded = found.get(ECHO_HEADER.lower())
    if encoded is None:
        return "missing", None, False, "no echo in the answer"
    try:
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        echo = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        return "malformed", None, False, f"echo does not decode: {exc}"
    except RecursionError:  # a peer's echo nested a thousand deep: not a reflector's
        return "malformed", None, False, "echo does not decode: nested too deeply"
    if not isinstance(echo, dict) or echo.get("mtlsprobe_reflector") != ECHO_VERSION:
        return "malformed", None, False, "not an mtlsprobe reflector echo (version 1)"
    if secret is None:
        return "ok", echo, False, None
    mac = found.get(HMAC_HEADER.lower())
    if mac is None:
        return "bad_signature", echo, False, "the echo is not signed, but a secret was given"
    if not hmac.compare_digest(mac.strip().lower(), sign(raw, secret)):
        return "bad_signature", echo, False, "HMAC mismatch: echo altered, or another secret"
    return "ok", echo, True, None
