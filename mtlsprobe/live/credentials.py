"""Load the agent's client credentials (certificate chain + private key) from files.

Boundary: file reading and key/cert decoding only. Every failure becomes ONE-line
:class:`~mtlsprobe.model.errors.InputError` that names the file and the problem, never key
bytes or the password. The TLS code gets a :class:`Credentials` value and, because
``ssl.SSLContext.load_cert_chain`` only reads files, a short-lived 0600 PEM pair.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs12 as _pkcs12

from mtlsprobe.live.files import decode_text, read_limited, read_text_limited
from mtlsprobe.model.certs import DSAPrivateKey
from mtlsprobe.model.errors import InputError

PASSWORD_ENV = "MTLSPROBE_KEY_PASSWORD"

PrivateKey = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
    | DSAPrivateKey
)
PasswordSource = bytes | Callable[[], "bytes | None"] | None
"""A password, or a callable asked only when a key turns out to be encrypted."""


@dataclass(frozen=True)
class Credentials:
    """A client certificate chain (leaf first) and its private key."""

    chain_der: tuple[bytes, ...]
    key: PrivateKey = field(repr=False)
    key_matches: bool = True  # False only from load_credentials(require_match=False)

    @property
    def leaf_der(self) -> bytes:
        return self.chain_der[0]

    @property
    def leaf_sha256(self) -> str:
        return hashlib.sha256(self.chain_der[0]).hexdigest()

    @classmethod
    def from_issued(cls, issued: object) -> Credentials:
        """From a :class:`mtlsprobe.live.pki.Issued` (leaf, key, intermediates)."""
        certs = (issued.cert, *issued.chain)  # type: ignore[attr-defined]
        return cls(
            chain_der=tuple(c.public_bytes(serialization.Encoding.DER) for c in certs),
            key=issued.key,  # type: ignore[attr-defined]
        )

    def write_pem_pair(self, directory: Path) -> tuple[Path, Path]:
        """Write ``client-cert.pem`` (chain) and ``client-key.pem`` (0600) into `directory`.

        For ``ssl.SSLContext.load_cert_chain``. The caller removes both files (and
        should use a private 0700 directory). Returns (cert_path, key_path).
        """
        cert_pem = b"".join(
            x509.load_der_x509_certificate(d).public_bytes(serialization.Encoding.PEM)
            for d in self.chain_der
        )
        key_pem = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        cert_path = Path(directory) / "client-cert.pem"
        key_path = Path(directory) / "client-key.pem"
        _write_private(cert_path, cert_pem)
        _write_private(key_path, key_pem)
        return cert_path, key_path


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


# --- passwords ------------------------------------------------------------------------


def password_from(
    password_file: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    prompt_if_tty: bool = True,
) -> bytes | None:
    """The key password: from `password_file` (one trailing newline stripped), else the
    ``MTLSPROBE_KEY_PASSWORD`` environment variable, else a no-echo prompt when stdin is a
    terminal and `prompt_if_tty`, else None.

    Pass ``lambda: password_from(...)`` to :func:`load_credentials` to prompt only when a
    key is actually encrypted. Raises InputError when the file cannot be read.
    """
    if password_file is not None:
        text = read_text_limited(Path(password_file), "password")
        if text.endswith("\r\n"):
            return text[:-2].encode()
        return (text[:-1] if text.endswith("\n") else text).encode()
    env = os.environ if environ is None else environ
    if env.get(PASSWORD_ENV):
        return env[PASSWORD_ENV].encode()
    if prompt_if_tty and sys.stdin is not None and sys.stdin.isatty():
        try:
            return getpass.getpass("Private key password: ").encode()
        except (EOFError, KeyboardInterrupt):
            raise InputError("no private key password given") from None
    return None


# --- loading --------------------------------------------------------------------------


def load_credentials(
    cert: Path | None = None,
    key: Path | None = None,
    pkcs12: Path | None = None,
    password: PasswordSource = None,
    *,
    require_match: bool = True,
) -> Credentials:
    """Load credentials from ``--cert``/``--key`` (PEM or DER, PKCS#8 or traditional,
    encrypted or not; `key` may be omitted when the cert file also holds the key) or from
    ``--pkcs12``. Returns Credentials with the chain leaf first. Raises InputError, also
    for a key that does not match the certificate unless `require_match` is False (then
    ``Credentials.key_matches`` says so: check-cert reports it as a finding).
    """
    if pkcs12 is not None:
        if cert is not None or key is not None:
            raise InputError("give either --pkcs12 or --cert/--key, not both")
        return _load_pkcs12(Path(pkcs12), password)
    if cert is None:
        raise InputError("a client certificate needs --cert (and --key) or --pkcs12")
    cert_path = Path(cert)
    chain = _load_certs(cert_path)
    key_path = Path(key) if key is not None else cert_path
    private_key = _load_key(key_path, password, combined=key is None)
    matches = _pair_matches(chain[0], private_key)
    if require_match and not matches:
        raise InputError(f"private key {key_path} does not match certificate {cert_path}")
    return Credentials(
        chain_der=tuple(_der(c) for c in chain), key=private_key, key_matches=matches
    )


def _read(path: Path, what: str) -> bytes:
    kind = {"password file": "password", "private key": "key", "PKCS#12 file": "key"}
    data = read_limited(path, kind.get(what, "certificate"))
    if what in ("certificate", "private key") and data.startswith(_BOMS):
        # PEM saved by a Windows editor or PowerShell's Out-File (UTF-16, or a UTF-8 BOM)
        data = decode_text(data, what, path).encode("utf-8")
    return data


_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\xef\xbb\xbf")


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _load_certs(path: Path) -> list[x509.Certificate]:
    data = _read(path, "certificate")
    try:
        if b"-----BEGIN" in data:
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
    except (ValueError, x509.InvalidVersion):  # InvalidVersion is no ValueError
        certs = []
    if not certs:
        raise InputError(f"{path} is not a certificate (expected PEM or DER X.509)")
    return certs


def _resolve_password(password: PasswordSource) -> bytes | None:
    return password() if callable(password) else password


def _load_key(path: Path, password: PasswordSource, *, combined: bool) -> PrivateKey:
    data = _read(path, "private key")
    pem = b"-----BEGIN" in data
    if pem and b"PRIVATE KEY-----" not in data:
        hint = " (pass the key with --key)" if combined else ""
        raise InputError(f"{path} holds no private key{hint}")
    loader = serialization.load_pem_private_key if pem else serialization.load_der_private_key
    try:
        key = loader(data, None)
    except TypeError:  # encrypted: ask for the password now
        pw = _resolve_password(password)
        if not pw:
            raise InputError(
                f"private key {path} is encrypted: give its password "
                f"(--password-file or {PASSWORD_ENV})"
            ) from None
        try:
            key = loader(data, pw)
        except (ValueError, TypeError):
            raise InputError(f"wrong password for private key {path}") from None
    except ValueError:
        raise InputError(f"{path} is not a private key (expected PEM or DER)") from None
    except Exception:  # unsupported algorithm and the like
        raise InputError(f"{path}: unsupported private key") from None
    if not isinstance(key, PrivateKey):
        raise InputError(f"{path}: unsupported private key type")
    return key


def _public_der(obj: object) -> bytes:
    return obj.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _pair_matches(leaf: x509.Certificate, key: PrivateKey) -> bool:
    try:
        return _public_der(leaf.public_key()) == _public_der(key.public_key())
    except Exception:  # unsupported key types: treat as not matching
        return False


def _load_pkcs12(path: Path, password: PasswordSource) -> Credentials:
    data = _read(path, "PKCS#12 file")
    if not data.startswith(b"\x30"):
        raise InputError(f"{path} is not a PKCS#12 file")
    try:
        bundle = _pkcs12.load_pkcs12(data, None)
    except (ValueError, TypeError):
        pw = _resolve_password(password)
        if not pw:
            raise InputError(
                f"cannot open PKCS#12 file {path}: it needs a password "
                f"(--password-file or {PASSWORD_ENV}), or it is damaged"
            ) from None
        try:
            bundle = _pkcs12.load_pkcs12(data, pw)
        except (ValueError, TypeError):
            raise InputError(
                f"cannot open PKCS#12 file {path}: wrong password or damaged file"
            ) from None
    except Exception:
        raise InputError(f"{path} is not a readable PKCS#12 file") from None
    if bundle.key is None:
        raise InputError(f"PKCS#12 file {path} contains no private key")
    if bundle.cert is None:
        raise InputError(f"PKCS#12 file {path} contains no certificate")
    leaf = bundle.cert.certificate
    if not isinstance(bundle.key, PrivateKey):
        raise InputError(f"{path}: unsupported private key type")
    if not _pair_matches(leaf, bundle.key):
        raise InputError(f"{path}: its private key does not match its certificate")
    extra = _order_chain(leaf, [c.certificate for c in bundle.additional_certs])
    return Credentials(chain_der=(_der(leaf), *(_der(c) for c in extra)), key=bundle.key)


def _order_chain(
    leaf: x509.Certificate, others: list[x509.Certificate]
) -> list[x509.Certificate]:
    """Intermediates in issuing order from the leaf (PKCS#12 bags have no order);
    certificates that do not chain keep their original order at the end."""
    pool = [c for c in others if c != leaf]
    ordered: list[x509.Certificate] = []
    current = leaf
    while True:
        nxt = next(
            (c for c in pool if c.subject == current.issuer and c.subject != current.subject),
            None,
        )
        if nxt is None:
            break
        ordered.append(nxt)
        pool.remove(nxt)
        current = nxt
    return ordered + pool
