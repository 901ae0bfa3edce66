"""Hostile captures (issue 17): floods and scans of one-packet flows stay in bounded memory,
and what the bounds cost is counted and said in the report, never silent."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest

from bench.flood import write_flood
from mtlsprobe.capture import flowtable
from mtlsprobe.run import expectations
from mtlsprobe.run.analyze import analyze

ROOT = Path(__file__).resolve().parents[1]
EXPECT = expectations.build(ca=(), pins=(), baseline=None)


def _eviction_notes(notes: list[str]) -> list[str]:
    return [n for n in notes if "evicted from the flow table" in n]


def test_a_flood_past_the_flow_table_cap_is_evicted_counted_and_still_judged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "flood.pcap"
    write_flood(path, 20_000)
    monkeypatch.setattr(flowtable, "MAX_OPEN", 1000)
    run = analyze([path], EXPECT, jobs=1)
    # full at 1,000 open flows, an eighth (125) evicted each time: 152 times up to flow 20,000
    assert _eviction_notes(run.notes) == [
        f"{path.name}: 19,000 flow(s) evicted from the flow table (cap 1,000 open connections; "
        "a flood or a scan?), the longest idle first: 19,000 that had shown TLS were judged "
        "with what they had, the rest dropped; their later segments, if any, were not read"
    ]
    assert f"{path.name}: 20000 packets, 20000 TCP connections, 20000 with TLS" in run.notes
    [result] = run.results
    assert (result.target.host, result.target.port) == ("flood.example", 443)
    assert sum(o.repeats or 1 for o in result.observations) == 20_000


def test_a_syn_flood_is_evicted_and_dropped(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "syn.pcap"
    write_flood(path, 5_000, kind="syn")
    monkeypatch.setattr(flowtable, "MAX_OPEN", 1000)
    run = analyze([path], EXPECT, jobs=1)
    # 1,000 + 31 * 125 = 4,875 <= 4,999: 32 evictions of 125
    assert _eviction_notes(run.notes) == [
        f"{path.name}: 4,000 flow(s) evicted from the flow table (cap 1,000 open connections; "
        "a flood or a scan?), the longest idle first: 0 that had shown TLS were judged "
        "with what they had, the rest dropped; their later segments, if any, were not read"
    ]
    assert run.results == []


def test_a_flood_read_in_shares_gives_the_same_results(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "flood.pcap"
    write_flood(path, 10_000, servers=3)
    monkeypatch.setattr(flowtable, "MAX_OPEN", 1000)
    one = analyze([path], EXPECT, jobs=1)
    shared = analyze([path], EXPECT, jobs=2)
    assert shared.results == one.results
    # each share holds half the cap: the count of evictions is each share's own (see
    # capture.flowtable); every other note is the same
    assert [n for n in shared.notes if n not in _eviction_notes(shared.notes)] == [
        n for n in one.notes if n not in _eviction_notes(one.notes)]
    assert len(_eviction_notes(shared.notes)) == len(_eviction_notes(one.notes)) == 1


def _limit_memory() -> None:
    cap = 1 << 30
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


@pytest.mark.slow
def test_200k_one_packet_flows_finish_under_a_1_gib_address_space_cap(tmp_path: Path) -> None:
    path = tmp_path / "flood.pcap"
    write_flood(path, 200_000)
    proc = subprocess.run(
        [sys.executable, "-m", "mtlsprobe", "analyze", str(path), "--jobs", "1"],
        cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=120, preexec_fn=_limit_memory,
    )
    assert proc.returncode in (11, 12), proc.stderr[-2000:]
    assert "evicted from the flow table" in proc.stdout


def test_a_scan_of_many_servers_keeps_a_bounded_number_counted_and_the_same_in_shares(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mtlsprobe.run import tallies

    path = tmp_path / "scan.pcap"
    write_flood(path, 3_000, servers=300)  # 10 connections to each of 300 names
    monkeypatch.setattr(tallies, "MAX_SERVERS", 20)
    one = analyze([path], EXPECT, jobs=1)
    shared = analyze([path], EXPECT, jobs=2)
    assert shared.results == one.results and shared.notes == one.notes
    assert len(one.results) == 20
    assert "2,800 TLS connection(s) to servers beyond the 20 judged (a scan?) were counted, " \
        "not judged" in one.notes
