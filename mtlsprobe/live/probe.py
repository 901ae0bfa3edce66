"""Probe targets live: every route x every attempt, concurrently, under one deadline.

Boundary: orchestration only. Routes come from ``live.proxy``, streams from
``live.connect``, recorded TLS connections from ``live.handshake``. Returns Transcripts
grouped by route; judging them is the core's job.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from mtlsprobe.live import pki
from mtlsprobe.live.connect import ConnectFailure, open_connection
from mtlsprobe.live.credentials import Credentials
from mtlsprobe.live.handshake import run_attempt
from mtlsprobe.live.proxy import RoutePlan, plan_routes
from mtlsprobe.model import OTHER_NAME, Attempt, CertKind, Endpoint, Route, Transcript

if TYPE_CHECKING:  # live.sniff is imported only when sniffing
    from mtlsprobe.live.sniff import SniffLog


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ProbeStep:
    """Where a probe is, for a progress line: `done` of `total` attempts on one route have
    finished (`attempt` the last one; None when the route is just starting)."""

    target: Endpoint
    proxy: str | None  # the proxy URL without credentials; None: direct
    attempt: str | None
    done: int
    total: int


ProgressHook = Callable[[ProbeStep], None]


@dataclass(frozen=True)
class ProbeOptions:
    """What to probe with. `timeout` is ONE deadline for everything about one target."""

    sni: str | None = None
    timeout: float = 10.0
    repeat: int = 3  # default no-cert handshakes in total (tls13-nocert counts as the first)
    http_path: str | None = None
    proxies: tuple[str, ...] = ()
    use_env_proxy: bool = True
    credentials: Credentials | None = None
    concurrency: int = 8  # targets probed at once
    direct: bool = True
    alpn: tuple[str, ...] = ("http/1.1",)
    environ: Mapping[str, str] | None = None  # None: os.environ (tests pass their own)
    sniff: bool = False  # record our own packets for TTL/RST/option evidence (root needed)
    sniff_log: SniffLog | None = None  # receives the packets and notes
    other_name: bool = True  # also ask for an unrelated name (OTHER_NAME): the kind of box
    progress: ProgressHook | None = None  # told as each attempt finishes (from worker threads)


_untrusted_lock = threading.Lock()
_untrusted: pki.Issued | None = None


def untrusted_identity() -> pki.Issued:
    """A throwaway client certificate from a CA made on the fly (once per process)."""
    global _untrusted
    with _untrusted_lock:
        if _untrusted is None:
            ca = pki.CA("mtlsprobe Untrusted Probe CA", org="mtlsprobe throwaway")
            _untrusted = ca.issue("mtlsprobe-untrusted-client", eku=(pki.CLIENT_AUTH,))
        return _untrusted


def attempts_for(options: ProbeOptions) -> list[Attempt]:
    """The attempts run on every route, in report order."""
    untrusted_sha = hashlib.sha256(untrusted_identity().der).hexdigest()
    out = [
        Attempt(name="tls13-nocert", max_version="TLSv1.3", min_version="TLSv1.3"),
        Attempt(name="tls12-nocert", max_version="TLSv1.2", min_version="TLSv1.2"),
        Attempt(
            name="untrusted-cert",
            client_cert=CertKind.UNTRUSTED,
            client_cert_sha256=untrusted_sha,
        ),
    ]
    if options.credentials is not None:
        out.append(
            Attempt(
                name="agent-cert",
                client_cert=CertKind.AGENT,
                client_cert_sha256=options.credentials.leaf_sha256,
            )
        )
    out.extend(Attempt(name=f"repeat-{i}") for i in range(2, max(1, options.repeat) + 1))
    if options.other_name:
        out.append(Attempt(name="other-name", sni=OTHER_NAME))
    return out


def _one(
    target: Endpoint, plan: RoutePlan, attempt: Attempt, options: ProbeOptions, deadline: float
) -> Transcript:
    conn = open_connection(target, plan, deadline=deadline)
    label = attempt.name if plan.proxy is None else f"{attempt.name} via {plan.proxy.url}"
    if isinstance(conn, ConnectFailure):
        return conn.transcript(attempt, label)
    return run_attempt(
        conn,
        attempt,
        sni=attempt.sni or options.sni,
        credentials=options.credentials,
        untrusted=untrusted_identity(),
        deadline=deadline,
        http_path=None if attempt.sni else options.http_path,
        alpn=options.alpn,
        label=label,
    )


def probe_target(target: Endpoint, options: ProbeOptions) -> list[tuple[Route, list[Transcript]]]:
    """Run every attempt over every route to `target`, concurrently, within
    ``options.timeout`` seconds in total. Returns (route, transcripts) per route, in route
    order; a route's Route is its first transcript's (with the CONNECT answer).

    Raises InputError only for operator errors (a malformed proxy URL).
    """
    deadline = time.monotonic() + options.timeout
    plans = plan_routes(
        target,
        proxies=options.proxies,
        use_env_proxy=options.use_env_proxy,
        direct=options.direct,
        environ=options.environ,
    )
    attempts = attempts_for(options)
    jobs = [(plan, attempt) for plan in plans for attempt in attempts]
    if not jobs:
        return []
    one = _counted(target, plans, len(attempts), options.progress) or _one
    with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix=f"probe {target}") as pool:
        futures = [pool.submit(one, target, p, a, options, deadline) for p, a in jobs]
        results = gather(futures)
    out: list[tuple[Route, list[Transcript]]] = []
    for i, plan in enumerate(plans):
        transcripts = results[i * len(attempts) : (i + 1) * len(attempts)]
        route = next(
            (t.route for t in transcripts if t.route.connect_status is not None),
            transcripts[0].route if transcripts else plan.route(),
        )
        out.append((route, transcripts))
    return out


def _counted(
    target: Endpoint, plans: Sequence[RoutePlan], total: int, hook: ProgressHook | None
) -> Callable[[Endpoint, RoutePlan, Attempt, ProbeOptions, float], Transcript] | None:
    """:func:`_one` telling `hook` as each attempt finishes, counted per route; None
    without a hook. The hook first hears of every route with nothing done."""
    if hook is None:
        return None
    lock = threading.Lock()
    done = {id(plan): 0 for plan in plans}  # two equal --proxy URLs are two routes

    def url(plan: RoutePlan) -> str | None:
        return plan.proxy.url if plan.proxy is not None else None

    for plan in plans:
        hook(ProbeStep(target, url(plan), None, 0, total))

    def one(target: Endpoint, plan: RoutePlan, attempt: Attempt, options: ProbeOptions,
            deadline: float) -> Transcript:
        transcript = _one(target, plan, attempt, options, deadline)
        with lock:
            done[id(plan)] += 1
            hook(ProbeStep(target, url(plan), attempt.name, done[id(plan)], total))
        return transcript

    return one


def probe_targets(
    targets: Sequence[Endpoint], options: ProbeOptions
) -> list[list[tuple[Route, list[Transcript]]]]:
    """:func:`probe_target` for each target, at most ``options.concurrency`` at once; results
    in target order."""
    if not targets:
        return []
    untrusted_identity()  # create once, before threads race for it
    if options.sniff:
        from mtlsprobe.live import sniff

        with sniff.SniffSession(_ports(targets, options), options.sniff_log) as session:
            results = _probe_all(targets, options)
        return [[(route, session.apply(ts)) for route, ts in routes] for routes in results]
    return _probe_all(targets, options)


def _probe_all(
    targets: Sequence[Endpoint], options: ProbeOptions
) -> list[list[tuple[Route, list[Transcript]]]]:
    workers = max(1, min(options.concurrency, len(targets)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="probe-targets") as pool:
        return gather([pool.submit(probe_target, t, options) for t in targets])


def gather(futures: Sequence[Future[T]]) -> list[T]:
    """The futures' results in order, waited for in short slices.

    Ctrl-C is delivered to whichever thread the kernel picks; a main thread blocked for
    good in ``Future.result()`` would run Python's SIGINT handler only when the workers are
    done (up to --timeout). Waking every quarter second lets it run within moments.
    """
    pending = set(futures)
    while pending:
        _done, pending = wait(pending, timeout=0.25)
    return [f.result() for f in futures]


def _ports(targets: Sequence[Endpoint], options: ProbeOptions) -> set[int]:
    """Every TCP port the probe will connect to: the targets' and their proxies'."""
    ports = {t.port for t in targets}
    for t in targets:
        for plan in plan_routes(t, proxies=options.proxies, use_env_proxy=options.use_env_proxy,
                                direct=options.direct, environ=options.environ):
            if plan.proxy is not None:
                ports.add(plan.proxy.port)
    return ports
