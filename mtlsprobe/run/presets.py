"""Product presets (the ports an agent uses) and the target plan of one probe run.

Boundary: decides WHICH endpoints to probe and where each came from (TARGET arguments,
--targets FILE, the agent's configuration via ``discovery``); probing them is the live
adapter's job. Raises InputError only for operator input (unknown preset, bad file).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mtlsprobe.live.targets import DEFAULT_PORT, parse_target
from mtlsprobe.model import Endpoint
from mtlsprobe.model.errors import InputError
from mtlsprobe.run.discovery import DiscoveredTarget, Discovery, discover, read_targets_file


@dataclass(frozen=True)
class PresetPort:
    port: int
    name: str
    why: str
    distribution_server_only: bool = False


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    ports: tuple[PresetPort, ...]
    https_entry: str  # the PresetPort.name the agent's configured HTTPS port replaces

    def ports_for(
        self, *, distribution_server: bool | None = None, https_port: int | None = None
    ) -> list[int]:
        """The ports to probe: DS-only ports only when a distribution server is in use, the
        main HTTPS port replaced by the agent's configured one."""
        out: list[int] = []
        for p in self.ports:
            if p.distribution_server_only and not distribution_server:
                continue
            port = https_port if (p.name == self.https_entry and https_port) else p.port
            if port not in out:
                out.append(port)
        return out


#: Endpoint Central (ManageEngine UEMS) agent ports, from
#: ../shared/reference/endpoint-central.md §1.3 (port table: JP KB ?p=10, WAN architecture
#: page) and §6 (preset entries). Every one is overridable with --port; other editions use
#: other ports (Patch Manager Plus 6363, DLP 8363, MSP 8040/8041: §1.3).
ENDPOINT_CENTRAL = Preset(
    name="endpoint-central",
    description="ManageEngine Endpoint Central agent -> server (and distribution server)",
    https_entry="ec-server-https",
    ports=(
        PresetPort(8383, "ec-server-https", "agent-server HTTPS: the client-certificate path"),
        PresetPort(8027, "ec-notification", "notification server / on-demand tasks (TLS "
                   "status undocumented)"),
        PresetPort(8443, "ec-remote-control", "remote desktop sharing (HTTPS)"),
        PresetPort(8031, "ec-file-transfer", "file transfer (HTTPS)"),
        PresetPort(8384, "ec-ds-https", "agent - distribution server HTTPS",
                   distribution_server_only=True),
    ),
)

PRESETS: dict[str, Preset] = {ENDPOINT_CENTRAL.name: ENDPOINT_CENTRAL}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise InputError(f"unknown preset {name!r} (known: {', '.join(PRESETS)})") from None


@dataclass(frozen=True)
class TargetPlan:
    """Endpoints with their sources, plus what the report should say about how they came."""

    targets: tuple[tuple[Endpoint, str], ...] = ()
    notes: tuple[str, ...] = ()
    host_extra: dict[str, str] = field(default_factory=dict)
    discovery: Discovery | None = None


def _explicit(args: Sequence[str], targets_file: Path | None) -> list[DiscoveredTarget]:
    out = []
    for text in args:
        host, port = parse_target(text)
        out.append(DiscoveredTarget(host=host, port=port, source="flag"))
    if targets_file is not None:
        out.extend(read_targets_file(targets_file))
    return out


def plan_targets(
    args: Sequence[str] = (),
    *,
    ports: Sequence[int] = (),
    targets_file: Path | None = None,
    preset: str | None = None,
    discover_fn: Callable[[], Discovery] = discover,
) -> TargetPlan:
    """Every (endpoint, source) to probe, in order, without duplicates.

    A target naming its own port keeps it; others get each --port, else the preset's
    ports, else 8383. With a preset the agent configuration is read (for its version, and
    for targets when none are given). May return no targets: the caller decides.
    """
    chosen = get_preset(preset) if preset else None
    targets = _explicit(args, targets_file)
    notes: list[str] = []
    found: Discovery | None = None
    default_ports = [DEFAULT_PORT]
    if chosen is not None:
        found = discover_fn()
        notes.extend(found.notes)
        if not targets:
            targets = list(found.targets)
        elif found.targets:
            names = ", ".join(t.host for t in found.targets)
            notes.append(f"targets were given, so the agent's configured servers ({names}) "
                         "were not added")
        default_ports = chosen.ports_for(
            distribution_server=found.distribution_server, https_port=found.https_port
        )
        if found.https_port and found.https_port != chosen.ports[0].port and not ports:
            notes.append(f"the agent's configured HTTPS port is {found.https_port}; probing "
                         f"it instead of {chosen.ports[0].port}")
        if found.distribution_server and not ports:
            notes.append("the agent configuration uses a distribution server: 8384 probed on "
                         "the configured servers; name the distribution server as a TARGET if "
                         "it is another host")
    out: list[tuple[Endpoint, str]] = []
    seen: set[tuple[str, int]] = set()
    for t in targets:
        for p in [t.port] if t.port is not None else (list(ports) or default_ports):
            if (t.host, p) not in seen:
                seen.add((t.host, p))
                out.append((Endpoint(host=t.host, port=int(p)), t.source))
    return TargetPlan(
        targets=tuple(out),
        notes=tuple(notes),
        host_extra=found.host_extra if found else {},
        discovery=found,
    )
