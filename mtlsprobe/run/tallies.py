"""Connections -> servers: per-server tallies of distinct behaviours, and grouping.

Boundary: pure bookkeeping over Observations, shared by ``run.analyze`` (one reader) and
``run.shares`` (several forked readers whose tallies merge). No I/O, no judgement.

Decisions, for reviewers:

- A *server* is (name, port, route): the name is the SNI the client asked for (else the
  server IP); a connection without a visible ClientHello joins the only named server on its
  address, if there is exactly one. A CONNECT-tunnelled connection's server is the CONNECT
  target and its route the proxy route (the proxy's answer stays per observation).
- Memory stays flat in the capture size: connections stream through a per-server tally that
  keeps one observation per distinct *behaviour* (the facts rules judge, see ``behaviour``),
  the first seen, with ``repeats`` (how many connections showed it) and ``last_observed_at``.
  The rules look at distinct behaviours (chains that differ, some vs all reset); counts
  reach MTLS070/071 through ``repeats``. At most ``MAX_BEHAVIOURS`` per server are kept;
  connections with further behaviours are counted (``overflow``).
- Tallies of shares of one capture merge into what one reader gives (equal first-packet
  times break by flow number, not by order of closing).
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from mtlsprobe.model import Endpoint, HttpExchange, Observation, Route
from mtlsprobe.rules.facts import NGINX_CERT_MARKERS
from mtlsprobe.rules.signatures import match_body

MAX_BEHAVIOURS = 32  # distinct behaviours kept per server; more are only counted
# HTTP response headers whose values differ between otherwise identical answers (their
# names and places are kept; of Set-Cookie, the cookie's name)
_VOLATILE_HEADERS = frozenset({"date", "expires", "age", "last-modified", "etag", "set-cookie"})


@functools.lru_cache(maxsize=4096)
def canonical_host(host: str) -> str:
    """Lower-case name without the root dot, or the IP address's canonical text (cached:
    it runs per connection, and ``ip_address`` raising for every name was measurable)."""
    host = host.strip().strip("[]").rstrip(".").lower()
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


ServerKey = tuple[str, int, str, str]  # (name, port, route kind, proxy)


def _route_key(route: Route) -> tuple[str, str]:
    return route.kind, route.proxy or ""


def _server_name(obs: Observation) -> str:
    if obs.route.kind == "http_proxy":
        return canonical_host(obs.server.host)
    if obs.sni and not obs.asks_other_name:
        return canonical_host(obs.sni)
    return canonical_host(obs.server.ip or obs.server.host)


def behaviour(obs: Observation) -> tuple[object, ...]:
    """The facts the rules judge a connection by: equal tuples are one behaviour.

    Left out on purpose, as they differ between otherwise equal connections: the label,
    client port, times, retransmission counts, gap offsets, notes, the history's
    application-data runs (its session tickets are counted: MTLS027 compares them), JA3
    (browsers shuffle extensions), HTTP dates and bodies (kept as what the rules read of
    them, see ``_http``). JA4 is in: it is stable per client program, so a middlebox's own
    ClientHello reaching the server beside the agents' is a behaviour of its own.
    """
    tcp = obs.tcp
    return (
        obs.server, obs.route, obs.attempt, obs.sni, obs.version, obs.cipher_suite,
        obs.offered_versions, obs.alpn_offered, obs.alpn, obs.hello_retry, obs.resumed,
        tuple(c.sha256 for c in obs.server_chain), obs.server_chain_seen, obs.cert_request,
        obs.client_chain_seen, tuple(c.sha256 for c in obs.client_chain),
        obs.alerts, obs.renegotiation, obs.post_handshake_auth_offered,
        obs.outcome, obs.stage, obs.end, obs.decrypted, bool(obs.gaps),
        obs.history.count("t"),
        tcp and (tcp.syn_ttl, tcp.synack_ttl, tcp.client_ttls, tcp.server_ttls,
                 tcp.rst_from, tcp.rst_ttls, tcp.synack_options),
        _http(obs.http),
        obs.local_error, obs.reflected, obs.ja4,
    )


def _http(http: HttpExchange | None) -> tuple[object, ...] | None:
    """What the rules read of an HTTP answer: every header's name in order (MTLS027/029
    compare them), the values of those that do not change between equal answers, the
    cookie names of Set-Cookie (load-balancer signatures), and of the body only the
    nginx certificate-error markers and the signatures' matches."""
    if http is None:
        return None
    headers = tuple(
        (name, value.split("=", 1)[0].strip() if name.lower() == "set-cookie" else "")
        if name.lower() in _VOLATILE_HEADERS else (name, value)
        for name, value in http.headers
    )
    body = http.body_excerpt
    return (
        http.path, http.status, http.reason, http.error, headers,
        tuple(marker in body for marker in NGINX_CERT_MARKERS),
        tuple((m.signature.id, m.value) for m in match_body(body)),
    )


def _first_seen(obs: Observation) -> tuple[datetime, int]:
    """Sort key of connections by first packet: time, then the flow number in the label
    (capture labels end in "flow N", or "flow @F" with F the first frame while a capture
    is read in shares), so equal times break the same way however the capture was read."""
    number = obs.label.rpartition(" flow ")[2].lstrip("@")
    return obs.observed_at, int(number) if number.isdigit() else 0


