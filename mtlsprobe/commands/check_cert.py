"""`mtlsprobe check-cert`: read the agent's credentials, run the MTLS1xx checks, report.

Boundary: file reading and options only; the checks are pure (mtlsprobe.credcheck).
Key material never leaves this module: only the key's public half and the key file's mode.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path

import click
from cryptography.hazmat.primitives import serialization

from mtlsprobe.cli import EXIT_CODES_HELP, emit, output_options
from mtlsprobe.errors import InputError

VERDICT_HELP = """\b
Verdicts (so exit codes follow the probe bands):
  client_cert_rejected  a defect a server refuses the certificate for: key mismatch,
                        expired or not yet valid, no clientAuth EKU, weak key, SHA-1/MD5
                        signature, chain not building to --ca (exit 10)
  unknown               no --ca given, so trust was not checked (exit 12)
  pass_end_to_end       fit; warnings (expiring within 30 days, CA:TRUE leaf, empty
                        subject without SAN, key file readable by others) do not fail it
The result's target is `<agent credentials>:0` via route `local`; rule ids are MTLS1xx.
"""


def _spki(public_key: object) -> bytes:
    return public_key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _once(fn: Callable[[], bytes | None]) -> Callable[[], bytes | None]:
    """Ask for the password at most once, however many loaders need it."""
    cache: list[bytes | None] = []

    def get() -> bytes | None:
        if not cache:
            cache.append(fn())
        return cache[0]

    return get


def _key_spki(path: Path, password: Callable[[], bytes | None]) -> bytes | None:
    """The public half of the key in `path`, or None when it cannot be read at all."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    loader = (serialization.load_pem_private_key if b"-----BEGIN" in data
              else serialization.load_der_private_key)
    for pw in (None, password):
        try:
            key = loader(data, pw() if callable(pw) else pw)
            return _spki(key.public_key())
        except TypeError:
            continue  # encrypted: try again with the password
        except Exception:
            return None
    return None


def _load(cert: Path | None, key: Path | None, pkcs12: Path | None,
          password: Callable[[], bytes | None]) -> tuple[tuple[bytes, ...], bool]:
    """(chain DER leaf first, key matches). A mismatching pair is a finding, not an error."""
    from mtlsprobe.certs import CertError, load_certificates, to_der
    from mtlsprobe.credentials import load_credentials

    try:
        creds = load_credentials(cert=cert, key=key, pkcs12=pkcs12, password=password)
        return creds.chain_der, True
    except InputError as err:
        if pkcs12 is not None or cert is None or key is None:
            raise
        error = err
    try:  # was it only the pair that failed? then the other checks still apply
        chain = load_certificates(cert.read_bytes())
    except (OSError, CertError):
        raise error from None
    spki = _key_spki(key, password)
    if spki is None or spki == _spki(chain[0].public_key()):
        raise error
    return tuple(to_der(c) for c in chain), False


@click.command("check-cert", epilog=VERDICT_HELP + "\n" + EXIT_CODES_HELP)
@click.option("--cert", type=click.Path(dir_okay=False, path_type=Path),
              help="Agent certificate (PEM or DER; may hold intermediates after the leaf).")
@click.option("--key", type=click.Path(dir_okay=False, path_type=Path),
              help="Agent private key (PEM or DER; may be encrypted).")
@click.option("--pkcs12", type=click.Path(dir_okay=False, path_type=Path),
              help="Agent certificate and key as PKCS#12 (.p12/.pfx).")
@click.option("--password-file", type=click.Path(dir_okay=False, path_type=Path),
              help="File holding the key password (else $MTLSPROBE_KEY_PASSWORD, else a prompt "
                   "on a terminal).")
@click.option("--ca", "ca", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="PEM bundle holding the CA the server trusts for client certificates "
                   "(repeatable).")
@output_options
def check_cert(
    cert: Path | None,
    key: Path | None,
    pkcs12: Path | None,
    password_file: Path | None,
    ca: Sequence[Path],
    fmt: str,
    output: Path | None,
) -> None:
    """Check the agent's own client certificate and key before blaming the network.

    Key matches certificate; chain builds to --ca; valid now and for how long; EKU
    clientAuth; key type and size; signature algorithm; not a CA certificate; subject or
    SAN present; key file not readable by others.
    """
    from mtlsprobe import credcheck, expectations, pipeline
    from mtlsprobe.certs import cert_info
    from mtlsprobe.credentials import password_from

    if pkcs12 and (cert or key):
        raise click.UsageError("use either --pkcs12 or --cert/--key, not both")
    if not pkcs12 and not (cert and key):
        raise click.UsageError("give --cert and --key, or --pkcs12")
    password = _once(lambda: password_from(password_file))
    chain_der, matches = _load(cert, key, pkcs12, password)
    roots = expectations.load_roots(ca)
    key_file = pkcs12 or key
    mode = None
    if os.name == "posix" and key_file is not None:
        try:
            mode = os.stat(key_file).st_mode & 0o777
        except OSError:
            mode = None
    chain = tuple(cert_info(d) for d in chain_der)
    facts = credcheck.CredentialFacts(
        chain=chain, key_matches=matches, key_file=str(key_file), key_file_mode=mode,
        roots=roots,
    )
    now = datetime.now(timezone.utc)
    result = credcheck.judge_credentials(facts, now)
    inputs: dict[str, object] = {
        "cert": str(cert) if cert else None,
        "key": str(key) if key else None,
        "pkcs12": str(pkcs12) if pkcs12 else None,
        "ca": [str(p) for p in ca],
        "agent_cert": chain[0].sha256,
        "agent_subject": chain[0].subject,
    }
    report = pipeline.make_report("check-cert", [result], inputs)
    emit(report, fmt, output)
    sys.exit(report.exit_code)
