"""`mtlsprobe trace TARGET`: where on the path the SYN and the ClientHello are answered.

Options -> live.hops.trace per target -> the MTLS05x rules -> Report -> emit -> exit code.
`probe --trace` runs the same trace beside the handshakes and judges everything together;
this command is the path alone, so without a located middlebox its verdict is `unknown`.
"""

from __future__ import annotations

import contextlib
import socket
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import click

from mtlsprobe.cli import EXIT_CODES_HELP, emit, output_options
from mtlsprobe.model import Case, CaseResult, Endpoint, HopTrace, Route, Verdict

HOP_RULES = ("MTLS051", "MTLS052", "MTLS053", "MTLS054", "MTLS055")
DIRECT = Route(kind="direct", source="flag")


def ipv4_of(target: Endpoint) -> Endpoint:
    """`target` with its IPv4 address filled in (the trace is IPv4-only)."""
    if target.ip:
        return target
    try:
        infos = socket.getaddrinfo(target.host, target.port, socket.AF_INET, socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return target
    return replace(target, ip=infos[0][4][0]) if infos else target


def judge_trace(target: Endpoint, hops: HopTrace, source: str | None = "flag") -> CaseResult:
    """The hop rules over a case that has a trace and no handshakes."""
    from mtlsprobe.rules.engine import decide, sort_key, spec

    case = Case(target=target, route=DIRECT, observations=(), source=source, hops=hops)
    findings = sorted((f for rule_id in HOP_RULES for f in spec(rule_id).fn(case)),
                      key=sort_key)
    verdict, _row, decider = decide(findings)
    if decider is not None and verdict is not Verdict.PASS_END_TO_END:
        reason = decider.summary
    else:
        verdict = Verdict.UNKNOWN
        located = next((f for f in findings if f.rule == "MTLS051"), None)
        reason = (
            located.summary if located
            else hops.error or (
                f"No hop before the server answers: TCP at TTL {hops.tcp_distance}, the "
                f"ClientHello at TTL {hops.tls_distance}; a trace alone cannot say whether "
                "client certificates reach the server (run probe)."
            )
        )
    return CaseResult(target=target, route=DIRECT, verdict=verdict, reason=reason,
                      product=None, findings=tuple(findings), observations=(), source=source,
                      hops=hops)


@click.command(epilog=EXIT_CODES_HELP)
@click.argument("targets", nargs=-1, required=True, metavar="TARGET...")
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
    quotes show header rewriting (MSS, options) along the way.
    """
    from mtlsprobe import pipeline
    from mtlsprobe.live import hops
    from mtlsprobe.live.targets import expand_targets

    endpoints = expand_targets(targets, ports)
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
    emit(report, fmt, output)
    sys.exit(report.exit_code)


# --- probe --trace / --capture (called from cli.probe) --------------------------------------


def traced(results: Sequence[CaseResult], expect: object, sni: str | None,
           timeout: float) -> tuple[list[CaseResult], list[str]]:
    """Direct-route results re-judged with a hop trace toward their server."""
    from mtlsprobe.live import hops
    from mtlsprobe.rules.engine import evaluate

    out: list[CaseResult] = []
    notes: list[str] = []
    options = hops.TraceOptions(sni=sni, deadline=max(5.0, min(60.0, timeout * 3)))
    for r in results:
        if r.route.kind != "direct":
            out.append(r)
            continue
        ip = next((o.server.ip for o in r.observations if o.server.ip), None)
        target = replace(r.target, ip=ip) if ip else ipv4_of(r.target)
        t = hops.trace(target, options)
        if t.error and t.error not in notes:
            notes.append(t.error)
        case = Case(target=r.target, route=r.route, observations=r.observations,
                    expect=expect, source=r.source, hops=t)  # type: ignore[arg-type]
        out.append(replace(evaluate(case), hops=t))
    return out, notes


CAPTURE_COMMENT = (
    "mtlsprobe {version} probe capture: the probe's own connections only. Decryption "
    "Secrets Block: {what}."
)


def write_capture(path: Path, log: object, include_agent: bool) -> list[str]:
    """Write the sniffed packets of the probe's connections to `path` (pcapng, 0600)."""
    import os
    import tempfile

    from mtlsprobe import __version__
    from mtlsprobe.live.sniff import SniffLog, attempt_comments, throwaway_keylog, to_pcapng

    assert isinstance(log, SniffLog)
    if not log.available:
        return [f"no capture written to {path}: the probe could not sniff its packets "
                "(root or CAP_NET_RAW needed)"]
    keylog = throwaway_keylog(log.transcripts, include_agent=include_agent)
    what = ("the throwaway sessions (no client certificate, untrusted certificate)"
            + (" and the agent-certificate session (--capture-secrets)" if include_agent
               else "; never the agent-certificate session"))
    data = to_pcapng(log.packets, keylog=keylog,
                     comment=CAPTURE_COMMENT.format(version=__version__, what=what),
                     labels=attempt_comments(log.transcripts))
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or Path("."))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return [f"capture of {len(log.packets)} packets written to {path} (key log: {what})"]
