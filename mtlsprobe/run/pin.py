"""The pin use case: the SPKI pins (``sha256/BASE64``) of a certificate file or of the chain
a live server presents, for ``--pin`` (and curl's ``--pinnedpubkey``)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from mtlsprobe.live.connect import ConnectFailure, open_connection
from mtlsprobe.live.files import read_limited
from mtlsprobe.live.handshake import run_attempt
from mtlsprobe.live.proxy import RoutePlan
from mtlsprobe.live.targets import parse_target
from mtlsprobe.model import Attempt, CertInfo, Endpoint
from mtlsprobe.model.certs import CertError, cert_info, load_certificates
from mtlsprobe.model.errors import InputError, Unreachable
from mtlsprobe.tls.observer import observe


@dataclass(frozen=True, slots=True)
class Pinned:
    """Where the certificates came from, and each certificate (leaf first)."""

    source: str
    chain: tuple[CertInfo, ...]
    note: str | None = None


def pins_of_file(path: Path) -> Pinned:
    """Every certificate in a PEM bundle or DER file, in file order."""
    from cryptography.hazmat.primitives import serialization

    try:
        certs = load_certificates(read_limited(path, "certificate"))
    except CertError as exc:
        raise InputError(f"{path}: not a certificate file: {exc}") from None
    ders = [c.public_bytes(serialization.Encoding.DER) for c in certs]
    return Pinned(source=str(path), chain=tuple(cert_info(d) for d in ders))


def is_file_source(text: str) -> bool:
    """Whether `pin`'s argument names a file: one that exists, or a path (a host[:port]
    holds no slash and no certificate file extension), so that a missing file is said so."""
    return Path(text).exists() or "/" in text or text.lower().endswith(CERT_SUFFIXES)


CERT_SUFFIXES = (".pem", ".crt", ".cer", ".der", ".cert")


def pins_of_server(text: str, sni: str | None, timeout: float) -> Pinned:
    """The chain a server presents to one TLS 1.3-or-older handshake without a client
    certificate, read from the wire (whatever trust store this host has)."""
    host, port = parse_target(text)
    target = Endpoint(host=host, port=port or 443)
    deadline = time.monotonic() + timeout
    conn = open_connection(target, RoutePlan(), deadline=deadline)
    if isinstance(conn, ConnectFailure):
        raise Unreachable(f"{target}: {conn.error}")
    name = sni if sni is not None else (None if _is_address(host) else host)
    obs = observe(run_attempt(conn, Attempt(name="pin"), sni=name, deadline=deadline,
                              label="pin"))
    if not obs.server_chain:
        why = obs.local_error or obs.outcome.value
        raise Unreachable(f"{target}: no certificate received ({why})")
    return Pinned(source=str(target), chain=obs.server_chain, note=(
        "read from the wire: check it is the real server (from its own LAN) before pinning"))


def _is_address(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
