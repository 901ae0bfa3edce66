"""The rule registry and the verdict table: Case -> Findings -> Verdict. Pure, no I/O.

Rules are plain functions registered with ``@rule(id, title, severity)`` (``registry``) in
the topic modules beside this one, which this module imports; ``RULES`` is kept in id order.
The verdict is decided by ``VERDICT_TABLE``, an explicit ordered tuple: the first row that
matches a finding wins.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mtlsprobe.model import Case, CaseResult, Finding, Severity, Verdict, errors
from mtlsprobe.rules import (  # noqa: F401  (importing a topic module registers its rules)
    behaviour,
    client_certs,
    consistency,
    identity,
    kind,
    path,
    reflector,
    requests,
    unknown,
)
from mtlsprobe.rules.registry import RULES

SEVERITY_ORDER: tuple[Severity, ...] = (
    Severity.BREAKS,
    Severity.BLOCKS,
    Severity.REJECTS,
    Severity.UNKNOWN,
    Severity.WARNING,
    Severity.INFO,
)


def sort_key(f: Finding) -> tuple[int, str]:
    return (SEVERITY_ORDER.index(f.severity), f.rule)


# --- the verdict table ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VerdictRow:
    """One row: a set of rule ids, or a predicate on a finding; None matches always.
    `unless`: rule ids whose presence makes the row not apply (positive evidence)."""

    verdict: Verdict
    rules: frozenset[str] | None = None
    predicate: Callable[[Finding], bool] | None = None
    unless: frozenset[str] = frozenset()

    def decider(self, findings: Sequence[Finding]) -> Finding | None:
        """The first (sorted) finding this row matches on."""
        if self.unless and any(f.rule in self.unless for f in findings):
            return None
        for f in findings:
            if self.rules is not None and f.rule in self.rules:
                return f
            if self.predicate is not None and self.predicate(f):
                return f
        return None

    @property
    def always(self) -> bool:
        return self.rules is None and self.predicate is None


def _is_unknown(f: Finding) -> bool:
    return f.severity is Severity.UNKNOWN


VERDICT_TABLE: tuple[VerdictRow, ...] = (
    VerdictRow(Verdict.PROXY_AUTH_REQUIRED, frozenset({"MTLS060"})),
    # MTLS055 first: it names the hop that resets the ClientHello.
    VerdictRow(Verdict.BLOCKED, frozenset({"MTLS055", "MTLS061", "MTLS063"})),
    VerdictRow(Verdict.UNREACHABLE, frozenset({"MTLS062"})),
    # Proof of minting (MTLS025), a named interceptor, or a reflector (MTLS080-082) that
    # received something other than what we sent.
    VerdictRow(
        Verdict.INSPECTED,
        frozenset({"MTLS013", "MTLS014", "MTLS025", "MTLS080", "MTLS081", "MTLS082"}),
    ),
    # A terminator: same-CA impostor, named load balancer, one fixed certificate of its own,
    # or the real certificate on another TLS stack (SSL offload).
    VerdictRow(Verdict.TERMINATED_BY_LB, frozenset({"MTLS016", "MTLS018", "MTLS026", "MTLS027"})),
    # Not from the expected CA and no evidence of the kind: re-signed on the path.
    VerdictRow(Verdict.INSPECTED, frozenset({"MTLS010"})),
    # The real server behind a box that asks differently, or accepts what the server refuses.
    VerdictRow(Verdict.TERMINATED_BY_LB, frozenset({"MTLS020", "MTLS021", "MTLS024", "MTLS030"})),
    # A foreign chain (pin or baseline mismatch) whose cause nothing names.
    VerdictRow(Verdict.INSPECTED, frozenset({"MTLS011", "MTLS012"})),
    VerdictRow(Verdict.CLIENT_CERT_REJECTED, frozenset({"MTLS033", "MTLS034", "MTLS070"})),
    # MTLS083 (a reflector confirms end to end) stands in for --pin/--baseline on its target.
    VerdictRow(Verdict.UNKNOWN, predicate=_is_unknown, unless=frozenset({"MTLS083"})),
    # Pass needs expectations to have been checked: MTLS090/MTLS017 are 'unknown' otherwise.
    VerdictRow(Verdict.PASS_END_TO_END),
)


def decide(findings: Sequence[Finding]) -> tuple[Verdict, VerdictRow, Finding | None]:
    """Apply the table to sorted findings: (verdict, matching row, deciding finding)."""
    for row in VERDICT_TABLE:
        if row.always:
            return row.verdict, row, None
        decider = row.decider(findings)
        if decider is not None:
            return row.verdict, row, decider
    raise AssertionError("the verdict table ends with an always-row")


def _pass_reason(findings: Sequence[Finding]) -> str:
    ids = {f.rule for f in findings}
    parts = ["chain matches the pinned/baseline server"]
    if "MTLS083" in ids:
        parts = ["reflector confirms hello, client certificate and chain end to end"]
    if "MTLS035" in ids:
        parts.append("agent certificate accepted")
    if "MTLS001" in ids:
        parts.append("client certificate requested end to end")
    elif "MTLS002" in ids:
        parts.append("no client certificate requested yet")
    if "MTLS032" in ids:
        parts.append("untrusted certificates rejected")
    warnings = sum(1 for f in findings if f.severity is Severity.WARNING)
    if warnings:
        parts.append(f"{warnings} warning{'s' if warnings > 1 else ''}")
    return "; ".join(parts)


def _product(verdict: Verdict, row: VerdictRow, findings: Sequence[Finding]) -> str | None:
    if verdict in (Verdict.PASS_END_TO_END, Verdict.UNKNOWN):
        return None
    in_row = [f for f in findings if row.decider([f]) is not None]
    for f in [*in_row, *findings]:
        if f.product and f.severity in (Severity.BREAKS, Severity.BLOCKS, Severity.REJECTS):
            return f.product
    return None


RULES.sort(key=lambda s: s.id)


def load_rules() -> None:
    """Kept for callers from before the registry split: the rules load with this module."""


def run_rules(case: Case) -> tuple[Finding, ...]:
    """Every rule over `case`, findings sorted by severity rank then id."""
    found: list[Finding] = []
    for s in RULES:
        found.extend(s.fn(case))
    return tuple(sorted(found, key=sort_key))


def evaluate(case: Case) -> CaseResult:
    """Run all rules and apply the verdict table."""
    findings = run_rules(case)
    verdict, row, decider = decide(findings)
    reason = decider.summary if decider is not None else _pass_reason(findings)
    return CaseResult(
        target=case.target,
        route=case.route,
        verdict=verdict,
        reason=reason,
        product=_product(verdict, row, findings),
        findings=findings,
        observations=(*case.observations, *case.other_name),
        source=case.source,
    )


# --- across cases ---------------------------------------------------------------------

_BREAKS = (Verdict.INSPECTED, Verdict.TERMINATED_BY_LB, Verdict.CLIENT_CERT_REJECTED)
_BLOCKED = (Verdict.BLOCKED, Verdict.UNREACHABLE, Verdict.PROXY_AUTH_REQUIRED)


def overall(results: Sequence[CaseResult]) -> Verdict:
    """The worst verdict: breaks before blocked before unknown before pass."""
    if not results:
        return Verdict.UNKNOWN
    verdicts = [r.verdict for r in results]
    for v in (*_BREAKS, *_BLOCKED, Verdict.UNKNOWN):
        if v in verdicts:
            return v
    return Verdict.PASS_END_TO_END


def exit_code(results: Sequence[CaseResult]) -> int:
    """errors.EXIT_* band of the results (no results -> unknown)."""
    if not results:
        return errors.EXIT_UNKNOWN
    verdicts = {r.verdict for r in results}
    if verdicts & set(_BREAKS):
        return errors.EXIT_BREAKS
    if verdicts & set(_BLOCKED):
        return errors.EXIT_BLOCKED
    if Verdict.UNKNOWN in verdicts:
        return errors.EXIT_UNKNOWN
    return errors.EXIT_PASS
