"""What every command shares: the exit-code epilogue, option groups, rendering and emitting.

The commands import this module, never the entry point (``cli.main``), so the entry point
can import the commands lazily without an import circle.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from mtlsprobe.model import Report
from mtlsprobe.report.atomic import write_atomic
from mtlsprobe.report.escape import terminal

EXIT_CODES_HELP = """\b
Exit codes:
   0  every target/route passes end to end
   1  internal error (a bug; rerun with --debug)
   2  usage error (also a bad value on the command line: --pin, TARGET, --proxy)
   3  bad input (unreadable file, wrong password, malformed capture or report)
   4  environment problem (missing privilege or program, output not writable)
  10  something breaks client-certificate authentication
      (inspected, terminated_by_lb, client_cert_rejected)
  11  blocked, unreachable or proxy_auth_required
  12  unknown: not enough evidence for a verdict
 130  interrupted (Ctrl-C)
"""

TOOL_EXIT_CODES_HELP = """\b
Exit codes:
   0  done
   1  internal error (a bug; rerun with --debug)
   2  usage error
   3  bad input (unreadable or malformed file)
   4  environment problem (port in use, missing privilege, output not writable)
 130  interrupted (Ctrl-C)
"""

FORMATS = ("table", "json", "markdown", "jsonl")
Callback = Callable[[click.Context, click.Parameter, Any], Any]


def checked(check: Callable[[str], object]) -> Callback:
    """A click callback: every value given on the command line must pass `check` (which
    raises InputError), or it is a bad option value, exit 2 like any other. The same value
    read from a file or the environment stays bad input (exit 3)."""

    def callback(_ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
        from mtlsprobe.model.errors import InputError

        values = value if isinstance(value, tuple) else () if value is None else (value,)
        for v in values:
            try:
                check(v)
            except InputError as exc:
                raise click.BadParameter(str(exc)) from None
        return value

    return callback


def valid_target(text: str) -> None:
    from mtlsprobe.live.targets import parse_target

    parse_target(text)


def valid_pin(text: str) -> None:
    from mtlsprobe.run.expectations import check_pins

    check_pins([text])


def valid_proxy(text: str) -> None:
    from mtlsprobe.live.proxy import parse_proxy_url

    parse_proxy_url(text, "flag")
F = TypeVar("F", bound=Callable[..., Any])


QUIET = "mtlsprobe.quiet"


def set_quiet(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.meta[QUIET] = True


def quiet() -> bool:
    """Whether -q/--quiet was given: nothing on stdout or stderr but errors."""
    ctx = click.get_current_context(silent=True)
    return bool(ctx and ctx.meta.get(QUIET))


WIDE = "mtlsprobe.wide"


def _set_wide(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.meta[WIDE] = True


def terminal_width() -> int | None:
    """The width to fit a table to: the terminal's when stdout is one, unless --wide."""
    ctx = click.get_current_context(silent=True)
    if (ctx and ctx.meta.get(WIDE)) or not sys.stdout.isatty():
        return None
    return shutil.get_terminal_size().columns


PROBLEMS = "mtlsprobe.problems_only"


def _set_problems(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.meta[PROBLEMS] = True


def output_options(fn: F) -> F:
    fn = click.option(
        "--problems-only", is_flag=True, expose_value=False, callback=_set_problems,
        help="Show only the targets that do not pass end to end (the exit code still counts "
        "them all).",
    )(fn)
    fn = click.option(
        "--wide", is_flag=True, expose_value=False, callback=_set_wide,
        help="Table format: every column at full width, whatever the terminal's width.",
    )(fn)
    fn = click.option(
        "--quiet", "-q", is_flag=True, expose_value=False, callback=set_quiet,
        help="Print nothing but errors (the exit code carries the verdict; -o still writes).",
    )(fn)
    fn = click.option(
        "--output",
        "-o",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Write the report to FILE (atomically) instead of stdout; the verdict and "
        "where the report went are said on stderr.",
    )(fn)
    fn = click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default="table",
        show_default=True,
        help="Report format.",
    )(fn)
    return fn


