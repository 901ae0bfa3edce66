"""`mtlsprobe rules`: every rule explained for a helpdesk, looked up by id, listed as JSON
that follows the shipped schema (issue 16)."""

from __future__ import annotations

import json
from importlib.resources import files

import jsonschema
import pytest
from click.testing import CliRunner

from mtlsprobe.cli.main import main
from mtlsprobe.rules.agent_cert import CRED_RULES
from mtlsprobe.rules.engine import RULES
from mtlsprobe.rules.registry import explanation_text

SCHEMA = json.loads(files("mtlsprobe").joinpath("report/schema/report-v1.json").read_text("utf-8"))
CATALOGUE = jsonschema.Draft202012Validator(
    {"$defs": SCHEMA["$defs"], "$ref": "#/$defs/rules_catalogue"})
ALL_RULES = [*RULES, *CRED_RULES]
REGISTERED = sorted(r.id for r in ALL_RULES)


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def words(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("spec", ALL_RULES, ids=lambda r: r.id)
def test_every_rule_has_a_sane_explanation(spec):
    text = spec.explanation
    paragraphs = text.split("\n\n")
    assert 100 <= len(text) <= 1500, (spec.id, len(text))
    assert 1 <= len(paragraphs) <= 3, spec.id
    assert all(p.strip() and "\n" not in p for p in paragraphs), spec.id
    assert words(text) != words(spec.title)
    assert text == explanation_text(text)  # already plain: one line per paragraph


def test_engine_explanations_are_the_rule_functions_docstrings():
    for spec in RULES:
        assert spec.fn.__doc__ and words(spec.explanation) == words(spec.fn.__doc__), spec.id


def test_explanation_text_keeps_paragraphs_and_unwraps_lines():
    raw = """
        First line
        wrapped here.

        Second   paragraph.
    """
    assert explanation_text(raw) == "First line wrapped here.\n\nSecond paragraph."
    assert explanation_text("") == ""


def test_json_catalogue_follows_the_schema_and_lists_exactly_the_registered_ids():
    code, out, err = run("rules", "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    CATALOGUE.validate(doc)
    assert [e["id"] for e in doc] == REGISTERED
    by_id = {e["id"]: e for e in doc}
    assert by_id["MTLS040"]["severities"] == ["unknown", "warning"]
    assert by_id["MTLS100"]["severities"] == ["rejects"]
    assert all(e["explanation"] for e in doc)


def test_schema_catches_a_catalogue_that_drifts():
    code, out, _ = run("rules", "--format", "json", "MTLS016")
    doc = json.loads(out)
    assert code == 0
    CATALOGUE.validate(doc)
    for bad in ({**doc[0], "explanation": ""}, {**doc[0], "severities": ["fatal"]},
                {**doc[0], "surprise": 1}):
        with pytest.raises(jsonschema.ValidationError):
            CATALOGUE.validate([bad])


def test_rules_id_prints_title_severities_and_explanation():
    code, out, err = run("rules", "MTLS016")
    assert code == 0, err
    spec = next(r for r in RULES if r.id == "MTLS016")
    assert out.startswith(f"MTLS016  {spec.title}\nseverity: breaks\n")
    assert words(spec.explanation) in words(out)
    assert "MTLS010" not in out


def test_rules_ids_are_case_insensitive_and_several_may_be_asked():
    code, out, err = run("rules", "mtls040", "Mtls100", "MTLS040")
    assert code == 0, err
    assert out.startswith("MTLS040  ")
    assert "severities: unknown, warning" in out
    assert out.count("MTLS040  ") == 1 and "MTLS100  " in out
    cred = next(r for r in CRED_RULES if r.id == "MTLS100")
    assert words(cred.explanation) in words(out)
    code, out, _ = run("rules", "--format", "json", "mtls016", "MTLS111")
    assert code == 0 and [e["id"] for e in json.loads(out)] == ["MTLS016", "MTLS111"]


@pytest.mark.parametrize("args", [("MTLS999",), ("MTLS016", "nonsense"), ("--format", "json",
                                                                           "MTLS999")])
def test_an_unknown_rule_id_is_exit_2_with_one_line_naming_it(args):
    code, out, err = run("rules", *args)
    unknown = next(a for a in args if a in ("MTLS999", "nonsense"))
    assert code == 2
    assert out == ""
    assert len(err.splitlines()) == 1 and unknown in err


def test_rules_help_ends_with_the_exit_codes():
    code, out, _ = run("rules", "--help")
    assert code == 0
    tail = out[out.index("Exit codes:"):].splitlines()[1:]
    assert [line.split()[0] for line in tail if line.strip()] == ["0", "1", "2", "4"]
