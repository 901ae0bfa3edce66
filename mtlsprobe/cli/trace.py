"""`mtlsprobe trace TARGET`: where on the path the SYN and the ClientHello are answered.

Options -> live.hops.trace per target -> the MTLS05x rules -> Report -> emit -> exit code.
`probe --trace` runs the same trace beside the handshakes and judges everything together;
this command is the path alone, so without a located middlebox its verdict is `unknown`.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

import click

from mtlsprobe.cli.common import (
    checked,
    emit,
    exit_at_once_on_ctrl_c,
    output_options,
    valid_target,
)
from mtlsprobe.model.errors import EnvironmentProblem
from mtlsprobe.run.path import ipv4_of, judge_trace, trace_exit_code

TRACE_EXIT_CODES_HELP = """\b
Exit codes:
   0  traced: the server itself answers the SYN and the ClientHello
      (probe tells whether client certificates get through)
   1  internal error (a bug; rerun with --debug)
   2  usage error
   3  bad input
   4  environment problem (no raw sockets: run as root or grant CAP_NET_RAW)
  10  found the hop: one before the server answers the SYN or ClientHello in its place
  11  found the hop: one before the server resets or closes the ClientHello
  12  could not trace: no IPv4 address, or no answer from the target
 130  interrupted (Ctrl-C)
"""


@click.command(epilog=TRACE_EXIT_CODES_HELP)
@click.argument("targets", nargs=-1, required=True, metavar="TARGET...",
                callback=checked(valid_target))
@click.option("--port", "ports", multiple=True, type=click.IntRange(1, 65535),
              help="Port to trace on every target (repeatable; default 8383 or the target's).")
@click.option("--sni", help="Server name in the ClientHello (default: the target host).")
@click.option("--max-ttl", type=click.IntRange(1, 30), default=30, show_default=True,
              help="Highest TTL tried.")
@click.option("--probe-timeout", type=click.FloatRange(0.05, 10), default=1.0,
              show_default=True, help="Seconds to wait for each hop's answer.")
@click.option("--timeout", type=click.FloatRange(1, 600), default=30.0, show_default=True,
              help="Deadline in seconds for each target's whole trace.")
@output_options
def trace(
    targets: Sequence[str],
    ports: Sequence[int],
    sni: str | None,
    max_ttl: int,
    probe_timeout: float,
    timeout: float,
    fmt: str,
    output: Path | None,
) -> None:
    """Find which hop answers TARGET's SYN and ClientHello (IPv4; needs root/CAP_NET_RAW).

    ICMP echo, SYN and ClientHello with rising TTL (tracebox/tlsmiddlebox style): a hop
    that answers or resets before the server's distance is named with its address; ICMP
    quotes show header rewriting (MSS, options) along the way. The exit code says
    whether a hop was found, none was, or the trace could not tell (below).
    """
    from mtlsprobe.live import hops
    from mtlsprobe.live.targets import expand_targets
    from mtlsprobe.run import pipeline

    exit_at_once_on_ctrl_c()
    endpoints = expand_targets(targets, ports)
    why = hops.unavailable()
    if why is not None:  # "could not trace" is the machine's problem, not a verdict
        raise EnvironmentProblem(f"cannot trace: {why} (run as root or grant CAP_NET_RAW)")
    options = hops.TraceOptions(max_ttl=max_ttl, probe_timeout=probe_timeout,
                                deadline=timeout, sni=sni)
    results = []
    notes: list[str] = []
    for e in endpoints:
        t = hops.trace(ipv4_of(e), options)
        if t.error and t.error not in notes:
            notes.append(t.error)
        results.append(judge_trace(e, t))
    inputs: dict[str, object] = {
        "targets": [str(e) for e in endpoints], "sni": sni, "max_ttl": max_ttl,
        "probe_timeout": probe_timeout, "timeout": timeout,
    }
    report = pipeline.make_report("trace", results, inputs, notes)
    report = dataclasses.replace(report, exit_code=trace_exit_code(results))
    emit(report, fmt, output)
    sys.exit(report.exit_code)
