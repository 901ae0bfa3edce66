"""analyze: capture files -> Transcripts -> Observations -> one Case per server -> rules.

Boundary: the offline pipeline. Capture reading is ``mtlsprobe.capture``'s job, TLS facts
the observer's, judgement the rules' (the same rules the live probe uses); this module only
gathers inputs (capture sources, key logs), groups connections into servers, applies the
operator's --server/--port filter and collects report notes. No rendering, no exit codes.

Decisions, for reviewers:

- A *server* is (name, port, route): the name is the SNI the client asked for (else the
  server IP); a connection without a visible ClientHello joins the only named server on its
  address, if there is exactly one. A CONNECT-tunnelled connection's server is the CONNECT
  target and its route the proxy route (the proxy's answer stays per observation).
- Key logs: every --keylog file and every key log embedded in a capture (pcapng DSB) are
  merged and parsed once; each capture is observed with all of them.
- Damage inside a capture (truncation, corrupt records, unknown link types) is a report
  note and the rest is analysed. A source that is not a capture is an ``InputError``,
  raised before anything is written.
- Observations are judged at capture time (``observed_at`` = the connection's first packet).
- Memory stays flat in the capture size: connections stream through a per-server tally that
  keeps one observation per distinct *behaviour* (the facts rules judge, see ``behaviour``),
  the first seen, with ``repeats`` (how many connections showed it) and ``last_observed_at``.
  The rules look at distinct behaviours (chains that differ, some vs all reset); counts
  reach MTLS070/071 through ``repeats``. At most ``MAX_BEHAVIOURS`` per server are kept;
  connections with further behaviours are counted in a report note.
- A large capture may be read by several forked processes, each taking a share of the
  connections (``analyze_shares``); their tallies merge into the same report one reader
  gives (equal first-packet times break by flow number, not by order of closing).
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from mtlsprobe.capture.observations import ObservationReader
from mtlsprobe.model import CaseResult, Endpoint, Expectations, Observation, Route
from mtlsprobe.model.errors import InputError
from mtlsprobe.run.progress import ProgressBar, progress_for
from mtlsprobe.tls.keylog import KeyLog

CAPTURE_SOURCE = "capture"
Source = str | Path
MAX_BEHAVIOURS = 32  # distinct behaviours kept per server; more are only counted
# HTTP response headers whose values differ between otherwise identical answers
_VOLATILE_HEADERS = frozenset({"date", "expires", "age", "last-modified", "etag", "set-cookie"})


@dataclass(frozen=True, slots=True)
class ServerFilter:
    """One --server HOST[:PORT]: matches a server by name (SNI/CONNECT host) or IP."""

    host: str
    port: int | None = None

    @classmethod
    def parse(cls, text: str) -> ServerFilter:
        raw = text.strip()
        host, port = raw, None
        if raw.startswith("["):
            inner, sep, rest = raw[1:].partition("]")
            if not sep or (rest and not rest.startswith(":")):
                raise InputError(f"--server {text!r}: expected HOST, HOST:PORT or [IPv6]:PORT")
            host, port_text = inner, rest[1:]
            port = _port(text, port_text) if rest else None
        elif raw.count(":") == 1:
            host, _, port_text = raw.partition(":")
            port = _port(text, port_text)
        if not host:
            raise InputError(f"--server {text!r}: no host")
        return cls(host=_canonical_host(host), port=port)

    def matches(self, target: Endpoint) -> bool:
        if self.port is not None and self.port != target.port:
            return False
        names = {_canonical_host(target.host)}
        if target.ip:
            names.add(_canonical_host(target.ip))
        return self.host in names


def _port(text: str, port_text: str) -> int:
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise InputError(f"--server {text!r}: port must be 1-65535")
    return int(port_text)


@functools.lru_cache(maxsize=4096)
def _canonical_host(host: str) -> str:
    """Lower-case name without the root dot, or the IP address's canonical text (cached:
    it runs per connection, and ``ip_address`` raising for every name was measurable)."""
    host = host.strip().strip("[]").rstrip(".").lower()
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


# --- inputs ------------------------------------------------------------------------------


def capture_sources(paths: Sequence[Source]) -> list[Source]:
    """Files to read: each path, every regular file inside a folder (sorted, recursive,
    hidden files skipped), or ``"-"`` (stdin, at most once)."""
    out: list[Source] = []
    for p in paths:
        if str(p) == "-":
            if "-" in out:
                raise InputError("stdin ('-') can be read only once")
            out.append("-")
            continue
        path = Path(p)
        if path.is_dir():
            files = sorted(
                f for f in path.rglob("*")
                if f.is_file() and not any(part.startswith(".") for part in
                                           f.relative_to(path).parts)
            )
            if not files:
                raise InputError(f"capture folder {path} holds no files")
            out.extend(files)
        elif path.exists():
            out.append(path)
        else:
            raise InputError(f"cannot open capture {path}: No such file or directory")
    return out


def read_keylogs(paths: Iterable[Path]) -> list[str]:
    """The text of each --keylog file (NSS key log format)."""
    texts = []
    for path in paths:
        try:
            texts.append(Path(path).read_text(encoding="utf-8", errors="replace"))
        except OSError as exc:
            raise InputError(f"cannot read key log {path}: {exc.strerror or exc}") from None
    return texts


def merge_keylogs(texts: Iterable[str]) -> KeyLog | None:
    text = "\n".join(t for t in texts if t)
    return KeyLog.parse(text) if text.strip() else None


# --- one capture ---------------------------------------------------------------------------


@dataclass
class CaptureResult:
    """What one capture gave: observations (capture order) and notes about the file."""

    name: str
    observations: list[Observation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class CaptureObservations:
    """Stream one capture's TLS connections as Observations (in order of closing).

    Iterate once; then ``notes`` holds the capture's notes. ``name`` is the capture's name
    (the path when the source could not be opened as a capture and was skipped).
    Raises InputError when ``source`` is not a capture, unless ``in_folder`` (a file in a
    folder given as CAPTURE): then it yields nothing and says so in ``notes``.
    """

    def __init__(
        self,
        source: Source,
        *,
        keylog: KeyLog | None = None,
        ports: Iterable[int] = (),
        in_folder: bool = False,
        progress_from: int | None = None,
        partition: tuple[int, int] | None = None,
    ) -> None:
        self.reader: ObservationReader | None = None
        self.notes: list[str] = []
        self.name = str(source)
        try:
            self.reader = ObservationReader(source, keylog=keylog, ports=set(ports) or None,
                                            partition=partition)
        except InputError as exc:
            if not in_folder:
                raise
            self.notes.append(f"skipped {source}: {exc}")
            return
        self.name = self.reader.capture.name
        self.bar: ProgressBar | None = None
        if progress_from is not None:  # a bar on stderr, for a large file on a terminal
            self.bar = progress_for(self.reader.capture.size, threshold=progress_from)
            self.reader.progress = self.bar

    def __iter__(self) -> Iterator[Observation]:
        reader, name = self.reader, self.name
        if reader is None:
            return
        try:
            yield from reader
        finally:
            if self.bar is not None:
                self.bar.close()
        keylog = reader.keylog
        self.notes += capture_notes(
            name, reader.notes, reader.stats, reader.undecrypted_before_late_keys,
            keylog.skipped_lines if keylog is not None else 0,
        )


def capture_notes(
    name: str, reader_notes: Sequence[str], stats: dict[str, int], undecrypted: int,
    keylog_skipped: int,
) -> list[str]:
    """The report notes about one capture read."""
    notes = []
    if undecrypted:
        notes.append(
            f"{name}: a key log embedded late in the capture was not applied to "
            f"{undecrypted} earlier connection(s)"
        )
    notes.extend(f"{name}: {n}" for n in reader_notes)
    if keylog_skipped:
        notes.append(f"{name}: {keylog_skipped} key log line(s) not understood")
    notes.append(
        f"{name}: {stats['packets']} packets, {stats['connections']} TCP connections, "
        f"{stats['tls_connections']} with TLS"
    )
    return notes


def read_capture(
    source: Source,
    *,
    keylog_texts: Sequence[str] = (),
    ports: Iterable[int] = (),
    in_folder: bool = False,
) -> CaptureResult:
    """Every observation of one capture, in first-seen order (see ``CaptureObservations``).

    Keeps them all: for tests and small captures; ``analyze`` streams instead.
    """
    stream = CaptureObservations(
        source, keylog=merge_keylogs(keylog_texts), ports=ports, in_folder=in_folder
    )
    observations = list(stream)
    observations.sort(key=lambda o: o.observed_at)  # emitted at close: first-seen order
    return CaptureResult(name=stream.name, observations=observations, notes=stream.notes)


# --- servers -------------------------------------------------------------------------------

ServerKey = tuple[str, int, str, str]  # (name, port, route kind, proxy)


def _route_key(route: Route) -> tuple[str, str]:
    return route.kind, route.proxy or ""


def _server_name(obs: Observation) -> str:
    if obs.route.kind == "http_proxy":
        return _canonical_host(obs.server.host)
    if obs.sni:
        return _canonical_host(obs.sni)
    return _canonical_host(obs.server.ip or obs.server.host)


def behaviour(obs: Observation) -> tuple[object, ...]:
    """The facts the rules judge a connection by: equal tuples are one behaviour.

    Left out on purpose, as they differ between otherwise equal connections: the label,
    client port, times, retransmission counts, gap offsets, notes, the history's
    application-data runs, JA3 (browsers shuffle extensions), HTTP dates and bodies. JA4 is
    in: it is stable per client program, so a middlebox's own ClientHello reaching the
    server beside the agents' is a behaviour of its own.
    """
    tcp, http = obs.tcp, obs.http
    return (
        obs.server, obs.route, obs.attempt, obs.sni, obs.version, obs.cipher_suite,
        obs.offered_versions, obs.alpn, obs.hello_retry, obs.resumed,
        tuple(c.sha256 for c in obs.server_chain), obs.server_chain_seen, obs.cert_request,
        obs.client_chain_seen, tuple(c.sha256 for c in obs.client_chain),
        obs.alerts, obs.renegotiation, obs.post_handshake_auth_offered,
        obs.outcome, obs.stage, obs.end, obs.decrypted, bool(obs.gaps),
        tcp and (tcp.syn_ttl, tcp.synack_ttl, tcp.client_ttls, tcp.server_ttls,
                 tcp.rst_from, tcp.rst_ttls, tcp.synack_options),
        http and (http.path, http.status, http.reason, http.error,
                  tuple(h for h in http.headers if h[0].lower() not in _VOLATILE_HEADERS)),
        obs.local_error, obs.reflected, obs.ja4,
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
        return any(b.first.sni for b in self.behaviours.values())

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
        out.sort(key=lambda o: o.observed_at)
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
        """Add another reader's tallies (a share of the same capture, see analyze_shares)."""
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
    return min((b.first for b in tally.behaviours.values()), key=lambda o: o.observed_at)


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


