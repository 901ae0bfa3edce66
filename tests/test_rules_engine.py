"""The rule registry, finding order, the verdict table (one test per row) and exit bands."""

from __future__ import annotations

import factories as f
import pytest

from mtlsprobe.model import CaseResult, Evidence, Finding, Severity, Verdict, errors
from mtlsprobe.rules.engine import (
    RULES,
    VERDICT_TABLE,
    decide,
    evaluate,
    exit_code,
    overall,
    run_rules,
    sort_key,
)
from mtlsprobe.rules.registry import rule

MOVING = (Severity.BREAKS, Severity.BLOCKS, Severity.REJECTS)


def fnd(rule_id: str, severity: Severity = Severity.BREAKS, product: str | None = None) -> Finding:
    return Finding(rule=rule_id, title="t", severity=severity, summary=f"because {rule_id}",
                   evidence=(Evidence(observation="x", field="y", value="z"),), product=product)


def test_registry_is_in_definition_order_with_unique_public_ids():
    ids = [r.id for r in RULES]
    assert ids == sorted(ids)
    assert len(ids) == len(set(ids))
    for required in ("MTLS001", "MTLS010", "MTLS017", "MTLS030", "MTLS060", "MTLS092"):
        assert required in ids


def test_registering_an_id_twice_is_refused():
    with pytest.raises(ValueError, match="twice"):
        rule("MTLS001", "again", Severity.INFO)(lambda case: iter(()))


def test_every_verdict_moving_rule_is_in_a_table_row():
    """A breaks/blocks/rejects finding must never fall through to pass."""
    rows = [r.rules for r in VERDICT_TABLE if r.rules is not None]
    covered = set().union(*rows)
    for r in RULES:
        if r.severity in MOVING:
            assert r.id in covered, r.id


def test_findings_sorted_by_severity_rank_then_id():
    res = evaluate(f.case(f.intercepted("Zscaler Root CA", "Zscaler Inc.")))
    keys = [sort_key(x) for x in res.findings]
    assert keys == sorted(keys)
    assert res.findings[0].severity is Severity.BREAKS
    assert res.findings[-1].severity is Severity.INFO


def test_every_finding_has_evidence_and_non_info_ones_a_remediation():
    fired = set()
    for c in f.corpus():
        for x in run_rules(c):
            fired.add(x.rule)
            assert x.evidence, x.rule
            assert all(e.field and e.value for e in x.evidence), x.rule
            assert x.summary and x.title, x.rule
            if x.severity is not Severity.INFO:
                assert x.remediation, x.rule
    assert fired == {r.id for r in RULES}  # the corpus exercises every rule


# --- one test per verdict-table row (first match wins) ----------------------------------

ROW_CASES = [
    (0, [fnd("MTLS060", Severity.BLOCKS), fnd("MTLS010")], Verdict.PROXY_AUTH_REQUIRED),
    (1, [fnd("MTLS061", Severity.BLOCKS), fnd("MTLS062", Severity.BLOCKS)], Verdict.BLOCKED),
    (1, [fnd("MTLS063", Severity.BLOCKS)], Verdict.BLOCKED),
    (9, [fnd("MTLS066", Severity.UNKNOWN)], Verdict.UNKNOWN),  # not TLS: its own finding
    (2, [fnd("MTLS062", Severity.BLOCKS), fnd("MTLS013")], Verdict.UNREACHABLE),
    (3, [fnd("MTLS013"), fnd("MTLS018")], Verdict.INSPECTED),
    (3, [fnd("MTLS014"), fnd("MTLS016")], Verdict.INSPECTED),
    (3, [fnd("MTLS025"), fnd("MTLS010"), fnd("MTLS020")], Verdict.INSPECTED),
    (4, [fnd("MTLS016"), fnd("MTLS011")], Verdict.TERMINATED_BY_LB),
    (4, [fnd("MTLS026"), fnd("MTLS010")], Verdict.TERMINATED_BY_LB),
    (4, [fnd("MTLS027"), fnd("MTLS030")], Verdict.TERMINATED_BY_LB),
    (5, [fnd("MTLS010"), fnd("MTLS020")], Verdict.INSPECTED),
    (6, [fnd("MTLS030"), fnd("MTLS033", Severity.REJECTS)], Verdict.TERMINATED_BY_LB),
    (6, [fnd("MTLS020"), fnd("MTLS012")], Verdict.TERMINATED_BY_LB),
    (7, [fnd("MTLS012"), fnd("MTLS034", Severity.REJECTS)], Verdict.INSPECTED),
    (8, [fnd("MTLS034", Severity.REJECTS), fnd("MTLS090", Severity.UNKNOWN)],
     Verdict.CLIENT_CERT_REJECTED),
    (9, [fnd("MTLS091", Severity.UNKNOWN), fnd("MTLS065", Severity.WARNING)], Verdict.UNKNOWN),
    (10, [fnd("MTLS065", Severity.WARNING), fnd("MTLS001", Severity.INFO)],
     Verdict.PASS_END_TO_END),
    (10, [], Verdict.PASS_END_TO_END),
]


