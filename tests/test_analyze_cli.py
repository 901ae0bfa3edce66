"""`mtlsprobe analyze` end to end: committed fixtures -> verdicts, and the CLI contract.

Every fixture in fixtures/pcaps/manifest.json must get its expected verdict and rule ids
(judged at capture time, so certificate expiry never breaks it). CLI: exit codes, stdin,
folders, gzip, damaged and non-capture inputs, atomic --output, schema-valid JSON.
"""

from __future__ import annotations

import gzip
import json
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from mtlsprobe.cli.main import main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "pcaps"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())
ENTRIES = {e["scenario"]: e for e in MANIFEST["captures"]}
SCHEMA = json.loads(files("mtlsprobe").joinpath("report/schema/report-v1.json").read_text("utf-8"))
EXIT = {"pass_end_to_end": 0, "inspected": 10, "terminated_by_lb": 10,
        "client_cert_rejected": 10, "blocked": 11, "unknown": 12}


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "root.pem"
    path.write_text(MANIFEST["ca_pem"])
    return path


def run(*args: str, input: bytes | None = None):
    return CliRunner().invoke(main, ["analyze", *args], input=input, catch_exceptions=False)


def expectation_args(entry: dict, ca: Path) -> list[str]:
    out = ["--ca", str(ca)]
    for pin in entry["pins"]:
        out += ["--pin", pin]
    if entry["keylog"]:
        out += ["--keylog", str(FIXTURES / entry["keylog"])]
    return out


def report_of(result) -> dict:
    report = json.loads(result.stdout)
    jsonschema.validate(report, SCHEMA)
    return report


@pytest.mark.parametrize("scenario", list(ENTRIES))
def test_every_fixture_gets_its_expected_verdict_and_rules(scenario, ca_file):
    entry = ENTRIES[scenario]
    result = run(str(FIXTURES / entry["file"]), *expectation_args(entry, ca_file),
                 "--format", "json")
    report = report_of(result)
    [case] = report["results"]
    assert case["verdict"] == entry["expected_verdict"]
    assert sorted({f["rule"] for f in case["findings"]}) == entry["expected_rules"]
    assert result.exit_code == EXIT[entry["expected_verdict"]]
    # one observation per distinct behaviour; repeats count the connections behind it
    assert sum(o.get("repeats", 1) for o in case["observations"]) == entry["connections"]
    [summary] = [f for f in case["findings"] if f["rule"] == "MTLS071"]
    evidence = {e["field"]: e["value"] for e in summary["evidence"]}
    assert evidence["connections"] == str(entry["connections"])
    assert case["source"] == "capture"
    assert result.stderr == ""


def test_expected_verdicts_match_the_live_probe_that_made_them():
    for e in MANIFEST["captures"]:
        assert e["expected_verdict"] == e["live_verdict"], e["scenario"]


def test_embedded_key_log_decrypts_tls13_and_without_it_facts_are_unknown(ca_file):
    entry = ENTRIES["direct-tls13"]
    report = report_of(run(str(FIXTURES / entry["file"]), *expectation_args(entry, ca_file),
                           "--format", "json"))
    obs = report["results"][0]["observations"]
    assert all(o["decrypted"] for o in obs if o["version"] == "TLSv1.3")
    assert any(o["cert_request"]["seen"] == "yes" for o in obs)
    # TLS 1.3 from a pcap whose key log is not given: hidden, never "no", and said why
    plain = ENTRIES["connect-tunnel"]
    result = run(str(FIXTURES / plain["file"]), "--ca", str(ca_file), "--format", "json")
    [case] = report_of(result)["results"]
    tls13 = [o for o in case["observations"] if o["version"] == "TLSv1.3"]
    assert tls13 and all(o["cert_request"]["seen"] == "unknown" for o in tls13)
    assert all(o["client_chain_seen"] == "unknown" and not o["decrypted"] for o in tls13)
    assert any("without a key log" in n for o in tls13 for n in o["notes"])
    # the TLS 1.2 attempt's empty certificate was refused, but a hidden TLS 1.3 connection
    # completed and may have carried the accepted certificate: not a rejection verdict
    assert case["verdict"] != "client_cert_rejected"
    assert "MTLS070" not in {f["rule"] for f in case["findings"]}


def test_connect_tunnel_route_is_the_proxy(ca_file):
    entry = ENTRIES["connect-tunnel"]
    report = report_of(run(str(FIXTURES / entry["file"]), *expectation_args(entry, ca_file),
                           "--format", "json"))
    [case] = report["results"]
    assert case["route"]["kind"] == "http_proxy" and case["route"]["connect_status"] == 200
    assert case["target"]["port"] != int(case["route"]["proxy"].rsplit(":", 1)[1])


def test_stdin_and_gzip(ca_file, tmp_path):
    entry = ENTRIES["reset-after-hello"]
    raw = (FIXTURES / entry["file"]).read_bytes()
    result = run("-", "--ca", str(ca_file), "--format", "json", input=gzip.compress(raw))
    report = report_of(result)
    assert report["results"][0]["verdict"] == "blocked"
    assert any("gzip" in n for n in report["notes"])
    assert result.exit_code == 11


