"""The captures of the lab's other middleboxes (fixtures/pcaps/lab/middleboxes/, made by
fixtures/pcaps/lab/make.py from the setups of test_lab_middleboxes.py) judged offline by
`mtlsprobe analyze` with the same expectations as live (--ca, --pin, --baseline) and the same
expected result: verdict per port, exit code, and the product (the right one or none).
Needs no root. Like the live tests, some fail until the rules tell these boxes apart.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CAPTURES = REPO / "fixtures" / "pcaps" / "lab" / "middleboxes"
MANIFEST = json.loads((CAPTURES / "manifest.json").read_text(encoding="utf-8"))
MAX_BYTES = 200_000


def test_manifest_lists_every_capture_and_they_are_small():
    listed = {e["file"] for e in MANIFEST["captures"]}
    assert listed == {p.name for p in CAPTURES.glob("*.pcapng")}
    for entry in MANIFEST["captures"]:
        size = (CAPTURES / entry["file"]).stat().st_size
        assert size == entry["bytes"] and size < MAX_BYTES, entry["file"]
        assert (CAPTURES / entry["baseline"]).is_file(), entry["baseline"]


@pytest.mark.parametrize("entry", MANIFEST["captures"], ids=lambda e: e["scenario"])
def test_analyze_gives_the_live_result(entry, tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text(MANIFEST["ca_pem"], encoding="utf-8")
    argv = [sys.executable, "-m", "mtlsprobe", "analyze", str(CAPTURES / entry["file"]),
            "--format", "json", "--ca", str(ca), "--baseline", str(CAPTURES / entry["baseline"])]
    for pin in entry["pins"]:
        argv += ["--pin", pin]
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=60)
    report = json.loads(proc.stdout)
    results = {str(r["target"]["port"]): r for r in report["results"]}
    explain = "; ".join(
        f"{port}: {r['verdict']} product={r.get('product')} "
        f"{sorted({f['rule'] for f in r['findings']})} {r['reason']}"
        for port, r in results.items())
    assert {p: r["verdict"] for p, r in results.items()} == entry["expected_ports"], explain
    assert proc.returncode == entry["expected_exit"], explain
    for result in results.values():
        product = result.get("product")
        assert product is None or product in entry["allowed_products"], explain
        # the key log embedded in the pcapng was used: handshakes were decrypted
        assert any(o["decrypted"] for o in result["observations"]), explain
