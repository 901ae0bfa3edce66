"""Command line: options -> requests -> pipeline -> rendered report -> exit code. No logic.

Every operator error is one `mtlsprobe: error: ...` line on stderr and a documented exit
code; a traceback appears only with --debug. Reports go to stdout or, atomically, to --output.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from mtlsprobe import __version__
from mtlsprobe.model import Report
from mtlsprobe.model.errors import (
    EXIT_BUG,
    EXIT_INPUT,
    EXIT_USAGE,
    MtlsprobeError,
)
from mtlsprobe.report.atomic import write_atomic

EXIT_CODES_HELP = """\b
Exit codes:
   0  every target/route passes end to end
   1  internal error (a bug; rerun with --debug)
   2  usage error
   3  bad input (unreadable file, wrong password, malformed capture or report)
   4  environment problem (missing privilege or program)
  10  something breaks client-certificate authentication
      (inspected, terminated_by_lb, client_cert_rejected)
  11  blocked, unreachable or proxy_auth_required
  12  unknown: not enough evidence for a verdict
"""

FORMATS = ("table", "json", "markdown", "jsonl")
F = TypeVar("F", bound=Callable[..., Any])


def output_options(fn: F) -> F:
    fn = click.option(
        "--output",
        "-o",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Write the report to FILE (atomically) instead of stdout.",
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


def render(report: Report, fmt: str) -> str:
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

    return render_table(report)


def emit(report: Report, fmt: str, output: Path | None) -> None:
    text = render(report, fmt)
    if not text.endswith("\n"):
        text += "\n"
    if output:
        write_atomic(output, text)
    else:
        click.echo(text, nl=False)


#: Commands that live in their own modules (mtlsprobe/commands/), imported on first use
#: so that `mtlsprobe probe` never pays for summarize/serve/analyze imports.
LAZY_COMMANDS = {
    "analyze": "mtlsprobe.cli.analyze:analyze",
    "check-cert": "mtlsprobe.cli.check_cert:check_cert",
    "summarize": "mtlsprobe.cli.summarize:summarize",
    "serve": "mtlsprobe.cli.serve:serve",
    "trace": "mtlsprobe.cli.trace:trace",
}


class Main(click.Group):
    """Turns every exception into one line and a documented exit code."""

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
            return command
        return super().get_command(ctx, name)

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("standalone_mode", True)
        debug = "--debug" in sys.argv[1:]
        try:
            return super().main(*args, **{**kwargs, "standalone_mode": False})
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
            click.echo(f"mtlsprobe: error: {exc}", err=True)
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


@click.group(cls=Main, epilog=EXIT_CODES_HELP, context_settings={"max_content_width": 100})
@click.version_option(__version__, prog_name="mtlsprobe")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
def main(debug: bool) -> None:
    """Will client-certificate (mutual TLS) authentication reach the real server from here?

    Probes live paths (probe), judges captures (analyze), and shows the whole story
    on loopback (demo).
    """


@main.command(epilog=EXIT_CODES_HELP)
@click.argument("targets", nargs=-1, metavar="[TARGET]...")
@click.option("--port", "ports", multiple=True, type=click.IntRange(1, 65535),
              help="Port to probe on every target (repeatable; default 8383, the preset's "
                   "ports, or the target's).")
@expectation_options
@click.option("--save-baseline", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write this run's JSON report to FILE for later --baseline use "
                   "(run it on the server's own LAN).")
@credential_options
@click.option("--proxy", "proxies", multiple=True, metavar="URL",
              help="Explicit proxy http://[user:pass@]host:port, tried with CONNECT (repeatable).")
@click.option("--no-env-proxy", is_flag=True,
              help="Ignore HTTPS_PROXY/https_proxy/NO_PROXY.")
@click.option("--no-direct", is_flag=True, help="Do not probe the direct route.")
@click.option("--sni", help="Server name to send (default: the target host when it is a name).")
@click.option("--timeout", type=click.FloatRange(0.1, 600), default=10.0, show_default=True,
              help="Deadline in seconds for each target, all handshakes included.")
@click.option("--repeat", type=click.IntRange(1, 50), default=3, show_default=True,
              help="Handshakes of the default kind per route (catches pools and middleboxes "
                   "that change their mind).")
@click.option("--http-path", metavar="PATH",
              help="After each handshake send GET PATH and record status and revealing headers.")
@click.option("--concurrency", type=click.IntRange(1, 256), default=8, show_default=True,
              help="Targets probed at once.")
@click.option("--targets", "targets_file", type=click.Path(dir_okay=False, path_type=Path),
              help="File of targets, one per line: host[:port] or 'host port'; # comments.")
@click.option("--preset", type=click.Choice(["endpoint-central"]),
              help="Probe the product's agent ports (endpoint-central: 8383 8027 8443 8031, "
                   "8384 with a distribution server) on the servers in the agent's own "
                   "configuration (when no TARGET is given).")
@click.option("--reflector", "reflectors", multiple=True, metavar="HOST[:PORT]",
              help="An `mtlsprobe serve` listener: compare what it received with what we "
                   "sent (repeatable; default port 18383).")
@click.option("--reflector-secret-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Secret to verify the reflector's signed echo (else "
                   "$MTLSPROBE_REFLECTOR_SECRET).")
@click.option("--trace", "trace_hops", is_flag=True,
              help="Also trace the direct path hop by hop (ICMP/SYN/ClientHello with rising "
                   "TTL) and name the hop that answers or resets the ClientHello (IPv4; root "
                   "or CAP_NET_RAW).")
@click.option("--capture", type=click.Path(dir_okay=False, path_type=Path),
              metavar="FILE.pcapng",
              help="Write the probe's own packets (its connections only; root or CAP_NET_RAW) "
                   "to FILE.pcapng with the TLS key log of the throwaway sessions (no-cert and "
                   "untrusted-cert) embedded; never the agent-certificate session's.")
@click.option("--capture-secrets", is_flag=True,
              help="With --capture, also embed the key log of the session that used the "
                   "agent's real certificate (anyone with the file can decrypt it).")
@output_options
def probe(
    targets: Sequence[str],
    ports: Sequence[int],
    ca: Sequence[Path],
    pins: Sequence[str],
    baseline: Path | None,
    save_baseline: Path | None,
    cert: Path | None,
    key: Path | None,
    pkcs12: Path | None,
    password_file: Path | None,
    proxies: Sequence[str],
    no_env_proxy: bool,
    no_direct: bool,
    sni: str | None,
    timeout: float,
    repeat: int,
    http_path: str | None,
    concurrency: int,
    targets_file: Path | None,
    preset: str | None,
    reflectors: Sequence[str],
    reflector_secret_file: Path | None,
    trace_hops: bool,
    capture: Path | None,
    capture_secrets: bool,
    fmt: str,
    output: Path | None,
) -> None:
    """Probe TARGET (host[:port], [v6addr]:port) live, directly and through proxies.

    Handshakes without a client certificate (TLS 1.3 and 1.2), with a throwaway
    untrusted certificate, with the agent's certificate when given, and repeats; then
    judges whether client-certificate authentication reaches the real server.
    Without --ca, --pin or --baseline the probe can only answer `unknown` for
    "is this the real server", and says so.
    """
    from mtlsprobe.live.credentials import load_credentials, password_from
    from mtlsprobe.live.probe import ProbeOptions
    from mtlsprobe.live.proxy import redact_url
    from mtlsprobe.run import expectations, pipeline
    from mtlsprobe.run.presets import plan_targets

    if pkcs12 and (cert or key):
        raise click.UsageError("use either --pkcs12 or --cert/--key, not both")
    if bool(cert) != bool(key) and not pkcs12:
        raise click.UsageError("--cert and --key go together")
    creds = None
    if cert or pkcs12:
        creds = load_credentials(
            cert=cert, key=key, pkcs12=pkcs12, password=lambda: password_from(password_file)
        )
    agent_chain = ()
    if creds is not None:
        from mtlsprobe.model.certs import cert_info

        agent_chain = tuple(cert_info(d) for d in creds.chain_der)
    expect = expectations.build(ca=ca, pins=pins, baseline=baseline, agent_chain=agent_chain)
    plan = plan_targets(targets, ports=ports, targets_file=targets_file, preset=preset)
    if not plan.targets and not reflectors:
        why = "".join(f"; {n}" for n in plan.notes)
        raise click.UsageError("nothing to probe: give TARGET..., --targets FILE, --reflector "
                               f"or --preset on an agent host{why}")
    endpoints = [e for e, _ in plan.targets]
    from mtlsprobe.live.sniff import SniffLog

    sniff_log = SniffLog()  # passive TTL/RST evidence on every connection, when privileged
    options = ProbeOptions(
        sni=sni,
        timeout=timeout,
        repeat=repeat,
        http_path=http_path,
        proxies=tuple(proxies),
        use_env_proxy=not no_env_proxy,
        direct=not no_direct,
        credentials=creds,
        concurrency=concurrency,
        sniff=True,
        sniff_log=sniff_log,
    )
    results = pipeline.probe(list(plan.targets), options, expect)
    from mtlsprobe.run import path as path_evidence

    path_notes = list(sniff_log.notes)
    if trace_hops:
        results, more = path_evidence.traced(results, expect, sni, timeout)
        path_notes += more
    if capture:
        path_notes += path_evidence.write_capture(capture, sniff_log, capture_secrets)
    if reflectors:
        from mtlsprobe.run.reflector import probe_reflectors

        results += probe_reflectors(reflectors, options, expect, reflector_secret_file)
    inputs: dict[str, object] = {
        "targets": [str(e) for e in endpoints],
        "ca": [str(p) for p in ca],
        "pins": list(pins),
        "baseline": str(baseline) if baseline else None,
        "agent_cert": agent_chain[0].sha256 if agent_chain else None,
        "agent_subject": agent_chain[0].subject if agent_chain else None,
        "proxies": [redact_url(p) for p in proxies],
        "env_proxy": not no_env_proxy,
        "direct": not no_direct,
        "sni": sni,
        "timeout": timeout,
        "repeat": repeat,
        "http_path": http_path,
        "sources": [s for _, s in plan.targets],
        "targets_file": str(targets_file) if targets_file else None,
        "preset": preset,
        "reflectors": list(reflectors),
        "trace": trace_hops,
        "capture": str(capture) if capture else None,
    }
    report = pipeline.make_report("probe", results, inputs, [*plan.notes, *path_notes],
                                  host_extra=plan.host_extra)
    if save_baseline:
        from mtlsprobe.report.jsonout import dumps

        write_atomic(save_baseline, dumps(report) + "\n")
    emit(report, fmt, output)
    sys.exit(report.exit_code)


@main.command()
def schema() -> None:
    """Print the JSON Schema that --format json reports follow."""
    from importlib.resources import files

    schema_file = files("mtlsprobe").joinpath("report/schema/report-v1.json")
    click.echo(schema_file.read_text("utf-8"), nl=False)


@main.command()
def rules() -> None:
    """List every rule id with its severity and title."""
    from tabulate import tabulate

    from mtlsprobe.rules.agent_cert import CRED_RULES
    from mtlsprobe.rules.engine import RULES

    rows = [(r.id, r.severity.value, r.title) for r in (*RULES, *CRED_RULES)]
    click.echo(tabulate(rows, headers=("id", "severity", "title"), tablefmt="simple"))


@main.command(epilog=EXIT_CODES_HELP)
@output_options
def demo(fmt: str, output: Path | None) -> None:
    """Show the whole story on loopback: no setup, nothing left behind.

    Starts a reference mTLS server and, in front of it, a plain TCP relay, a
    re-signing intercepting proxy and a TLS-terminating proxy holding a
    certificate from the server's own root; probes all four paths with demo agent
    credentials. Exits 0 when every path gets the verdict it should.
    """
    from mtlsprobe_demo.demo import run_demo

    report, as_expected = run_demo()
    emit(report, fmt, output)
    if not as_expected:
        click.echo("mtlsprobe: demo: a path did not get its expected verdict", err=True)
        sys.exit(EXIT_BUG)


__all__ = ["EXIT_INPUT", "main"]
