"""A ticket body in Markdown: summary, results table, findings with evidence and remediation.

Pure: Report in, text out. Everything a network team needs to act without re-running.
"""

from __future__ import annotations

from mtlsprobe.model import Report, Severity
from mtlsprobe.report.escape import code_span, markdown
from mtlsprobe.report.jsonout import rfc3339
from mtlsprobe.report.table import SUMMARY_HEADERS, summary_row, verdict_tally

_ACTION = (Severity.BREAKS, Severity.BLOCKS, Severity.REJECTS, Severity.UNKNOWN,
           Severity.WARNING)


def _cell(text: str) -> str:
    return markdown(text.replace("\n", " "))


def render_markdown(report: Report) -> str:
    host = report.host.get("hostname", "?")
    out = [
        f"# mtlsprobe: {report.verdict.value}",
        "",
        f"Measured from **{_cell(host)}** with `mtlsprobe {report.command}` "
        f"{report.tool_version} at {rfc3339(report.generated_at)}; "
        f"overall verdict **{report.verdict.value}** (exit {report.exit_code})"
        + (f"; results: {verdict_tally(report)}." if len(report.results) > 1 else "."),
        "",
    ]
    for r in report.results:
        product = f" ({r.product})" if r.product else ""
        out.append(f"- **{_cell(str(r.target))}** via {_cell(r.route.name)}: "
                   f"**{r.verdict.value}**{_cell(product)}: {_cell(r.reason)}")
    if not report.results:
        out.append("- No targets were judged.")
    out += ["", "## Results", "",
            "| " + " | ".join(SUMMARY_HEADERS) + " |",
            "|" + "---|" * len(SUMMARY_HEADERS)]
    out += ["| " + " | ".join(_cell(c) for c in summary_row(r)) + " |" for r in report.results]
    out += ["", "## Findings"]
    for r in report.results:
        out += ["", f"### {_cell(str(r.target))} via {_cell(r.route.name)}: {r.verdict.value}"]
        if not r.findings:
            out += ["", "No findings."]
        for f in r.findings:
            out += ["", f"**{f.rule}** ({f.severity.value}) {_cell(f.title)}"
                    + (f" [{_cell(f.product)}]" if f.product else ""), "",
                    _cell(f.summary), ""]
            for e in f.evidence:
                where = f"{_cell(e.observation)}: " if e.observation else ""
                out.append(f"- {where}{code_span(e.field)} = {code_span(e.value)}")
            if f.remediation and f.severity in _ACTION:
                out += ["", f"Remediation: {_cell(f.remediation)}"]
    if report.notes:
        out += ["", "## Notes", ""] + [f"- {_cell(n)}" for n in report.notes]
    return "\n".join(out) + "\n"
