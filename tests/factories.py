"""Hand-made model values for rule and report tests.

One canonical valid Observation (the agent attempt reaching the real server, which asks
for and accepts the agent certificate) plus ``observation(**changes)`` built on
``dataclasses.replace``. Certificates are real ones from mtlsprobe.live.pki, turned into
CertInfo through certs.cert_info, so chain building and pins are exercised for real.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from functools import cache

from mtlsprobe.live import pki
from mtlsprobe.model import (
    AlertInfo,
    Attempt,
    BaselinePort,
    Case,
    CertInfo,
    CertKind,
    CertRequestInfo,
    Direction,
    Endpoint,
    Expectations,
    HttpExchange,
    Observation,
    Outcome,
    Route,
    Seen,
    Stage,
    StreamEnd,
    Verdict,
    certs,
)

OBSERVED_AT = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
MONTH_AGO = OBSERVED_AT - dt.timedelta(days=30)

TARGET = Endpoint(host="ec.example.com", port=8443, ip="127.0.0.1")
CLIENT = Endpoint(host="127.0.0.1", port=50000)
DIRECT = Route(kind="direct", source="flag")
VIA_PROXY = Route(kind="http_proxy", proxy="http://proxy.example:3128", source="flag",
                  connect_status=200, connect_reason="Connection established")


def info(obj: pki.Issued | pki.CA) -> CertInfo:
    return certs.cert_info(obj.der)


def chain_of(issued: pki.Issued) -> tuple[CertInfo, ...]:
    """Leaf then intermediates, as a server sends them."""
    return (info(issued), *(certs.cert_info(certs.to_der(c)) for c in issued.chain))


SERVER_ROOT_CA = pki.CA("Example Server Root CA", org="Example Corp")
SERVER_ISSUING_CA = SERVER_ROOT_CA.intermediate("Example Server Issuing CA", org="Example Corp")
SERVER_LEAF = SERVER_ISSUING_CA.issue("ec.example.com", sans=("ec.example.com",),
                                      not_before=MONTH_AGO)
SERVER_ROOT = info(SERVER_ROOT_CA)
REAL_CHAIN = chain_of(SERVER_LEAF)
REAL_PIN = REAL_CHAIN[0].spki_pin

AGENT_CA = pki.CA("Example Agent CA", org="Example Corp")
AGENT_LEAF = AGENT_CA.issue("agent-001", eku=(pki.CLIENT_AUTH,), not_before=MONTH_AGO)
AGENT_CERT = info(AGENT_LEAF)
AGENT_CA_INFO = info(AGENT_CA)

THROWAWAY_CA = pki.CA("mtlsprobe throwaway CA")
THROWAWAY_CERT = info(THROWAWAY_CA.issue("mtlsprobe-untrusted", eku=(pki.CLIENT_AUTH,)))

CERT_REQUEST = CertRequestInfo(seen=Seen.YES, authorities=(AGENT_CA_INFO.subject,),
                               where="handshake")
NO_CERT_REQUEST = CertRequestInfo(seen=Seen.NO)

HTTP_OK = HttpExchange(path="/", status=200, reason="OK",
                       headers=(("Content-Type", "text/html"),), body_excerpt="<html>")


def attempt(name: str = "agent-cert", kind: CertKind = CertKind.AGENT,
            max_version: str | None = "TLSv1.3") -> Attempt:
    return Attempt(name=name, max_version=max_version, client_cert=kind)


CANONICAL = Observation(
    label="agent-cert",
    client=CLIENT,
    server=TARGET,
    route=DIRECT,
    observed_at=OBSERVED_AT,
    attempt=attempt(),
    history="CsiscrCcFf",
    offered_versions=("TLSv1.3", "TLSv1.2"),
    version="TLSv1.3",
    cipher_suite="TLS_AES_256_GCM_SHA384",
    sni="ec.example.com",
    alpn_offered=("http/1.1",),
    alpn="http/1.1",
    server_chain=REAL_CHAIN,
    server_chain_seen=Seen.YES,
    cert_request=CERT_REQUEST,
    client_chain=(AGENT_CERT,),
    client_chain_seen=Seen.YES,
    outcome=Outcome.ESTABLISHED,
    stage=Stage.HTTP,
    end=StreamEnd.CLOSED_BY_US,
    decrypted=True,
    http=HTTP_OK,
    server_hello_ms=3.5,
)


def observation(**changes: object) -> Observation:
    """The canonical observation with `changes` applied."""
    return dataclasses.replace(CANONICAL, **changes)  # type: ignore[arg-type]


def nocert(version: str = "TLSv1.3", **changes: object) -> Observation:
    """A no-certificate attempt that the far end let through (not enforcing)."""
    short = "tls13" if version == "TLSv1.3" else "tls12"
    base: dict[str, object] = dict(
        label=f"{short}-nocert", attempt=attempt(f"{short}-nocert", CertKind.NONE, version),
        version=version, client_chain=(), client_chain_seen=Seen.YES,
    )
    base.update(changes)
    return observation(**base)


def untrusted(**changes: object) -> Observation:
    base: dict[str, object] = dict(
        label="untrusted-cert", attempt=attempt("untrusted-cert", CertKind.UNTRUSTED),
        client_chain=(THROWAWAY_CERT,),
    )
    base.update(changes)
    return observation(**base)


def server_alert(description: str = "unknown_ca", code: int | None = 48) -> AlertInfo:
    return AlertInfo(sender=Direction.S2C, level="fatal", description=description, code=code,
                     after_handshake=True, decrypted=True)


def rejected(obs: Observation, description: str = "unknown_ca") -> Observation:
    """`obs` with a fatal server alert after the handshake (TLS 1.3 late rejection)."""
    return dataclasses.replace(obs, alerts=(server_alert(description),),
                               outcome=Outcome.REJECTED_BY_SERVER, stage=Stage.FIRST_READ,
                               http=None)


PINNED = Expectations(roots=(SERVER_ROOT,), pins=(REAL_PIN,), agent_cert=AGENT_CERT,
                      agent_chain=(AGENT_CA_INFO,))
ROOTS_ONLY = Expectations(roots=(SERVER_ROOT,))
NOTHING = Expectations()


def baseline_port(**changes: object) -> BaselinePort:
    base = BaselinePort(
        port=TARGET.port,
        chain_sha256=(tuple(c.sha256 for c in REAL_CHAIN),),
        leaf_pins=(REAL_PIN,),
        cert_request=Seen.YES,
        cert_request_authorities=(AGENT_CA_INFO.subject,),
        versions=("TLSv1.3", "TLSv1.2"),
        cipher_suites=("TLS_AES_256_GCM_SHA384", "ECDHE-ECDSA-AES256-GCM-SHA384"),
        rejects_untrusted_cert=Seen.YES,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def with_baseline(**changes: object) -> Expectations:
    return Expectations(baseline=(baseline_port(**changes),))


def case(*observations: Observation, expect: Expectations = PINNED,
         route: Route = DIRECT, target: Endpoint = TARGET) -> Case:
    return Case(target=target, route=route, observations=tuple(observations), expect=expect,
                source="flag")


@cache
def foreign_ca(cn: str, org: str | None = None) -> pki.CA:
    return pki.CA(cn, org=org)


def foreign_chain(cn: str, org: str | None = None, *, leaf_cn: str = "ec.example.com",
                  not_before: dt.datetime | None = MONTH_AGO - dt.timedelta(days=9)
                  ) -> tuple[CertInfo, ...]:
    """A server chain (leaf + issuing CA) from a CA named like a middlebox product's (its
    own validity: a copy of the real leaf's would be an interceptor's mimicry)."""
    ca = foreign_ca(cn, org)
    leaf = ca.issue(leaf_cn, sans=(leaf_cn,), not_before=not_before)
    return (info(leaf), info(ca))


def intercepted(cn: str = "Example SSL Inspection CA", org: str | None = None,
                **changes: object) -> Observation:
    """The agent attempt through an intercepting proxy: its chain, no CertificateRequest."""
    base: dict[str, object] = dict(server_chain=foreign_chain(cn, org),
                                   cert_request=NO_CERT_REQUEST, client_chain=(),
                                   client_chain_seen=Seen.NO)
    base.update(changes)
    return observation(**base)


def probe_set(**changes: object) -> tuple[Observation, ...]:
    """A full live probe against a real server that enforces client certificates."""
    return (
        rejected(nocert("TLSv1.3"), "certificate_required"),
        rejected(nocert("TLSv1.2"), "handshake_failure"),
        rejected(untrusted(), "unknown_ca"),
        observation(**changes),
    )


def scenarios() -> dict[Verdict, Case]:
    """One case per verdict, for report and schema tests."""
    proxy_407 = dataclasses.replace(VIA_PROXY, connect_status=407,
                                    connect_reason="Proxy Authentication Required",
                                    proxy_auth_schemes=("Basic", "Negotiate"))
    proxy_403 = dataclasses.replace(VIA_PROXY, connect_status=403, connect_reason="Forbidden")
    pre_tls: dict[str, object] = dict(
        server_chain=(), server_chain_seen=Seen.UNKNOWN, version=None, cipher_suite=None,
        cert_request=CertRequestInfo(seen=Seen.UNKNOWN), client_chain=(),
        client_chain_seen=Seen.UNKNOWN, outcome=Outcome.INCOMPLETE, http=None,
        server_hello_ms=None, alpn=None,
    )
    return {
        Verdict.PASS_END_TO_END: case(*probe_set()),
        Verdict.INSPECTED: case(intercepted("Zscaler Intermediate Root CA (zscalerthree.net)",
                                            "Zscaler Inc.")),
        Verdict.TERMINATED_BY_LB: case(observation(http=dataclasses.replace(
            HTTP_OK, headers=(("Set-Cookie", "BIGipServerpool_ec=1677787402.20480.0000; path=/"),)
        ))),
        Verdict.CLIENT_CERT_REJECTED: case(rejected(observation(), "bad_certificate")),
        Verdict.PROXY_AUTH_REQUIRED: case(
            observation(route=proxy_407, stage=Stage.PROXY, end=StreamEnd.FIN, **pre_tls),
            route=proxy_407),
        Verdict.BLOCKED: case(
            observation(route=proxy_403, stage=Stage.PROXY, end=StreamEnd.FIN, **pre_tls),
            route=proxy_403),
        Verdict.UNREACHABLE: case(observation(stage=Stage.TCP, end=StreamEnd.NOT_CONNECTED,
                                              local_error="Connection refused", **pre_tls)),
        Verdict.UNKNOWN: case(observation(), expect=NOTHING),
    }


def found(c: Case, rule_id: str) -> list:
    """The findings of one rule on case `c`."""
    from mtlsprobe.rules.engine import run_rules

    return [x for x in run_rules(c) if x.rule == rule_id]


def rule_ids(c: Case) -> set[str]:
    from mtlsprobe.rules.engine import run_rules

    return {x.rule for x in run_rules(c)}


def corpus() -> list[Case]:
    """Cases that, together, make every registered rule fire at least once."""
    from mtlsprobe.model import AlertInfo, Gap

    cases = list(scenarios().values())
    pre_tls: dict[str, object] = dict(
        server_chain=(), server_chain_seen=Seen.UNKNOWN, version=None, cipher_suite=None,
        cert_request=CertRequestInfo(seen=Seen.UNKNOWN), client_chain=(),
        client_chain_seen=Seen.UNKNOWN, outcome=Outcome.ABORTED, http=None,
        server_hello_ms=None,
    )
    ca = pki.CA("Some Proxy CA")
    minted = ca.issue("ec.example.com", key=ca.key, not_before=OBSERVED_AT)
    same_ca = SERVER_ISSUING_CA.issue("lb.example.com", not_before=MONTH_AGO)
    late = dataclasses.replace(CERT_REQUEST, where="post_handshake",
                               authorities=("CN=Someone Else CA",))
    expired = SERVER_ISSUING_CA.issue("ec.example.com", not_before=MONTH_AGO,
                                      not_after=OBSERVED_AT - dt.timedelta(days=1))
    leaf_only = SERVER_ISSUING_CA.issue("ec.example.com", not_before=MONTH_AGO)
    cases += [
        case(observation(server_chain=chain_of(expired))),
        case(observation(cert_request=NO_CERT_REQUEST, client_chain=(), client_chain_seen=Seen.NO,
                         http=HttpExchange(path="/", status=400, reason="Bad Request",
                                           body_excerpt="No required SSL certificate was sent")),
             expect=ROOTS_ONLY),
        case(observation(server_chain=(info(leaf_only),)), expect=ROOTS_ONLY),
        case(intercepted("mitmproxy", "mitmproxy"), expect=with_baseline()),
        case(observation(server_chain=(info(minted), info(ca)))),
        case(observation(server_chain=chain_of(same_ca))),
        case(observation(), expect=ROOTS_ONLY),
        case(observation(cert_request=late, version="TLSv1.2",
                         http=dataclasses.replace(HTTP_OK, headers=(("Via", "1.1 squid"),))),
             observation(label="repeat-2", server_chain=foreign_chain("Other CA"),
                         outcome=Outcome.ABORTED),
             expect=dataclasses.replace(PINNED, baseline=(baseline_port(versions=("TLSv1.3",)),))),
        case(untrusted(), rejected(observation(client_chain=())), expect=with_baseline()),
        case(untrusted(), expect=NOTHING),
        case(observation(label="tls13-nocert", stage=Stage.HANDSHAKE, **pre_tls),
             nocert("TLSv1.2")),
        case(observation(stage=Stage.HANDSHAKE, **pre_tls)),
        case(observation(stage=Stage.HANDSHAKE, **{**pre_tls, "outcome": Outcome.NOT_TLS})),
        case(observation(server_chain=(), server_chain_seen=Seen.UNKNOWN, decrypted=False,
                         cert_request=CertRequestInfo(seen=Seen.UNKNOWN),
                         gaps=(Gap(direction=Direction.S2C, offset=0, length=10),)),
             expect=with_baseline()),
        case(observation(server_chain=(), server_chain_seen=Seen.NO, version=None,
                         server_hello_ms=None, outcome=Outcome.REJECTED_BY_SERVER,
                         stage=Stage.HANDSHAKE, http=None, client_chain=(),
                         client_chain_seen=Seen.NO,
                         alerts=(AlertInfo(sender=Direction.S2C, level="fatal",
                                           description="protocol_version"),))),
        case(observation(http=HttpExchange(path="/", status=200, headers=(
            ("X-BlueCoat-Via", "1"),)))),
        # captured traffic (no attempt of ours): the client's certificate refused (MTLS070/071)
        case(rejected(observation(label="capture flow 0", attempt=None), "bad_certificate")),
        # captured traffic of many agents, one observation standing for them (MTLS072)
        case(observation(label="capture flow 1", attempt=None, repeats=40,
                         clients=("10.0.0.2", "10.0.0.10"), more_clients=True)),
    ]
    from hopfacts import corpus_cases  # hop traces and TTL facts (MTLS051..055)

    cases += corpus_cases()
    from mtlsprobe.model import ReflectorEcho

    hello = "a" * 64
    echo_ok = ReflectorEcho(status="ok", signed=True, hello_sha256=hello,
                            sent_hello_sha256=hello, client_chain_sha256=(AGENT_CERT.sha256,),
                            server_chain_sha256=tuple(c.sha256 for c in REAL_CHAIN))
    echo_bad = dataclasses.replace(echo_ok, hello_sha256="b" * 64, client_chain_sha256=(),
                                   server_chain_sha256=("0" * 64,))
    agent_sent = dataclasses.replace(attempt(), client_cert_sha256=AGENT_CERT.sha256)
    cases += [
        case(observation(attempt=agent_sent, reflected=echo_ok), expect=NOTHING),
        case(observation(attempt=agent_sent, reflected=echo_bad), expect=NOTHING),
        case(observation(reflected=ReflectorEcho(status="bad_signature", error="HMAC mismatch")),
             expect=NOTHING),
    ]
    cases += kind_and_behaviour_cases()
    return cases


def other_name(chain: tuple[CertInfo, ...] | None = None, **changes: object) -> Observation:
    """The probe's other-name handshake (an unrelated SNI) over the same route."""
    from mtlsprobe.model import OTHER_NAME

    base: dict[str, object] = dict(
        label="other-name", attempt=Attempt(name="other-name", sni=OTHER_NAME), sni=OTHER_NAME,
        server_chain=chain if chain is not None else REAL_CHAIN, http=None,
    )
    base.update(changes)
    return observation(**base)