def expectation_options(fn: F) -> F:
    fn = click.option(
        "--baseline",
        type=click.Path(dir_okay=False, path_type=Path),
        help="A report saved with `probe --save-baseline` on the server's own LAN.",
    )(fn)
    fn = click.option(
        "--pin",
        "pins",
        multiple=True,
        metavar="sha256/BASE64",
        callback=checked(valid_pin),
        help="SPKI pin of any certificate in the real server's chain (repeatable).",
    )(fn)
    fn = click.option(
        "--ca",
        "ca",
        multiple=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="PEM bundle holding the real server's root CA (repeatable).",
    )(fn)
    return fn


def credential_options(fn: F) -> F:
    """--cert/--key | --pkcs12 and --password-file: the agent's own credentials."""
    fn = click.option(
        "--password-file",
        type=click.Path(dir_okay=False, path_type=Path),
        help="File holding the key password (else $MTLSPROBE_KEY_PASSWORD, else a prompt on "
        "a terminal).",
    )(fn)
    fn = click.option(
        "--pkcs12",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Agent certificate and key as PKCS#12 (.p12/.pfx).",
    )(fn)
    fn = click.option(
        "--key",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Agent private key (PEM or DER; may be encrypted).",
    )(fn)
    fn = click.option(
        "--cert",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Agent certificate (PEM or DER; may hold intermediates after the leaf).",
    )(fn)
    return fn


def render(report: Report, fmt: str, width: int | None = None) -> str:
    if fmt == "json":
        from mtlsprobe.report.jsonout import dumps

        return dumps(report)
    if fmt == "jsonl":
        from mtlsprobe.report.jsonl import render_jsonl

        return render_jsonl(report)
    if fmt == "markdown":
        from mtlsprobe.report.markdown import render_markdown

        return render_markdown(report)
    from mtlsprobe.report.table import render_table

    return render_table(report, width)


def emit(report: Report, fmt: str, output: Path | None) -> None:
    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.meta.get(PROBLEMS):
        report = problems_only(report)
    text = render(report, fmt, None if output else terminal_width())
    if not text.endswith("\n"):
        text += "\n"
    if output:
        write_atomic(output, text)
        said(f"report written to {output}: {report.verdict.value} (exit {report.exit_code})")
    elif not quiet():
        click.echo(text, nl=False)


def said(line: str) -> None:
    """One line for the operator on stderr (escaped; nothing with -q)."""
    if not quiet():
        click.echo(f"mtlsprobe: {terminal(line)}", err=True)


def exit_at_once_on_ctrl_c() -> None:
    """Ctrl-C ends a command that waits on the network within moments, whatever --timeout.

    Worker threads may sit in connect() or a DNS lookup until their deadline, so the
    handler does not wait for them: it removes the private files they hold (key logs, the
    agent's key copy) and half-written outputs, says so in one line and exits 130. A second
    Ctrl-C finds the process already leaving.
    """
    import os
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def interrupted(signum: int, frame: object) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        from mtlsprobe.live.handshake import remove_private_files
        from mtlsprobe.report.atomic import remove_temporaries

        remove_private_files()
        remove_temporaries()
        with contextlib.suppress(OSError):  # on a terminal, over a progress line
            os.write(2, (b"\r\x1b[K" if os.isatty(2) else b"") + b"mtlsprobe: interrupted\n")
        os._exit(130)

    signal.signal(signal.SIGINT, interrupted)


def problems_only(report: Report) -> Report:
    """`report` without the results that pass end to end, and a note counting them."""
    import dataclasses

    from mtlsprobe.model import Verdict

    kept = tuple(r for r in report.results if r.verdict is not Verdict.PASS_END_TO_END)
    hidden = len(report.results) - len(kept)
    notes = report.notes + ((f"{hidden} target(s) that pass end to end are not shown "
                             "(--problems-only)",) if hidden else ())
    return dataclasses.replace(report, results=kept, notes=notes)
