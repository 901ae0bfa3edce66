"""Shared pytest fixtures: a loopback PKI, reference servers, middleboxes and external tools.

Everything listens on 127.0.0.1 only and is stopped at teardown, even when a test fails.
Factories (`make_*`) take the same keyword arguments as the class they build.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from tools import Mitmdump, OpenSSLServer, Tinyproxy, require_program

from mtlsprobe.live import pki
from mtlsprobe_demo.connect_proxy import ConnectProxy
from mtlsprobe_demo.intercepting_proxy import InterceptingProxy, inspection_ca
from mtlsprobe_demo.server import ReferenceServer
from mtlsprobe_demo.tcp_relay import TcpRelay
from mtlsprobe_demo.terminating_proxy import TerminatingProxy

S = TypeVar("S")


@dataclass(frozen=True)
class LoopbackPKI:
    """The certificates of a small mTLS world (all in memory).

    server_root issues `server` (CN/SAN localhost + 127.0.0.1); client_ca issues `client`;
    stranger_ca issues `stranger` (a client cert the server does not trust);
    inspection_ca is what an SSL-inspection proxy re-signs with.
    """

    server_root: pki.CA
    server: pki.Issued
    client_ca: pki.CA
    client: pki.Issued
    stranger_ca: pki.CA
    stranger: pki.Issued
    inspection_ca: pki.CA


@pytest.fixture(scope="session")
def loopback_pki() -> LoopbackPKI:
    server_root = pki.CA("mtlsprobe Test Server Root", org="mtlsprobe tests")
    client_ca = pki.CA("mtlsprobe Test Client CA", org="mtlsprobe tests")
    stranger_ca = pki.CA("Stranger CA")
    return LoopbackPKI(
        server_root=server_root,
        server=server_root.issue(
            "localhost", sans=("localhost", "127.0.0.1"), eku=(pki.SERVER_AUTH,)
        ),
        client_ca=client_ca,
        client=client_ca.issue("agent-01", eku=(pki.CLIENT_AUTH,)),
        stranger_ca=stranger_ca,
        stranger=stranger_ca.issue("stranger", eku=(pki.CLIENT_AUTH,)),
        inspection_ca=inspection_ca(),
    )


@pytest.fixture
def start_service() -> Iterator[Callable[[S], S]]:
    """`start_service(svc)` starts anything with start()/stop() and stops it at teardown."""
    started: list[Any] = []

    def start(svc: S) -> S:
        svc.start()  # type: ignore[attr-defined]
        started.append(svc)
        return svc

    yield start
    for svc in reversed(started):
        svc.stop()


@pytest.fixture
def make_reference_server(
    loopback_pki: LoopbackPKI, start_service: Callable
) -> Callable[..., ReferenceServer]:
    """`make_reference_server(**ReferenceServer kwargs)`; identity/client_ca default to the PKI."""

    def make(**kwargs: Any) -> ReferenceServer:
        identity = kwargs.pop("identity", loopback_pki.server)
        kwargs.setdefault("client_ca", loopback_pki.client_ca)
        return start_service(ReferenceServer(identity, **kwargs))

    return make


@pytest.fixture
def mtls_server(make_reference_server: Callable[..., ReferenceServer]) -> ReferenceServer:
    """An HTTP server on 127.0.0.1 that requires a client cert from `loopback_pki.client_ca`."""
    return make_reference_server()


@pytest.fixture
def tcp_relay(mtls_server: ReferenceServer, start_service: Callable) -> TcpRelay:
    """An L4 relay in front of `mtls_server`."""
    return start_service(TcpRelay(mtls_server.address))


@pytest.fixture
def connect_proxy(start_service: Callable) -> ConnectProxy:
    """A plain CONNECT tunnel (no auth); build others with `ConnectProxy(...)` + start_service."""
    return start_service(ConnectProxy())


@pytest.fixture
def intercepting_proxy(
    mtls_server: ReferenceServer, loopback_pki: LoopbackPKI, start_service: Callable
) -> InterceptingProxy:
    """A transparent re-signing proxy in front of `mtls_server` (CA: loopback_pki.inspection_ca)."""
    return start_service(
        InterceptingProxy(loopback_pki.inspection_ca, upstream=mtls_server.address)
    )


@pytest.fixture
def bump_proxy(loopback_pki: LoopbackPKI, start_service: Callable) -> InterceptingProxy:
    """An explicit (CONNECT) re-signing proxy (CA: loopback_pki.inspection_ca)."""
    return start_service(InterceptingProxy(loopback_pki.inspection_ca))


@pytest.fixture
def terminating_proxy(
    mtls_server: ReferenceServer, loopback_pki: LoopbackPKI, start_service: Callable
) -> TerminatingProxy:
    """A TLS-terminating LB in front of `mtls_server`, holding a cert from the server's root."""
    identity = loopback_pki.server_root.issue(
        "localhost", sans=("localhost", "127.0.0.1"), eku=(pki.SERVER_AUTH,)
    )
    return start_service(TerminatingProxy(identity, mtls_server.address))


# -- external programs (tests/tools.py) ---------------------------------------------------------


@pytest.fixture
def make_openssl_server(
    loopback_pki: LoopbackPKI, tmp_path: Path, start_service: Callable
) -> Callable[..., OpenSSLServer]:
    """`make_openssl_server(**OpenSSLServer kwargs)`: a started `openssl s_server`.

    identity/client_ca default to the PKI's server cert and client CA. Skips if openssl is absent.
    """
    require_program("openssl")
    counter = iter(range(1000))

    def make(**kwargs: Any) -> OpenSSLServer:
        kwargs.setdefault("identity", loopback_pki.server)
        kwargs.setdefault("client_ca", loopback_pki.client_ca)
        workdir = tmp_path / f"s_server-{next(counter)}"
        return start_service(OpenSSLServer(workdir=workdir, **kwargs))

    return make


@pytest.fixture
def openssl_server(make_openssl_server: Callable[..., OpenSSLServer]) -> OpenSSLServer:
    """`openssl s_server -www -Verify 1` requiring a client cert from loopback_pki.client_ca."""
    return make_openssl_server()


@pytest.fixture
def make_tinyproxy(tmp_path: Path, start_service: Callable) -> Callable[..., Tinyproxy]:
    """`make_tinyproxy(connect_ports=[...], **Tinyproxy kwargs)`: a started tinyproxy."""
    require_program("tinyproxy")
    counter = iter(range(1000))

    def make(**kwargs: Any) -> Tinyproxy:
        return start_service(Tinyproxy(workdir=tmp_path / f"tinyproxy-{next(counter)}", **kwargs))

    return make


@pytest.fixture
def mitmdump(tmp_path: Path, start_service: Callable) -> Mitmdump:
    """A started mitmdump (regular proxy mode, --ssl-insecure); its CA: `mitmdump.ca_cert_path`."""
    require_program(Mitmdump.default_binary())
    return start_service(Mitmdump(workdir=tmp_path / "mitmdump"))
