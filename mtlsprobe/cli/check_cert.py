"""`mtlsprobe check-cert`: read the agent's credentials, run the MTLS1xx checks, report.

Boundary: file reading and options only; the checks are pure (mtlsprobe.rules.agent_cert).
Key material never leaves this module: only the key's public half and the key file's mode.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import click

from mtlsprobe.cli.common import EXIT_CODES_HELP, credential_options, emit, output_options

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


@click.command("check-cert", epilog=VERDICT_HELP + "\n" + EXIT_CODES_HELP)
@credential_options
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
    from mtlsprobe.live.credentials import load_credentials, password_from
    from mtlsprobe.model.certs import cert_info
    from mtlsprobe.rules import agent_cert as credcheck
    from mtlsprobe.run import expectations, pipeline

    if pkcs12 and (cert or key):
        raise click.UsageError("use either --pkcs12 or --cert/--key, not both")
    if not pkcs12 and not (cert and key):
        raise click.UsageError("give --cert and --key, or --pkcs12")
    creds = load_credentials(cert=cert, key=key, pkcs12=pkcs12,
                             password=lambda: password_from(password_file), require_match=False)
    roots = expectations.load_roots(ca)
    key_file = pkcs12 or key
    mode = None
    if os.name == "posix" and key_file is not None:
        try:
            mode = os.stat(key_file).st_mode & 0o777
        except OSError:
            mode = None
    chain = tuple(cert_info(d) for d in creds.chain_der)
    facts = credcheck.CredentialFacts(
        chain=chain, key_matches=creds.key_matches, key_file=str(key_file), key_file_mode=mode,
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
