"""The rule registry: ``@rule(id, title, severity)`` and ``finding(...)``.

The topic modules (identity, kind, behaviour, requests, ...) import this module to register
their rules; the engine imports them and this module, one way. Ids are public and never
reused.

Each rule function's docstring is its explanation for a helpdesk (``mtlsprobe rules ID``):
what it means, whether it breaks, blocks or only hides client-certificate authentication,
and what to do; at most three short paragraphs.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from mtlsprobe.model import Case, Evidence, Finding, Severity

RuleFn = Callable[[Case], Iterator[Finding]]


@dataclass(frozen=True, slots=True)
class RuleSpec:
    id: str
    title: str
    severity: Severity
    fn: RuleFn
    also: tuple[Severity, ...] = ()  # other severities the rule may emit, case by case

    @property
    def severities(self) -> tuple[Severity, ...]:
        return (self.severity, *self.also)

    @property
    def explanation(self) -> str:
        """The rule function's docstring, as paragraphs of one line each."""
        return explanation_text(self.fn.__doc__ or "")


def explanation_text(text: str) -> str:
    """An explanation as written in source (indented, wrapped) made plain: paragraphs
    separated by one blank line, each on one line, so a renderer can wrap it to its width."""
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs if p.strip())


RULES: list[RuleSpec] = []
_BY_ID: dict[str, RuleSpec] = {}


def rule(rule_id: str, title: str, severity: Severity,
         also: tuple[Severity, ...] = ()) -> Callable[[RuleFn], RuleFn]:
    """Register `fn` under a stable public id. Ids are never reused. `also`: the other
    severities it may give a finding (the catalogue lists them all)."""

    def register(fn: RuleFn) -> RuleFn:
        if rule_id in _BY_ID:
            raise ValueError(f"rule id {rule_id} registered twice")
        spec = RuleSpec(rule_id, title, severity, fn, also)
        RULES.append(spec)
        _BY_ID[rule_id] = spec
        return fn

    return register


def spec(rule_id: str) -> RuleSpec:
    """The registered rule `rule_id` (its module must have been imported: see engine)."""
    return _BY_ID[rule_id]


def finding(
    rule_id: str,
    summary: str,
    *,
    evidence: Iterable[Evidence],
    remediation: str | None = None,
    product: str | None = None,
    severity: Severity | None = None,
) -> Finding:
    """A Finding of a registered rule; title and default severity come from the registry."""
    s = _BY_ID[rule_id]
    if severity is not None and severity not in s.severities:
        raise ValueError(f"{rule_id} may not emit {severity.value}: add it to the rule's also=")
    return Finding(
        rule=rule_id,
        title=s.title,
        severity=severity or s.severity,
        summary=summary,
        evidence=tuple(evidence),
        remediation=remediation,
        product=product,
    )
