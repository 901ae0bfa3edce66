"""JSON output: to_jsonable conventions, determinism, secrets, and the committed schema."""

from __future__ import annotations

import base64
import copy
import dataclasses
import datetime as dt
import json
from importlib import resources

import factories as f
import jsonschema
import pytest

from mtlsprobe.live import pki
from mtlsprobe.model import Report, Transcript, Verdict, errors
from mtlsprobe.report.build import build_report
from mtlsprobe.report.jsonout import SecretError, dumps, rfc3339, to_jsonable
from mtlsprobe.rules.engine import evaluate

WHEN = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)


def schema() -> dict:
    text = resources.files("mtlsprobe").joinpath("report/schema/report-v1.json").read_text("utf-8")
    return json.loads(text)


def report_of(*verdicts: Verdict) -> Report:
    cases = f.scenarios()
    results = [evaluate(cases[v]) for v in verdicts]
    return build_report("probe", results, {"pins": [f.REAL_PIN], "timeout": 5.0},
                        {"hostname": "agent-01", "os": "Linux"}, ("a note",), generated_at=WHEN)


def test_build_report_sets_overall_verdict_and_exit_band():
    r = report_of(Verdict.PASS_END_TO_END, Verdict.BLOCKED)
    assert r.schema_version == 1
    assert r.verdict is Verdict.BLOCKED and r.exit_code == errors.EXIT_BLOCKED
    assert build_report("probe", [], {}, {}).exit_code == errors.EXIT_UNKNOWN


def test_rfc3339_is_utc_with_z():
    assert rfc3339(WHEN) == "2026-01-02T03:04:05Z"
    plus2 = dt.timezone(dt.timedelta(hours=2))
    assert rfc3339(dt.datetime(2026, 1, 2, 5, 4, 5, 250000, tzinfo=plus2)) == (
        "2026-01-02T03:04:05.25Z")
    assert rfc3339(dt.datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02T03:04:05Z"


def test_to_jsonable_conventions():
    obs = f.observation()
    out = to_jsonable(obs)
    assert list(out) == [fld.name for fld in dataclasses.fields(obs)]  # field order
    assert out["outcome"] == "established" and out["server_chain_seen"] == "yes"
    assert out["observed_at"].endswith("Z")
    assert isinstance(out["offered_versions"], list)
    assert out["http"]["headers"] == [["Content-Type", "text/html"]]
    der = base64.b64decode(out["server_chain"][0]["der"])
    assert der == f.REAL_CHAIN[0].der
    assert out["server_chain"][0]["key"] == "EC P-256"  # a description, not key material


def test_dumps_is_deterministic_and_valid_json():
    r = report_of(*Verdict)
    text = dumps(r)
    assert text == dumps(r)
    assert text.startswith('{\n  "schema_version": 1,')
    assert json.loads(text)["results"][0]["verdict"] == "pass_end_to_end"


def test_private_keys_and_key_logs_are_refused():
    key = pki.new_key()
    with pytest.raises(SecretError):
        to_jsonable({"key": key})
    with pytest.raises(SecretError):
        to_jsonable({"inputs": pki.key_pem(key).decode()})
    with pytest.raises(SecretError):
        to_jsonable(["CLIENT_HANDSHAKE_TRAFFIC_SECRET abcd 1234"])
    with pytest.raises(SecretError):
        to_jsonable([f"CLIENT_RANDOM {'ab' * 32} {'cd' * 48}"])
    # naming a key log label is no secret: the observer's notes do it
    note = "key log has no CLIENT_RANDOM secret for this connection's client random"
    assert to_jsonable([note]) == [note]
    t = Transcript(label="t", client=f.CLIENT, server=f.TARGET, route=f.DIRECT,
                   started_at=WHEN, keylog="secret-free text")
    assert "keylog" not in to_jsonable(t)


def test_unknown_types_are_refused():
    with pytest.raises(TypeError):
        to_jsonable(object())


# --- the committed schema ----------------------------------------------------------------

def test_schema_is_a_valid_draft_2020_12_schema():
    jsonschema.Draft202012Validator.check_schema(schema())


@pytest.mark.parametrize("verdict", list(Verdict))
def test_report_for_each_verdict_validates(verdict):
    doc = json.loads(dumps(report_of(verdict)))
    jsonschema.Draft202012Validator(schema()).validate(doc)
    assert doc["results"][0]["verdict"] == verdict.value


def test_schema_enums_match_the_model():
    from mtlsprobe import model

    defs = schema()["$defs"]
    pairs = {"verdict": model.Verdict, "severity": model.Severity, "seen": model.Seen,
             "direction": model.Direction, "stream_end": model.StreamEnd,
             "stage": model.Stage, "outcome": model.Outcome, "cert_kind": model.CertKind}
    for name, enum_type in pairs.items():
        assert defs[name]["enum"] == [e.value for e in enum_type], name


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d["results"][0].__setitem__("surprise", 1),
        lambda d: d["results"][0]["observations"][0].__setitem__("keylog", "x"),
        lambda d: d["results"][0]["findings"][0].__setitem__("severity", "fatal"),
        lambda d: d.__setitem__("schema_version", 2),
        lambda d: d["results"][0]["observations"][0]["server_chain"][0].pop("sha256"),
    ],
)
def test_schema_catches_drift(mutate):
    doc = json.loads(dumps(report_of(Verdict.INSPECTED)))
    bad = copy.deepcopy(doc)
    mutate(bad)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema()).validate(bad)


def test_report_of_the_whole_rule_corpus_validates():
    results = [evaluate(c) for c in f.corpus()]
    doc = json.loads(dumps(build_report("analyze", results, {}, {}, generated_at=WHEN)))
    jsonschema.Draft202012Validator(schema()).validate(doc)
    rules = {x["rule"] for r in doc["results"] for x in r["findings"]}
    assert len(rules) >= 30
