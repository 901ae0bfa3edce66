"""Wire adapters, observer and rules together: requests in, Report out.

probe:   live adapter -> Transcripts -> observe -> Case per target x route -> rules
analyze: capture adapter -> Transcripts -> observe -> Case per server -> rules
No rendering and no exit handling here: that is cli.py's job.
"""

from __future__ import annotations

import getpass
import platform
import socket
from collections.abc import Iterable, Mapping, Sequence

from mtlsprobe import __version__
from mtlsprobe.live.probe import ProbeOptions, probe_targets
from mtlsprobe.model import Case, CaseResult, Endpoint, Expectations, Observation, Report, Route
from mtlsprobe.report.build import build_report
from mtlsprobe.rules.engine import evaluate
from mtlsprobe.tls.observer import observe


def host_facts() -> dict[str, str]:
    """Who measured: enough to find the agent again, nothing secret."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = ""
    return {
        "hostname": socket.gethostname(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "user": user,
        "mtlsprobe": __version__,
    }


def make_report(
    command: str,
    results: Sequence[CaseResult],
    inputs: dict[str, object],
    notes: Iterable[str] = (),
    host_extra: Mapping[str, str] | None = None,
) -> Report:
    """`host_extra`: facts about the measuring host found on the way (e.g. agent_version)."""
    return build_report(command, results, inputs, {**host_facts(), **(host_extra or {})}, notes)


def judge(
    target: Endpoint,
    route: Route,
    observations: Sequence[Observation],
    expect: Expectations,
    source: str | None = None,
) -> CaseResult:
    other = tuple(o for o in observations if o.asks_other_name)
    case = Case(
        target=target,
        route=route,
        observations=tuple(o for o in observations if not o.asks_other_name),
        expect=expect,
        source=source,
        other_name=other,
    )
    return evaluate(case)


def probe(
    targets: Sequence[tuple[Endpoint, str]],
    options: ProbeOptions,
    expect: Expectations,
) -> list[CaseResult]:
    """Probe each (target, source) over every route; one CaseResult per target x route."""
    results: list[CaseResult] = []
    endpoints = [t for t, _ in targets]
    sources = dict(targets)
    for target, routes in zip(endpoints, probe_targets(endpoints, options), strict=True):
        for route, transcripts in routes:
            observations = [observe(t) for t in transcripts]
            results.append(judge(target, route, observations, expect, sources.get(target)))
    return results
