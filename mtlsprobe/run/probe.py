"""The probe use case: what the operator asked for (plain values) in, one Report out.

Loads the agent's credentials and the expectations, plans the targets, probes every
target and route, adds the hop trace, the probe's own capture and the reflector checks
when asked, and assembles the report. Option parsing and output stay in ``cli.probe``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mtlsprobe.live.credentials import load_credentials, password_from
from mtlsprobe.live.probe import ProbeOptions, ProgressHook
from mtlsprobe.live.proxy import redact_url
from mtlsprobe.live.sniff import SniffLog
from mtlsprobe.model import CertInfo, Report
from mtlsprobe.model.certs import cert_info
from mtlsprobe.model.errors import EnvironmentProblem, UsageError
from mtlsprobe.run import expectations, path, pipeline
from mtlsprobe.run.presets import plan_targets


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeRequest:
    """Everything `mtlsprobe probe` was asked to do, as plain values."""

    targets: tuple[str, ...] = ()
    ports: tuple[int, ...] = ()
    ca: tuple[Path, ...] = ()
    pins: tuple[str, ...] = ()
    baseline: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    pkcs12: Path | None = None
    password_file: Path | None = None
    proxies: tuple[str, ...] = ()
    use_env_proxy: bool = True
    direct: bool = True
    sni: str | None = None
    timeout: float = 10.0
    repeat: int = 3
    http_path: str | None = None
    concurrency: int = 8
    targets_file: Path | None = None
    preset: str | None = None
    reflectors: tuple[str, ...] = ()
    reflector_secret_file: Path | None = None
    trace: bool = False
    capture: Path | None = None
    capture_secrets: bool = False
    progress: ProgressHook | None = None  # told as each attempt finishes (a status line)


def run_probe(req: ProbeRequest) -> Report:
    """Probe every planned target and route and judge them; raises MtlsprobeError subclasses."""
    if req.pkcs12 and (req.cert or req.key):
        raise UsageError("use either --pkcs12 or --cert/--key, not both")
    if bool(req.cert) != bool(req.key) and not req.pkcs12:
        raise UsageError("--cert and --key go together")
    creds = None
    if req.cert or req.pkcs12:
        creds = load_credentials(cert=req.cert, key=req.key, pkcs12=req.pkcs12,
                                 password=lambda: password_from(req.password_file))
    agent_chain: tuple[CertInfo, ...] = ()
    if creds is not None:
        agent_chain = tuple(cert_info(d) for d in creds.chain_der)
    expect = expectations.build(ca=req.ca, pins=req.pins, baseline=req.baseline,
                                agent_chain=agent_chain)
    plan = plan_targets(req.targets, ports=req.ports, targets_file=req.targets_file,
                        preset=req.preset)
    if req.trace or req.capture:  # asked for explicitly: missing privilege is no note
        from mtlsprobe.live.hops import unavailable

        why = unavailable()
        if why is not None:
            what = "--trace" if req.trace else "--capture"
            raise EnvironmentProblem(f"{what} needs raw sockets: {why} (run as root or "
                                     f"grant CAP_NET_RAW, or leave {what} out)")
    if not plan.targets and not req.reflectors:
        why = "".join(f"; {n}" for n in plan.notes)
        raise UsageError("nothing to probe: give TARGET..., --targets FILE, --reflector "
                         f"or --preset on an agent host{why}")
    sniff_log = SniffLog()  # passive TTL/RST evidence on every connection, when privileged
    options = ProbeOptions(
        sni=req.sni,
        timeout=req.timeout,
        repeat=req.repeat,
        http_path=req.http_path,
        proxies=req.proxies,
        use_env_proxy=req.use_env_proxy,
        direct=req.direct,
        credentials=creds,
        concurrency=req.concurrency,
        sniff=True,
        sniff_log=sniff_log,
        progress=req.progress,
    )
    results = pipeline.probe(list(plan.targets), options, expect)
    path_notes = list(sniff_log.notes)
    if req.trace:
        results, more = path.traced(results, expect, req.sni, req.timeout, req.progress)
        path_notes += more
    if req.capture:
        path_notes += path.write_capture(req.capture, sniff_log, req.capture_secrets)
    if req.reflectors:
        from mtlsprobe.run.reflector import probe_reflectors

        if req.baseline:
            path_notes.append(
                "--baseline describes the real server's behaviour, which a reflector does not "
                "share: --reflector targets are judged by --ca, --pin and their signed echo")
        results += probe_reflectors(req.reflectors, options, expect, req.reflector_secret_file)
    inputs: dict[str, object] = {
        "targets": [str(e) for e, _ in plan.targets],
        "ca": [str(p) for p in req.ca],
        "pins": list(req.pins),
        "baseline": str(req.baseline) if req.baseline else None,
        "agent_cert": agent_chain[0].sha256 if agent_chain else None,
        "agent_subject": agent_chain[0].subject if agent_chain else None,
        "proxies": [redact_url(p) for p in req.proxies],
        "env_proxy": req.use_env_proxy,
        "direct": req.direct,
        "sni": req.sni,
        "timeout": req.timeout,
        "repeat": req.repeat,
        "http_path": req.http_path,
        "sources": [s for _, s in plan.targets],
        "targets_file": str(req.targets_file) if req.targets_file else None,
        "preset": req.preset,
        "reflectors": list(req.reflectors),
        "trace": req.trace,
        "capture": str(req.capture) if req.capture else None,
    }
    return pipeline.make_report("probe", results, inputs, [*plan.notes, *path_notes],
                                host_extra=plan.host_extra)
