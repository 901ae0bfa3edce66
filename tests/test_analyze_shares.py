"""analyze --jobs: a capture read in shares by forked processes gives the same report as
one reader (analyze_shares). Real captures: the committed fixtures and the shared corpus."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import tlsgen

from mtlsprobe.capture import bulk
from mtlsprobe.model import Expectations, Verdict, certs
from mtlsprobe.model.errors import InputError
from mtlsprobe.run import expectations, tallies
from mtlsprobe.run import shares as analyze_shares
from mtlsprobe.run.analyze import analyze
from tests import pcapgen

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures" / "pcaps"
SHARED = ROOT.parent / "shared" / "pcaps"
EXPECT = expectations.build(ca=(), pins=(), baseline=None)


def _fixtures() -> list[Path]:
    return sorted(p for p in FIXTURES.iterdir() if p.suffix in (".pcap", ".pcapng"))


def _keys(path: Path) -> list[str]:
    keys = path.with_name(path.name + ".keys")
    return [keys.read_text()] if keys.exists() else []


def _same_run(path: Path, parts: int, keylogs: list[str]) -> None:
    one = analyze([path], EXPECT, keylog_texts=keylogs, jobs=1)
    shared = analyze([path], EXPECT, keylog_texts=keylogs, jobs=parts)
    assert shared.results == one.results
    assert shared.notes == one.notes


@pytest.mark.parametrize("path", _fixtures(), ids=lambda p: p.name)
def test_fixture_captures_read_in_shares_give_the_same_report(path: Path) -> None:
    _same_run(path, 3, _keys(path))


def test_forgetting_other_shares_keys_changes_nothing(monkeypatch) -> None:
    """A worker forgets the raw keys of other shares' connections past OTHERS_MEMORY; their
    next frames are decoded and hashed again. At a memory of one key, every fixture still
    gives the single reader's report (the workers are forked with the patched limit)."""
    monkeypatch.setattr(bulk, "OTHERS_MEMORY", 1)
    for path in _fixtures():
        _same_run(path, 3, _keys(path))


def _busiest_shared_captures(n: int) -> list[tuple[Path, Path | None]]:
    manifest = json.loads((SHARED / "manifest.json").read_text())
    entries = sorted(manifest, key=lambda e: -len(e.get("handshakes", [])))[:n]
    return [(SHARED / e["path"], SHARED / e["keylog"] if e.get("keylog") else None)
            for e in entries]


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"{SHARED} absent")
def test_busy_real_captures_read_in_shares_give_the_same_report() -> None:
    compared = 0
    for path, keylog in _busiest_shared_captures(12):
        if path.suffix == ".gz":
            continue
        _same_run(path, 2, [keylog.read_text()] if keylog else [])
        compared += 1
    assert compared >= 8


def test_what_is_read_in_shares(tmp_path: Path) -> None:
    capture = _fixtures()[0]
    assert analyze_shares.shares_for(capture, 3) == 3  # asked for
    assert analyze_shares.shares_for(capture, 1) == 1
    assert analyze_shares.shares_for(capture, None) == 1  # small: not worth forking
    packed = tmp_path / "x.pcap.gz"
    packed.write_bytes(gzip.compress(capture.read_bytes()))
    assert analyze_shares.shares_for(packed, 4) == 1  # each worker would inflate it
    assert analyze_shares.shares_for("-", 4) == 1  # stdin cannot be read twice
    assert analyze_shares.shares_for(tmp_path, 4) == 1  # a folder: its files are sources


def test_not_a_capture_is_one_input_error_before_any_worker(tmp_path: Path) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("not a capture\n" * 100)
    with pytest.raises(InputError, match="not a pcap or pcapng capture"):
        analyze([junk], EXPECT, jobs=2)


