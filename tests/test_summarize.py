"""summarize over reports from REAL loopback probes (direct, intercepted, LB-terminated,
unreachable), written as JSON, JSON Lines and gzip, read from files, folders and stdin.

The probes run once per module; each simulated agent is the same results under another
host dict (hostname, addresses) and time, as a fleet's agents would send them.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import socket
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from mtlsprobe.live.credentials import Credentials
from mtlsprobe.live.probe import ProbeOptions
from mtlsprobe.model import CaseResult, Endpoint, Expectations, Verdict
from mtlsprobe.model.certs import cert_info
from mtlsprobe.report.build import build_report
from mtlsprobe.report.jsonl import render_jsonl
from mtlsprobe.report.jsonout import dumps
from mtlsprobe.run import pipeline

NOW = datetime.now(timezone.utc).replace(microsecond=0)
_PROBED: dict[str, list[CaseResult]] = {}


def _probe(address: tuple[str, int], expect: Expectations, creds: Credentials) -> CaseResult:
    opts = ProbeOptions(sni="localhost", timeout=3.0, repeat=1, use_env_proxy=False,
                        credentials=creds)
    [result] = pipeline.probe([(Endpoint(host=address[0], port=address[1]), "flag")], opts,
                              expect)
    return result


@pytest.fixture
def probed(request, loopback_pki) -> dict[str, CaseResult]:
    """One real probe per scenario, run on first use and reused by the module's tests."""
    if not _PROBED:
        creds = Credentials.from_issued(loopback_pki.client)
        expect = Expectations(
            roots=(cert_info(loopback_pki.server_root.der),),
            pins=(cert_info(loopback_pki.server.der).spki_pin,),
            agent_cert=cert_info(loopback_pki.client.der),
            agent_chain=(cert_info(loopback_pki.client.der),),
        )
        server = request.getfixturevalue("mtls_server")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            closed = s.getsockname()[1]
        for name, address in [
            ("pass", server.address),
            ("inspected", request.getfixturevalue("intercepting_proxy").address),
            ("terminated", request.getfixturevalue("terminating_proxy").address),
            ("unreachable", ("127.0.0.1", closed)),
        ]:
            _PROBED[name] = [_probe(address, expect, creds)]
    results = {k: v[0] for k, v in _PROBED.items()}
    assert results["pass"].verdict is Verdict.PASS_END_TO_END, results["pass"].reason
    assert results["inspected"].verdict is Verdict.INSPECTED
    assert results["terminated"].verdict is Verdict.TERMINATED_BY_LB
    assert results["unreachable"].verdict is Verdict.UNREACHABLE
    return results


def report_text(results: list[CaseResult], host: str, *, fmt: str = "json",
                when: datetime = NOW, addresses: list[str] | None = None,
                extra_host: dict | None = None) -> str:
    facts = {"hostname": host, "os": "Linux", "python": "3.11", "user": "svc",
             "mtlsprobe": "0.1.0", **(extra_host or {})}
    if addresses is not None:
        facts["addresses"] = addresses  # type: ignore[assignment]
    report = build_report("probe", results, {"agent_cert": "ab" * 32,
                                             "agent_subject": f"CN={host}"},
                          facts, generated_at=when)
    return dumps(report) + "\n" if fmt == "json" else render_jsonl(report)


def summarize(*args: str, input: bytes | None = None) -> tuple[int, str, str]:
    from mtlsprobe.cli.main import main

    res = CliRunner().invoke(main, ["summarize", *args], input=input, catch_exceptions=False)
    return res.exit_code, res.stdout, res.stderr


def summarize_json(*args: str, input: bytes | None = None) -> tuple[int, dict]:
    code, out, err = summarize(*args, "--format", "json", input=input)
    assert out, err
    return code, json.loads(out)


@pytest.fixture
def fleet(tmp_path: Path, probed) -> Callable[..., Path]:
    """Write one report file per (agent, scenario, format); returns the folder."""

    def make(agents: list[tuple[str, str, str]], **kw) -> Path:
        for host, scenario, fmt in agents:
            text = report_text([probed[scenario]], host, fmt=fmt, **kw)
            suffix = ".json" if fmt == "json" else ".jsonl"
            (tmp_path / f"{host}-{scenario}{suffix}").write_text(text, "utf-8")
        return tmp_path

    return make


