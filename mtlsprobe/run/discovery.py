"""Targets from the agent's own configuration, and from a targets file.

Boundary: reads the Endpoint Central agent's configuration (``serverinfo.json`` on Linux and
macOS, the registry on Windows) and operator-written targets files; returns values with the
place each target came from. Agent configuration is community-documented, so anything
missing or odd in it becomes a note, never an exception. A bad targets file is the
operator's input and raises InputError. No network I/O.

Facts (../shared/reference/endpoint-central.md §1.5, community sources, so fail soft):
  * install folders: Linux ``/usr/local/manageengine/uems_agent/`` (older
    ``/usr/local/desktopcentralagent``), macOS ``/Library/ManageEngine/UEMS_Agent/``;
    where ``serverinfo.json`` sits inside them is not documented, so the search is bounded.
  * ``serverinfo.json`` fields: serverflatname, servername, serveripaddress,
    serversecipaddress, serverprotocol, serverport, serversecureport, enableproxy,
    enabledistributionserver, remoteofficeid, linuxagentversion.
  * Windows: ``HKLM\\SOFTWARE\\WOW6432Node\\AdventNet\\DesktopCentral\\DCAgent\\ServerInfo``
    values DCServerName, DCServerIPAddress, DCServerSecIPAddress, DCServerFlatName,
    DCLastAccessName / DCNSLastAccessName, DCServerPort, DCServerSecurePort (or DCHTTPSPort),
    DCServerProtocol; the agent version is ``...\\DCAgent`` value DCAgentVersion.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mtlsprobe.live.files import LIMITS, decode_text, read_limited, read_text_limited
from mtlsprobe.live.targets import parse_target
from mtlsprobe.model.errors import InputError

#: Overrides the Linux/macOS search roots (os.pathsep-separated), e.g. for tests.
AGENT_ROOT_ENV = "MTLSPROBE_AGENT_ROOT"
AGENT_ROOTS = (
    "/usr/local/manageengine/uems_agent",  # Linux UEMS agent (§1.5)
    "/usr/local/desktopcentralagent",  # older Linux agent (LINUX_README.txt, §1.5)
    "/Library/ManageEngine/UEMS_Agent",  # macOS (§1.5)
)
SERVERINFO = "serverinfo.json"
SEARCH_DEPTH = 3  # folders below a root searched for serverinfo.json
MAX_CONFIG_BYTES = 1 << 20

#: Host fields of serverinfo.json in the order the agent is most likely to use them
#: (§6 `ec-server-https`: last-access name, then name, IP, secondary IP; flat name last).
SERVERINFO_HOSTS = ("servername", "serveripaddress", "serversecipaddress", "serverflatname")

REGISTRY_BASES = (
    r"HKLM\SOFTWARE\WOW6432Node\AdventNet\DesktopCentral\DCAgent",  # 32-bit agent on 64-bit OS
    r"HKLM\SOFTWARE\AdventNet\DesktopCentral\DCAgent",  # 32-bit OS (same layout, assumed)
)
REGISTRY_HOSTS = (
    "DCLastAccessName",
    "DCNSLastAccessName",
    "DCServerName",
    "DCServerIPAddress",
    "DCServerSecIPAddress",
    "DCServerFlatName",
)
REGISTRY_HTTPS_PORTS = ("DCServerSecurePort", "DCHTTPSPort")

#: reader(key_path, value_name) -> the value, or None when the key or value is absent.
RegistryReader = Callable[[str, str], object]


@dataclass(frozen=True)
class DiscoveredTarget:
    host: str
    port: int | None  # None: the preset's / --port ports apply
    source: str  # "file:<path>", "registry:<key>\\<value>", "targets-file:<path>:<line>"


@dataclass(frozen=True)
class Discovery:
    """What the agent configuration says; `notes` explain anything missing or odd."""

    targets: tuple[DiscoveredTarget, ...] = ()
    https_port: int | None = None  # the agent's configured HTTPS port
    distribution_server: bool | None = None  # None: the config does not say
    agent_version: str | None = None
    proxy_configured: bool | None = None
    notes: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()  # config files / registry keys read

    @property
    def host_extra(self) -> dict[str, str]:
        """Facts for Report.host."""
        return {"agent_version": self.agent_version} if self.agent_version else {}


# --- small value helpers -------------------------------------------------------------------


def _text(value: object) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _port(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 < value < 65536 else None
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return _port(int(value.strip()))
    return None


def _yes(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return bool(value)
    if isinstance(value, str):
        v = value.strip().lower()
        if v in ("yes", "true", "1", "enabled"):
            return True
        if v in ("no", "false", "0", "disabled", ""):
            return False
    return None


def _host_ok(host: str) -> bool:
    try:
        parse_target(host)
    except InputError:
        return False
    return True


def _hosts(
    pairs: Iterable[tuple[str, object]], source: Callable[[str], str], notes: list[str]
) -> list[DiscoveredTarget]:
    """Distinct usable host values, in field order; odd values become notes."""
    out: list[DiscoveredTarget] = []
    seen: set[str] = set()
    for name, value in pairs:
        if value is None:
            continue
        host = _text(value)
        if host is None:
            if not (isinstance(value, str) and not value.strip()):
                notes.append(f"{source(name)}: {type(value).__name__} value ignored (not a name)")
            continue
        if not _host_ok(host):
            notes.append(f"{source(name)}: {host!r} is not a host name or address; ignored")
            continue
        key = host.lower().rstrip(".")
        if key not in seen:
            seen.add(key)
            out.append(DiscoveredTarget(host=key, port=None, source=source(name)))
    return out


# --- serverinfo.json (Linux, macOS) --------------------------------------------------------


def from_serverinfo_data(data: object, path: str) -> Discovery:
    """Map parsed serverinfo.json content to a Discovery (pure; never raises)."""
    if not isinstance(data, Mapping):
        return Discovery(notes=(f"{path}: not a JSON object; ignored",), sources=(path,))
    notes: list[str] = []
    targets = _hosts(
        ((k, data.get(k)) for k in SERVERINFO_HOSTS), lambda k: f"file:{path}", notes
    )
    if not targets:
        notes.append(f"{path}: no server name or address (fields {', '.join(SERVERINFO_HOSTS)})")
    https_port = _port(data.get("serversecureport"))
    if data.get("serversecureport") is not None and https_port is None:
        notes.append(f"{path}: serversecureport {data.get('serversecureport')!r} is not a port")
    proto = _text(data.get("serverprotocol"))
    if proto and proto.lower() != "https":
        notes.append(f"{path}: serverprotocol is {proto!r}: the agent may not use TLS at all")
    ds = _yes(data.get("enabledistributionserver"))
    proxy = _yes(data.get("enableproxy"))
    if proxy:
        notes.append(f"{path}: the agent is configured to use a proxy (enableproxy); give it "
                     "with --proxy to probe that route")
    version = _text(data.get("linuxagentversion"))
    return Discovery(
        targets=tuple(targets),
        https_port=https_port,
        distribution_server=ds,
        agent_version=version,
        proxy_configured=proxy,
        notes=tuple(notes),
        sources=(path,),
    )


def agent_roots(environ: Mapping[str, str] | None = None) -> list[Path]:
    """Where Linux/macOS agents live; $MTLSPROBE_AGENT_ROOT replaces the defaults."""
    env = os.environ if environ is None else environ
    override = env.get(AGENT_ROOT_ENV)
    if override:
        return [Path(p) for p in override.split(os.pathsep) if p]
    return [Path(p) for p in AGENT_ROOTS]


def find_serverinfo(roots: Sequence[Path], depth: int = SEARCH_DEPTH) -> list[Path]:
    """serverinfo.json files (any letter case) at most `depth` folders below each root."""
    found: list[Path] = []
    for root in roots:
        if not root.is_dir():
            continue
        level = [root]
        for _ in range(depth + 1):
            nxt: list[Path] = []
            for folder in level:
                try:
                    entries = sorted(folder.iterdir())
                except OSError:
                    continue
                for entry in entries:
                    if entry.name.lower() == SERVERINFO and entry.is_file():
                        found.append(entry)
                    elif entry.is_dir() and not entry.is_symlink():
                        nxt.append(entry)
            level = nxt
    return found


def read_serverinfo(path: Path) -> Discovery:
    """One serverinfo.json; unreadable or malformed files become a note."""
    try:
        raw = read_limited(path, "configuration", MAX_CONFIG_BYTES)
    except InputError as exc:
        return Discovery(notes=(f"{path}: unreadable ({exc}); ignored",))
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except ValueError as exc:  # undecodable bytes, bad JSON, an integer too long to convert
        return Discovery(notes=(f"{path}: not valid JSON ({exc}); ignored",), sources=(str(path),))
    except RecursionError:
        return Discovery(notes=(f"{path}: not valid JSON (nested too deeply); ignored",),
                         sources=(str(path),))
    return from_serverinfo_data(data, str(path))


# --- Windows registry ----------------------------------------------------------------------


def from_registry(read: RegistryReader) -> Discovery:
    """Map the agent's registry values (through `read`) to a Discovery; never raises."""

    def safe(key: str, name: str) -> object:
        try:
            return read(key, name)
        except Exception:  # a reader failing on one value must not stop discovery
            return None

    for base in REGISTRY_BASES:
        key = base + r"\ServerInfo"
        values = {n: safe(key, n) for n in (*REGISTRY_HOSTS, *REGISTRY_HTTPS_PORTS,
                                           "DCServerProtocol")}
        if all(v is None for v in values.values()):
            continue
        notes: list[str] = []
        def source(n: str, k: str = key) -> str:
            return f"registry:{k}\\{n}"

        targets = _hosts(((n, values[n]) for n in REGISTRY_HOSTS), source, notes)
        if not targets:
            notes.append(f"registry:{key}: no server name or address")
        https_port = None
        for name in REGISTRY_HTTPS_PORTS:
            if values[name] is None:
                continue
            https_port = _port(values[name])
            if https_port is None:
                notes.append(f"registry:{key}\\{name}: {values[name]!r} is not a port")
            break
        proto = _text(values["DCServerProtocol"])
        if proto and proto.lower() != "https":
            notes.append(f"registry:{key}\\DCServerProtocol is {proto!r}: the agent may not "
                         "use TLS at all")
        version = _text(safe(base, "DCAgentVersion"))
        return Discovery(
            targets=tuple(targets),
            https_port=https_port,
            agent_version=version,
            notes=tuple(notes),
            sources=(f"registry:{key}",),
        )
    return Discovery(notes=("no Endpoint Central agent registry key found "
                            f"({REGISTRY_BASES[0]}\\ServerInfo)",))


