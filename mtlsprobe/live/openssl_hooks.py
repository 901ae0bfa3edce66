"""Two OpenSSL knobs that Python's `ssl` module does not expose, reached with ctypes.

Boundary: loopback test servers only. Both functions act on the `SSL_CTX` behind an
`ssl.SSLContext` and report False (changing nothing) when the hook is unavailable.

* `set_client_ca_names`: the CA names a server lists in its CertificateRequest
  (`SSL_CTX_add_client_CA`). Python's `load_verify_locations` only sets the trust store, so a
  plain Python server sends an EMPTY list; real servers (nginx, IIS, Apache) send their CA names
  and clients use them to pick a certificate.
* `accept_any_client_cert`: a verify callback that lets the handshake finish whatever the client
  certificate is, as nginx's `ssl_verify_client on` does before it answers 400.
"""

from __future__ import annotations

import ctypes
import ssl
from functools import lru_cache

from cryptography.hazmat.primitives import serialization

# CPython's PySSLContext starts with PyObject_HEAD then `SSL_CTX *ctx` (3.10 to 3.13).
_CTX_OFFSET = object.__basicsize__
_VERIFY_CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)


@lru_cache(maxsize=1)
def _libssl() -> ctypes.CDLL | None:
    """The OpenSSL that `_ssl` is linked against (its symbols resolve through `_ssl`)."""
    try:
        import _ssl

        lib = ctypes.CDLL(_ssl.__file__)
        lib.SSL_CTX_get_options.restype = ctypes.c_uint64
        lib.SSL_CTX_get_options.argtypes = [ctypes.c_void_p]
        lib.SSL_CTX_get_verify_mode.restype = ctypes.c_int
        lib.SSL_CTX_get_verify_mode.argtypes = [ctypes.c_void_p]
        lib.SSL_CTX_set_verify.restype = None
        lib.SSL_CTX_set_verify.argtypes = [ctypes.c_void_p, ctypes.c_int, _VERIFY_CB]
        lib.SSL_CTX_add_client_CA.restype = ctypes.c_int
        lib.SSL_CTX_add_client_CA.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        lib.d2i_X509.restype = ctypes.c_void_p
        lib.d2i_X509.argtypes = [
            ctypes.c_void_p,
            ctypes.POINTER(ctypes.c_char_p),
            ctypes.c_long,
        ]
        lib.X509_free.restype = None
        lib.X509_free.argtypes = [ctypes.c_void_p]
    except (ImportError, OSError, AttributeError):
        return None
    return lib


def _ctx_pointer(ctx: ssl.SSLContext) -> int | None:
    lib = _libssl()
    if lib is None:
        return None
    ptr = ctypes.c_void_p.from_address(id(ctx) + _CTX_OFFSET).value
    # Sanity check that the pointer really is this context's SSL_CTX.
    if not ptr or lib.SSL_CTX_get_options(ptr) != int(ctx.options):
        return None
    return ptr


def set_client_ca_names(ctx: ssl.SSLContext, ca_certs_der: list[bytes]) -> bool:
    """Make the server list these CAs' subjects in its CertificateRequest."""
    lib = _libssl()
    ptr = _ctx_pointer(ctx)
    if lib is None or ptr is None:
        return False
    for der in ca_certs_der:
        buf = ctypes.c_char_p(der)
        x509 = lib.d2i_X509(None, ctypes.byref(buf), len(der))
        if not x509:
            return False
        try:
            if lib.SSL_CTX_add_client_CA(ptr, x509) != 1:
                return False
        finally:
            lib.X509_free(x509)
    return True


def set_client_ca_names_pem(ctx: ssl.SSLContext, pems: list[bytes]) -> bool:
    from cryptography import x509

    ders = [
        x509.load_pem_x509_certificate(p).public_bytes(serialization.Encoding.DER) for p in pems
    ]
    return set_client_ca_names(ctx, ders)


def accept_any_client_cert(ctx: ssl.SSLContext) -> bool:
    """Request a client cert but never fail the handshake over it (check it afterwards)."""
    lib = _libssl()
    ptr = _ctx_pointer(ctx)
    if lib is None or ptr is None:
        return False
    cb = _VERIFY_CB(lambda ok, store: 1)
    ctx._mtlsprobe_verify_cb = cb  # type: ignore[attr-defined]  # keep the callback alive
    lib.SSL_CTX_set_verify(ptr, lib.SSL_CTX_get_verify_mode(ptr), cb)
    return True
