"""`mtlsprobe schema`: print the JSON Schema that `--format json` reports follow."""

from __future__ import annotations

from importlib.resources import files

import click

from mtlsprobe.cli.common import TOOL_EXIT_CODES_HELP


@click.command(epilog=TOOL_EXIT_CODES_HELP)
def schema() -> None:
    """Print the JSON Schema that --format json reports follow."""
    schema_file = files("mtlsprobe").joinpath("report/schema/report-v1.json")
    click.echo(schema_file.read_text("utf-8"), nl=False)
