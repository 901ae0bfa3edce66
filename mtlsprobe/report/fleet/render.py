"""FleetSummary -> text: table (terminal), json (machines), markdown (ticket), csv (per agent).

Pure: values in, text out. Counts are agents; rule titles come from the probe catalogue
and the check-cert table.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import lru_cache

from tabulate import tabulate

from mtlsprobe.model import Verdict
from mtlsprobe.report.escape import json_text, markdown, spreadsheet, terminal
from mtlsprobe.report.fleet.aggregate import BAND, RANK, VERDICT_ORDER, AgentLine, FleetSummary
from mtlsprobe.report.jsonout import rfc3339
from mtlsprobe.report.table import safe_rows

BANDS = (("pass", 0), ("breaks", 10), ("blocked", 11), ("unknown", 12))
CSV_HEADERS = ("agent", "site", "verdict", "exit_band", "cause", "product", "target", "route",
               "reason", "remediation", "last_report", "stale", "agent_version", "agent_cert",
               "missing", "results")
FORMATS = ("table", "json", "markdown", "csv")


@lru_cache(maxsize=1)
def _titles() -> dict[str, str]:
    from mtlsprobe.rules.agent_cert import CRED_RULES
    from mtlsprobe.rules.engine import RULES

    return {**{r.id: r.title for r in RULES}, **{c.id: c.title for c in CRED_RULES}}


def rule_title(rule_id: str) -> str:
    return _titles().get(rule_id, "")


def _when(t: datetime | None) -> str:
    return rfc3339(t) if t else "-"


def _bands(counter: Counter[Verdict]) -> dict[str, int]:
    out = {name: 0 for name, _ in BANDS}
    by_code = {code: name for name, code in BANDS}
    for verdict, n in counter.items():
        out[by_code[BAND[verdict]]] += n
    return out


def _dimension(table: dict[str, Counter[Verdict]]) -> list[dict[str, object]]:
    """Rows sorted by agents not passing, then total, then key."""
    rows = []
    for key, counter in table.items():
        bands = _bands(counter)
        rows.append({"key": key, "agents": sum(counter.values()), **bands,
                     "verdicts": {v.value: counter[v] for v in VERDICT_ORDER if counter[v]}})
    rows.sort(key=lambda r: (-(r["agents"] - r["pass"]), -r["agents"], r["key"]))  # type: ignore[operator]
    return rows


def _agent_json(a: AgentLine) -> dict[str, object]:
    return {
        "agent": a.agent, "site": a.site, "verdict": a.verdict.value, "cause": a.cause,
        "product": a.product, "target": a.target, "route": a.route, "reason": a.reason,
        "remediation": a.remediation, "last_report": _when(a.last_report) if a.last_report
        else None, "age_days": None if a.age_days is None else round(a.age_days, 1),
        "stale": a.stale, "agent_version": a.agent_version, "agent_cert": a.agent_cert,
        "missing": list(a.missing),
    }


_AGENT_LISTS = ("cut_off", "stale", "incomplete")


def _head_json(s: FleetSummary) -> dict[str, object]:
    st = s.stats
    return {
        "summary_version": 1,
        "generated_at": rfc3339(s.generated_at),
        "stale_after_days": s.stale_after_days,
        "agents": len(s.agents),
        "verdict": s.verdict.value,
        "exit_code": s.exit_code,
        "by_verdict": {v.value: s.by_verdict[v] for v in VERDICT_ORDER},
        "by_cause": [{"cause": c, "title": rule_title(c), "agents": n}
                     for c, n in s.by_cause.most_common()],
        "by_product": [{"product": p, "agents": n} for p, n in s.by_product.most_common()],
        "by_route": _dimension(s.by_route),
        "by_port": _dimension(s.by_port),
        "by_site": _dimension(s.by_site),
        "input": {
            "streams": st.streams, "documents": st.documents, "results": s.rows,
            "malformed": st.malformed, "foreign": st.foreign, "unreadable": st.unreadable,
            "malformed_examples": st.malformed_examples,
            "foreign_examples": st.foreign_examples,
        },
    }


def _agent_lists(s: FleetSummary) -> dict[str, list[AgentLine]]:
    return {"cut_off": s.cut_off, "stale": s.stale, "incomplete": s.incomplete}


def to_json_value(s: FleetSummary) -> dict[str, object]:
    """The summary as one JSON-ready value (agent lists: cut_off, stale, incomplete)."""
    lists = _agent_lists(s)
    return {**_head_json(s), **{k: [_agent_json(a) for a in lists[k]] for k in _AGENT_LISTS}}


def render_json(s: FleetSummary) -> str:
    """Same value as to_json_value, written one agent per line: no per-agent dicts kept."""
    head = json_text(json.dumps(_head_json(s), indent=2, ensure_ascii=False))
    parts = [head[: head.rindex("}")].rstrip()]
    for key, agents in _agent_lists(s).items():
        parts.append(f',\n  "{key}": [')
        parts.append(",".join("\n    " + json_text(json.dumps(_agent_json(a), ensure_ascii=False))
                              for a in agents))
        parts.append("\n  ]" if agents else "]")
    parts.append("\n}\n")
    return "".join(parts)


def render_csv(s: FleetSummary) -> str:
    """One row per agent (every agent, worst result first)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_HEADERS)
    for a in s.agents:
        w.writerow([spreadsheet(str(c)) for c in (
            a.agent, a.site, a.verdict.value, BAND[a.verdict], a.cause or "",
            a.product or "", a.target, a.route, a.reason, a.remediation or "",
            _when(a.last_report) if a.last_report else "", "yes" if a.stale else "no",
            a.agent_version or "", a.agent_cert or "", " ".join(a.missing), a.results)])
    return buf.getvalue()