# --- the roll-up over a real fleet -----------------------------------------------------------


def test_fleet_verdicts_causes_and_cut_off_list(fleet, probed):
    folder = fleet([("pc-01", "pass", "json"), ("pc-02", "inspected", "jsonl"),
                    ("pc-03", "terminated", "json"), ("pc-04", "unreachable", "jsonl"),
                    ("pc-05", "pass", "jsonl")])
    code, s = summarize_json(str(folder))
    assert code == 10  # someone is broken
    assert s["agents"] == 5
    assert s["by_verdict"]["pass_end_to_end"] == 2
    assert s["by_verdict"]["inspected"] == 1
    assert s["by_verdict"]["terminated_by_lb"] == 1
    assert s["by_verdict"]["unreachable"] == 1
    cut = {a["agent"]: a for a in s["cut_off"]}
    assert set(cut) == {"pc-02", "pc-03", "pc-04"}
    for host, scenario in [("pc-02", "inspected"), ("pc-03", "terminated"),
                           ("pc-04", "unreachable")]:
        assert cut[host]["reason"] == probed[scenario].reason  # json and jsonl agree
        assert cut[host]["remediation"]
        assert cut[host]["cause"] and cut[host]["cause"].startswith("MTLS0")
    assert cut["pc-04"]["cause"] == "MTLS062"
    causes = {c["cause"]: c for c in s["by_cause"]}
    assert causes["MTLS062"]["agents"] == 1 and causes["MTLS062"]["title"] == "Target unreachable"
    ports = {r["key"]: r for r in s["by_port"]}
    assert ports[str(probed["pass"].target.port)]["pass"] == 2
    assert s["input"]["malformed"] == 0 and s["input"]["foreign"] == 0


def test_agent_verdict_is_worst_of_one_report_and_newest_per_target(tmp_path, probed):
    both = [probed["pass"], probed["inspected"]]
    (tmp_path / "a.json").write_text(report_text(both, "pc-10"), "utf-8")
    # pc-11's path to the same server was inspected two days ago, then fixed
    earlier = replace(probed["inspected"], target=probed["pass"].target)
    (tmp_path / "b.jsonl").write_text(
        report_text([earlier], "pc-11", fmt="jsonl", when=NOW - timedelta(days=2))
        + report_text([probed["pass"]], "pc-11", fmt="jsonl"), "utf-8")
    # pc-12: the same two reports arriving newest first change nothing
    (tmp_path / "c.jsonl").write_text(
        report_text([probed["pass"]], "pc-12", fmt="jsonl")
        + report_text([earlier], "pc-12", fmt="jsonl", when=NOW - timedelta(days=2)), "utf-8")
    code, s = summarize_json(str(tmp_path))
    assert [a["agent"] for a in s["cut_off"]] == ["pc-10"]
    routes = {r["key"]: r for r in s["by_route"]}
    assert routes["direct"]["agents"] == 3
    assert code == 10


def test_exit_codes_follow_the_bands(tmp_path, probed):
    (tmp_path / "ok.jsonl").write_text(report_text([probed["pass"]], "pc-1", fmt="jsonl"))
    assert summarize(str(tmp_path))[0] == 0
    (tmp_path / "down.jsonl").write_text(report_text([probed["unreachable"]], "pc-2",
                                                     fmt="jsonl"))
    assert summarize(str(tmp_path))[0] == 11
    (tmp_path / "empty.json").write_text(report_text([], "pc-3"))  # nothing judged: unknown
    code, s = summarize_json(str(tmp_path / "empty.json"), str(tmp_path / "ok.jsonl"))
    assert code == 12 and s["by_verdict"]["unknown"] == 1


def test_nothing_readable_is_exit_3(tmp_path):
    code, _, err = summarize(str(tmp_path / "nope.json"))
    assert code == 3 and "no such file" in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n{\"schema_version\": 2}\n")
    code, _, err = summarize(str(bad))
    assert code == 3 and "1 malformed" in err and "1 foreign" in err


# --- input shapes -------------------------------------------------------------------------------