def kind_and_behaviour_cases() -> list[Case]:
    """MTLS025-028 and MTLS093: the kind of middlebox and the behaviour baseline."""
    from mtlsprobe.model import OTHER_NAME, TcpFacts

    fixed = foreign_chain("Some LB CA")
    minting = foreign_ca("Minting Proxy CA")
    for_other = minting.issue(OTHER_NAME, sans=(OTHER_NAME,), not_before=MONTH_AGO)
    copy = minting.issue("ec.example.com", sans=("ec.example.com",), not_before=MONTH_AGO,
                         not_after=REAL_CHAIN[0].not_after)
    behaviour = (("tls.alpn[http/1.1]", ("http/1.1",)), ("tcp.initial_ttl", ("64",)))
    offload = observation(alpn=None, tcp=TcpFacts(synack_ttl=120))
    return [
        dataclasses.replace(case(observation(server_chain=fixed), expect=ROOTS_ONLY),
                            other_name=(other_name(fixed),)),
        dataclasses.replace(case(intercepted(), expect=ROOTS_ONLY),
                            other_name=(other_name((info(for_other), info(minting))),)),
        case(observation(server_chain=(info(copy), info(minting))),
             expect=dataclasses.replace(with_baseline(), roots=(SERVER_ROOT,))),
        case(offload, expect=dataclasses.replace(
            PINNED, baseline=(baseline_port(behaviour=behaviour, leaves=(REAL_CHAIN[0],)),))),
        case(observation(), expect=dataclasses.replace(
            PINNED, baseline=(baseline_port(port=443),))),
        case(observation(), observation(label="repeat-2", server_chain=foreign_chain("Other CA")),
             expect=NOTHING),  # MTLS040 as unknown: nothing says which chain is real
        case(observation(http=HTTP_OK), expect=dataclasses.replace(PINNED, baseline=(baseline_port(
            behaviour=(("http.header_names[/ 200]", ("Server|Date",)),)),))),
    ]
