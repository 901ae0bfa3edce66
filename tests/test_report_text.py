"""Human table and Markdown ticket body."""

from __future__ import annotations

import dataclasses
import datetime as dt

import factories as f

from mtlsprobe.model import Verdict
from mtlsprobe.report.build import build_report
from mtlsprobe.report.markdown import render_markdown
from mtlsprobe.report.table import cert_request, client_cert_behaviour, render_table, short_name
from mtlsprobe.rules.engine import evaluate

WHEN = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)


def report(*verdicts: Verdict):
    cases = f.scenarios()
    return build_report("probe", [evaluate(cases[v]) for v in verdicts], {},
                        {"hostname": "agent-01"}, ("probe ran twice",), generated_at=WHEN)


def test_short_name_prefers_the_cn():
    assert short_name("O=Zscaler Inc.,CN=Zscaler Root CA") == "Zscaler Root CA"
    assert short_name("O=Example\\, Inc.,CN=A\\, B") == "A, B"
    assert short_name("O=NoCN") == "O=NoCN"


def test_table_has_one_row_per_result_and_overall_line():
    text = render_table(report(Verdict.PASS_END_TO_END, Verdict.INSPECTED))
    first = text.splitlines()[0]
    for header in ("target", "route", "verdict", "product", "TLS", "server issuer", "CertReq",
                   "client cert", "reason"):
        assert header in first
    assert "pass_end_to_end" in text and "inspected" in text
    assert "Zscaler" in text
    assert "MTLS010" in text and "MTLS013" in text
    assert "note: probe ran twice" in text
    assert text.rstrip().endswith("Overall: inspected (exit 10)")


def test_a_target_from_a_file_shows_its_source_below_it_in_the_cell_and_beside_it_above_findings():
    result = dataclasses.replace(evaluate(f.scenarios()[Verdict.INSPECTED]),
                                 source="targets.txt:3")
    text = render_table(build_report("probe", [result], {}, {}, (), generated_at=WHEN))
    assert "\\n" not in text  # never an escaped newline
    assert any(line.startswith("(targets.txt:3)") for line in text.splitlines())
    assert any(line.endswith("(targets.txt:3) via direct: inspected")
               for line in text.splitlines())


def test_columns_summarise_cert_request_and_client_cert_behaviour():
    res = evaluate(f.case(*f.probe_set()))
    assert cert_request(res) == "yes"
    assert client_cert_behaviour(res) == "untrusted rejected; agent accepted"
    mixed = evaluate(f.case(f.observation(),
                            f.observation(label="repeat-2", cert_request=f.NO_CERT_REQUEST)))
    assert cert_request(mixed) == "mixed (1/2 yes)"


def test_empty_report_still_renders():
    text = render_table(build_report("analyze", [], {}, {}, generated_at=WHEN))
    assert "No targets were judged." in text
    assert "Overall: unknown (exit 12)" in text


def test_markdown_ticket_body():
    md = render_markdown(report(Verdict.TERMINATED_BY_LB, Verdict.PASS_END_TO_END))
    assert md.startswith("# mtlsprobe: terminated_by_lb\n")
    assert "**agent-01**" in md and "2026-01-02T03:04:05Z" in md
    assert "| target | route | verdict |" in md
    assert "**MTLS018** (breaks)" in md and "[F5 BIG-IP]" in md
    assert "`http.set_cookie` = `BIGipServerpool_ec`" in md
    assert "Remediation: Use TCP (L4) pass-through" in md
    assert "## Notes" in md
    # info findings carry evidence but no remediation line
    assert md.count("Remediation:") == sum(
        1 for r in report(Verdict.TERMINATED_BY_LB, Verdict.PASS_END_TO_END).results
        for x in r.findings if x.remediation and x.severity.value != "info")


def test_markdown_escapes_table_pipes():
    md = render_markdown(report(Verdict.BLOCKED))
    for line in md.splitlines():
        if line.startswith("| ec.example.com"):
            assert line.count(" | ") == 8
