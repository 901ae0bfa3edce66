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
  reach MTLS070/071 through ``repeats``.
- Every connection is judged, in bounded memory. Past ``MAX_BEHAVIOURS`` distinct behaviours
  a server's tally *folds*: from then on it keeps one observation per *verdict shape*
  (``verdict_shape``: the behaviour without what tells one client from another, such as
  its certificate, port and TTLs, which no rule reads; every fact a rule reads stays, at the
  granularity it reads it). One agent fleet, each agent with its own certificate, is then a
  few shapes. Only connections whose shape is not among the ``MAX_SHAPES`` kept are counted
  (``overflow``) and not judged. Per server at most ``MAX_SHAPES`` observations and
  ``MAX_CLIENT_CERTS`` numbers (the distinct client certificates, for the report note).
- A scan of many addresses is one server per address: at most ``MAX_SERVERS`` servers are
  kept, those of lowest rank (a stable hash of the server's key, so the same in every share
  and order); connections to the others are counted (``ServerTallies.overflow``), not judged.
- Each kept behaviour also lists the client addresses behind it: the ``MAX_CLIENTS_LISTED``
  lowest (in address order, so the same whatever order connections arrive in) and whether
  there were more: the agents behind each kind of result, for ``clients`` in the report.
- Each kept observation is the earliest connection of those it stands for, with their exact
  count and last start: a rule that asks "the first connection that showed X" (MTLS015/019's
  times, MTLS070's certificate, MTLS071's first and last) gets the same answer folded or not.
- The result is a function of the connections, not of the order they arrive in, so tallies
  of shares of one capture merge into what one reader gives: a tally folds as soon as it
  has seen more than ``MAX_BEHAVIOURS`` behaviours, whichever came first; the shapes kept
  past ``MAX_SHAPES`` are those of lowest rank (a stable hash of the shape, so an evicted
  shape never returns); equal first-packet times break by flow number, not by order of
  closing.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from hashlib import blake2b

from mtlsprobe.model import (
    Direction,
    Endpoint,
    HttpExchange,
    Observation,
    Route,
    address_order,
)
from mtlsprobe.rules.facts import NGINX_CERT_MARKERS
from mtlsprobe.rules.signatures import match_body

MAX_BEHAVIOURS = 32  # distinct behaviours kept per server; past them the tally folds
MAX_SHAPES = 256  # verdict shapes kept per folded server; connections of more are counted
MAX_CLIENT_CERTS = 4096  # distinct client certificates counted per folded server
MAX_SERVERS = 4096  # servers kept (a scan is one per address); connections to more are counted
MAX_CLIENTS_LISTED = 16  # client addresses listed per behaviour (the lowest); more are flagged
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
        *_server_side(obs), tuple(c.sha256 for c in obs.client_chain),
        tcp and (tcp.syn_ttl, tcp.synack_ttl, tcp.client_ttls, tcp.server_ttls,
                 tcp.rst_from, tcp.rst_ttls, tcp.synack_options),
    )


def verdict_shape(obs: Observation) -> tuple[object, ...]:
    """The behaviour without what tells one client from another: what a folded tally keeps
    apart (see the module's decisions). Connections of one behaviour have one shape.

    Of the client's chain, the rules read whether it was seen (``client_chain_seen``, in)
    and how many certificates it held (MTLS070's evidence); its leaf's issuer no rule reads,
    but it is the same for a whole fleet and tells one CA's agents from another's. The leaf
    itself (which MTLS070 names) is the earliest refused connection's either way. Of TCP,
    the client's TTLs go (no rule reads them; they vary with each agent's distance); a
    reset's TTLs stay only when every reset came from the server's side, the one case
    MTLS053 reads them; of the SYN-ACK's options, their names (MTLS028's fact). JA4 stays:
    MTLS027 compares the server's answer per ClientHello with the baseline's.
    """
    tcp = obs.tcp
    leaf = obs.client_chain[0] if obs.client_chain else None
    return (
        *_server_side(obs), len(obs.client_chain), leaf and leaf.issuer,
        tcp and (tcp.synack_ttl, tcp.server_ttls, tcp.rst_from,
                 tcp.rst_ttls if tcp.rst_from == (Direction.S2C,) else (),
                 tuple(o.split("=", 1)[0] for o in tcp.synack_options)),
    )


