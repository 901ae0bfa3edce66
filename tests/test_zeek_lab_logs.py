"""fixtures/zeek-logs/ is what the deriver makes of the lab captures, byte for byte.

Remaking them into a temporary folder must give the committed files exactly (so they are
deterministic and up to date with the captures and the deriver), and the logs must say
what the lab built: a re-signing proxy's leaf is not the server's, a pass-through shows the
server's own leaf and its CertificateRequest, and TLS 1.3 rows hide the certificates.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from zeeklog import SCRIPTS, read_tsv

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures" / "zeek-logs"


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "README.md"}


def test_remaking_gives_the_committed_bytes(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(SCRIPTS / "zeek_lab_logs.py"), "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    made, committed = _files(tmp_path), _files(FIXTURES)
    assert sorted(made) == sorted(committed)
    for name in committed:
        assert made[name] == committed[name], f"{name} differs from a fresh derivation"


def _manifest() -> dict[str, dict]:
    return {c["name"]: c for c in json.loads((FIXTURES / "manifest.json").read_text())
            ["captures"]}


def test_every_lab_capture_has_logs_and_its_expected_verdict() -> None:
    manifest = _manifest()
    sources = [ROOT / "fixtures/pcaps", ROOT / "fixtures/pcaps/lab",
               ROOT / "fixtures/pcaps/lab/middleboxes"]
    for source in sources:
        for cap in json.loads((source / "manifest.json").read_text())["captures"]:
            entry = manifest[cap["file"].split(".")[0]]
            assert entry["expected_verdict"] == cap["expected_verdict"]
            assert (FIXTURES / entry["name"] / "ssl.log").is_file()


def _leaf_issuers(name: str) -> set[str]:
    return {r["issuer"] for r in read_tsv(FIXTURES / name / "ssl.log") if r["issuer"] != "-"}


def test_the_logs_show_what_the_lab_built() -> None:
    direct = read_tsv(FIXTURES / "direct" / "ssl.log")
    # the pass-through's TLS 1.2 row: the server's chain and its CertificateRequest's CA
    [tls12] = [r for r in direct if r["version"] == "TLSv12"]
    assert "r" in tls12["ssl_history"]
    assert tls12["requested_client_certificate_authorities"] != "-"
    # TLS 1.3 rows stop at the cleartext prefix: no certificate of either side
    assert {(r["ssl_history"], r["cert_chain_fps"]) for r in direct
            if r["version"] == "TLSv13"} == {("CsiI", "-")}
    # an interceptor's leaf is issued by its own CA, never the lab server root's
    assert _leaf_issuers("direct") == {"O=mtlsprobe lab,CN=mtlsprobe Lab Server Root"}
    assert _leaf_issuers("mitmproxy-explicit") == {"O=mitmproxy,CN=mitmproxy"}
    for name in ("mitmproxy-transparent", "squid-bump-transparent", "sslsplit-transparent"):
        assert _leaf_issuers(name).isdisjoint(_leaf_issuers("direct")), name
    # and the intercepted TLS 1.2 handshake carries no CertificateRequest
    [bumped] = [r for r in read_tsv(FIXTURES / "mitmproxy-transparent" / "ssl.log")
                if r["version"] == "TLSv12"]
    assert "r" not in bumped["ssl_history"]
    # a firewall reset right after the ClientHello: one client letter, never established
    assert {(r["ssl_history"], r["established"])
            for r in read_tsv(FIXTURES / "firewall-reset" / "ssl.log")} == {("C", "F")}


def test_json_lines_say_what_the_tsv_says(tmp_path: Path) -> None:
    """``--json`` (Zeek's LogAscii::use_json): the same rows, unset fields left out."""
    capture = ROOT / "fixtures/pcaps/lab/middleboxes/squid-bump-8443-only.pcapng"
    done = subprocess.run([sys.executable, str(SCRIPTS / "zeek_logs_from_capture.py"),
                           str(capture), "--json", "--log-certs-base64", "-o", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for log in ("ssl", "x509"):
        tsv_rows = read_tsv(FIXTURES / "squid-bump-8443-only" / f"{log}.log")
        json_rows = [json.loads(line) for line in
                     (tmp_path / f"{log}.log").read_text().splitlines()]
        assert len(json_rows) == len(tsv_rows) > 0
        for j, t in zip(json_rows, tsv_rows, strict=True):
            assert {k for k, v in t.items() if v != "-"} - {"validation_status"} == set(j)
            for key, value in j.items():
                if isinstance(value, bool):
                    assert t[key] == ("T" if value else "F")
                elif isinstance(value, list):
                    assert t[key] == (",".join(v.replace(",", "\\x2c") for v in value)
                                      or "(empty)")
                elif isinstance(value, float):
                    assert t[key] == f"{value:.6f}"
                elif key != "uid":
                    assert t[key] == str(value).replace("\\", "\\\\"), key
