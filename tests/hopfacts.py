"""Hand-made hop traces and passive TCP facts for the MTLS05x rule tests and the corpus.

The lab shape the facts imitate: agent -> hop 1 (10.252.1.1) -> hop 2 (10.252.2.2) ->
server (10.252.3.2, three hops away), every machine starting at TTL 64.
"""

from __future__ import annotations

import dataclasses

import factories as f

from mtlsprobe.model import Case, Direction, HopProbe, HopTrace, TcpFacts

HOP1, HOP2, SERVER = "10.252.1.1", "10.252.2.2", "10.252.3.2"


def te(phase: str, ttl: int, addr: str, *changes: str) -> HopProbe:
    return HopProbe(phase=phase, ttl=ttl, answer="time_exceeded", addr=addr,
                    reply_ttl=65 - ttl, rtt_ms=0.1, rewritten=tuple(changes))


def answer(phase: str, ttl: int, kind: str, reply_ttl: int, addr: str = SERVER) -> HopProbe:
    return HopProbe(phase=phase, ttl=ttl, answer=kind, addr=addr, reply_ttl=reply_ttl,
                    rtt_ms=0.2)


def routed(**changes: object) -> HopTrace:
    """Pure routing: everything answered by the server at hop 3."""
    probes = (
        te("ip", 1, HOP1), te("ip", 2, HOP2), answer("ip", 3, "echo_reply", 62),
        te("tcp", 1, HOP1), te("tcp", 2, HOP2), answer("tcp", 3, "synack", 62),
        te("tls", 1, HOP1), te("tls", 2, HOP2), answer("tls", 3, "tls", 62),
    )
    base = HopTrace(target=f.TARGET, probes=probes, ip_distance=3, tcp_distance=3,
                    tls_distance=3, tls_answer="tls")
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def intercepted_at_hop2() -> HopTrace:
    """A transparent interceptor in hop 2: SYN and ClientHello answered at TTL 2."""
    probes = (
        te("ip", 1, HOP1), te("ip", 2, HOP2), answer("ip", 3, "echo_reply", 62),
        te("tcp", 1, HOP1), answer("tcp", 2, "synack", 63),
        te("tls", 1, HOP1), answer("tls", 2, "tls", 63),
    )
    return HopTrace(target=f.TARGET, probes=probes, ip_distance=3, tcp_distance=2,
                    tls_distance=2, tls_answer="tls", middlebox_hop=2, middlebox_addr=HOP2,
                    middlebox_answer="tcp", middlebox_reason="hop 2 answers the SYN")


def reset_at_hop1() -> HopTrace:
    """A firewall in hop 1 resets forwarded ClientHellos (answer at TTL 2, RST TTL 64)."""
    probes = (
        te("ip", 1, HOP1), te("ip", 2, HOP2), answer("ip", 3, "echo_reply", 62),
        te("tcp", 1, HOP1), te("tcp", 2, HOP2), answer("tcp", 3, "synack", 62),
        te("tls", 1, HOP1), answer("tls", 2, "rst", 64),
    )
    return HopTrace(target=f.TARGET, probes=probes, ip_distance=3, tcp_distance=3,
                    tls_distance=2, tls_answer="rst", middlebox_hop=1, middlebox_addr=HOP1,
                    middlebox_answer="rst", middlebox_reason="hop 1 resets")


def mss_clamped_by_hop1() -> HopTrace:
    """Hop 2 quotes the SYN with MSS 1200: hop 1 clamps it. NAT (src) is not a finding."""
    t = routed()
    probes = tuple(
        te("tcp", 2, HOP2, "mss 1460->1200", "src 10.0.0.2->10.252.1.2")
        if p.phase == "tcp" and p.ttl == 2 else p for p in t.probes
    )
    return dataclasses.replace(t, probes=probes)


def with_hops(trace: HopTrace, *observations, **kw) -> Case:
    obs = observations or (f.observation(),)
    return dataclasses.replace(f.case(*obs, **kw), hops=trace)


def tcp(**kw: object) -> TcpFacts:
    """Facts of a server three hops away (TTL 62 on everything)."""
    base = TcpFacts(connect_ms=1.0, syn_ttl=64, synack_ttl=62, client_ttls=(64,),
                    server_ttls=(62,), synack_options=("mss=1460", "sack_perm", "ts", "wscale=7"))
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def injected_rst_facts() -> TcpFacts:
    return tcp(rst_from=(Direction.S2C,), rst_ttls=(64,))


def corpus_cases() -> list[Case]:
    """Cases that make MTLS051..055 fire (for factories.corpus)."""
    return [
        with_hops(intercepted_at_hop2()),
        with_hops(reset_at_hop1()),
        with_hops(mss_clamped_by_hop1()),
        f.case(f.observation(tcp=tcp(server_ttls=(62, 63)))),
        f.case(f.observation(tcp=injected_rst_facts())),
    ]
