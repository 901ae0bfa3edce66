"""`mtlsprobe rules [ID]...`: every rule id the engine and check-cert can emit, with its
severities and title; given ids, what each means, why it matters for client-certificate
authentication and what to do (the rule's explanation), for a helpdesk reading a ticket.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
from typing import Any

import click

SEVERITY_HELP = """\b
Severities:
  breaks   the path breaks client-certificate authentication
  blocks   the path does not carry the connection at all
  rejects  the far end refuses the agent's certificate
  unknown  a decisive fact could not be established
  warning  works now, but fragile or suspicious
  info     context, including good news
"""

RULES_EXIT_HELP = """\b
Exit codes:
   0  the list or the explanations were printed
   1  internal error (a bug; rerun with --debug)
   2  usage error, or an unknown rule id
   4  the output could not be written (disk full, pipe closed)
"""

#: Explanations are wrapped to this width in table format (a ticket or a terminal).
WIDTH = 88


def catalogue() -> list[dict[str, Any]]:
    """Every rule, engine and check-cert, in id order: the shape of `--format json`
    (``$defs/rules_catalogue`` in the report schema)."""
    from mtlsprobe.rules.agent_cert import CRED_RULES
    from mtlsprobe.rules.engine import RULES

    entries = [
        {"id": r.id, "severities": [s.value for s in r.severities], "title": r.title,
         "explanation": r.explanation} for r in RULES
    ] + [
        {"id": c.id, "severities": [s.value for s in c.severities], "title": c.title,
         "explanation": c.explanation} for c in CRED_RULES
    ]
    return sorted(entries, key=lambda e: str(e["id"]))


def _selected(entries: list[dict[str, Any]], rule_ids: Sequence[str]
              ) -> list[dict[str, Any]]:
    """The entries for `rule_ids` (any case, each once, in the order asked)."""
    from mtlsprobe.model.errors import UsageError
    from mtlsprobe.report.escape import terminal

    by_id = {e["id"]: e for e in entries}
    asked = {i.strip().upper(): i for i in reversed(rule_ids)}  # the first spelling given
    wanted = list(dict.fromkeys(i.strip().upper() for i in rule_ids))
    unknown = [asked[i] for i in wanted if i not in by_id]
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        raise UsageError(f"unknown rule id{plural} {', '.join(map(terminal, unknown))} "
                         "(`mtlsprobe rules` lists them all)")
    return [by_id[i] for i in wanted]


def _explained(entry: dict[str, Any]) -> str:
    severities = entry["severities"]
    label = "severities" if len(severities) > 1 else "severity"
    paragraphs = [textwrap.fill(p, WIDTH, break_on_hyphens=False, break_long_words=False)
                  for p in entry["explanation"].split("\n\n")]
    return "\n\n".join([f"{entry['id']}  {entry['title']}\n{label}: {', '.join(severities)}",
                        *paragraphs])


@click.command(epilog=SEVERITY_HELP + "\n" + RULES_EXIT_HELP)
@click.argument("rule_ids", nargs=-1, metavar="[ID]...")
@click.option("--format", "fmt", type=click.Choice(("table", "json")), default="table",
              show_default=True,
              help="table: for people; json: a list of {id, severities, title, explanation}.")
def rules(rule_ids: tuple[str, ...], fmt: str) -> None:
    """List every rule id with its severities and title, or explain the rules given.

    With ID (e.g. MTLS016, any case, several allowed): the title, the severities and what
    the rule means, whether it breaks, blocks or only hides client-certificate
    authentication, and what to do.
    """
    entries = catalogue()
    if rule_ids:
        entries = _selected(entries, rule_ids)
    if fmt == "json":
        click.echo(json.dumps(entries, indent=2, ensure_ascii=False))
    elif rule_ids:
        click.echo("\n\n\n".join(_explained(e) for e in entries))
    else:
        from tabulate import tabulate

        rows = [(e["id"], "/".join(e["severities"]), e["title"]) for e in entries]
        click.echo(tabulate(rows, headers=("id", "severity", "title"), tablefmt="simple"))