@pytest.mark.parametrize(("row_index", "findings", "verdict"), ROW_CASES)
def test_verdict_table_row(row_index, findings, verdict):
    got, row, decider = decide(sorted(findings, key=sort_key))
    assert got is verdict
    assert row is VERDICT_TABLE[row_index]
    if not row.always:
        assert decider is not None and decider.summary.startswith("because")


def test_every_row_is_exercised():
    assert {r for r, _, _ in ROW_CASES} == set(range(len(VERDICT_TABLE)))


def test_reason_and_product_come_from_the_deciding_finding():
    res = evaluate(f.case(f.intercepted("FortiGate CA", "Fortinet")))
    assert res.verdict is Verdict.INSPECTED
    decider = next(x for x in res.findings if x.rule == "MTLS013")  # the product's signature
    assert res.reason == decider.summary
    assert res.product == "Fortinet FortiGate"


def test_pass_reason_names_what_was_checked():
    res = evaluate(f.case(*f.probe_set()))
    assert res.verdict is Verdict.PASS_END_TO_END
    assert res.reason.startswith("chain matches the pinned/baseline server")
    assert "agent certificate accepted" in res.reason
    assert res.product is None


@pytest.mark.parametrize("verdict", list(Verdict))
def test_scenarios_cover_every_verdict(verdict):
    assert evaluate(f.scenarios()[verdict]).verdict is verdict


# --- overall verdict and exit-code bands ---------------------------------------------------


def result(verdict: Verdict) -> CaseResult:
    return CaseResult(target=f.TARGET, route=f.DIRECT, verdict=verdict, reason="r",
                      product=None, findings=(), observations=())


@pytest.mark.parametrize(
    ("verdicts", "code", "worst"),
    [
        ([Verdict.PASS_END_TO_END], errors.EXIT_PASS, Verdict.PASS_END_TO_END),
        ([Verdict.PASS_END_TO_END, Verdict.INSPECTED], errors.EXIT_BREAKS, Verdict.INSPECTED),
        ([Verdict.BLOCKED, Verdict.TERMINATED_BY_LB], errors.EXIT_BREAKS,
         Verdict.TERMINATED_BY_LB),
        ([Verdict.UNKNOWN, Verdict.CLIENT_CERT_REJECTED], errors.EXIT_BREAKS,
         Verdict.CLIENT_CERT_REJECTED),
        ([Verdict.UNKNOWN, Verdict.UNREACHABLE], errors.EXIT_BLOCKED, Verdict.UNREACHABLE),
        ([Verdict.PROXY_AUTH_REQUIRED, Verdict.PASS_END_TO_END], errors.EXIT_BLOCKED,
         Verdict.PROXY_AUTH_REQUIRED),
        ([Verdict.BLOCKED], errors.EXIT_BLOCKED, Verdict.BLOCKED),
        ([Verdict.PASS_END_TO_END, Verdict.UNKNOWN], errors.EXIT_UNKNOWN, Verdict.UNKNOWN),
        ([], errors.EXIT_UNKNOWN, Verdict.UNKNOWN),
    ],
)
def test_exit_code_bands_and_overall(verdicts, code, worst):
    results = [result(v) for v in verdicts]
    assert exit_code(results) == code
    assert overall(results) is worst


def test_the_catalogue_lists_every_severity_a_rule_emits():
    """`mtlsprobe rules` must not call MTLS040 'unknown' only: it also warns (issue 13)."""
    from click.testing import CliRunner

    from mtlsprobe.cli.main import main
    from mtlsprobe.rules.registry import spec

    emitted: dict[str, set[Severity]] = {}
    for c in f.corpus():
        for x in run_rules(c):
            emitted.setdefault(x.rule, set()).add(x.severity)
    for rule_id, severities in emitted.items():
        assert severities <= set(spec(rule_id).severities), rule_id
    assert emitted["MTLS040"] == {Severity.UNKNOWN, Severity.WARNING}
    listing = CliRunner().invoke(main, ["rules"]).output
    line = next(ln for ln in listing.splitlines() if ln.startswith("MTLS040"))
    assert "unknown/warning" in line
    with pytest.raises(ValueError, match="may not emit"):
        from mtlsprobe.rules.registry import finding

        finding("MTLS001", "x", evidence=(), severity=Severity.BREAKS)