def windows_registry_reader() -> RegistryReader:
    """A reader over the real registry (Windows only; winreg is imported here)."""
    if sys.platform != "win32":  # what `import winreg` raises there; mypy skips the rest
        raise ModuleNotFoundError("No module named 'winreg'", name="winreg")
    import winreg

    def read(key: str, name: str) -> object:
        hive, _, sub = key.partition("\\")
        if hive != "HKLM":
            return None
        try:
            with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, sub) as handle:
                value, _kind = winreg.QueryValueEx(handle, name)
        except OSError:
            return None
        return value

    return read


# --- the whole discovery -------------------------------------------------------------------


def discover(
    *,
    roots: Sequence[Path] | None = None,
    environ: Mapping[str, str] | None = None,
    platform: str | None = None,
    registry_reader: RegistryReader | None = None,
) -> Discovery:
    """The agent's configured servers on this host (registry on Windows, else files)."""
    platform = platform or sys.platform
    if platform.startswith("win"):
        reader = registry_reader
        if reader is None:
            try:
                reader = windows_registry_reader()
            except ImportError:
                return Discovery(notes=("cannot read the registry (winreg unavailable)",))
        return from_registry(reader)
    search = list(roots) if roots is not None else agent_roots(environ)
    files = find_serverinfo(search)
    if not files:
        where = ", ".join(str(r) for r in search)
        return Discovery(notes=(f"no Endpoint Central agent configuration ({SERVERINFO}) "
                                f"under {where}",))
    parts = [read_serverinfo(p) for p in files]
    return merge(parts)


