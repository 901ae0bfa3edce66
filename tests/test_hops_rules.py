"""MTLS051..055 on hand-made hop traces and TCP facts, and their place in the verdict table."""

from __future__ import annotations

import dataclasses

import factories as f
import hopfacts as h

from mtlsprobe.model import Direction, Severity, Verdict
from mtlsprobe.rules.engine import evaluate, run_rules


def fired(case) -> dict[str, object]:
    return {x.rule: x for x in run_rules(case)}


def test_mtls051_names_the_intercepting_hop_and_its_address():
    got = fired(h.with_hops(h.intercepted_at_hop2()))
    x = got["MTLS051"]
    assert "hop 2 (10.252.2.2)" in x.summary and "3 hops away" in x.summary
    assert x.severity is Severity.WARNING  # the chain findings decide whether it breaks mTLS
    assert {e.field: e.value for e in x.evidence}["hops.middlebox_addr"] == h.HOP2
    assert "MTLS055" not in got


def test_mtls051_silent_on_pure_routing_and_without_a_trace():
    assert not {"MTLS051", "MTLS055", "MTLS054"} & set(fired(h.with_hops(h.routed())))
    assert not {"MTLS051", "MTLS055"} & set(fired(f.case(f.observation())))


def test_mtls055_reset_by_hop1_blocks_and_the_reason_names_the_hop():
    aborted = f.observation(outcome=f.Outcome.ABORTED, server_chain=(),
                            server_chain_seen=f.Seen.UNKNOWN, stage=f.Stage.HANDSHAKE)
    result = evaluate(h.with_hops(h.reset_at_hop1(), aborted))
    assert result.verdict is Verdict.BLOCKED
    assert "hop 1 (10.252.1.1)" in result.reason and "resets" in result.reason
    assert "MTLS051" not in {x.rule for x in result.findings}


def test_mtls052_synack_and_tls_segments_from_different_distances():
    x = fired(f.case(f.observation(tcp=h.tcp(server_ttls=(62, 63)))))["MTLS052"]
    assert any("TTL 63" in e.value for e in x.evidence)
    same = fired(f.case(f.observation(tcp=h.tcp())))
    assert "MTLS052" not in same


def test_mtls052_from_the_trace_reply_ttls():
    t = h.routed()
    probes = tuple(dataclasses.replace(p, reply_ttl=63) if p.phase == "tls" and p.answer == "tls"
                   else p for p in t.probes)
    assert "MTLS052" in fired(h.with_hops(dataclasses.replace(t, probes=probes)))
    assert "MTLS052" not in fired(h.with_hops(t))


def test_mtls052_different_initial_ttl_same_hop_count():
    # 62 (64 - 2) and 126 (128 - 2): same distance, different operating system
    assert "MTLS052" in fired(f.case(f.observation(tcp=h.tcp(server_ttls=(126,)))))


def test_mtls053_rst_with_a_foreign_ttl_is_injected():
    x = fired(f.case(f.observation(tcp=h.injected_rst_facts())))["MTLS053"]
    assert "TTL 64" in x.summary and "injected" in x.summary


def test_mtls053_not_for_the_servers_own_rst_or_when_we_reset_too():
    own = h.tcp(rst_from=(Direction.S2C,), rst_ttls=(62,))
    both = h.tcp(rst_from=(Direction.S2C, Direction.C2S), rst_ttls=(64, 62))
    assert "MTLS053" not in fired(f.case(f.observation(tcp=own)))
    assert "MTLS053" not in fired(f.case(f.observation(tcp=both)))


def test_mtls054_mss_clamping_located_but_nat_alone_is_not_a_finding():
    x = fired(h.with_hops(h.mss_clamped_by_hop1()))["MTLS054"]
    assert "hop 2" in x.summary and "mss" in x.summary
    assert all("src" not in e.value for e in x.evidence)
    t = h.routed()
    natted = dataclasses.replace(t, probes=tuple(
        dataclasses.replace(p, rewritten=("src 10.0.0.2->192.0.2.1",)) for p in t.probes))
    assert "MTLS054" not in fired(h.with_hops(natted))


def test_hop_findings_leave_a_pass_a_pass():
    """Warnings never move the verdict: an early TCP answer alone does not fail a pinned
    server whose chain matches (a TCP relay on the path is allowed)."""
    result = evaluate(h.with_hops(h.intercepted_at_hop2()))
    assert result.verdict is Verdict.PASS_END_TO_END
    assert "MTLS051" in {x.rule for x in result.findings}


def test_trace_command_verdicts_from_the_hop_rules_alone():
    from mtlsprobe.run.path import judge_trace

    blocked = judge_trace(f.TARGET, h.reset_at_hop1())
    assert blocked.verdict is Verdict.BLOCKED and "hop 1 (10.252.1.1)" in blocked.reason
    located = judge_trace(f.TARGET, h.intercepted_at_hop2())
    assert located.verdict is Verdict.UNKNOWN and "hop 2 (10.252.2.2)" in located.reason
    clean = judge_trace(f.TARGET, h.routed())
    assert clean.verdict is Verdict.UNKNOWN and "No hop before the server" in clean.reason
    assert clean.hops == h.routed() and clean.findings == ()
