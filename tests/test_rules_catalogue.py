"""Every rule explained for a helpdesk (issue 16)."""

from __future__ import annotations

import pytest

from mtlsprobe.rules.agent_cert import CRED_RULES
from mtlsprobe.rules.engine import RULES
from mtlsprobe.rules.registry import explanation_text

ALL_RULES = [*RULES, *CRED_RULES]


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