@dataclass(slots=True)
class _Behaviour:
    first: Observation  # the earliest connection that showed it
    count: int
    last: datetime  # start of the latest one


class ServerTally:
    """One server's distinct behaviours: the first observation of each, with counts.

    Memory is bounded by ``MAX_BEHAVIOURS``; connections with a behaviour beyond that are
    counted in ``overflow``. ``order`` sorts servers by (capture index, first connection).
    """

    def __init__(self, order: tuple[int, datetime]) -> None:
        self.behaviours: dict[tuple[object, ...], _Behaviour] = {}
        self.overflow = 0
        self.order = order

    def add(self, obs: Observation, count: int = 1, last: datetime | None = None) -> None:
        key = behaviour(obs)
        last = last or obs.observed_at
        seen = self.behaviours.get(key)
        if seen is None:
            if len(self.behaviours) >= MAX_BEHAVIOURS:
                self.overflow += count
            else:
                self.behaviours[key] = _Behaviour(obs, count, last)
            return
        seen.count += count
        if _first_seen(obs) < _first_seen(seen.first):
            seen.first = obs
        if last > seen.last:
            seen.last = last

    def merge(self, other: ServerTally) -> None:
        for b in other.behaviours.values():
            self.add(b.first, b.count, b.last)
        self.overflow += other.overflow

    @property
    def named(self) -> bool:
        return any(b.first.sni and not b.first.asks_other_name for b in self.behaviours.values())

    @property
    def connections(self) -> int:
        return sum(b.count for b in self.behaviours.values()) + self.overflow

    def observations(self) -> list[Observation]:
        """One per behaviour, in first-seen order, with ``repeats`` when it recurred."""
        out = [
            b.first if b.count == 1
            else dataclasses.replace(b.first, repeats=b.count, last_observed_at=b.last)
            for b in self.behaviours.values()
        ]
        out.sort(key=_first_seen)  # not arrival order: shares arrive in another
        return out


@dataclass(frozen=True)
class ServerGroup:
    """One server's case material: target, route, representative observations."""

    target: Endpoint
    route: Route
    observations: list[Observation]
    overflow: int  # connections with behaviours beyond MAX_BEHAVIOURS (counted, not kept)
    connections: int


class ServerTallies:
    """Observations -> one ServerTally per server, as connections stream by."""

    def __init__(self) -> None:
        self.tallies: dict[ServerKey, ServerTally] = {}

    def add(self, obs: Observation, capture_index: int = 0) -> None:
        key = (_server_name(obs), obs.server.port, *_route_key(obs.route))
        tally = self.tallies.get(key)
        order = (capture_index, obs.observed_at)
        if tally is None:
            tally = self.tallies[key] = ServerTally(order)
        elif order < tally.order:
            tally.order = order
        tally.add(obs)

    def merge(self, other: ServerTallies, capture_index: int = 0) -> None:
        """Add another reader's tallies (a share of the same capture, see run.shares)."""
        for key, tally in other.tallies.items():
            order = (capture_index, tally.order[1])
            mine = self.tallies.get(key)
            if mine is None:
                tally.order = order
                self.tallies[key] = tally
            else:
                mine.merge(tally)
                mine.order = min(mine.order, order)

    def groups(self) -> list[ServerGroup]:
        """Per server, in order of first connection (nameless ones adopted first)."""
        tallies = dict(sorted(self.tallies.items(), key=lambda kv: kv[1].order))
        _adopt_nameless(tallies)
        out = []
        for (name, port, _kind, _proxy), tally in tallies.items():
            members = tally.observations()
            target = Endpoint(host=name, port=port, ip=members[0].server.ip)
            out.append(ServerGroup(target, _case_route(members), members, tally.overflow,
                                   tally.connections))
        return out


def group_by_server(
    observations: Sequence[Observation],
) -> list[tuple[Endpoint, Route, list[Observation]]]:
    """(target, route, one observation per behaviour) per server, in order of first connection."""
    tallies = ServerTallies()
    for obs in observations:
        tallies.add(obs)
    return [(g.target, g.route, g.observations) for g in tallies.groups()]


def _first(tally: ServerTally) -> Observation:
    return min((b.first for b in tally.behaviours.values()), key=_first_seen)


def _adopt_nameless(tallies: dict[ServerKey, ServerTally]) -> None:
    """Connections without a visible SNI join the one named server on the same address."""
    firsts = {k: _first(t) for k, t in tallies.items()}

    def address(key: ServerKey) -> tuple[object, ...]:
        return (firsts[key].server.ip, *key[1:])

    named_at: dict[tuple[object, ...], list[ServerKey]] = {}
    for key, tally in tallies.items():
        if tally.named:
            named_at.setdefault(address(key), []).append(key)
    for key, tally in list(tallies.items()):
        if tally.named or firsts[key].route.kind == "http_proxy":
            continue
        named = named_at.get(address(key), [])
        if len(named) == 1:
            tallies[named[0]].merge(tally)
            del tallies[key]


def _case_route(members: Sequence[Observation]) -> Route:
    """The route of a server's case: shared by every connection, else without the answer."""
    routes = {o.route for o in members}
    if len(routes) == 1:
        return members[0].route
    first = members[0].route
    return Route(kind=first.kind, proxy=first.proxy, source=first.source)

