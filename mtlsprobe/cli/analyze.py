"""`mtlsprobe analyze`: captures -> the same findings and verdicts as the live probe.

Options -> mtlsprobe.run.analyze.analyze -> Report -> emit -> exit code. No logic here.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import click

from mtlsprobe.cli.common import (
    EXIT_CODES_HELP,
    checked,
    emit,
    expectation_options,
    output_options,
    quiet,
)


def valid_server(text: str) -> None:
    from mtlsprobe.run.analyze import ServerFilter

    ServerFilter.parse(text)


@click.command(epilog=EXIT_CODES_HELP)
@click.argument("captures", nargs=-1, required=True, metavar="CAPTURE...")
@click.option("--keylog", "keylogs", multiple=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="NSS key log (SSLKEYLOGFILE) to decrypt with; merged with key logs "
                   "embedded in pcapng files (repeatable).")
@expectation_options
@click.option("--server", "servers", multiple=True, metavar="HOST[:PORT]",
              callback=checked(valid_server),
              help="Judge only this server (SNI, CONNECT host or IP; repeatable). "
                   "Default: every TLS server seen.")
@click.option("--port", "ports", multiple=True, type=click.IntRange(1, 65535),
              help="Judge only servers on this port; connections to it are read even when "
                   "they do not look like TLS (repeatable).")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=None,
              help="Processes per capture file. Default: one per CPU (up to 8) for an "
                   "uncompressed file of 64 MB or more, else 1.")
@output_options
def analyze(
    captures: Sequence[str],
    keylogs: Sequence[Path],
    ca: Sequence[Path],
    pins: Sequence[str],
    baseline: Path | None,
    servers: Sequence[str],
    ports: Sequence[int],
    jobs: int | None,
    fmt: str,
    output: Path | None,
) -> None:
    """Judge TLS connections in CAPTURE (pcap/pcapng, gzip ok; a folder; '-' for stdin),
    or in Zeek ssl.log and x509.log files (TSV or JSON lines, gzip ok), told by content.

    Every TLS server seen (host:port, per route) gets a verdict from the same rules as
    `probe`, judged at capture time. Facts the capture hides (TLS 1.3 without a key log,
    gaps, a capture cut short) are `unknown`, never `no`, and the report says why.
    """
    from mtlsprobe.run import analyze as offline
    from mtlsprobe.run import expectations, pipeline
    from mtlsprobe.run.captures import read_keylogs
    from mtlsprobe.run.progress import LARGE

    server_filters = [offline.ServerFilter.parse(s) for s in servers]
    expect = expectations.build(ca=ca, pins=pins, baseline=baseline)
    keylog_texts = read_keylogs(keylogs)
    run = offline.analyze(
        captures, expect, keylog_texts=keylog_texts, servers=server_filters, ports=ports,
        progress_from=None if quiet() else LARGE, jobs=jobs,
    )
    inputs: dict[str, object] = {
        "captures": [str(c) for c in captures],
        "keylogs": [str(k) for k in keylogs],
        "ca": [str(p) for p in ca],
        "pins": list(pins),
        "baseline": str(baseline) if baseline else None,
        "servers": list(servers),
        "ports": list(ports),
    }
    report = pipeline.make_report("analyze", run.results, inputs, run.notes)
    emit(report, fmt, output)
    sys.exit(report.exit_code)
