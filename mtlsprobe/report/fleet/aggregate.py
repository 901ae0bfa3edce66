"""Fold rows into per-agent state, then tally the fleet. Pure (the caller passes `now`).

An agent is a hostname. Per agent and per (target, route) only the newest result is kept
(a later report supersedes an earlier one; results of one report combine); the agent's
verdict is the worst over those. Tallies count agents, not reports.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from mtlsprobe.model import Verdict, errors
from mtlsprobe.report.fleet.records import InputStats, Row
from mtlsprobe.report.fleet.sites import SiteMap

#: Worst first: breaks before blocked before unknown before pass (as engine.overall).
VERDICT_ORDER: tuple[Verdict, ...] = (
    Verdict.INSPECTED, Verdict.TERMINATED_BY_LB, Verdict.CLIENT_CERT_REJECTED,
    Verdict.BLOCKED, Verdict.UNREACHABLE, Verdict.PROXY_AUTH_REQUIRED,
    Verdict.UNKNOWN, Verdict.PASS_END_TO_END,
)
RANK = {v: i for i, v in enumerate(VERDICT_ORDER)}
CUT_OFF = frozenset(VERDICT_ORDER[:6])
BAND = {
    **dict.fromkeys(VERDICT_ORDER[:3], errors.EXIT_BREAKS),
    **dict.fromkeys(VERDICT_ORDER[3:6], errors.EXIT_BLOCKED),
    Verdict.UNKNOWN: errors.EXIT_UNKNOWN,
    Verdict.PASS_END_TO_END: errors.EXIT_PASS,
}


class _Result:
    __slots__ = ("cause", "command", "port", "product", "reason", "remediation", "route",
                 "target", "ts", "verdict")

    def __init__(self, row: Row, pool: dict[str, str]) -> None:
        def s(text: str | None) -> str | None:
            return None if text is None else pool.setdefault(text, text)

        self.ts = row.generated_at.timestamp() if row.generated_at else None
        self.verdict = row.verdict
        self.cause = s(row.cause)
        self.product = s(row.product)
        self.reason = s(row.reason)
        self.remediation = s(row.remediation)
        self.port = row.port
        self.target = s(row.target)
        self.route = s(row.route)
        self.command = s(row.command)


class _Agent:
    __slots__ = ("addresses", "agent_cert", "agent_version", "last", "missing", "results")

    def __init__(self) -> None:
        self.results: list[_Result] = []  # newest per (target, route); usually one or two
        self.last: float | None = None
        self.addresses: tuple[str, ...] = ()
        self.agent_version: str | None = None
        self.agent_cert: str | None = None
        self.missing: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class AgentLine:
    """One agent's standing: its worst current result and when it last reported."""

    agent: str
    site: str
    verdict: Verdict
    cause: str | None
    product: str | None
    target: str
    route: str
    reason: str
    remediation: str | None
    last_report: datetime | None
    age_days: float | None
    stale: bool
    agent_version: str | None
    agent_cert: str | None
    missing: tuple[str, ...]
    results: int


@dataclass
class FleetSummary:
    generated_at: datetime
    stale_after_days: float
    agents: list[AgentLine]
    by_verdict: Counter[Verdict]
    by_cause: Counter[str]
    by_product: Counter[str]
    by_route: dict[str, Counter[Verdict]]
    by_port: dict[str, Counter[Verdict]]
    by_site: dict[str, Counter[Verdict]]
    rows: int
    stats: InputStats = field(default_factory=InputStats)

    @property
    def verdict(self) -> Verdict:
        """The worst agent verdict (unknown when there are no agents)."""
        present = [a.verdict for a in self.agents]
        return min(present, key=RANK.__getitem__) if present else Verdict.UNKNOWN

    @property
    def exit_code(self) -> int:
        return BAND[self.verdict]

    @property
    def cut_off(self) -> list[AgentLine]:
        return [a for a in self.agents if a.verdict in CUT_OFF]

    @property
    def stale(self) -> list[AgentLine]:
        return [a for a in self.agents if a.stale]

    @property
    def incomplete(self) -> list[AgentLine]:
        return [a for a in self.agents if a.missing]


