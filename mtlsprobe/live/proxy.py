"""Which routes to probe a target over: direct, ``--proxy`` URLs, the environment's proxy.

Boundary: URL and environment parsing only, no sockets. Proxy credentials stay inside
:class:`ProxySpec` (hidden from repr) and only leave as a ``Proxy-Authorization`` value;
every ``model.Route`` and every error message carries the URL without them.

Environment semantics follow curl: ``https_proxy`` then ``HTTPS_PROXY`` (a URL without a
scheme means ``http://``), ``no_proxy`` then ``NO_PROXY``: comma/space separated, ``*``
alone matches everything, a name matches itself and its subdomains (a leading dot is
ignored), IP literals and CIDR blocks match IP-literal targets.
"""

from __future__ import annotations

import base64
import ipaddress
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from mtlsprobe.model import Endpoint, Route
from mtlsprobe.model.errors import InputError

DEFAULT_PROXY_PORT = 1080  # curl's default for http:// proxies without a port


@dataclass(frozen=True)
class ProxySpec:
    """An HTTP CONNECT proxy. `password` never appears in repr, URLs or Routes."""

    host: str
    port: int
    source: str  # "flag" | "env:HTTPS_PROXY" | "env:https_proxy"
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """The proxy URL without credentials (a username is kept, it is not a secret)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.username}@" if self.username else ""
        return f"http://{user}{host}:{self.port}"

    @property
    def authorization(self) -> str | None:
        """``Proxy-Authorization`` header value (Basic), or None without credentials."""
        if self.username is None and self.password is None:
            return None
        raw = f"{self.username or ''}:{self.password or ''}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True)
class RoutePlan:
    """One way to reach a target: direct, or through `proxy`."""

    proxy: ProxySpec | None = None

    @property
    def kind(self) -> str:
        return "direct" if self.proxy is None else "http_proxy"

    def route(self) -> Route:
        """The model Route before any CONNECT answer is known."""
        if self.proxy is None:
            return Route(kind="direct")
        return Route(kind="http_proxy", proxy=self.proxy.url, source=self.proxy.source)


def redact_url(url: str) -> str:
    """`url` with any password replaced by ``***`` (for messages)."""
    try:
        parts = urlsplit(url if "://" in url else "http://" + url)
        if parts.password is None:
            return url
        netloc = parts.netloc.rsplit("@", 1)[1]
        return f"{parts.scheme}://{parts.username or ''}:***@{netloc}"
    except ValueError:
        return "<unparsable proxy URL>"


def parse_proxy_url(url: str, source: str = "flag") -> ProxySpec:
    """Parse ``http://[user:pass@]host[:port][/]``. Raises InputError (URL redacted)."""
    shown = redact_url(url)
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
        host = parts.hostname
    except ValueError:
        raise InputError(f"bad proxy URL {shown} ({source})") from None
    if parts.scheme.lower() != "http":
        raise InputError(
            f"unsupported proxy scheme {parts.scheme!r} in {shown} ({source}): only http://"
        )
    if not host:
        raise InputError(f"bad proxy URL {shown} ({source}): no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InputError(f"bad proxy URL {shown} ({source}): unexpected path")
    return ProxySpec(
        host=host,
        port=port or DEFAULT_PROXY_PORT,
        source=source,
        username=unquote(parts.username) if parts.username is not None else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def _env(environ: Mapping[str, str], *names: str) -> tuple[str, str] | None:
    for name in names:
        value = environ.get(name)
        if value is not None and value.strip():
            return name, value.strip()
    return None


def no_proxy_matches(host: str, no_proxy: str) -> bool:
    """True when `host` is excluded from proxying by a NO_PROXY value (curl semantics)."""
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        host_ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        host_ip = None
    for raw in no_proxy.replace(" ", ",").split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        if entry.startswith("[") and "]" in entry:
            entry = entry[1 : entry.index("]")]
        if host_ip is not None:
            try:
                if host_ip in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        entry = entry.lstrip(".").rstrip(".")
        if entry and (host == entry or host.endswith("." + entry)):
            return True
    return False


def env_proxy(host: str, environ: Mapping[str, str] | None = None) -> ProxySpec | None:
    """The proxy the environment asks HTTPS traffic to `host` to use, or None."""
    env = os.environ if environ is None else environ
    found = _env(env, "https_proxy", "HTTPS_PROXY")
    if found is None:
        return None
    no_proxy = _env(env, "no_proxy", "NO_PROXY")
    if no_proxy is not None and no_proxy_matches(host, no_proxy[1]):
        return None
    name, value = found
    return parse_proxy_url(value, source=f"env:{name}")


def plan_routes(
    target: Endpoint,
    *,
    proxies: Sequence[str] = (),
    use_env_proxy: bool = True,
    direct: bool = True,
    environ: Mapping[str, str] | None = None,
) -> list[RoutePlan]:
    """Routes to probe `target` over, in order: direct (unless disabled), each ``--proxy``,
    then the environment's proxy (unless disabled, excluded by NO_PROXY, or the same proxy
    as a flag). Raises InputError for a malformed proxy URL.
    """
    plans: list[RoutePlan] = [RoutePlan()] if direct else []
    specs = [parse_proxy_url(p, "flag") for p in proxies]
    if use_env_proxy:
        spec = env_proxy(target.host, environ)
        if spec is not None and all((s.host, s.port) != (spec.host, spec.port) for s in specs):
            specs.append(spec)
    plans.extend(RoutePlan(proxy=s) for s in _unique(specs))
    return plans


def _unique(specs: Iterable[ProxySpec]) -> list[ProxySpec]:
    out: list[ProxySpec] = []
    for s in specs:
        if s not in out:
            out.append(s)
    return out
