"""ClientHello fingerprints: JA3 and JA4 (the TLS *client* fingerprint only).

Sans-IO functions of a parsed :class:`~mtlsprobe.tls.hellos.ClientHello`. Callers use
:func:`ja3` and :func:`ja4`, memoised per hello shape (``hellos.shape_memo``): a capture of
thousands of connections from a few client stacks computes each only a few times.
:func:`compute_ja3` and :func:`compute_ja4` compute afresh.

- JA3 (salesforce/ja3, BSD-3-Clause): MD5 of "version,ciphers,extensions,groups,formats".
  Weak against browsers that shuffle their extension order (Chrome since 2023): every
  connection of the same client gets a new JA3.
- JA4 (FoxIO-LLC/ja4 ``technical_details/JA4.md``, BSD-3-Clause): order-insensitive, so
  it stays put under that shuffling. Implemented here from the written specification.

JA4S, JA4H, JA4X, JA4SSH, JA4T, JA4L and the rest of JA4+ are under the FoxIO License 1.1,
which is not permissive for monetisation or OEM use (FoxIO-LLC/ja4 README, "Licensing"):
they are deliberately NOT implemented in mtlsprobe.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from mtlsprobe.tls.constants import GREASE  # JA3 and JA4 ignore GREASE values everywhere
from mtlsprobe.tls.hellos import ClientHello, shape_memo

_SERVER_NAME = 0x0000
_ALPN = 0x0010
# JA4.md "TLS and DTLS Version"; anything else is "00".
_JA4_VERSIONS = {
    0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3", 0x0002: "s2",
    0xFEFF: "d1", 0xFEFD: "d2", 0xFEFC: "d3",
}
_JA4_EMPTY_HASH = "000000000000"  # JA4.md: an empty list is not hashed


# --- JA3 ------------------------------------------------------------------------------


def ja3_string(ch: ClientHello) -> str:
    """JA3's input: version,ciphers,extensions,groups,point formats (decimal, no GREASE)."""

    def join(values: tuple[int, ...] | list[int]) -> str:
        return "-".join([str(v) for v in values if v not in GREASE])

    return ",".join((
        str(ch.legacy_version),
        join(ch.cipher_suites),
        join([e.type for e in ch.extensions]),
        join(ch.supported_groups),
        join(ch.ec_point_formats),
    ))


def ja3(ch: ClientHello) -> str:
    """JA3 (salesforce/ja3): MD5 hex; memoised per hello shape."""
    return _memoised(ch, "ja3", compute_ja3)


def compute_ja3(ch: ClientHello) -> str:
    """The JA3 fingerprint, computed afresh: MD5 hex of :func:`ja3_string`."""
    return hashlib.md5(ja3_string(ch).encode(), usedforsecurity=False).hexdigest()


# --- JA4 ------------------------------------------------------------------------------


def ja4(ch: ClientHello) -> str:
    """JA4 client fingerprint over TCP (FoxIO JA4.md); memoised per hello shape."""
    return _memoised(ch, "ja4", compute_ja4)


def compute_ja4(ch: ClientHello) -> str:
    """The JA4 fingerprint of a hello read over TCP, e.g. ``t13d1516h2_8daaf6152771_e5627efa2ab1``.

    ``a_b_c``: a = "t", version, "d"/"i" (SNI extension present or not), cipher count,
    extension count (both without GREASE, capped at 99), ALPN first/last character;
    b = SHA-256 (first 12 hex) of the sorted cipher list; c = the same of the sorted
    extension list without SNI and ALPN, then "_" and the signature algorithms as sent.
    """
    a, ciphers, extensions = _ja4_parts(ch)
    return f"{a}_{_hash12(ciphers)}_{_hash12(extensions)}"


def ja4_raw(ch: ClientHello) -> str:
    """JA4_r: the same fingerprint with the hashed lists in the clear (for explaining one)."""
    a, ciphers, extensions = _ja4_parts(ch)
    return f"{a}_{ciphers}_{extensions}"


def _ja4_parts(ch: ClientHello) -> tuple[str, str, str]:
    """(part a, cipher list text, extension list text) of JA4; empty texts for empty lists."""
    ciphers = [c for c in ch.cipher_suites if c not in GREASE]
    types = [e.type for e in ch.extensions if e.type not in GREASE]
    versions = [v for v in ch.supported_versions if v not in GREASE]
    version = max(versions) if versions else ch.legacy_version
    sni = "d" if _SERVER_NAME in types else "i"
    a = (
        f"t{_JA4_VERSIONS.get(version, '00')}{sni}"
        f"{min(len(ciphers), 99):02d}{min(len(types), 99):02d}{_alpn_chars(ch)}"
    )
    cipher_text = ",".join(sorted([f"{c:04x}" for c in ciphers]))
    hashed = sorted([f"{t:04x}" for t in types if t != _SERVER_NAME and t != _ALPN])
    ext_text = ",".join(hashed)
    sigs = [f"{s:04x}" for s in ch.signature_algorithms if s not in GREASE]
    if hashed and sigs:
        ext_text += "_" + ",".join(sigs)
    return a, cipher_text, ext_text


def _hash12(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12] if text else _JA4_EMPTY_HASH


def _is_alnum(byte: int) -> bool:
    return 0x30 <= byte <= 0x39 or 0x41 <= byte <= 0x5A or 0x61 <= byte <= 0x7A


def _alpn_chars(ch: ClientHello) -> str:
    """JA4's two ALPN characters from the first value of the (first) ALPN extension.

    "00" without a value; the first and last byte when both are ASCII alphanumeric (a
    one-byte value gives that byte twice); otherwise the first and last character of the
    value's hex form (JA4.md "ALPN Extension Value"). Read from the raw extension bytes:
    ``ClientHello.alpn`` is decoded text, lossy for exactly the values this rule is about.
    """
    data = next((e.data for e in ch.extensions if e.type == _ALPN), None)
    if data is None or len(data) < 3:
        return "00"
    value = data[3 : 3 + data[2]]  # list length (2 bytes), then the first name's length
    if not value:
        return "00"
    first, last = value[0], value[-1]
    if _is_alnum(first) and _is_alnum(last):
        return chr(first) + chr(last)
    text = value.hex()
    return text[0] + text[-1]


# --- memo -----------------------------------------------------------------------------


def _memoised(ch: ClientHello, name: str, compute: Callable[[ClientHello], str]) -> str:
    """``compute(ch)``, remembered in the memo ``ch`` shares with the hellos of its shape."""
    memo = shape_memo(ch)
    value = memo.get(name)
    if value is None:
        value = memo[name] = compute(ch)
    return value


__all__ = ["compute_ja3", "compute_ja4", "ja3", "ja3_string", "ja4", "ja4_raw"]
