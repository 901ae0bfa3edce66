"""--format jsonl: one self-contained, schema-valid line per target x route; causes and secrets."""

from __future__ import annotations

import datetime as dt
import json
from importlib import resources

import factories as f
import jsonschema
import pytest

from mtlsprobe.model import Verdict
from mtlsprobe.report.build import build_report
from mtlsprobe.report.fleet.records import rows_of
from mtlsprobe.report.jsonl import cause_of, line_objects, render_jsonl
from mtlsprobe.report.jsonout import SecretError, dumps
from mtlsprobe.rules.engine import evaluate

WHEN = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
SCHEMA = json.loads(resources.files("mtlsprobe").joinpath("report/schema/report-v1.json")
                    .read_text("utf-8"))
LINE = jsonschema.Draft202012Validator({"$defs": SCHEMA["$defs"], "$ref": "#/$defs/jsonl_line"})
HOST = {"hostname": "agent-01", "os": "Linux", "agent_version": "11.3.2400.1"}
INPUTS = {"agent_cert": "cd" * 32, "agent_subject": "CN=agent-01"}


def test_every_corpus_result_becomes_one_valid_line():
    results = [evaluate(c) for c in f.corpus()]
    report = build_report("probe", results, INPUTS, HOST, generated_at=WHEN)
    text = render_jsonl(report)
    lines = text.splitlines()
    assert text.endswith("\n") and len(lines) == len(results)
    for line, result in zip(lines, results, strict=True):
        obj = json.loads(line)
        LINE.validate(obj)
        # self-contained: who, when, with what, and the judgement, on every line
        assert obj["host"] == HOST and obj["generated_at"] == "2026-01-02T03:04:05Z"
        assert obj["agent_cert"] == "cd" * 32 and obj["command"] == "probe"
        assert obj["verdict"] == result.verdict.value and obj["reason"] == result.reason
        assert [x["rule"] for x in obj["findings"]] == [x.rule for x in result.findings]
        assert "observations" not in obj and "\"der\"" not in line


@pytest.mark.parametrize("verdict", [v for v in Verdict if v is not Verdict.PASS_END_TO_END])
def test_cause_is_the_finding_that_gave_the_reason(verdict):
    result = evaluate(f.scenarios()[verdict])
    cause = cause_of(result)
    assert cause is not None and cause.summary == result.reason
    [obj] = line_objects(build_report("probe", [result], {}, HOST, generated_at=WHEN))
    assert obj["cause"] == cause.rule and obj["remediation"] == cause.remediation


def test_pass_has_no_cause_and_facts_are_kept():
    result = evaluate(f.scenarios()[Verdict.PASS_END_TO_END])
    assert cause_of(result) is None
    [obj] = line_objects(build_report("probe", [result], {}, HOST, generated_at=WHEN))
    assert obj["cause"] is None and obj["remediation"] is None
    assert obj["facts"]["tls_versions"] and obj["facts"]["server_leaf_sha256"]
    assert obj["agent_cert"] is None  # no agent certificate was used


def test_a_report_without_results_is_still_one_line():
    report = build_report("probe", [], {}, HOST, ("DNS failed for every target",),
                          generated_at=WHEN)
    [line] = render_jsonl(report).splitlines()
    obj = json.loads(line)
    LINE.validate(obj)
    assert obj["target"] is None and obj["verdict"] == "unknown"
    assert obj["reason"] == "DNS failed for every target"


def test_lines_and_full_report_summarise_the_same():
    results = [evaluate(f.scenarios()[v]) for v in (Verdict.INSPECTED, Verdict.BLOCKED)]
    report = build_report("probe", results, INPUTS, HOST, generated_at=WHEN)
    from_lines = [row for line in render_jsonl(report).splitlines()
                  for row in rows_of(json.loads(line))]
    from_report = list(rows_of(json.loads(dumps(report))))
    assert from_lines == from_report


def test_secrets_are_refused():
    report = build_report("probe", [], {}, {**HOST, "os": "-----BEGIN PRIVATE KEY-----"},
                          generated_at=WHEN)
    with pytest.raises(SecretError):
        render_jsonl(report)