def test_malformed_and_foreign_lines_are_counted_not_fatal(tmp_path, probed):
    good = report_text([probed["pass"]], "pc-20", fmt="jsonl")
    truncated = report_text([probed["inspected"]], "pc-21", fmt="jsonl")[:-40]
    lines = [good.strip(), "garbage", truncated, "[1, 2]", '{"schema_version": 1}',
             json.dumps({"hello": "world"}), "\xff\xfe", good.strip().replace("pc-20", "pc-22")]
    (tmp_path / "mixed.jsonl").write_text("\n".join(lines) + "\n", "utf-8")
    code, s = summarize_json(str(tmp_path / "mixed.jsonl"))
    assert code == 0
    assert s["agents"] == 2  # pc-20 and pc-22; the truncated pc-21 line is lost, not fatal
    assert s["input"]["malformed"] == 3  # garbage, the truncated line, the undecodable bytes
    assert s["input"]["foreign"] == 4  # 1, 2, a bare schema_version, {"hello": ...}
    assert any("mixed.jsonl:2" in e for e in s["input"]["malformed_examples"])


def test_a_number_too_long_for_int_is_a_malformed_line(tmp_path, probed):
    """json.loads raises a plain ValueError (no JSONDecodeError) for a 5,000-digit number;
    that line is malformed like any other, and the reading goes on."""
    good = report_text([probed["pass"]], "pc-23", fmt="jsonl").strip()
    (tmp_path / "big.jsonl").write_text("1" * 5000 + "\n" + good + "\n", "utf-8")
    code, s = summarize_json(str(tmp_path / "big.jsonl"))
    assert code == 0 and s["agents"] == 1 and s["input"]["malformed"] == 1
    assert any("big.jsonl:1" in e and "not JSON" in e for e in s["input"]["malformed_examples"])


def test_gzip_stdin_and_concatenated_pretty_reports(probed):
    pretty = report_text([probed["pass"]], "pc-30") + report_text([probed["terminated"]],
                                                                  "pc-31")
    code, s = summarize_json("-", input=gzip.compress(pretty.encode()))
    assert s["agents"] == 2 and code == 10
    code, s = summarize_json("-", input=pretty.encode())
    assert s["agents"] == 2 and s["cut_off"][0]["agent"] == "pc-31"


def test_folders_recursively_with_gzip(tmp_path, probed):
    (tmp_path / "site-a" / "day1").mkdir(parents=True)
    (tmp_path / "site-a" / "day1" / "pc-40.json.gz").write_bytes(
        gzip.compress(report_text([probed["inspected"]], "pc-40").encode()))
    (tmp_path / "site-a" / "pc-41.jsonl").write_text(
        report_text([probed["pass"]], "pc-41", fmt="jsonl"))
    (tmp_path / "README.txt").write_text("not a report")  # ignored in folders
    code, s = summarize_json(str(tmp_path))
    assert s["agents"] == 2 and s["input"]["streams"] == 2 and s["input"]["malformed"] == 0
    assert code == 10


def test_stale_and_incomplete_agents(tmp_path, probed):
    old = report_text([probed["pass"]], "pc-50", fmt="jsonl", when=NOW - timedelta(days=10))
    fresh = report_text([probed["pass"]], "pc-51", fmt="jsonl")
    nameless = json.loads(report_text([probed["pass"]], "x"))
    del nameless["host"]["hostname"]
    del nameless["generated_at"]
    (tmp_path / "r.jsonl").write_text(old + fresh + json.dumps(nameless) + "\n")
    code, s = summarize_json(str(tmp_path))
    assert [a["agent"] for a in s["stale"]] == ["pc-50"]
    assert s["stale"][0]["age_days"] == pytest.approx(10, abs=0.1)
    [incomplete] = s["incomplete"]
    assert incomplete["missing"] == ["generated_at", "host.hostname"]
    assert incomplete["agent"].startswith("(no hostname, cert abab")
    code, s = summarize_json(str(tmp_path), "--stale-after", "30")
    assert s["stale"] == [] and code == 0


# --- sites, formats -------------------------------------------------------------------------


