"""`mtlsprobe summarize`: roll many agents' reports up into one fleet picture.

Options -> mtlsprobe.run.summarize.roll_up -> mtlsprobe.report.fleet.render; exit code by the
same bands as probe, over all agents.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import click

from mtlsprobe.cli.common import EXIT_CODES_HELP, quiet, said, set_quiet
from mtlsprobe.report.atomic import write_atomic

SUMMARY_HELP = """\b
An agent is a hostname; its verdict is the worst over its newest result per
target and route. Cut off: inspected, terminated_by_lb, client_cert_rejected,
blocked, unreachable, proxy_auth_required. Site: --site-map entry for the
hostname, else for a CIDR holding one of host.addresses, else that address's
/24, else "unknown". Malformed lines and foreign JSON are counted, never fatal.
Exit 0 when every agent passes, 10/11/12 by the worst agent, 3 when no report
could be read.
"""


@click.command("summarize", epilog=SUMMARY_HELP + "\n" + EXIT_CODES_HELP)
@click.argument("reports", nargs=-1, required=True, metavar="REPORT...")
@click.option("--site-map", type=click.Path(dir_okay=False, path_type=Path),
              help="CSV 'hostname-or-CIDR,site' naming each agent's site.")
@click.option("--stale-after", type=click.FloatRange(0, None), default=7.0, show_default=True,
              metavar="DAYS", help="Flag agents whose newest report is older than this.")
@click.option("--format", "fmt", type=click.Choice(("table", "json", "markdown", "csv")),
              default="table", show_default=True, help="Summary format (csv: one row per agent).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the summary to FILE (atomically) instead of stdout.")
@click.option("--quiet", "-q", is_flag=True, expose_value=False, callback=set_quiet,
              help="Print nothing but errors (the exit code carries the fleet's verdict).")
def summarize(
    reports: Sequence[str],
    site_map: Path | None,
    stale_after: float,
    fmt: str,
    output: Path | None,
) -> None:
    """Summarise REPORT... (JSON reports, JSON Lines, folders, gzip, '-' for stdin).

    Prints agents per verdict, per cause, per middlebox product, per route, per port
    and per site; the agents that would be cut off, with reason and remediation; and
    the agents whose reports are stale or miss fields.
    """
    from mtlsprobe.report.fleet.render import render
    from mtlsprobe.run.summarize import load_site_map, roll_up

    sites = load_site_map(site_map) if site_map else None
    summary = roll_up(reports, now=datetime.now(timezone.utc), stale_after_days=stale_after,
                      sites=sites)
    text = render(summary, fmt)
    if output:
        write_atomic(output, text)
        said(f"summary written to {output}: {summary.verdict.value} (exit {summary.exit_code})")
    elif not quiet():
        click.echo(text, nl=False)
    sys.exit(summary.exit_code)