def merge(parts: Sequence[Discovery]) -> Discovery:
    """Several config files: targets de-duplicated in order, first non-empty facts win."""
    targets: list[DiscoveredTarget] = []
    seen: set[str] = set()
    for d in parts:
        for t in d.targets:
            if t.host not in seen:
                seen.add(t.host)
                targets.append(t)

    def first(attr: str) -> object:
        return next((getattr(d, attr) for d in parts if getattr(d, attr) is not None), None)

    ds_values = [d.distribution_server for d in parts if d.distribution_server is not None]
    return Discovery(
        targets=tuple(targets),
        https_port=first("https_port"),  # type: ignore[arg-type]
        distribution_server=any(ds_values) if ds_values else None,
        agent_version=first("agent_version"),  # type: ignore[arg-type]
        proxy_configured=first("proxy_configured"),  # type: ignore[arg-type]
        notes=tuple(n for d in parts for n in d.notes),
        sources=tuple(s for d in parts for s in d.sources),
    )


# --- targets file --------------------------------------------------------------------------


def parse_targets_text(text: str, path: str) -> list[DiscoveredTarget]:
    """One target per line: ``host``, ``host:port``, ``[v6]:port`` or ``host port``;
    ``#`` starts a comment; blank lines are skipped. Raises InputError naming the line."""
    out: list[DiscoveredTarget] = []
    for number, line in enumerate(text.splitlines(), start=1):
        body = line.split("#", 1)[0].strip()
        if not body:
            continue
        words = body.split()
        where = f"{path}:{number}"
        if len(words) > 2:
            raise InputError(f"{where}: expected 'host[:port]' or 'host port', got {body!r}")
        try:
            host, port = parse_target(words[0])
            if len(words) == 2:
                if port is not None:
                    raise InputError(f"two ports in {body!r}")
                if not (words[1].isascii() and words[1].isdigit()) or not 0 < int(words[1]) < 65536:
                    raise InputError(f"bad port {words[1]!r} (1-65535)")
                port = int(words[1])
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None
        out.append(DiscoveredTarget(host=host, port=port, source=f"targets-file:{where}"))
    return out


def read_targets_file(path: Path) -> list[DiscoveredTarget]:
    """Targets from FILE ('-' is stdin). Raises InputError if unreadable or malformed."""
    if str(path) == "-":
        text = decode_text(sys.stdin.buffer.read(LIMITS["targets"] + 1), "targets", path)
        if len(text) > LIMITS["targets"]:
            raise InputError("standard input: not a targets file (larger than 16 MiB)")
    else:
        text = read_text_limited(path, "targets")
    targets = parse_targets_text(text, str(path))
    if not targets:
        raise InputError(f"targets file {path} names no target")
    return targets
