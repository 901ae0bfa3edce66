"""`mtlsprobe demo`: the whole story on loopback, from the sibling package ``mtlsprobe_demo``.

The demo's servers and proxies are not part of the shipped core; they are imported here,
on use, and nowhere else in ``mtlsprobe``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mtlsprobe.cli.common import EXIT_CODES_HELP, emit, output_options
from mtlsprobe.model.errors import EXIT_BUG, EnvironmentProblem


@click.command(epilog=EXIT_CODES_HELP)
@output_options
def demo(fmt: str, output: Path | None) -> None:
    """Show the whole story on loopback: no setup, nothing left behind.

    Starts a reference mTLS server and, in front of it, a plain TCP relay, a
    re-signing intercepting proxy and a TLS-terminating proxy holding a
    certificate from the server's own root; probes all four paths with demo agent
    credentials. Exits 0 when every path gets the verdict it should.
    """
    try:
        from mtlsprobe_demo.demo import run_demo
    except ImportError:
        raise EnvironmentProblem("the demo kit (package mtlsprobe_demo) is not installed "
                                 "beside mtlsprobe; install mtlsprobe with pip") from None

    report, as_expected = run_demo()
    emit(report, fmt, output)
    if not as_expected:
        click.echo("mtlsprobe: demo: a path did not get its expected verdict", err=True)
        sys.exit(EXIT_BUG)
