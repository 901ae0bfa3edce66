"""`mtlsprobe probe`: options -> ProbeRequest -> run.probe -> Report -> emit -> exit code."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import click

from mtlsprobe.cli.common import (
    EXIT_CODES_HELP,
    checked,
    credential_options,
    emit,
    exit_at_once_on_ctrl_c,
    expectation_options,
    output_options,
    quiet,
    valid_proxy,
    valid_target,
)
from mtlsprobe.report.atomic import write_atomic


@click.command(epilog=EXIT_CODES_HELP)
@click.argument("targets", nargs=-1, metavar="[TARGET]...", callback=checked(valid_target))
@click.option("--port", "ports", multiple=True, type=click.IntRange(1, 65535),
              help="Port to probe on every target (repeatable; default 8383, the preset's "
                   "ports, or the target's).")
@expectation_options
@click.option("--save-baseline", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write this run's JSON report to FILE for later --baseline use "
                   "(run it on the server's own LAN).")
@credential_options
@click.option("--proxy", "proxies", multiple=True, metavar="URL", callback=checked(valid_proxy),
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
              callback=checked(valid_target),
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
    from mtlsprobe.model.errors import UsageError
    from mtlsprobe.run.probe import ProbeRequest, run_probe
    from mtlsprobe.run.progress import status_for

    exit_at_once_on_ctrl_c()
    status = None if quiet() else status_for(sys.stderr)  # a terminal only
    request = ProbeRequest(
        targets=tuple(targets), ports=tuple(ports), ca=tuple(ca), pins=tuple(pins),
        baseline=baseline, cert=cert, key=key, pkcs12=pkcs12, password_file=password_file,
        proxies=tuple(proxies), use_env_proxy=not no_env_proxy, direct=not no_direct, sni=sni,
        timeout=timeout, repeat=repeat, http_path=http_path, concurrency=concurrency,
        targets_file=targets_file, preset=preset, reflectors=tuple(reflectors),
        reflector_secret_file=reflector_secret_file, trace=trace_hops, capture=capture,
        capture_secrets=capture_secrets, progress=status,
    )
    try:
        report = run_probe(request)
    except UsageError as exc:
        raise click.UsageError(str(exc)) from None
    finally:
        if status is not None:
            status.close()  # before the report, or the error line
    if save_baseline:
        from mtlsprobe.report.jsonout import dumps

        write_atomic(save_baseline, dumps(report) + "\n")
    emit(report, fmt, output)
    sys.exit(report.exit_code)
