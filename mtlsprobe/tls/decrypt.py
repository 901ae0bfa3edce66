"""Record decryption from key-log secrets: TLS 1.3 (RFC 8446 §5.2, §7.3) and TLS 1.2 AEAD.

Sans-IO: secrets and record bytes in, plaintext out. Only AEAD suites are supported
(AES-GCM, ChaCha20-Poly1305; TLS 1.3 AES-CCM too); anything else is
:class:`UnsupportedSuite`, and the observer keeps the hidden facts UNKNOWN.
"""

from __future__ import annotations

import functools
import hmac
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305

from mtlsprobe.tls.constants import CIPHER_SUITE_NAMES, ContentType
from mtlsprobe.tls.reader import DecodeError

TAG_LEN = 16


class DecryptError(DecodeError):
    """A record did not authenticate under the key we tried (wrong key or epoch)."""


class UnsupportedSuite(ValueError):
    """A cipher suite we cannot decrypt (CBC, RC4, CCM_8 in 1.2, ...)."""


@dataclass(frozen=True, slots=True)
class AeadSpec:
    name: str  # "AES-128-GCM"
    key_len: int
    hash_name: str  # "sha256" | "sha384"

    def hash(self) -> hashes.HashAlgorithm:
        return hashes.SHA384() if self.hash_name == "sha384" else hashes.SHA256()

    def aead(self, key: bytes) -> AESGCM | ChaCha20Poly1305 | AESCCM:
        return _AEADS.get(self.name, AESCCM)(key)


_AEADS: dict[str, type[AESGCM | ChaCha20Poly1305 | AESCCM]] = {
    "AES-128-GCM": AESGCM, "AES-256-GCM": AESGCM, "CHACHA20-POLY1305": ChaCha20Poly1305,
}


@functools.lru_cache(maxsize=256)
def aead_spec(suite: int) -> AeadSpec:
    """The AEAD and PRF hash of a suite, from its IANA name. Raises UnsupportedSuite.

    Remembered per suite (frozen result; errors are not cached): it is asked for every
    decryptor and key update, and matches the suite name against several patterns."""
    name = CIPHER_SUITE_NAMES.get(suite, "")
    hash_name = "sha384" if name.endswith("SHA384") else "sha256"
    if "CHACHA20_POLY1305" in name:
        return AeadSpec("CHACHA20-POLY1305", 32, hash_name)
    if "AES_128_GCM" in name:
        return AeadSpec("AES-128-GCM", 16, hash_name)
    if "AES_256_GCM" in name:
        return AeadSpec("AES-256-GCM", 32, hash_name)
    if name == "TLS_AES_128_CCM_SHA256":
        return AeadSpec("AES-128-CCM", 16, hash_name)
    raise UnsupportedSuite(f"cannot decrypt {name or hex(suite)}")


# --- TLS 1.3 ------------------------------------------------------------------------


def hkdf_expand_label(
    secret: bytes, label: str, context: bytes, length: int, hash_alg: hashes.HashAlgorithm
) -> bytes:
    """RFC 8446 §7.1: HKDF-Expand(Secret, HkdfLabel, Length), label prefixed "tls13 "."""
    full = b"tls13 " + label.encode("ascii")
    info = length.to_bytes(2, "big") + bytes([len(full)]) + full + bytes([len(context)]) + context
    return _hkdf_expand(hash_alg.name, secret, info, length)