def test_folder_input_skips_non_captures_with_a_note(ca_file, tmp_path):
    for name in ("reset-after-hello", "no-cert-requested"):
        e = ENTRIES[name]
        (tmp_path / e["file"]).write_bytes((FIXTURES / e["file"]).read_bytes())
    (tmp_path / "README.txt").write_text("not a capture")
    pins = [p for name in ("reset-after-hello", "no-cert-requested")
            for p in ("--pin", ENTRIES[name]["pins"][0])]
    report = report_of(run(str(tmp_path), "--ca", str(ca_file), *pins, "--format", "json"))
    assert sorted(r["verdict"] for r in report["results"]) == ["blocked", "pass_end_to_end"]
    assert any("README.txt" in n and "not a pcap" in n for n in report["notes"])
    assert report["exit_code"] == 11


def test_server_and_port_filters(ca_file, tmp_path):
    a, b = ENTRIES["reset-after-hello"], ENTRIES["no-cert-requested"]
    paths = [str(FIXTURES / a["file"]), str(FIXTURES / b["file"])]
    port = int(b["server"].rsplit(":", 1)[1])
    report = report_of(run(*paths, "--ca", str(ca_file), "--pin", b["pins"][0], "--port",
                           str(port), "--format", "json"))
    assert [r["target"]["port"] for r in report["results"]] == [port]
    result = run(*paths, "--ca", str(ca_file), "--pin", b["pins"][0], "--server",
                 f"localhost:{port}", "--format", "json")
    assert [r["target"]["port"] for r in report_of(result)["results"]] == [port]
    assert result.exit_code == 0
    result = run(*paths, "--server", "nowhere.example", "--format", "json")
    report = report_of(result)
    assert report["results"] == [] and result.exit_code == 12
    assert any("nowhere.example" in n for n in report["notes"])


def test_not_a_capture_is_one_error_line_and_exit_3(tmp_path):
    bogus = tmp_path / "notes.txt"
    bogus.write_text("hello, I am not a pcap\n")
    out = tmp_path / "report.json"
    result = run(str(bogus), "--output", str(out))
    assert result.exit_code == 3
    assert result.stderr.startswith("mtlsprobe: error: ") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == [bogus]  # nothing half-written


def test_missing_file_is_bad_input_and_a_bad_server_a_bad_option_value(tmp_path):
    assert run(str(tmp_path / "absent.pcap")).exit_code == 3
    capture = str(FIXTURES / ENTRIES["reset-after-hello"]["file"])
    assert run(capture, "--server", "host:99999").exit_code == 2
    assert run(capture, "--keylog", str(tmp_path / "no.keys")).exit_code == 3


def test_truncated_capture_is_a_note_and_still_a_report(ca_file, tmp_path):
    entry = ENTRIES["direct-tls12"]
    data = (FIXTURES / entry["file"]).read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: len(data) * 2 // 3 + 7])  # ends inside a packet record
    result = run(str(cut), "--ca", str(ca_file), "--keylog", str(FIXTURES / entry["keylog"]),
                 "--format", "json")
    report = report_of(result)
    assert any("truncated" in n for n in report["notes"])
    assert report["results"] and result.exit_code in (0, 10, 11, 12)


def test_output_is_written_atomically_and_markdown_renders(ca_file, tmp_path):
    entry = ENTRIES["intercepting-proxy"]
    out = tmp_path / "report.md"
    out.write_text("old")
    result = run(str(FIXTURES / entry["file"]), *expectation_args(entry, ca_file),
                 "--format", "markdown", "--output", str(out))
    assert result.exit_code == 10 and result.stdout == ""
    text = out.read_text()
    assert "inspected" in text and "MTLS010" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]  # no temp file left


def test_table_output_names_the_verdict(ca_file):
    entry = ENTRIES["terminating-proxy"]
    result = run(str(FIXTURES / entry["file"]), *expectation_args(entry, ca_file))
    assert result.exit_code == 10
    assert "terminated_by_lb" in result.stdout and "MTLS016" in result.stdout


def test_a_key_log_that_misses_a_tls12_connection_is_a_note(ca_file, tmp_path):
    # the note names the missing CLIENT_RANDOM label: it once tripped the JSON renderer's
    # key-material guard and analyze ended in "internal error" (found by fuzzing)
    other = tmp_path / "other.keys"
    other.write_text(f"CLIENT_RANDOM {'01' * 32} {'02' * 48}\n")
    result = run(str(FIXTURES / "direct-tls12.pcap"), "--ca", str(ca_file), "--keylog",
                 str(other), "--format", "json")
    report = report_of(result)
    notes = [n for r in report["results"] for o in r["observations"] for n in o["notes"]]
    assert any("no CLIENT_RANDOM secret" in n for n in notes)
    assert "02" * 48 not in result.stdout  # the key log's own secret never is
