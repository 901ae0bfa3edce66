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
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mtlsprobe.capture.flows import CaptureReader
from mtlsprobe.errors import InputError
from mtlsprobe.model import CaseResult, Endpoint, Expectations, Observation, Route
from mtlsprobe.tls.keylog import KeyLog
from mtlsprobe.tls.observer import observe

CAPTURE_SOURCE = "capture"
Source = str | Path


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
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise InputError(f"--server {text!r}: port must be 1-65535")
    return int(port_text)


def _canonical_host(host: str) -> str:
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


def read_capture(
    source: Source,
    *,
    keylog_texts: Sequence[str] = (),
    ports: Iterable[int] = (),
    in_folder: bool = False,
) -> CaptureResult:
    """Observe every TLS connection of one capture with the merged key logs.

    Raises InputError when ``source`` is not a capture, unless ``in_folder`` (a file in a
    folder given as CAPTURE): then it is skipped with a note.
    """
    try:
        reader = CaptureReader(source, ports=set(ports) or None)
    except InputError as exc:
        if in_folder:
            return CaptureResult(name=str(source), notes=[f"skipped {source}: {exc}"])
        raise
    name = reader.capture.name
    result = CaptureResult(name=name)
    external = [t for t in keylog_texts if t]
    embedded = ""
    keylog = merge_keylogs(external)
    undecrypted_before_late_keys = 0
    for transcript in reader:
        if reader.keylog_text != embedded:
            embedded = reader.keylog_text
            keylog = merge_keylogs([*external, embedded])
        obs = observe(transcript, keylog=keylog)
        if not obs.decrypted and obs.version is not None:
            undecrypted_before_late_keys += 1
        result.observations.append(obs)
    result.observations.sort(key=lambda o: o.observed_at)  # emitted at close: first-seen order
    if reader.keylog_text != embedded and undecrypted_before_late_keys:
        result.notes.append(
            f"{name}: a key log embedded late in the capture was not applied to "
            f"{undecrypted_before_late_keys} earlier connection(s)"
        )
    result.notes.extend(f"{name}: {n}" for n in reader.notes)
    if keylog is not None and keylog.skipped_lines:
        result.notes.append(f"{name}: {keylog.skipped_lines} key log line(s) not understood")
    stats = reader.stats
    result.notes.append(
        f"{name}: {stats['packets']} packets, {stats['connections']} TCP connections, "
        f"{stats['tls_connections']} with TLS"
    )
    return result


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


def group_by_server(
    observations: Sequence[Observation],
) -> list[tuple[Endpoint, Route, list[Observation]]]:
    """(target, route, observations) per server, in order of first connection."""
    groups: dict[ServerKey, list[Observation]] = {}
    for obs in observations:
        key = (_server_name(obs), obs.server.port, *_route_key(obs.route))
        groups.setdefault(key, []).append(obs)
    _adopt_nameless(groups)
    out = []
    for (name, port, _kind, _proxy), members in groups.items():
        first = members[0]
        ip = first.server.ip
        target = Endpoint(host=name, port=port, ip=ip)
        out.append((target, _case_route(members), members))
    return out


def _adopt_nameless(groups: dict[ServerKey, list[Observation]]) -> None:
    """Connections without a visible SNI join the one named server on the same address."""
    for key in list(groups):
        members = groups[key]
        if any(o.sni for o in members) or members[0].route.kind == "http_proxy":
            continue
        address = (members[0].server.ip, key[1], key[2], key[3])
        named = [
            k for k, ms in groups.items()
            if k != key and any(o.sni for o in ms)
            and (ms[0].server.ip, k[1], k[2], k[3]) == address
        ]
        if len(named) == 1:
            groups[named[0]].extend(members)
            groups[named[0]].sort(key=lambda o: o.observed_at)
            del groups[key]


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
) -> AnalyzeRun:
    """Read every capture, judge every (selected) TLS server seen, with the live rules."""
    from mtlsprobe.pipeline import judge

    sources = capture_sources(paths)
    notes: list[str] = []
    folders = {str(p) for p in paths if str(p) != "-" and Path(p).is_dir()}
    observations: list[Observation] = []
    names: list[str] = []
    for source in sources:
        in_folder = any(str(source).startswith(f.rstrip("/") + "/") for f in folders)
        captured = read_capture(
            source, keylog_texts=keylog_texts, ports=ports, in_folder=in_folder
        )
        names.append(captured.name)
        observations.extend(captured.observations)
        notes.extend(captured.notes)
    if not observations:
        notes.append("no TLS connection found in the capture(s)")
    results = []
    port_set = set(ports)
    for target, route, members in group_by_server(observations):
        if port_set and target.port not in port_set:
            continue
        if servers and not any(s.matches(target) for s in servers):
            continue
        results.append(judge(target, route, members, expect, CAPTURE_SOURCE))
    for s in servers:
        if not any(s.matches(r.target) for r in results):
            where = f"{s.host}:{s.port}" if s.port else s.host
            notes.append(f"--server {where}: no TLS connection to it in the capture(s)")
    if observations and not results and (servers or ports):
        notes.append("no TLS server matched --server/--port")
    return AnalyzeRun(results=results, notes=notes, captures=names)