def _tally_worst(table: dict[str, Counter[Verdict]],
                 pairs: Iterable[tuple[str, Verdict]]) -> None:
    """Count the agent once per key, with its worst verdict there."""
    per: dict[str, Verdict] = {}
    for key, verdict in pairs:
        if key not in per or RANK[verdict] < RANK[per[key]]:
            per[key] = verdict
    for key, verdict in per.items():
        table.setdefault(key, Counter())[verdict] += 1


class FleetAggregator:
    """Feed rows with add(); call summary() once at the end."""

    def __init__(self) -> None:
        self._agents: dict[str, _Agent] = {}
        self._pool: dict[str, str] = {}
        self.rows = 0

    def __len__(self) -> int:
        return len(self._agents)

    def _s(self, text: str | None) -> str | None:
        return None if text is None else self._pool.setdefault(text, text)

    def add(self, row: Row) -> None:
        self.rows += 1
        agent = self._agents.get(row.agent)
        if agent is None:
            agent = self._agents[row.agent] = _Agent()
        new = _Result(row, self._pool)
        for i, old in enumerate(agent.results):
            if old.target == new.target and old.route == new.route:
                if (new.ts or 0.0) >= (old.ts or 0.0):
                    agent.results[i] = new
                break
        else:
            agent.results.append(new)
        if (new.ts is not None and (agent.last is None or new.ts >= agent.last)) or (
                agent.last is None and not agent.addresses):
            if new.ts is not None:
                agent.last = new.ts
            agent.addresses = row.addresses or agent.addresses
            agent.agent_version = self._s(row.agent_version) or agent.agent_version
            agent.agent_cert = row.agent_cert or agent.agent_cert
        if row.missing and not set(row.missing) <= agent.missing:
            agent.missing = agent.missing | set(row.missing)

    def add_all(self, rows: Iterable[Row]) -> None:
        for row in rows:
            self.add(row)

    def summary(self, now: datetime, stale_after_days: float = 7.0,
                sites: SiteMap | None = None, stats: InputStats | None = None) -> FleetSummary:
        sites = sites or SiteMap()
        stale_before = (now - timedelta(days=stale_after_days)).timestamp()
        lines: list[AgentLine] = []
        by_verdict: Counter[Verdict] = Counter()
        by_cause: Counter[str] = Counter()
        by_product: Counter[str] = Counter()
        by_route: dict[str, Counter[Verdict]] = {}
        by_port: dict[str, Counter[Verdict]] = {}
        by_site: dict[str, Counter[Verdict]] = {}
        for name, agent in self._agents.items():
            results = agent.results
            worst = min(results, key=lambda r: (RANK[r.verdict], r.target or "", r.route or ""))
            site = sites.site_of(name, agent.addresses)
            by_verdict[worst.verdict] += 1
            if worst.verdict is not Verdict.PASS_END_TO_END:
                by_cause[worst.cause or "-"] += 1
            for product in {r.product for r in results if r.product}:
                by_product[product] += 1
            if len(results) == 1:
                r = results[0]
                by_route.setdefault(r.route or "-", Counter())[r.verdict] += 1
                by_port.setdefault("-" if r.port is None else str(r.port),
                                   Counter())[r.verdict] += 1
            else:
                _tally_worst(by_route, ((r.route or "-", r.verdict) for r in results))
                _tally_worst(by_port, (("-" if r.port is None else str(r.port), r.verdict)
                                       for r in results))
            by_site.setdefault(site, Counter())[worst.verdict] += 1
            last = (datetime.fromtimestamp(agent.last, tz=now.tzinfo)
                    if agent.last is not None else None)
            lines.append(AgentLine(
                agent=name, site=site, verdict=worst.verdict, cause=worst.cause,
                product=worst.product, target=worst.target or "-", route=worst.route or "-",
                reason=worst.reason or "", remediation=worst.remediation, last_report=last,
                age_days=None if agent.last is None else (now.timestamp() - agent.last) / 86400,
                stale=agent.last is not None and agent.last < stale_before,
                agent_version=agent.agent_version, agent_cert=agent.agent_cert,
                missing=tuple(sorted(agent.missing)), results=len(results),
            ))
        lines.sort(key=lambda a: (RANK[a.verdict], a.agent))
        return FleetSummary(
            generated_at=now, stale_after_days=stale_after_days, agents=lines,
            by_verdict=by_verdict, by_cause=by_cause, by_product=by_product,
            by_route=by_route, by_port=by_port, by_site=by_site, rows=self.rows,
            stats=stats or InputStats(),
        )
