"""ssl.log's ``validation_status``, as ``policy/protocols/ssl/validate-certs.zeek`` sets it.

Zeek (``src/file_analysis/analyzer/x509/functions.bif``, ``x509_verify``) runs OpenSSL's
``X509_verify_cert`` on the server's leaf with the rest of the chain as untrusted
certificates and ``SSL::root_certs`` as the store, at the time the row is written
(``X509_V_FLAG_USE_CHECK_TIME``), and logs ``X509_verify_cert_error_string`` of the first
error ("ok" when none), except that a self-signed leaf is "self signed certificate" (the
OpenSSL 1 text, kept for Zeek's baselines). Here the same OpenSSL does it through
``openssl verify`` (the first error it prints is the one X509_verify_cert stops at). The
intermediate cache of validate-certs.zeek is not kept (as ``SSL::ssl_cache_intermediate_ca
= F``).
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

_ERROR = re.compile(r"^error (\d+) at \d+ depth lookup: (.+)$", re.M)
_DEPTH_ZERO_SELF_SIGNED = 18


def _pem(der: bytes) -> str:
    import base64
    import textwrap

    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode(), 64))
    return f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"


def validation_status(chain: list[bytes], roots: Path, at: float) -> str:
    """The validation_status Zeek logs for a server chain (DER, leaf first)."""
    with tempfile.TemporaryDirectory() as tmp:
        leaf = Path(tmp) / "leaf.pem"
        leaf.write_text(_pem(chain[0]))
        cmd = ["openssl", "verify", "-attime", str(int(at)), "-no-CApath", "-no-CAstore",
               "-CAfile", str(roots)]
        if len(chain) > 1:
            untrusted = Path(tmp) / "untrusted.pem"
            untrusted.write_text("".join(_pem(der) for der in chain[1:]))
            cmd += ["-untrusted", str(untrusted)]
        done = subprocess.run([*cmd, str(leaf)], capture_output=True, text=True, timeout=60)
    m = _ERROR.search(done.stdout + done.stderr)
    if m is None:
        if done.returncode == 0:
            return "ok"
        raise RuntimeError(f"openssl verify failed: {done.stderr.strip()}")
    if int(m.group(1)) == _DEPTH_ZERO_SELF_SIGNED:
        return "self signed certificate"
    return m.group(2).strip()
