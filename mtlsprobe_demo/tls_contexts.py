"""Python `ssl` contexts built from in-memory `pki` objects, for loopback servers and proxies.

Boundary: context construction only. Keys touch disk just long enough for
`load_cert_chain` (which only reads files): a private 0700 temp dir, files 0600, removed at once.
"""

from __future__ import annotations

import os
import ssl
import tempfile

from mtlsprobe.live import openssl_hooks, pki

TLS_VERSIONS = {
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}


def tls_version(name: str | None) -> ssl.TLSVersion | None:
    if name is None:
        return None
    try:
        return TLS_VERSIONS[name]
    except KeyError:
        raise ValueError(f"unknown TLS version {name!r}; use one of {list(TLS_VERSIONS)}") from None


def load_identity(ctx: ssl.SSLContext, identity: pki.Issued) -> None:
    """Load a certificate chain and its key into `ctx` without leaving the key on disk."""
    with tempfile.TemporaryDirectory(prefix="mtlsprobe-id-") as tmp:
        path = os.path.join(tmp, "identity.pem")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(identity.chain_pem + identity.key_pem())
        ctx.load_cert_chain(path)


def set_versions(ctx: ssl.SSLContext, min_version: str | None, max_version: str | None) -> None:
    """Bound `ctx` to "TLSv1.2"/"TLSv1.3" names (None leaves the library default)."""
    lo, hi = tls_version(min_version), tls_version(max_version)
    if lo is not None:
        ctx.minimum_version = lo
    if hi is not None:
        ctx.maximum_version = hi


def server_context(
    identity: pki.Issued,
    *,
    client_ca: pki.CA | None = None,
    verify: str = "none",
    min_version: str | None = None,
    max_version: str | None = None,
) -> ssl.SSLContext:
    """A server context; with `client_ca`, it trusts that CA and names it in CertificateRequest.

    verify: "required" | "optional" | "none".
    """
    modes = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}
    if verify not in modes:
        raise ValueError(f"verify must be one of {list(modes)}, not {verify!r}")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    load_identity(ctx, identity)
    set_versions(ctx, min_version, max_version)
    if client_ca is not None:
        ctx.load_verify_locations(cadata=client_ca.cert_pem.decode())
    elif verify != "none":
        raise ValueError("verify != 'none' needs a client_ca")
    ctx.verify_mode = modes[verify]
    if client_ca is not None and verify != "none":
        openssl_hooks.set_client_ca_names(ctx, [client_ca.der])
    return ctx


def client_context(
    *,
    trust: list[pki.CA] | None = None,
    identity: pki.Issued | None = None,
    verify: bool = True,
    min_version: str | None = None,
    max_version: str | None = None,
) -> ssl.SSLContext:
    """A client context trusting `trust` (or nothing, with verify=False), optionally with a cert."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        for ca in trust or []:
            ctx.load_verify_locations(cadata=ca.cert_pem.decode())
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if identity is not None:
        load_identity(ctx, identity)
    set_versions(ctx, min_version, max_version)
    return ctx
