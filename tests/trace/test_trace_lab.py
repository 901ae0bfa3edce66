"""The hop trace in a namespace topology: agent - r1 - r2 - server (tests/trace/trace_topology.py).

Each test places (or leaves out) a middlebox at a known hop and asserts what the trace
names: pure routing reaches the server at hop 3 with no early answer; a transparent
interceptor in r2 (nft REDIRECT to our InterceptingProxy) is hop 2 / 10.252.2.2; a firewall
in r1 that resets ClientHellos is hop 1 / 10.252.1.1; MSS clamping in r1 is seen in hop 2's
ICMP quote. Root and `ip netns` needed (CI runs as root); skipped with the reason otherwise.
The topology is torn down after the module even on failure and must leave nothing behind.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest
from lab.netns import lab_namespaces, unavailable
from trace_topology import (
    HOP1,
    HOP2,
    INTERCEPTOR_SCRIPT,
    MSS_CLAMP_NFT,
    REDIRECT_NFT,
    REPO,
    RESET_HELLO_NFT,
    SERVER,
    SERVER_SCRIPT,
    TraceTopology,
    daemon,
    env,
    nft_rules,
)

pytestmark = pytest.mark.lab
SCHEMA_FILE = REPO / "mtlsprobe" / "report" / "schema" / "report-v1.json"
SCHEMA = json.loads(SCHEMA_FILE.read_text("utf-8"))
TARGET = f"{SERVER}:443"


@pytest.fixture(scope="module")
def topo() -> Iterator[TraceTopology]:
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    t = TraceTopology("trace").create()
    try:
        yield t
    finally:
        problems = t.destroy()
        assert not problems, problems
        assert not lab_namespaces(t.prefix)


@pytest.fixture(scope="module")
def server(topo: TraceTopology, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The TLS server on 10.252.3.2:443; yields its root CA's PEM path."""
    root = tmp_path_factory.mktemp("trace-lab") / "root.pem"
    with daemon(topo, "server", SERVER_SCRIPT, str(root)):
        yield root


def in_agent(topo: TraceTopology, *args: str) -> tuple[int, dict]:
    proc = subprocess.run(
        topo.argv("agent", [sys.executable, "-m", "mtlsprobe", *args, "--format", "json"]),
        capture_output=True, text=True, timeout=120, env=env(), cwd=REPO,
    )
    assert proc.stdout, proc.stderr
    report = json.loads(proc.stdout)
    jsonschema.validate(report, SCHEMA)
    return proc.returncode, report


def trace(topo: TraceTopology, exit_code: int | None = None) -> dict:
    """The trace's one result; its exit code (and the report's) is `exit_code` when given."""
    code, report = in_agent(topo, "trace", TARGET, "--probe-timeout", "0.5", "--max-ttl", "8")
    [result] = report["results"]
    if exit_code is not None:
        assert (code, report["exit_code"]) == (exit_code, exit_code), result["reason"]
    return result


def hop_addrs(hops: dict, phase: str) -> dict[int, str]:
    return {p["ttl"]: p["addr"] for p in hops["probes"]
            if p["phase"] == phase and p["answer"] == "time_exceeded"}


def test_pure_routing_reaches_the_server_at_hop_3_without_early_answers(topo, server):
    result = trace(topo, exit_code=0)  # the server itself answers
    hops = result["hops"]
    assert (hops["ip_distance"], hops["tcp_distance"], hops["tls_distance"]) == (3, 3, 3)
    assert hops["tls_answer"] == "tls"
    assert hops["middlebox_hop"] is None
    assert hop_addrs(hops, "ip") == {1: HOP1, 2: HOP2}
    assert hop_addrs(hops, "tls") == {1: HOP1, 2: HOP2}
    assert not {f["rule"] for f in result["findings"]} & {"MTLS051", "MTLS054", "MTLS055"}
    assert result["verdict"] == "unknown"


def test_transparent_interceptor_in_r2_is_named_hop_2(topo, server):
    with daemon(topo, "r2", INTERCEPTOR_SCRIPT), nft_rules(topo, "r2", REDIRECT_NFT):
        result = trace(topo, exit_code=10)  # found the hop
        hops = result["hops"]
        assert hops["ip_distance"] == 3 and hops["tcp_distance"] == 2
        assert (hops["middlebox_hop"], hops["middlebox_addr"]) == (2, HOP2)
        finding = next(f for f in result["findings"] if f["rule"] == "MTLS051")
        assert f"hop 2 ({HOP2})" in finding["summary"]

        # the full probe: the chain says inspected, the trace says where
        code, report = in_agent(topo, "probe", TARGET, "--ca", str(server), "--trace",
                                "--no-env-proxy", "--repeat", "1", "--timeout", "10")
        [res] = report["results"]
        assert res["verdict"] == "inspected"
        assert res["hops"]["middlebox_hop"] == 2
        assert "MTLS051" in {f["rule"] for f in res["findings"]}
        assert code == 20 or code != 0


def test_firewall_resetting_client_hellos_in_r1_is_named_hop_1(topo, server):
    with nft_rules(topo, "r1", RESET_HELLO_NFT):
        result = trace(topo, exit_code=11)  # found the hop
        hops = result["hops"]
        assert hops["tcp_distance"] == 3  # TCP itself passes
        assert hops["tls_answer"] == "rst" and hops["tls_distance"] == 2
        assert (hops["middlebox_hop"], hops["middlebox_addr"]) == (1, HOP1)
        assert result["verdict"] == "blocked"
        assert f"hop 1 ({HOP1})" in result["reason"]

        # passive evidence, no trace: the sniffer sees the reset's TTL (64: sent by hop 1)
        # unlike the server's SYN-ACK (62: three hops)
        _code, report = in_agent(topo, "probe", TARGET, "--no-env-proxy", "--repeat", "1",
                                 "--timeout", "5")
        [res] = report["results"]
        assert res["verdict"] == "blocked"
        injected = next(f for f in res["findings"] if f["rule"] == "MTLS053")
        assert "TTL 64" in injected["summary"]


def test_mss_clamping_in_r1_shows_in_hop_2s_quote(topo, server):
    with nft_rules(topo, "r1", MSS_CLAMP_NFT):
        result = trace(topo)
        quotes = {p["ttl"]: p["rewritten"] for p in result["hops"]["probes"]
                  if p["phase"] == "tcp" and p["answer"] == "time_exceeded"}
        assert quotes[1] == []
        assert "mss 1460->1200" in quotes[2]
        finding = next(f for f in result["findings"] if f["rule"] == "MTLS054")
        assert "hop 2" in finding["summary"]