def test_sites_from_map_addresses_and_fallbacks(tmp_path, probed):
    reports = [
        report_text([probed["pass"]], "pc-60", fmt="jsonl", addresses=["10.1.2.3"]),
        report_text([probed["inspected"]], "pc-61", fmt="jsonl", addresses=["10.1.2.200"]),
        report_text([probed["pass"]], "pc-62", fmt="jsonl",
                    addresses=["127.0.0.1", "192.168.7.9"]),
        report_text([probed["pass"]], "pc-63", fmt="jsonl", addresses=["172.16.5.5"]),
        report_text([probed["pass"]], "PC-64", fmt="jsonl"),
        report_text([probed["pass"]], "pc-65", fmt="jsonl"),
    ]
    (tmp_path / "r.jsonl").write_text("".join(reports))
    code, s = summarize_json(str(tmp_path / "r.jsonl"))
    sites = {r["key"]: r for r in s["by_site"]}
    assert sites["10.1.2.0/24"]["agents"] == 2 and sites["10.1.2.0/24"]["breaks"] == 1
    assert sites["192.168.7.0/24"]["agents"] == 1  # loopback skipped
    assert sites["unknown"]["agents"] == 2
    site_map = tmp_path / "sites.csv"
    site_map.write_text("# site map\nhostname,site\npc-64,Head office\n10.1.0.0/16,Berlin\n"
                        "10.1.2.0/25,Berlin floor 2\n172.16.0.0/12,Paris\n")
    code, s = summarize_json(str(tmp_path / "r.jsonl"), "--site-map", str(site_map))
    assert code == 10
    sites = {r["key"]: r["agents"] for r in s["by_site"]}
    assert sites == {"Berlin floor 2": 1, "Berlin": 1, "Paris": 1, "Head office": 1,
                     "192.168.7.0/24": 1, "unknown": 1}
    assert s["cut_off"][0]["site"] == "Berlin"  # 10.1.2.200 is outside the /25


def test_bad_site_map_is_input_error(tmp_path, probed):
    (tmp_path / "r.jsonl").write_text(report_text([probed["pass"]], "pc-1", fmt="jsonl"))
    (tmp_path / "sites.csv").write_text("pc-1\n")
    code, _, err = summarize(str(tmp_path / "r.jsonl"), "--site-map", str(tmp_path / "sites.csv"))
    assert code == 3 and "sites.csv:1" in err


def test_csv_one_row_per_agent(fleet, tmp_path):
    folder = fleet([("pc-70", "pass", "json"), ("pc-71", "inspected", "jsonl")],
                   extra_host={"agent_version": "11.2.2400.1"})
    out = tmp_path / "out" / "fleet.csv"
    out.parent.mkdir()
    code, stdout, _ = summarize(str(folder), "--format", "csv", "--output", str(out))
    assert code == 10 and stdout == ""
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [r["agent"] for r in rows] == ["pc-71", "pc-70"]  # worst first
    assert rows[0]["verdict"] == "inspected" and rows[0]["exit_band"] == "10"
    assert rows[0]["remediation"] and rows[0]["stale"] == "no"
    assert rows[1]["agent_version"] == "11.2.2400.1"


def test_table_and_markdown_name_every_section(fleet):
    folder = fleet([("pc-80", "pass", "json"), ("pc-81", "terminated", "json")])
    code, table, _ = summarize(str(folder))
    assert code == 10
    for heading in ("Agents per verdict", "Agents per cause", "Agents per middlebox product",
                    "Agents per route", "Agents per port", "Agents per site",
                    "Agents that would be cut off (1)", "Stale agents", "missing fields"):
        assert heading in table
    assert "pc-81" in table and "terminated_by_lb" in table
    code, md, _ = summarize(str(folder), "--format", "markdown")
    assert md.startswith("# mtlsprobe fleet summary: terminated_by_lb")
    assert "## Agents that would be cut off (1)" in md and "| pc-81 |" in md


def test_streamed_json_equals_the_json_value(fleet):
    from datetime import datetime, timezone

    from mtlsprobe.report.fleet.render import render_json, to_json_value
    from mtlsprobe.run.summarize import roll_up

    folder = fleet([("pc-90", "pass", "json"), ("pc-91", "unreachable", "jsonl")],
                   when=NOW - timedelta(days=9))
    summary = roll_up([str(folder)], now=datetime.now(timezone.utc))
    assert json.loads(render_json(summary)) == json.loads(json.dumps(to_json_value(summary)))
    assert len(summary.stale) == 2 and len(summary.cut_off) == 1