# --- the whole run -------------------------------------------------------------------------


@dataclass
class AnalyzeRun:
    """Results (one per judged server) and report notes."""

    results: list[CaseResult]
    notes: list[str]
    captures: list[str]


def analyze(
    paths: Sequence[Source],
    expect: Expectations,
    *,
    keylog_texts: Sequence[str] = (),
    servers: Sequence[ServerFilter] = (),
    ports: Sequence[int] = (),
    progress_from: int | None = None,
    jobs: int | None = 1,
) -> AnalyzeRun:
    """Read every capture, judge every (selected) TLS server seen, with the live rules.

    ``progress_from``: draw a progress bar on stderr, when it is a terminal, for captures of
    at least this many bytes (None: never). ``jobs``: processes per capture (None: as many
    as CPUs for a large capture file, see ``analyze_shares``; 1: this process only).
    """
    from mtlsprobe.run import shares as analyze_shares
    from mtlsprobe.run.pipeline import judge

    sources = capture_sources(paths)
    notes: list[str] = []
    folders = {str(p) for p in paths if str(p) != "-" and Path(p).is_dir()}
    tallies = ServerTallies()
    names: list[str] = []
    keylog = merge_keylogs(keylog_texts)
    for index, source in enumerate(sources):
        in_folder = any(str(source).startswith(f.rstrip("/") + "/") for f in folders)
        shares = analyze_shares.shares_for(source, jobs)
        if shares > 1:
            name, capture_notes = analyze_shares.read_in_shares(
                source, shares, tallies, index, keylog=keylog, ports=ports,
                progress_from=progress_from,
            )
            names.append(name)
            notes.extend(capture_notes)
            continue
        stream = CaptureObservations(source, keylog=keylog, ports=ports, in_folder=in_folder,
                                     progress_from=progress_from)
        for obs in stream:
            tallies.add(obs, index)
        names.append(stream.name)
        notes.extend(stream.notes)
    if not tallies.tallies:
        notes.append("no TLS connection found in the capture(s)")
    results = []
    port_set = set(ports)
    for group in tallies.groups():
        target = group.target
        if port_set and target.port not in port_set:
            continue
        if servers and not any(s.matches(target) for s in servers):
            continue
        if group.overflow:
            notes.append(
                f"{target.host}:{target.port}: {group.overflow} of {group.connections} "
                f"connection(s) showed behaviours beyond the first {MAX_BEHAVIOURS} distinct "
                "ones; they were counted, not judged"
            )
        results.append(judge(target, group.route, group.observations, expect, CAPTURE_SOURCE))
    for s in servers:
        if not any(s.matches(r.target) for r in results):
            where = f"{s.host}:{s.port}" if s.port else s.host
            notes.append(f"--server {where}: no TLS connection to it in the capture(s)")
    if tallies.tallies and not results and (servers or ports):
        notes.append("no TLS server matched --server/--port")
    return AnalyzeRun(results=results, notes=notes, captures=names)