def test_the_command_reads_in_shares_with_the_same_report(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from mtlsprobe.cli.main import main

    path = _fixtures()[0]
    reports = []
    for jobs in ("1", "2"):
        out = tmp_path / f"j{jobs}.json"
        result = CliRunner().invoke(main, ["analyze", str(path), "--jobs", jobs,
                                           "--format", "json", "--output", str(out)])
        assert result.exit_code in (0, 10, 11, 12), result.output
        report = json.loads(out.read_text())
        report.pop("generated_at")
        reports.append(report)
    assert reports[0] == reports[1]


# --- issue 13: a fleet of agents, each with its own certificate, to one server ----------


_messages = pcapgen.messages_of  # the tests here and their importers use this name


MIXED, REFUSING = 8383, 8443  # the fleet's two ports: see _fleet_capture


@pytest.fixture(scope="module")
def fleet_capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A capture at the server: 100 agents connect to port 8383 and 40 to port 8443, once
    each, every one with its own client certificate (TLS 1.2: in the clear), from its own
    address and distance. On 8383 every third agent's certificate is from a CA the server
    does not trust and is refused (unknown_ca), the other 66 are accepted; on 8443 all are.
    The connections overlap and close out of order."""
    p = tlsgen.pki()
    start = tlsgen.STARTED.timestamp() + 60
    segs: list[pcapgen.Seg] = []
    for i in range(140):
        port, refused = (MIXED, i % 3 == 0) if i < 100 else (REFUSING, True)
        agent = (p.other_ca if refused else p.client_ca).issue(f"agent-{i:03d}")
        session = tlsgen.run(version="TLSv1.2", client_cert=agent, keylog=False)
        segs += pcapgen.conversation(
            _messages(session), client=(f"10.1.{i // 200}.{i % 200 + 1}", 40000 + i),
            server=("10.0.0.2", port), ttl_client=64 - i % 9, start=start + i * 0.002,
            step=0.001 * (1 + i % 5),
        )
    segs.sort(key=lambda seg: seg.ts)
    return pcapgen.capture(segs, tmp_path_factory.mktemp("fleet") / "fleet.pcap")


def _fleet_expect() -> Expectations:
    p = tlsgen.pki()
    leaf = certs.cert_info(p.server.der)
    return Expectations(roots=(certs.cert_info(p.server_ca.der),), pins=(leaf.spki_pin,))


def _summary(result, rule: str) -> str:
    [x] = [x for x in result.findings if x.rule == rule]
    return x.summary


def test_a_fleet_of_client_certificates_is_judged_whole_and_the_same_in_shares(
    fleet_capture: Path,
) -> None:
    one = analyze([fleet_capture], _fleet_expect(), jobs=1)
    shared = analyze([fleet_capture], _fleet_expect(), jobs=3)
    assert shared.results == one.results
    assert shared.notes == one.notes
    mixed, refusing = one.results
    assert (mixed.target.port, refusing.target.port) == (MIXED, REFUSING)
    assert sum(o.repeats for o in mixed.observations) == 100
    assert sum(o.repeats for o in refusing.observations) == 40
    assert not any("counted, not judged" in n for n in one.notes)
    assert "server.test:8383: 100 connection(s) from 100 different client certificate(s) " \
        "judged as 2 behaviour(s)" in "\n".join(one.notes)
    assert mixed.verdict is Verdict.PASS_END_TO_END
    assert "100 TLS connection(s)" in _summary(mixed, "MTLS071")
    assert "client certificate sent on 100 (accepted on 66)" in _summary(mixed, "MTLS071")
    assert refusing.verdict is Verdict.CLIENT_CERT_REJECTED
    assert "(CN=agent-100)" in _summary(refusing, "MTLS070")
    assert "on 40 of 40 connection(s) (unknown_ca)" in _summary(refusing, "MTLS070")


def test_a_fleet_folded_is_judged_as_without_a_bound(
    fleet_capture: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    folded = analyze([fleet_capture], _fleet_expect(), jobs=1)
    monkeypatch.setattr(tallies, "MAX_BEHAVIOURS", 10**6)  # the forked shares inherit it
    for jobs in (1, 3):
        reference = analyze([fleet_capture], _fleet_expect(), jobs=jobs)
        assert [len(r.observations) for r in reference.results] == [100, 40]
        for got, want in zip(folded.results, reference.results, strict=True):
            assert got.verdict is want.verdict and got.reason == want.reason
            assert [x.summary for x in got.findings] == [x.summary for x in want.findings]