def _server_side(obs: Observation) -> tuple[object, ...]:
    """What ``behaviour`` and ``verdict_shape`` share: all but the client's chain and TCP."""
    return (
        obs.server, obs.route, obs.attempt, obs.sni, obs.version, obs.cipher_suite,
        obs.offered_versions, obs.alpn_offered, obs.alpn, obs.hello_retry, obs.resumed,
        tuple(c.sha256 for c in obs.server_chain), obs.server_chain_seen, obs.cert_request,
        obs.client_chain_seen, obs.alerts, obs.renegotiation, obs.post_handshake_auth_offered,
        obs.outcome, obs.stage, obs.end, obs.decrypted, bool(obs.gaps),
        obs.history.count("t"), _http(obs.http), obs.local_error, obs.reflected, obs.ja4,
        obs.server_extensions,
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
    return (http.path, http.status, http.reason, http.error, headers,
            *_body_facts(http.body_excerpt))


@functools.lru_cache(maxsize=1024)
def _body_facts(body: str) -> tuple[tuple[bool, ...], tuple[tuple[str, str], ...]]:
    """The nginx markers and the signatures' matches of one body excerpt: remembered,
    since a server answers thousands of connections with the same body (searching every
    signature's pattern each time took a third of the tallies: 0.27 -> 0.18 s for 22,000
    decrypted handshakes)."""
    return (tuple(marker in body for marker in NGINX_CERT_MARKERS),
            tuple((m.signature.id, m.value) for m in match_body(body)))


def _first_seen(obs: Observation) -> tuple[datetime, int]:
    """Sort key of connections by first packet: time, then the flow number in the label
    (capture labels end in "flow N", or "flow @F" with F the first frame while a capture
    is read in shares), so equal times break the same way however the capture was read."""
    number = obs.label.rpartition(" flow ")[2].lstrip("@")
    return obs.observed_at, int(number) if number.isdigit() else 0


def _rank(shape: tuple[object, ...]) -> int:
    """A stable number per verdict shape (the same in every process and run): which shapes
    a full tally keeps does not depend on the order connections arrive in."""
    return int.from_bytes(blake2b(repr(shape).encode(), digest_size=8).digest(), "big")


@dataclass(slots=True)
class _Clients:
    """The lowest ``MAX_CLIENTS_LISTED`` client addresses seen, and whether there were more:
    an order-free choice, so tallies of shares merge into what one reader gives. Each
    address keeps its sort key, worked out once (a flood brings a new address per flow)."""

    addrs: dict[str, tuple[int, int, str]] = field(default_factory=dict)
    more: bool = False

    @classmethod
    def of(cls, obs: Observation) -> _Clients:
        listed = obs.clients or (obs.client.ip or obs.client.host,)
        return cls({a: address_order(a) for a in listed}, obs.more_clients)

    def update(self, other: _Clients) -> None:
        addrs = self.addrs
        for addr, key in other.addrs.items():
            addrs.setdefault(addr, key)
        self.more |= other.more
        while len(addrs) > MAX_CLIENTS_LISTED:
            del addrs[max(addrs, key=addrs.__getitem__)]
            self.more = True

    def listed(self) -> tuple[str, ...]:
        return tuple(sorted(self.addrs, key=self.addrs.__getitem__))


@dataclass(slots=True)
class _Behaviour:
    first: Observation  # the earliest connection that showed it
    count: int
    last: datetime  # start of the latest one
    clients: _Clients
    rank: int = 0  # a verdict shape's _rank (folded tallies only)

    def add(self, obs: Observation, count: int, last: datetime, clients: _Clients) -> None:
        self.count += count
        self.clients.update(clients)
        if _first_seen(obs) < _first_seen(self.first):
            self.first = obs
        if last > self.last:
            self.last = last


class ServerTally:
    """One server's distinct behaviours: the first observation of each, with counts.

    Until it folds, ``behaviours`` is keyed by ``behaviour`` (at most ``MAX_BEHAVIOURS``);
    folded, by ``verdict_shape`` (at most ``MAX_SHAPES``), and connections of shapes beyond
    those are counted in ``overflow``. ``client_certs`` holds the first 64 bits of each
    client leaf seen once folded, None past ``MAX_CLIENT_CERTS`` of them. ``order`` sorts
    servers by (capture index, first connection).
    """

    def __init__(self, order: tuple[int, datetime]) -> None:
        self.behaviours: dict[tuple[object, ...], _Behaviour] = {}
        self.folded = False
        self.overflow = 0
        self.client_certs: set[int] | None = set()
        self.order = order
        self._highest: tuple[object, ...] | None = None  # shape of highest rank, when full

    def add(self, obs: Observation, count: int = 1, last: datetime | None = None,
            clients: _Clients | None = None) -> None:
        last = last or obs.observed_at
        clients = clients or _Clients.of(obs)
        if self.folded:
            self._count_client(obs)
            self._add_shape(obs, count, last, clients)
            return
        key = behaviour(obs)
        seen = self.behaviours.get(key)
        if seen is not None:
            seen.add(obs, count, last, clients)
        elif len(self.behaviours) < MAX_BEHAVIOURS:
            self.behaviours[key] = _Behaviour(obs, count, last, clients)
        else:
            self._fold()
            self.add(obs, count, last, clients)

    def merge(self, other: ServerTally) -> None:
        """Add another tally of the same server (a share's, or nameless connections')."""
        if other.folded:
            if not self.folded:
                self._fold()
            self._count_clients(other.client_certs)
            for b in other.behaviours.values():
                self._add_shape(b.first, b.count, b.last, b.clients)
        else:  # one client chain per behaviour: each counts its own
            for b in other.behaviours.values():
                self.add(b.first, b.count, b.last, b.clients)
        self.overflow += other.overflow

    def _fold(self) -> None:
        """Key the kept behaviours by verdict shape from now on."""
        exact = list(self.behaviours.values())
        self.behaviours, self.folded = {}, True
        for b in exact:
            self._count_client(b.first)
            self._add_shape(b.first, b.count, b.last, b.clients)

    def _add_shape(self, obs: Observation, count: int, last: datetime,
                   clients: _Clients) -> None:
        key = verdict_shape(obs)
        seen = self.behaviours.get(key)
        if seen is not None:
            seen.add(obs, count, last, clients)
            return
        rank = _rank(key)
        if len(self.behaviours) >= MAX_SHAPES:  # keep the lowest ranks: order-free
            if self._highest is None:
                self._highest = max(self.behaviours, key=lambda k: self.behaviours[k].rank)
            if rank >= self.behaviours[self._highest].rank:
                self.overflow += count
                return
            self.overflow += self.behaviours.pop(self._highest).count
            self._highest = None
        self.behaviours[key] = _Behaviour(obs, count, last, clients, rank)

    def _count_client(self, obs: Observation) -> None:
        certs = self.client_certs
        if certs is not None and obs.client_chain:
            certs.add(int(obs.client_chain[0].sha256[:16], 16))
            if len(certs) > MAX_CLIENT_CERTS:
                self.client_certs = None

    def _count_clients(self, certs: set[int] | None) -> None:
        if self.client_certs is None:
            return
        both = None if certs is None else self.client_certs | certs
        self.client_certs = both if both is not None and len(both) <= MAX_CLIENT_CERTS else None

    @property
    def named(self) -> bool:
        return any(b.first.sni and not b.first.asks_other_name for b in self.behaviours.values())

    @property
    def connections(self) -> int:
        return sum(b.count for b in self.behaviours.values()) + self.overflow

    def observations(self) -> list[Observation]:
        """One per behaviour (or shape), in first-seen order, with ``repeats`` when it
        recurred."""
        out = [
            b.first if b.count == 1
            else dataclasses.replace(b.first, repeats=b.count, last_observed_at=b.last,
                                     clients=b.clients.listed(), more_clients=b.clients.more)
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
    overflow: int  # connections of verdict shapes beyond MAX_SHAPES (counted, not judged)
    connections: int
    folded: bool = False  # more than MAX_BEHAVIOURS behaviours: one observation per shape
    # distinct client certificates, when folded (None: more than MAX_CLIENT_CERTS)
    client_certs: int | None = 0


class ServerTallies:
    """Observations -> one ServerTally per server, as connections stream by."""

    def __init__(self) -> None:
        self.tallies: dict[ServerKey, ServerTally] = {}
        self.overflow = 0  # connections to servers beyond the MAX_SERVERS kept
        self._ranks: dict[ServerKey, int] = {}  # each kept server's _rank
        self._highest: ServerKey | None = None

    def _room(self, key: ServerKey, connections: int) -> bool:
        """Whether a new server ``key`` is kept (evicting the highest-ranked kept one when
        full); False: its ``connections`` were counted in ``overflow``."""
        ranks = self._ranks
        rank = _rank(key)
        if len(self.tallies) >= MAX_SERVERS:
            if self._highest is None:
                self._highest = max(self.tallies, key=ranks.__getitem__)
            if rank >= ranks[self._highest]:
                self.overflow += connections
                return False
            self.overflow += self.tallies.pop(self._highest).connections
            del ranks[self._highest]
            self._highest = None
        ranks[key] = rank
        return True

    def add(self, obs: Observation, capture_index: int = 0) -> None:
        key = (_server_name(obs), obs.server.port, *_route_key(obs.route))
        tally = self.tallies.get(key)
        order = (capture_index, obs.observed_at)
        if tally is None:
            if not self._room(key, 1):
                return
            tally = self.tallies[key] = ServerTally(order)
        elif order < tally.order:
            tally.order = order
        tally.add(obs)

    def merge(self, other: ServerTallies, capture_index: int = 0) -> None:
        """Add another reader's tallies (a share of the same capture, see run.shares)."""
        self.overflow += other.overflow
        for key, tally in other.tallies.items():
            order = (capture_index, tally.order[1])
            mine = self.tallies.get(key)
            if mine is None:
                if not self._room(key, tally.connections):
                    continue
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
            certs = tally.client_certs
            out.append(ServerGroup(target, _case_route(members), members, tally.overflow,
                                   tally.connections, tally.folded,
                                   None if certs is None else len(certs)))
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

