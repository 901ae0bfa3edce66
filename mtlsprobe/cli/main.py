"""The entry point: the `mtlsprobe` group, lazy command loading, errors -> exit codes.

Every operator error is one `mtlsprobe: error: ...` line on stderr and a documented exit
code; a traceback appears only with --debug. Reports go to stdout or, atomically, to --output.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from typing import Any

import click

from mtlsprobe import MIN_CRYPTOGRAPHY, __version__
from mtlsprobe.cli.common import EXIT_CODES_HELP
from mtlsprobe.model.errors import EXIT_BUG, EXIT_ENVIRONMENT, EXIT_USAGE, MtlsprobeError
from mtlsprobe.report.escape import terminal

#: Every command lives in its own module of this package, imported on first use so that
#: `mtlsprobe probe` never pays for summarize/serve/analyze imports.
LAZY_COMMANDS = {
    "probe": "mtlsprobe.cli.probe:probe",
    "analyze": "mtlsprobe.cli.analyze:analyze",
    "check-cert": "mtlsprobe.cli.check_cert:check_cert",
    "summarize": "mtlsprobe.cli.summarize:summarize",
    "serve": "mtlsprobe.cli.serve:serve",
    "trace": "mtlsprobe.cli.trace:trace",
    "demo": "mtlsprobe.cli.demo:demo",
    "schema": "mtlsprobe.cli.schema:schema",
    "rules": "mtlsprobe.cli.rules:rules",
    "pin": "mtlsprobe.cli.pin:pin",
}


class _PipeClosed(Exception):
    """A closed stdout pipe, carried past click (which would turn it into a silent exit 1)."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


class Main(click.Group):
    """Turns every exception into one line and a documented exit code."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:  # --help and --version write while the arguments are parsed
            return super().make_context(*args, **kwargs)
        except BrokenPipeError as exc:
            raise _PipeClosed(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError as exc:
            raise _PipeClosed(exc) from None

    def list_commands(self, ctx: click.Context) -> list[str]:
        from importlib.util import find_spec

        lazy = [n for n, ref in LAZY_COMMANDS.items() if find_spec(ref.split(":")[0])]
        return sorted([*super().list_commands(ctx), *lazy])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in LAZY_COMMANDS:
            from importlib import import_module
            from importlib.util import find_spec

            module, attr = LAZY_COMMANDS[name].split(":")
            if find_spec(module) is None:
                return None
            command: click.Command = getattr(import_module(module), attr)
            if not any(p.name == "debug" for p in command.params):  # --debug after the name
                command.params.append(click.Option(["--debug"], is_flag=True, hidden=True,
                                                   expose_value=False))
            return command
        return super().get_command(ctx, name)

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("standalone_mode", True)
        debug = "--debug" in sys.argv[1:]
        problem = cryptography_problem()
        if problem is not None:
            click.echo(f"mtlsprobe: error: {problem}", err=True)
            sys.exit(EXIT_ENVIRONMENT)
        try:
            try:
                return super().main(*args, **{**kwargs, "standalone_mode": False})
            finally:
                sys.stdout.flush()  # a full disk or a closed pipe shows here, not at exit
        except OSError as exc:
            if exc.errno not in _OUTPUT_ERRNOS or debug:
                raise
            _output_failed(exc)
        except _PipeClosed as exc:
            _output_failed(exc.error)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(EXIT_USAGE if isinstance(exc, click.UsageError) else exc.exit_code)
        except click.Abort:
            click.echo("mtlsprobe: aborted", err=True)
            sys.exit(130)
        except MtlsprobeError as exc:
            if debug:
                raise
            click.echo(error_line(exc), err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("mtlsprobe: interrupted", err=True)
            sys.exit(130)
        except Exception as exc:
            if debug:
                raise
            click.echo(
                f"mtlsprobe: internal error: {type(exc).__name__}: {exc} "
                "(this is a bug; rerun with --debug for the traceback)",
                err=True,
            )
            sys.exit(EXIT_BUG)


#: Errors of writing the report out: the environment's, not the operator's input (exit 4).
_OUTPUT_ERRNOS = frozenset({errno.EPIPE, errno.ENOSPC, errno.EIO, errno.EDQUOT})


def _output_failed(exc: OSError) -> None:
    """One line on stderr, exit 4, and no second complaint when Python flushes at exit."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    with contextlib.suppress(OSError):
        click.echo(f"mtlsprobe: error: cannot write the report: {exc.strerror or exc}",
                   err=True)
    sys.exit(EXIT_ENVIRONMENT)


MAX_ERROR = 1000  # characters of an error line: messages may quote the input at fault


def error_line(exc: Exception) -> str:
    """The one line an operator error shows: its message, controls escaped, cut at MAX_ERROR
    (a bad value from a 256 MiB file or a peer is quoted, not pasted whole)."""
    text = terminal(str(exc))
    if len(text) > MAX_ERROR:
        text = text[:MAX_ERROR] + f"... ({len(text) - MAX_ERROR:,} more characters)"
    return f"mtlsprobe: error: {text}"


def cryptography_problem() -> str | None:
    """Why this host's cryptography cannot run mtlsprobe (too old: wrong verdicts), or None."""
    try:
        import cryptography
    except ImportError:
        return (f"the 'cryptography' package is missing for {sys.executable}: "
                f"{sys.executable} -m pip install 'cryptography>={MIN_CRYPTOGRAPHY[0]}'")
    found = cryptography.__version__
    parts = tuple(int(p) if p.isdigit() else 0 for p in found.split(".")[:2])
    if parts < MIN_CRYPTOGRAPHY:
        return (f"cryptography {found} is too old: mtlsprobe needs {MIN_CRYPTOGRAPHY[0]} or "
                f"newer ({sys.executable} -m pip install 'cryptography>={MIN_CRYPTOGRAPHY[0]}')")
    return None


def _version_line() -> str:
    import platform

    try:
        import cryptography

        crypto = cryptography.__version__
    except ImportError:
        crypto = "missing"
    from mtlsprobe import compiled
    from mtlsprobe.capture import core

    return (f"%(prog)s %(version)s (Python {platform.python_version()}, "
            f"cryptography {crypto}, capture core {core.name()}, "
            f"TLS and flow modules {compiled.name()})")


@click.group(cls=Main, epilog=EXIT_CODES_HELP, context_settings={"max_content_width": 100})
@click.version_option(__version__, prog_name="mtlsprobe", message=_version_line())
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
def main(debug: bool) -> None:
    """Will client-certificate (mutual TLS) authentication reach the real server from here?

    Probes live paths (probe), judges captures (analyze), and shows the whole story
    on loopback (demo).
    """


__all__ = ["main"]
