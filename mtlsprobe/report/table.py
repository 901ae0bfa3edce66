"""The human-readable report: one row per target x route, findings per result, overall line.

Pure: Report in, text out (tabulate). Column helpers are shared with the Markdown renderer.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence

from tabulate import tabulate

from mtlsprobe.model import CaseResult, Finding, Report, Seen
from mtlsprobe.report.escape import terminal

_CN = re.compile(r"(?:^|,)CN=((?:\\.|[^,\\])+)")

SUMMARY_HEADERS = ("target", "route", "verdict", "product", "TLS", "server issuer", "CertReq",
                   "client cert", "reason")
FINDING_HEADERS = ("id", "severity", "summary", "remediation")

_CLIENT_CERT_WORDS = (
    ("MTLS030", "untrusted accepted (server rejects it)"),
    ("MTLS031", "untrusted accepted"),
    ("MTLS032", "untrusted rejected"),
    ("MTLS033", "agent rejected"),
    ("MTLS034", "agent not sent"),
    ("MTLS035", "agent accepted"),
)


def short_name(dn: str) -> str:
    """The CN of an RFC 4514 name, else the whole name."""
    m = _CN.search(dn)
    return m.group(1).replace("\\", "") if m else dn


def tls_versions(result: CaseResult) -> str:
    seen = [o.version for o in result.observations if o.version]
    return ", ".join(dict.fromkeys(seen)) or "-"


def server_issuers(result: CaseResult) -> str:
    names = [short_name(o.server_chain[0].issuer) for o in result.observations
             if o.server_chain_seen is Seen.YES and o.server_chain]
    return "; ".join(dict.fromkeys(names)) or "-"


def cert_request(result: CaseResult) -> str:
    obs = result.observations
    if not obs:
        return "-"
    yes = [o for o in obs if o.cert_request.seen is Seen.YES]
    no = [o for o in obs if o.cert_request.seen is Seen.NO]
    if yes and no:
        return f"mixed ({len(yes)}/{len(yes) + len(no)} yes)"
    if yes:
        where = yes[0].cert_request.where
        return "yes" if where in (None, "handshake") else f"yes ({where})"
    return "no" if no else "unknown"


def client_cert_behaviour(result: CaseResult) -> str:
    ids = {f.rule for f in result.findings}
    words = [text for rule_id, text in _CLIENT_CERT_WORDS if rule_id in ids]
    return "; ".join(words) or "-"


def target_label(result: CaseResult) -> str:
    """The target, with where it came from when that is more than the command line."""
    if result.source and result.source not in ("flag", "capture"):
        return f"{result.target}\n({result.source})"
    return str(result.target)


def heading_label(result: CaseResult) -> str:
    """:func:`target_label` on one line, for the heading of a result's findings."""
    return target_label(result).replace("\n", " ")


def leaf_pins(result: CaseResult) -> list[tuple[str, str]]:
    """(SPKI pin, subject) of each distinct server leaf the target's handshakes showed (the
    unrelated-name handshakes left out): what to give --pin once it is the real server's."""
    seen: dict[str, str] = {}
    for obs in result.observations:
        if obs.server_chain and not obs.asks_other_name and obs.server_chain[0].spki_pin:
            seen.setdefault(obs.server_chain[0].spki_pin, obs.server_chain[0].subject)
    return list(seen.items())


def summary_row(result: CaseResult) -> tuple[str, ...]:
    return (
        target_label(result),
        result.route.name,
        result.verdict.value,
        result.product or "-",
        tls_versions(result),
        server_issuers(result),
        cert_request(result),
        client_cert_behaviour(result),
        result.reason,
    )


def finding_row(f: Finding) -> tuple[str, ...]:
    return (f.rule, f.severity.value, f.summary, f.remediation or "")


def safe_rows(rows: Sequence[Sequence[object]]) -> list[tuple[str, ...]]:
    """Cells for a terminal: every control character shown escaped (values come from the
    network and from other machines)."""
    return [tuple(terminal(str(c), keep_newlines=True) for c in row) for row in rows]


