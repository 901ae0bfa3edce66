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
from pathlib import Path

from mtlsprobe.errors import InputError

UNKNOWN_SITE = "unknown"
_HEADER_KEYS = {"hostname", "host", "cidr", "network", "subnet", "key", "name"}
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class SiteMap:
    """Hostname and CIDR entries; lookups are O(number of distinct prefix lengths)."""

    def __init__(self) -> None:
        self.hosts: dict[str, str] = {}
        self.nets: dict[int, dict[Network, str]] = {}  # prefix length -> network -> site

    def add(self, key: str, site: str) -> None:
        try:
            net = ipaddress.ip_network(key, strict=False)
        except ValueError:
            self.hosts[key.lower()] = site
            return
        self.nets.setdefault(net.prefixlen, {})[net] = site

    def _by_address(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
        for length in sorted(self.nets, reverse=True):
            if length > address.max_prefixlen:
                continue
            net = ipaddress.ip_network(f"{address}/{length}", strict=False)
            site = self.nets[length].get(net)
            if site is not None:
                return site
        return None

    def site_of(self, hostname: str, addresses: Sequence[str]) -> str:
        site = self.hosts.get(hostname.lower())
        if site is not None:
            return site
        parsed = []
        for text in addresses:
            try:
                parsed.append(ipaddress.ip_address(text.split("%")[0]))
            except ValueError:
                continue
        for address in parsed:
            site = self._by_address(address)
            if site is not None:
                return site
        for address in parsed:
            if address.is_loopback or address.is_link_local or address.is_unspecified:
                continue
            length = 24 if address.version == 4 else 64
            return str(ipaddress.ip_network(f"{address}/{length}", strict=False))
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


def load_site_map(path: Path) -> SiteMap:
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            return parse_site_map(fh, str(path))
    except OSError as exc:
        raise InputError(f"cannot read site map {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise InputError(f"site map {path} is not UTF-8 text") from None
