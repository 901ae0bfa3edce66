"""`mtlsprobe rules`: every rule id the engine and check-cert can emit, with severity and title."""

from __future__ import annotations

import click

from mtlsprobe.cli.common import TOOL_EXIT_CODES_HELP


@click.command(epilog=TOOL_EXIT_CODES_HELP)
def rules() -> None:
    """List every rule id with its severity and title."""
    from tabulate import tabulate

    from mtlsprobe.rules.agent_cert import CRED_RULES
    from mtlsprobe.rules.engine import RULES

    rows = [(r.id, "/".join(s.value for s in r.severities), r.title) for r in RULES]
    rows += [(r.id, r.severity.value, r.title) for r in CRED_RULES]
    click.echo(tabulate(rows, headers=("id", "severity", "title"), tablefmt="simple"))