#: Summary columns dropped, in this order, when the table is wider than the terminal
#: (target, route, verdict and reason always stay; JSON and --wide keep everything).
DROP_ORDER = ("client cert", "TLS", "CertReq", "server issuer", "product")
_WIDTHS = dict(zip(SUMMARY_HEADERS, (28, 24, None, 18, 16, 28, 12, 22, 48), strict=True))
_NARROWEST_REASON = 24
MAX_PINS_SHOWN = 3  # leaf pins under a result's heading (a pool may show more: JSON has all)


def _widest(text: str) -> int:
    return max((len(line) for line in text.splitlines()), default=0)


def _summary(rows: list[tuple[str, ...]], width: int | None) -> str:
    """The summary table, fitted to `width` columns: optional columns dropped first, then
    the reason wrapped narrower. None: the fixed widths (files, pipes, --wide)."""
    headers = list(SUMMARY_HEADERS)
    widths = dict(_WIDTHS)

    def draw() -> str:
        keep = [SUMMARY_HEADERS.index(h) for h in headers]
        return tabulate([[row[i] for i in keep] for row in rows], headers=headers,
                        tablefmt="simple", maxcolwidths=[widths[h] for h in headers])

    text = draw()
    if width is None:
        return text
    for column in DROP_ORDER:
        if _widest(text) <= width:
            return text
        headers.remove(column)
        text = draw()
    while _widest(text) > width and (widths["reason"] or 0) > _NARROWEST_REASON:
        widths["reason"] = max(_NARROWEST_REASON, (widths["reason"] or 0) - (
            _widest(text) - width))
        widths["target"] = min(widths["target"] or 28, 22)
        widths["route"] = min(widths["route"] or 24, 16)
        text = draw()
    return text


def _findings_block(results: Sequence[CaseResult], width: int | None) -> list[str]:
    summary, remedy = 60, 50
    if width is not None:  # id and severity take about 20 columns
        room = max(40, width - 24)
        summary, remedy = room * 11 // 20, room * 9 // 20
    out: list[str] = []
    for r in results:
        out.append("")
        out.append(terminal(f"{heading_label(r)} via {r.route.name}: {r.verdict.value}"))
        pins = leaf_pins(r)
        for pin, subject in pins[:MAX_PINS_SHOWN]:
            line = terminal(f"  server leaf {pin}  {subject}")
            out.append(line[:width] if width else line)
        if len(pins) > MAX_PINS_SHOWN:
            out.append(f"  ... and {len(pins) - MAX_PINS_SHOWN} more server leaves (JSON)")
        if not r.findings:
            out.append("  (no findings)")
            continue
        out.append(tabulate(safe_rows([finding_row(f) for f in r.findings]),
                            headers=FINDING_HEADERS, tablefmt="simple",
                            maxcolwidths=[None, None, summary, remedy]))
    return out


def render_table(report: Report, width: int | None = None) -> str:
    """Summary table, findings per result, then the overall line; fitted to `width`
    terminal columns when given."""
    lines: list[str] = []
    if report.results:
        lines.append(_summary(safe_rows([summary_row(r) for r in report.results]), width))
    else:
        lines.append("No targets were judged.")
    lines.extend(_findings_block(report.results, width))
    for note in report.notes:
        text = f"note: {terminal(note)}"
        lines.extend(textwrap.wrap(text, width, subsequent_indent="      ") if width else [text])
    lines.append("")
    if len(report.results) > 1:
        lines.append(f"Results: {verdict_tally(report)}")
    lines.append(f"Overall: {report.verdict.value} (exit {report.exit_code})")
    return "\n".join(lines) + "\n"


def verdict_tally(report: Report) -> str:
    """'3 pass_end_to_end, 1 inspected': results per verdict, worst first."""
    from mtlsprobe.model import Verdict

    order = [Verdict.INSPECTED, Verdict.TERMINATED_BY_LB, Verdict.CLIENT_CERT_REJECTED,
             Verdict.BLOCKED, Verdict.UNREACHABLE, Verdict.PROXY_AUTH_REQUIRED,
             Verdict.UNKNOWN, Verdict.PASS_END_TO_END]
    counts = [(sum(r.verdict is v for r in report.results), v) for v in order]
    return ", ".join(f"{n} {v.value}" for n, v in counts if n)
