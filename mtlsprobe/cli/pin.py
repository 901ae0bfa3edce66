"""`mtlsprobe pin`: the SPKI pins of a certificate file or of what a live server presents."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import click

from mtlsprobe.cli.common import EXIT_CODES_HELP, checked, valid_target
from mtlsprobe.report.escape import json_text, terminal


def valid_source(text: str) -> None:
    """A file (read later: a missing one is exit 3) or a well-formed HOST[:PORT]."""
    from mtlsprobe.run.pin import is_file_source

    if not is_file_source(text):
        valid_target(text)


@click.command(epilog=EXIT_CODES_HELP)
@click.argument("sources", nargs=-1, required=True, metavar="FILE|HOST[:PORT]...",
                callback=checked(valid_source))
@click.option("--sni", help="Server name to send (default: HOST when it is a name).")
@click.option("--timeout", type=click.FloatRange(0.1, 600), default=10.0, show_default=True,
              help="Deadline in seconds for each server.")
@click.option("--format", "fmt", type=click.Choice(("table", "json")), default="table",
              show_default=True)
def pin(sources: Sequence[str], sni: str | None, timeout: float, fmt: str) -> None:
    """Print the SPKI pin (sha256/BASE64, for --pin) of every certificate in FILE, or in
    the chain HOST presents (default port 443). curl takes the same value as
    --pinnedpubkey sha256//BASE64.

    Pin what the real server presents: run it next to the server, or from a file.
    """
    from mtlsprobe.run.pin import is_file_source, pins_of_file, pins_of_server

    found = [pins_of_file(Path(s)) if is_file_source(s) else pins_of_server(s, sni, timeout)
             for s in sources]
    if fmt == "json":
        click.echo(json_text(json.dumps([{"source": p.source, "note": p.note, "certificates": [
            {"pin": c.spki_pin, "subject": c.subject, "issuer": c.issuer,
             "not_after": c.not_after.isoformat()} for c in p.chain]} for p in found],
            indent=2, ensure_ascii=False)))
        return
    for p in found:
        click.echo(terminal(p.source))
        for i, c in enumerate(p.chain):
            role = "leaf" if i == 0 else f"chain[{i}]"
            click.echo(f"  {c.spki_pin}  {role}: {terminal(c.subject)}")
        if p.note:
            click.echo(f"  note: {p.note}")
