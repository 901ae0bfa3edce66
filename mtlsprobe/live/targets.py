"""Parse probe TARGET strings into endpoints.

Accepted: ``host``, ``host:port``, ``[v6]``, ``[v6]:port``, a bare IPv6 literal (``::1``,
``fe80::1%eth0``), IPv4 literals. Anything else raises InputError with one line. No I/O:
names are not resolved here.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence

from mtlsprobe.model import Endpoint
from mtlsprobe.model.errors import InputError

DEFAULT_PORT = 8383

_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")


def _port(text: str, target: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 65536:
        raise InputError(f"bad port {text!r} in target {target!r} (1-65535)")
    return int(text)


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _valid_hostname(host: str) -> bool:
    if host.endswith("."):
        host = host[:-1]
    if not host or len(host) > 253:
        return False
    try:
        ipaddress.IPv4Address(host)
        return True
    except ValueError:
        pass
    labels = host.split(".")
    if all(label.isascii() and label.isdigit() for label in labels):
        return False  # "1.2.3" or "300.1.1.1": neither an address nor a name
    return all(_LABEL.match(label) for label in labels)


def parse_target(text: str, default_port: int = DEFAULT_PORT) -> tuple[str, int | None]:
    """Split TARGET into (host, port); port is None when the target names none.

    Use :func:`expand_targets` for Endpoints with the default applied. Raises InputError.
    """
    target = text.strip()
    if not target:
        raise InputError("empty target")
    if "://" in target or "/" in target:
        raise InputError(f"bad target {text!r}: give host[:port], not a URL")
    if target.startswith("["):
        close = target.find("]")
        if close < 0:
            raise InputError(f"bad target {text!r}: missing ']'")
        host, rest = target[1:close], target[close + 1 :]
        if not _is_ipv6(host):
            raise InputError(f"bad target {text!r}: {host!r} is not an IPv6 address")
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise InputError(f"bad target {text!r}: expected ':port' after ']'")
        return host, _port(rest[1:], text)
    if target.count(":") > 1:
        if _is_ipv6(target):
            return target, None
        raise InputError(f"bad target {text!r}: write IPv6 with a port as [addr]:port")
    host, sep, port_text = target.partition(":")
    if not _valid_hostname(host):
        raise InputError(f"bad target {text!r}: {host!r} is not a host name or IP address")
    return host.lower().rstrip("."), (_port(port_text, text) if sep else None)


def expand_targets(
    targets: Iterable[str], ports: Sequence[int] = (), default_port: int = DEFAULT_PORT
) -> list[Endpoint]:
    """Endpoints for every TARGET; a target without a port gets each ``--port`` (or the
    default 8383). A target that names its own port keeps it. Duplicates are dropped,
    order kept. Raises InputError on junk or a bad port.
    """
    for p in ports:
        if not 0 < int(p) < 65536:
            raise InputError(f"bad --port {p} (1-65535)")
    out: list[Endpoint] = []
    seen: set[tuple[str, int]] = set()
    for text in targets:
        host, port = parse_target(text, default_port)
        for p in [port] if port is not None else (list(ports) or [default_port]):
            if (host, p) not in seen:
                seen.add((host, p))
                out.append(Endpoint(host=host, port=int(p)))
    return out
