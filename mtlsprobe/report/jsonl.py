"""JSON Lines for log shippers: one self-contained JSON object per target x route.

Each line repeats who measured (host, agent certificate fingerprint and subject), when,
with which command, and the judgement (verdict, reason, product, deciding rule, findings'
ids/severities/summaries) plus a few key facts; never observations' raw bytes or key
material. Schema: ``$defs/jsonl_line`` in report/schema/report-v1.json. Pure: Report in, text out.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import cast

from mtlsprobe.model import CaseResult, Finding, Report, Seen, Severity, Verdict
from mtlsprobe.report.escape import json_text
from mtlsprobe.report.jsonout import rfc3339, to_jsonable
from mtlsprobe.report.table import cert_request, client_cert_behaviour, tls_versions

RECORD = "result"
_DECIDING = (Severity.BREAKS, Severity.BLOCKS, Severity.REJECTS, Severity.UNKNOWN)


def cause_of(result: CaseResult) -> Finding | None:
    """The finding that decided the verdict (its summary is the reason); None for a pass."""
    if result.verdict is Verdict.PASS_END_TO_END:
        return None
    deciding = [f for f in result.findings if f.severity in _DECIDING]
    return next((f for f in deciding if f.summary == result.reason),
                deciding[0] if deciding else None)


def _facts(result: CaseResult) -> dict[str, object]:
    leaf = next((o.server_chain[0] for o in result.observations
                 if o.server_chain_seen is Seen.YES and o.server_chain), None)
    return {
        "tls_versions": [v for v in tls_versions(result).split(", ") if v != "-"],
        "server_leaf_sha256": leaf.sha256 if leaf else None,
        "server_issuer": leaf.issuer if leaf else None,
        "cert_request": cert_request(result),
        "client_cert": client_cert_behaviour(result),
        "connect_status": result.route.connect_status,
        "attempts": len(result.observations),
    }


def line_objects(report: Report) -> list[dict[str, object]]:
    """The JSON-ready objects, one per result (one with target null when none)."""
    head: dict[str, object] = {
        "schema_version": report.schema_version,
        "record": RECORD,
        "tool": {"name": "mtlsprobe", "version": report.tool_version},
        "host": to_jsonable(report.host),
        "generated_at": rfc3339(report.generated_at),
        "command": report.command,
        "agent_cert": report.inputs.get("agent_cert"),
        "agent_subject": report.inputs.get("agent_subject"),
    }
    if not report.results:
        reason = report.notes[0] if report.notes else "no targets were judged"
        return [{**head, "target": None, "route": None, "verdict": report.verdict.value,
                 "reason": reason, "product": None, "cause": None, "remediation": None,
                 "findings": [], "facts": {}}]
    out = []
    for r in report.results:
        cause = cause_of(r)
        out.append({
            **head,
            "target": to_jsonable(r.target),
            "route": to_jsonable(r.route),
            "source": r.source,
            "verdict": r.verdict.value,
            "reason": r.reason,
            "product": r.product,
            "cause": cause.rule if cause else None,
            "remediation": cause.remediation if cause else None,
            "findings": [{"rule": f.rule, "severity": f.severity.value, "summary": f.summary}
                         for f in r.findings],
            "facts": _facts(r),
        })
    # to_jsonable keeps the shape (a list of str-keyed objects) and refuses secrets
    return cast(list[dict[str, object]], to_jsonable(out))


def dumps_lines(objects: Sequence[dict[str, object]]) -> str:
    return "".join(json_text(json.dumps(o, ensure_ascii=False, separators=(",", ":"))) + "\n"
                   for o in objects)


def render_jsonl(report: Report) -> str:
    """One compact JSON object per line, each line ending in a newline."""
    return dumps_lines(line_objects(report))
