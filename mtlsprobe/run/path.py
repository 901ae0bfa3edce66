"""Where on the path: the hop trace judged alone or beside the handshakes, and the probe's
own packet capture written for the ticket.

Used by `mtlsprobe trace` and by `probe --trace/--capture`; the I/O is in live.hops and
live.sniff, the judgement in the rules (MTLS05x).
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from mtlsprobe.model import (
    Case,
    CaseResult,
    Endpoint,
    Expectations,
    HopTrace,
    Route,
    Verdict,
    errors,
)
from mtlsprobe.model.errors import EnvironmentProblem
from mtlsprobe.report.atomic import write_atomic

if TYPE_CHECKING:  # the live probe is imported only when tracing
    from mtlsprobe.live.probe import ProgressHook

TRACE_STEP = "hop-trace"  # the attempt a progress line names while --trace runs
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
    return replace(target, ip=str(infos[0][4][0])) if infos else target  # AF_INET: a str


def judge_trace(target: Endpoint, hops: HopTrace, source: str | None = "flag") -> CaseResult:
    """The hop rules over a case that has a trace and no handshakes."""
    from mtlsprobe.rules.engine import decide, sort_key
    from mtlsprobe.rules.registry import spec

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


def trace_outcome(hops: HopTrace | None) -> int:
    """What a trace found, as `mtlsprobe trace` exits: 10 a hop before the server answers in
    its place, 11 one resets or closes the ClientHello, 0 the server itself answers the SYN
    and the ClientHello, 12 the trace could not tell (no IPv4 address, no answer)."""
    if hops is None or hops.error:
        return errors.EXIT_UNKNOWN
    if hops.middlebox_hop is not None:
        rst = hops.middlebox_answer in ("rst", "fin")
        return errors.EXIT_BLOCKED if rst else errors.EXIT_BREAKS
    if (hops.ip_distance or hops.tcp_distance) and hops.tls_distance:
        return errors.EXIT_PASS
    return errors.EXIT_UNKNOWN


def trace_exit_code(results: Sequence[CaseResult]) -> int:
    """The run's exit code: a found hop before a failed trace before a clean one."""
    outcomes = {trace_outcome(r.hops) for r in results}
    order = (errors.EXIT_BREAKS, errors.EXIT_BLOCKED, errors.EXIT_UNKNOWN)
    return next((c for c in order if c in outcomes), errors.EXIT_PASS if outcomes else
                errors.EXIT_UNKNOWN)


def traced(results: Sequence[CaseResult], expect: Expectations, sni: str | None,
           timeout: float, progress: ProgressHook | None = None,
           ) -> tuple[list[CaseResult], list[str]]:
    """Direct-route results re-judged with a hop trace toward their server (`progress` hears
    of each trace as it starts)."""
    from mtlsprobe.live import hops
    from mtlsprobe.live.probe import ProbeStep
    from mtlsprobe.rules.engine import evaluate

    out: list[CaseResult] = []
    notes: list[str] = []
    options = hops.TraceOptions(sni=sni, deadline=max(5.0, min(60.0, timeout * 3)))
    for r in results:
        if r.route.kind != "direct":
            out.append(r)
            continue
        if progress is not None:
            progress(ProbeStep(r.target, None, TRACE_STEP, 0, 0))
        ip = next((o.server.ip for o in r.observations if o.server.ip), None)
        target = replace(r.target, ip=ip) if ip else ipv4_of(r.target)
        t = hops.trace(target, options)
        if t.error and t.error not in notes:
            notes.append(t.error)
        case = Case(target=r.target, route=r.route, observations=r.observations,
                    expect=expect, source=r.source, hops=t)
        out.append(replace(evaluate(case), hops=t))
    return out, notes


CAPTURE_COMMENT = (
    "mtlsprobe {version} probe capture: the probe's own connections only. Decryption "
    "Secrets Block: {what}."
)


def write_capture(path: Path, log: object, include_agent: bool) -> list[str]:
    """Write the sniffed packets of the probe's connections to `path` (pcapng, 0600)."""
    from mtlsprobe import __version__
    from mtlsprobe.live.sniff import SniffLog, attempt_comments, throwaway_keylog, to_pcapng

    assert isinstance(log, SniffLog)
    if not log.available:  # asked for: a report without it would not be what was asked
        why = "; ".join(log.notes) or "no packet socket"
        raise EnvironmentProblem(f"--capture could not capture, so nothing was written to "
                                 f"{path}: {why}")
    keylog = throwaway_keylog(log.transcripts, include_agent=include_agent)
    what = ("the throwaway sessions (no client certificate, untrusted certificate)"
            + (" and the agent-certificate session (--capture-secrets)" if include_agent
               else "; never the agent-certificate session"))
    data = to_pcapng(log.packets, keylog=keylog,
                     comment=CAPTURE_COMMENT.format(version=__version__, what=what),
                     labels=attempt_comments(log.transcripts))
    write_atomic(path, data, mode=0o600)
    return [f"capture of {len(log.packets)} packets written to {path} (key log: {what})"]
