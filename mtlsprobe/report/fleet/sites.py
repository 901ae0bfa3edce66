"""Which site an agent is at: --site-map (hostname or CIDR -> site), else its /24.

Site map: CSV ``key,site`` per line; key is a hostname (case-insensitive) or a CIDR/address;
'#' comments, blank lines and a header row (``hostname,site``, ``cidr,site`` ...) are skipped.
Lookup: hostname entry, then the longest CIDR holding one of the host's addresses, then the
first routable address's /24 (IPv6: /64), else "unknown".
"""

from __future__ import annotations

import csv
import ipaddress
from collections.abc import Iterable, Sequence

from mtlsprobe.model.errors import InputError

UNKNOWN_SITE = "unknown"
_HEADER_KEYS = {"hostname", "host", "cidr", "network", "subnet", "key", "name"}


def _parse(text: str) -> tuple[int, int] | None:
    """(version, integer) of an address; a fast path for dotted quads."""
    parts = text.split(".")
    if len(parts) == 4 and all(p.isascii() and p.isdigit() and len(p) <= 3 for p in parts):
        a, b, c, d = (int(p) for p in parts)
        if max(a, b, c, d) < 256:
            return 4, (a << 24) | (b << 16) | (c << 8) | d
        return None
    try:
        address = ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        return None
    return address.version, int(address)


def _routable(version: int, value: int) -> bool:
    if version == 4:
        return value >> 24 not in (0, 127) and value >> 16 != 0xA9FE  # 0/8, 127/8, 169.254/16
    return value > 1 and value >> 118 != 0x3FA  # ::, ::1, fe80::/10


def _bits(version: int) -> int:
    return 32 if version == 4 else 128


class SiteMap:
    """Hostname and CIDR entries; a lookup costs one dict probe per distinct prefix length."""

    def __init__(self) -> None:
        self.hosts: dict[str, str] = {}
        self.nets: dict[tuple[int, int], dict[int, str]] = {}  # (version, length) -> net -> site

    def add(self, key: str, site: str) -> None:
        try:
            net = ipaddress.ip_network(key, strict=False)
        except ValueError:
            self.hosts[key.lower()] = site
            return
        slot = self.nets.setdefault((net.version, net.prefixlen), {})
        slot[int(net.network_address)] = site

    def _by_address(self, version: int, value: int) -> str | None:
        for (v, length) in sorted(self.nets, key=lambda k: -k[1]):
            if v != version:
                continue
            shift = _bits(version) - length
            site = self.nets[(v, length)].get((value >> shift) << shift)
            if site is not None:
                return site
        return None

    def site_of(self, hostname: str, addresses: Sequence[str]) -> str:
        site = self.hosts.get(hostname.lower()) if self.hosts else None
        if site is not None:
            return site
        parsed = [p for p in map(_parse, addresses) if p is not None]
        if self.nets:
            for version, value in parsed:
                site = self._by_address(version, value)
                if site is not None:
                    return site
        for version, value in parsed:
            if not _routable(version, value):
                continue
            if version == 4:
                return f"{value >> 24}.{value >> 16 & 255}.{value >> 8 & 255}.0/24"
            net = ipaddress.IPv6Network(((value >> 64) << 64, 64))
            return str(net)
        return UNKNOWN_SITE


def parse_site_map(lines: Iterable[str], name: str = "site map") -> SiteMap:
    """Raises InputError naming the first bad line."""
    sites = SiteMap()
    first = True
    for n, row in enumerate(csv.reader(lines), 1):
        cells = [c.strip() for c in row]
        if not cells or not any(cells) or cells[0].startswith("#"):
            continue
        if len(cells) < 2 or not cells[0] or not cells[1]:
            raise InputError(f"{name}:{n}: expected 'hostname-or-CIDR,site'")
        if first and cells[0].lower() in _HEADER_KEYS:
            first = False
            continue
        first = False
        sites.add(cells[0], cells[1])
    return sites
