"""The lab's committed captures (fixtures/pcaps/lab/) judged offline by `mtlsprobe analyze`:
each must get the verdict, rules and product its manifest records. Needs no root: the
captures were made in the lab by fixtures/pcaps/lab/make.py. Scenarios whose verdict the tool
does not give yet carry their diagnosis in the manifest (`known_issue`) and are strict xfails.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CAPTURES = REPO / "fixtures" / "pcaps" / "lab"
MANIFEST = json.loads((CAPTURES / "manifest.json").read_text(encoding="utf-8"))


def params():
    for entry in MANIFEST["captures"]:
        marks = []
        if entry.get("known_issue"):
            marks.append(pytest.mark.xfail(strict=True, reason=entry["known_issue"]))
        yield pytest.param(entry, id=entry["scenario"], marks=marks)


def test_manifest_lists_every_capture_and_they_are_small():
    listed = {e["file"] for e in MANIFEST["captures"]}
    on_disk = {p.name for p in CAPTURES.glob("*.pcapng")}
    assert listed == on_disk
    for entry in MANIFEST["captures"]:
        size = (CAPTURES / entry["file"]).stat().st_size
        assert size == entry["bytes"] and size < 100_000, entry["file"]


@pytest.mark.skipif(find_spec("mtlsprobe.cli.analyze") is None,
                    reason="mtlsprobe analyze is not there yet")
@pytest.mark.parametrize("entry", params())
def test_analyze_gives_the_manifest_verdict(entry, tmp_path):
    argv = [sys.executable, "-m", "mtlsprobe", "analyze", str(CAPTURES / entry["file"]),
            "--format", "json"]
    if entry["ca"]:
        ca = tmp_path / "ca.pem"
        ca.write_text(MANIFEST["ca_pem"], encoding="utf-8")
        argv += ["--ca", str(ca)]
    for pin in entry["pins"]:
        argv += ["--pin", pin]
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=60)
    report = json.loads(proc.stdout)
    [result] = report["results"]  # one server per capture
    rules = {f["rule"] for f in result["findings"]}
    explain = f"{result['verdict']}: {result['reason']} {sorted(rules)}"
    host, port = entry["server"].rsplit(":", 1)
    assert result["target"]["host"] in (entry["sni"], host)  # SNI, or the CONNECT host
    assert result["target"]["port"] == int(port)
    assert result["verdict"] == entry["expected_verdict"], explain
    assert set(entry["expected_rules"]) <= rules, explain
    if entry["expected_product"]:
        assert result["product"] == entry["expected_product"], explain
    # the key log embedded in the pcapng was used: handshakes were decrypted
    if entry["expected_verdict"] != "blocked":
        assert any(o["decrypted"] for o in result["observations"]), explain
