"""The Zeek logs derived from the lab captures (fixtures/zeek-logs, DERIVED by
scripts/zeek_logs_from_capture.py, not written by Zeek) judged against each lab's expected
verdict, with the expectations the capture is judged with (--ca, --pin, --baseline).

Where the log holds less than the capture, the verdict may differ, and only in the ways
listed in ``LESS_THAN_THE_CAPTURE`` with the reason, or as ``TLS13_HIDES`` says (a
pass-through path whose log has TLS 1.3 rows is unknown, never a pass); every other capture
gets exactly the lab's verdict: intercepting proxies, terminators, resets and pass-through.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from zeek_tools import assert_same_facts, key, zeek_observations

from mtlsprobe.run import expectations
from mtlsprobe.run.analyze import analyze
from mtlsprobe.run.captures import read_capture

ROOT = Path(__file__).resolve().parents[1]
LOGS = ROOT / "fixtures" / "zeek-logs"
MANIFEST = json.loads((LOGS / "manifest.json").read_text()) if LOGS.is_dir() else {"captures": []}
ENTRIES = {e["name"]: e for e in MANIFEST["captures"]}

#: capture -> (the verdict from its Zeek log, why the log cannot give the lab's)
LESS_THAN_THE_CAPTURE = {
    "direct-tls13": ("unknown", "every handshake is TLS 1.3: no server chain in the log"),
    "untrusted-cert-rejected": (
        "unknown", "the server refused the probe's untrusted certificate in TLS 1.3, after "
        "both sides started encrypting, when Zeek has written the row; and the TLS 1.3 rows "
        "hide their chains (MTLS091)"),
    "haproxy-terminator": (
        "inspected", "HAProxy is named by its cookie in the HTTP answer, which ssl.log does not "
        "hold; the foreign chain still breaks client authentication (a fresh leaf reads as "
        "minted)"),
    "tinyproxy-connect-baseline": (
        "unknown", "explicit proxy: ssl.log's responder is the proxy (the CONNECT target is in "
        "http.log), so the baseline has no entry for that port (MTLS093)"),
    "squid-splice": ("unknown", "explicit proxy, as tinyproxy-connect-baseline"),
    "l4-pool-terminating-member": (
        "unknown", "the terminating pool member answered only TLS 1.3 connections, whose "
        "chains the log cannot show (as a capture without a key log): the chains of the TLS 1.2 "
        "rows cannot vouch for them (MTLS091), never a pass"),
}
#: Why a pass-through capture's log says unknown when it holds TLS 1.3 rows.
TLS13_HIDES = ("a TLS 1.3 row hides its chain, and a chain seen on another connection cannot "
               "vouch for it: it may have reached another pool member (MTLS091)")


def _lab_verdict_from_the_log(name: str, entry: dict) -> str:
    """The lab's verdict, or what the log can say instead (listed above, or TLS13_HIDES)."""
    if name in LESS_THAN_THE_CAPTURE:
        return LESS_THAN_THE_CAPTURE[name][0]
    if entry["expected_verdict"] == "pass_end_to_end" and _has_tls13(entry):
        return "unknown"
    return str(entry["expected_verdict"])


def _has_tls13(entry: dict) -> bool:
    rows, _notes = zeek_observations([LOGS / log for log in entry["logs"]])
    return any(o.version == "TLSv1.3" for o in rows)


def _expect(entry: dict, tmp_path: Path):
    source = ROOT / entry["source_manifest"]
    manifest = json.loads(source.read_text())
    ca = tmp_path / "ca.pem"
    ca.write_text(manifest["ca_pem"])
    own = next((c for c in manifest["captures"] if c.get("scenario") == entry["scenario"]), {})
    baseline = source.parent / own["baseline"] if own.get("baseline") else None
    return expectations.build(ca=[ca] if entry.get("ca", True) else [],
                              pins=entry.get("pins") or [], baseline=baseline)


@pytest.mark.skipif(not ENTRIES, reason="fixtures/zeek-logs is absent")
@pytest.mark.parametrize("name", list(ENTRIES))
def test_each_lab_log_gets_the_labs_verdict_or_says_less(name, tmp_path):
    entry = ENTRIES[name]
    run = analyze([str(LOGS / log) for log in entry["logs"]], _expect(entry, tmp_path))
    verdicts = {r.verdict.value for r in run.results}
    expected = _lab_verdict_from_the_log(name, entry)
    assert verdicts == {expected}, name
    if expected == "unknown" and _has_tls13(entry):  # says why, never a pass
        assert "MTLS091" in {f.rule for r in run.results for f in r.findings}, name
    if name == "haproxy-terminator":  # still a breaking verdict
        assert {f.rule for r in run.results for f in r.findings} & {"MTLS025", "MTLS011"}


@pytest.mark.skipif(not ENTRIES, reason="fixtures/zeek-logs is absent")
@pytest.mark.parametrize("name", list(ENTRIES))
def test_each_lab_logs_facts_equal_its_captures_where_zeek_can_see(name):
    """Row by row against the capture (its embedded key log decrypts TLS 1.3 there; the log
    leaves those facts unknown). Through an explicit proxy the row's responder is the proxy,
    the capture's server the CONNECT target: those rows are matched by client port."""
    entry = ENTRIES[name]
    captured = {key(o): o for o in read_capture(ROOT / entry["capture"]).observations}
    by_client = {(o.client.ip, o.client.port): o for o in captured.values()}
    rows, _notes = zeek_observations([LOGS / log for log in entry["logs"]])
    matched = 0
    for z in rows:
        c = captured.get(key(z)) or by_client.get((z.client.ip, z.client.port))
        if c is None:
            continue
        matched += 1
        assert_same_facts(z, c, f"{name} {z.label}")
    assert matched == len(rows), name


def test_the_listed_differences_are_real_ones():
    """A listed difference whose capture is gone, or that equals the lab's verdict, is stale."""
    for name, (verdict, why) in LESS_THAN_THE_CAPTURE.items():
        assert name in ENTRIES or not ENTRIES, name
        if ENTRIES:
            assert verdict != ENTRIES[name]["expected_verdict"], name
        assert why