def _hkdf_expand(hash_name: str, prk: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 §2.3 HKDF-Expand with one ``hmac.digest`` per output block: TLS 1.3 keys
    and IVs are one block each, and this is several times cheaper than building a
    cryptography HKDFExpand object per derivation."""
    out = b""
    block = b""
    counter = 1
    while len(out) < length:
        block = hmac.digest(prk, block + info + bytes((counter,)), hash_name)
        out += block
        counter += 1
    return out[:length]


def traffic_key_iv(suite: int, secret: bytes) -> tuple[bytes, bytes]:
    """RFC 8446 §7.3: the write key and IV of a traffic secret."""
    spec = aead_spec(suite)
    return (
        _hkdf_expand(spec.hash_name, secret, _KEY_INFO[spec.key_len], spec.key_len),
        _hkdf_expand(spec.hash_name, secret, _IV_INFO, 12),
    )


def _label_info(label: bytes, length: int) -> bytes:
    """The HkdfLabel of RFC 8446 §7.1 with an empty context."""
    full = b"tls13 " + label
    return length.to_bytes(2, "big") + bytes((len(full),)) + full + b"\x00"


# HkdfLabels of the traffic key (by AEAD key length) and IV: the same for every record key
_KEY_INFO = {n: _label_info(b"key", n) for n in (16, 32)}
_IV_INFO = _label_info(b"iv", 12)


def _xor_nonce(iv: bytes, seq: int) -> bytes:
    # RFC 8446 §5.3: the 64-bit sequence number, left-padded to iv_length, XOR the IV.
    return (int.from_bytes(iv, "big") ^ seq).to_bytes(len(iv), "big")


class Tls13Decryptor:
    """One direction, one traffic secret. ``seq`` counts records opened under it."""

    def __init__(self, suite: int, secret: bytes, *, seq: int = 0,
                 key_iv: tuple[bytes, bytes] | None = None) -> None:
        """``key_iv``: the record key and IV themselves, instead of deriving them from
        ``secret``."""
        key, self.iv = traffic_key_iv(suite, secret) if key_iv is None else key_iv
        self._iv_int = int.from_bytes(self.iv, "big")
        self._aead = aead_spec(suite).aead(key)
        self.seq = seq

    @classmethod
    def from_key_iv(cls, suite: int, key: bytes, iv: bytes, *, seq: int = 0) -> Tls13Decryptor:
        return cls(suite, b"", seq=seq, key_iv=(key, iv))

    def decrypt(self, header: bytes, ciphertext: bytes) -> tuple[int, bytes]:
        """Open one TLSCiphertext (header is its 5 bytes, the AAD).

        Returns (inner content type, content). Raises DecryptError (the sequence number
        does not advance then) or DecodeError for an all-zero plaintext.
        """
        try:
            nonce = (self._iv_int ^ self.seq).to_bytes(len(self.iv), "big")  # _xor_nonce
            plain = self._aead.decrypt(nonce, ciphertext, header)
        except InvalidTag:
            raise DecryptError("record does not authenticate", context="TLSCiphertext") from None
        self.seq += 1
        # RFC 8446 §5.4: strip zero padding; the last non-zero byte is the content type.
        end = len(plain.rstrip(b"\x00"))
        if end == 0:
            raise DecodeError("TLSInnerPlaintext has no content type", context="TLSCiphertext")
        return plain[end - 1], plain[: end - 1]


# --- TLS 1.2 (stretch) --------------------------------------------------------------


def _p_hash(hash_name: str, secret: bytes, seed: bytes, length: int) -> bytes:
    # RFC 5246 §5: P_hash(secret, seed) = HMAC(secret, A(1) + seed) + HMAC(secret, A(2) + seed)...
    out = b""
    a = seed
    while len(out) < length:
        a = hmac.digest(secret, a, hash_name)
        out += hmac.digest(secret, a + seed, hash_name)
    return out[:length]


def tls12_prf(hash_name: str, secret: bytes, label: bytes, seed: bytes, length: int) -> bytes:
    return _p_hash(hash_name, secret, label + seed, length)


@dataclass(frozen=True, slots=True)
class Tls12Keys:
    client_key: bytes
    server_key: bytes
    client_iv: bytes
    server_iv: bytes


def tls12_keys(suite: int, master: bytes, client_random: bytes, server_random: bytes) -> Tls12Keys:
    """RFC 5246 §6.3 key block for an AEAD suite (no MAC keys; RFC 5288 / RFC 7905 IVs)."""
    spec = aead_spec(suite)
    iv_len = 12 if spec.name == "CHACHA20-POLY1305" else 4  # GCM: 4-byte salt
    n = 2 * spec.key_len + 2 * iv_len
    block = tls12_prf(spec.hash_name, master, b"key expansion", server_random + client_random, n)
    k = spec.key_len
    return Tls12Keys(
        client_key=block[:k],
        server_key=block[k : 2 * k],
        client_iv=block[2 * k : 2 * k + iv_len],
        server_iv=block[2 * k + iv_len : n],
    )


class Tls12Decryptor:
    """One direction of a TLS 1.2 AEAD connection, from the ChangeCipherSpec on."""

    def __init__(self, suite: int, key: bytes, iv: bytes) -> None:
        spec = aead_spec(suite)
        self._chacha = spec.name == "CHACHA20-POLY1305"
        self._aead = spec.aead(key)
        self.iv = iv
        self.seq = 0

    def skip(self) -> None:
        """Account for a record we did not decrypt (the sequence number still advances)."""
        self.seq += 1

    def decrypt(self, header: bytes, ciphertext: bytes) -> tuple[int, bytes]:
        """Returns (content type, plaintext). Raises DecryptError."""
        ctype = header[0]
        if self._chacha:
            nonce = _xor_nonce(self.iv, self.seq)
            body = ciphertext
        else:
            # RFC 5288 §3: nonce = salt (4) || explicit nonce (8, sent in the record).
            if len(ciphertext) < 8 + TAG_LEN:
                raise DecryptError("GCM record too short", context="TLSCiphertext")
            nonce = self.iv + ciphertext[:8]
            body = ciphertext[8:]
        if len(body) < TAG_LEN:
            raise DecryptError("AEAD record too short", context="TLSCiphertext")
        # RFC 5246 §6.2.3.3: additional_data = seq_num + type + version + length(plaintext)
        aad = self.seq.to_bytes(8, "big") + header[:3] + (len(body) - TAG_LEN).to_bytes(2, "big")
        try:
            plain = self._aead.decrypt(nonce, body, aad)
        except InvalidTag:
            raise DecryptError("record does not authenticate", context="TLSCiphertext") from None
        self.seq += 1
        return ctype, plain


__all__ = [
    "ContentType",
    "DecryptError",
    "Tls12Decryptor",
    "Tls12Keys",
    "Tls13Decryptor",
    "UnsupportedSuite",
    "aead_spec",
    "hkdf_expand_label",
    "tls12_keys",
    "tls12_prf",
    "traffic_key_iv",
]
