"""analyze: capture files (and Zeek logs) -> Observations -> one Case per server -> rules.

Boundary: the offline pipeline. Capture reading is ``mtlsprobe.capture``'s job (through
``run.captures``), TLS facts the observer's, judgement the rules' (the same rules the live
probe uses); grouping connections into servers is ``run.tallies``'. This module runs them in
order, applies the operator's --server/--port filter and collects report notes. No
rendering, no exit codes.

Decisions, for reviewers:

- Key logs: every --keylog file and every key log embedded in a capture (pcapng DSB) are
  merged and parsed once; each capture is observed with all of them.
- Damage inside a capture (truncation, corrupt records, unknown link types) is a report
  note and the rest is analysed. A source that is not a capture is an ``InputError``,
  raised before anything is written.
- Zeek ssl.log/x509.log files, told from captures by content (``run.zeek_inputs``), become
  the same Observations through ``mtlsprobe.capture.zeek`` and join the same tallies.
- Observations are judged at capture time (``observed_at`` = the connection's first packet).
- Memory stays flat in the capture size: connections stream through per-server tallies
  (``run.tallies``) that keep one observation per distinct behaviour; past
  ``MAX_BEHAVIOURS`` behaviours a server's connections are judged per verdict shape (one
  agent fleet, each with its own certificate, is a few shapes), which a report note says;
  connections beyond ``MAX_SHAPES`` shapes are counted in a note, not judged.
- A large capture may be read by several forked processes, each taking a share of the
  connections (``run.shares``); their tallies merge into the same report one reader
  gives (equal first-packet times break by flow number, not by order of closing).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mtlsprobe.model import CaseResult, Endpoint, Expectations
from mtlsprobe.model.errors import InputError
from mtlsprobe.run import shares as analyze_shares
from mtlsprobe.run import tallies as bounds
from mtlsprobe.run.captures import CaptureObservations, Source, capture_sources
from mtlsprobe.run.tallies import ServerGroup, ServerTallies, canonical_host
from mtlsprobe.run.zeek_inputs import (
    ZeekLogs,
    expectations_for,
    refuse_other_logs,
    split_zeek_logs,
)
from mtlsprobe.tls.keylog import parse_keylogs

CAPTURE_SOURCE = "capture"


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
        return cls(host=canonical_host(host), port=port)

    def matches(self, target: Endpoint) -> bool:
        if self.port is not None and self.port != target.port:
            return False
        names = {canonical_host(target.host)}
        if target.ip:
            names.add(canonical_host(target.ip))
        return self.host in names


def _port(text: str, port_text: str) -> int:
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise InputError(f"--server {text!r}: port must be 1-65535")
    return int(port_text)


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
    as CPUs for a large capture file, see ``run.shares``; 1: this process only).
    """
    with _fewer_collections():
        return _analyze(paths, expect, keylog_texts=keylog_texts, servers=servers,
                        ports=ports, progress_from=progress_from, jobs=jobs)


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """The cyclic GC, tuned for one long read: objects alive now (modules, tables) are
    left out of its passes, and it runs every 100,000 container allocations, not 700.
    Reading makes few cycles, so memory does not grow; bench: ~9% less CPU on 22,000
    handshakes (gc was 13% of a compiled run's profile). Forked --jobs workers inherit it."""
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def _analyze(
    paths: Sequence[Source],
    expect: Expectations,
    *,
    keylog_texts: Sequence[str],
    servers: Sequence[ServerFilter],
    ports: Sequence[int],
    progress_from: int | None,
    jobs: int | None,
) -> AnalyzeRun:
    from mtlsprobe.run.pipeline import judge

    sources, zeek_logs = split_zeek_logs(capture_sources(paths))
    notes: list[str] = []
    folders = {str(p) for p in paths if str(p) != "-" and Path(p).is_dir()}
    refuse_other_logs(zeek_logs, sorted(folders))
    tallies = ServerTallies()
    names: list[str] = []
    keylog = parse_keylogs(keylog_texts)
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
    if zeek_logs:  # after the captures: the x509 index is built before any ssl.log row
        logs = ZeekLogs(zeek_logs)
        for obs in logs:
            tallies.add(obs, len(sources))
        names.extend(logs.names)
        notes.extend(logs.notes)
    if not tallies.tallies:
        notes.append("no TLS connection found in the capture(s)")
    if tallies.overflow:
        notes.append(
            f"{tallies.overflow:,} TLS connection(s) to servers beyond the {bounds.MAX_SERVERS:,} "
            "judged (a scan?) were counted, not judged"
        )
    results = []
    port_set = set(ports)
    for group in tallies.groups():
        target = group.target
        if port_set and target.port not in port_set:
            continue
        if servers and not any(s.matches(target) for s in servers):
            continue
        notes.extend(_folding_notes(group))
        group_expect, zeek_note = expectations_for(group.observations, expect)
        notes.extend([zeek_note] if zeek_note else [])
        results.append(judge(target, group.route, group.observations, group_expect,
                             CAPTURE_SOURCE))
    for s in servers:
        if not any(s.matches(r.target) for r in results):
            where = f"{s.host}:{s.port}" if s.port else s.host
            notes.append(f"--server {where}: no TLS connection to it in the capture(s)")
    if tallies.tallies and not results and (servers or ports):
        notes.append("no TLS server matched --server/--port")
    return AnalyzeRun(results=results, notes=notes, captures=names)


def _folding_notes(group: ServerGroup) -> list[str]:
    """What the report should say when a server's connections were judged together."""
    notes = []
    where = f"{group.target.host}:{group.target.port}"
    if group.folded:
        certs = (f"more than {bounds.MAX_CLIENT_CERTS:,}" if group.client_certs is None
                 else f"{group.client_certs:,}")
        notes.append(
            f"{where}: {group.connections - group.overflow:,} connection(s) from {certs} "
            f"different client certificate(s) judged as {len(group.observations)} "
            f"behaviour(s): past {bounds.MAX_BEHAVIOURS} distinct behaviours, connections that "
            "differ only in what identifies a client (its certificate, port, TTLs) are "
            "judged together"
        )
    if group.overflow:
        notes.append(
            f"{where}: {group.overflow:,} of {group.connections:,} connection(s) showed "
            f"behaviours beyond the {bounds.MAX_SHAPES} judged ones; they were counted, not judged"
        )
    return notes