# --- shared row builders for table and markdown ------------------------------------------


def _headline(s: FleetSummary) -> str:
    st = s.stats
    return (f"{len(s.agents)} agents from {s.rows} results in {st.documents} documents "
            f"({st.streams} inputs); overall {s.verdict.value} (exit {s.exit_code})")


def _problems(s: FleetSummary) -> list[str]:
    st = s.stats
    out = []
    if st.malformed:
        out.append(f"{st.malformed} malformed line(s) skipped, e.g. "
                   + "; ".join(st.malformed_examples))
    if st.foreign:
        out.append(f"{st.foreign} foreign JSON document(s) skipped, e.g. "
                   + "; ".join(st.foreign_examples))
    out.extend(f"unreadable: {u}" for u in st.unreadable)
    return out


def _verdict_rows(s: FleetSummary) -> list[tuple[object, ...]]:
    total = len(s.agents) or 1
    return [(v.value, BAND[v], s.by_verdict[v], f"{100 * s.by_verdict[v] / total:.1f}%")
            for v in VERDICT_ORDER if s.by_verdict[v]]


def _dim_rows(table: dict[str, Counter[Verdict]]) -> list[tuple[object, ...]]:
    return [(r["key"], r["agents"], *(r[name] for name, _ in BANDS)) for r in _dimension(table)]


def _cut_rows(agents: Sequence[AgentLine]) -> list[tuple[object, ...]]:
    return [(a.agent, a.site, a.verdict.value, f"{a.target} via {a.route}", a.product or "-",
             a.cause or "-", a.reason, a.remediation or "") for a in agents]


def _stale_rows(agents: Sequence[AgentLine]) -> list[tuple[object, ...]]:
    return [(a.agent, a.site, _when(a.last_report), f"{a.age_days:.1f}" if a.age_days else "-",
             a.verdict.value) for a in agents]


DIM_HEADERS = ("agents", *(name for name, _ in BANDS))
CUT_HEADERS = ("agent", "site", "verdict", "where", "product", "cause", "reason", "remediation")
STALE_HEADERS = ("agent", "site", "last report", "age (days)", "verdict")


def _sections(s: FleetSummary) -> Iterable[tuple[str, Sequence[str], list[tuple[object, ...]]]]:
    yield "Agents per verdict", ("verdict", "exit", "agents", "share"), _verdict_rows(s)
    yield ("Agents per cause (deciding rule of the worst result)", ("cause", "title", "agents"),
           [(c, rule_title(c), n) for c, n in s.by_cause.most_common()])
    yield "Agents per middlebox product", ("product", "agents"), list(s.by_product.most_common())
    yield "Agents per route", ("route", *DIM_HEADERS), _dim_rows(s.by_route)
    yield "Agents per port", ("port", *DIM_HEADERS), _dim_rows(s.by_port)
    yield "Agents per site", ("site", *DIM_HEADERS), _dim_rows(s.by_site)
    yield (f"Agents that would be cut off ({len(s.cut_off)})", CUT_HEADERS, _cut_rows(s.cut_off))
    yield (f"Stale agents: last report older than {s.stale_after_days:g} days "
           f"({len(s.stale)})", STALE_HEADERS, _stale_rows(s.stale))
    yield (f"Agents with missing fields ({len(s.incomplete)})", ("agent", "missing"),
           [(a.agent, ", ".join(a.missing)) for a in s.incomplete])


def render_table(s: FleetSummary) -> str:
    out = [f"Fleet: {terminal(_headline(s))}"]
    out += [f"note: {terminal(p)}" for p in _problems(s)]
    for title, headers, rows in _sections(s):
        out += ["", title]
        if not rows:
            out.append("  (none)")
            continue
        wide = len(headers) == len(CUT_HEADERS)
        out.append(tabulate(safe_rows(rows), headers=headers, tablefmt="simple",
                            maxcolwidths=[24, 16, None, 32, 18, None, 44, 44] if wide else None))
    return "\n".join(out) + "\n"


def _md_cell(value: object) -> str:
    return markdown(str(value).replace("\n", " "))


def render_markdown(s: FleetSummary) -> str:
    cut = len(s.cut_off)
    out = [f"# mtlsprobe fleet summary: {s.verdict.value}", "",
           f"{_headline(s)}; generated {_when(s.generated_at)}.", "",
           f"- **{cut}** agent(s) would be cut off; **{len(s.stale)}** stale; "
           f"**{len(s.incomplete)}** with missing fields."]
    out += [f"- {_md_cell(p)}" for p in _problems(s)]
    for title, headers, rows in _sections(s):
        out += ["", f"## {title}", ""]
        if not rows:
            out.append("None.")
            continue
        out.append("| " + " | ".join(headers) + " |")
        out.append("|" + "---|" * len(headers))
        out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(out) + "\n"


def render(s: FleetSummary, fmt: str) -> str:
    if fmt == "json":
        return render_json(s)
    if fmt == "csv":
        return render_csv(s)
    if fmt == "markdown":
        return render_markdown(s)
    return render_table(s)


__all__ = ["FORMATS", "RANK", "render", "to_json_value"]
