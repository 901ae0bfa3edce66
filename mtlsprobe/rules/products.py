"""Which product re-signs or terminates: named from its own evidence, or not at all.

A wrong product sends the ticket to the wrong team, so a name is given only when every tell
on the path points to the same product: signatures on the certificates the real server
does not present, proxy headers (Via, X-Cache) and, where a baseline shows what the real
server answers, a Server header the real server does not send (the real server behind a
terminator is often nginx or Apache itself). Pure: a Case in, a name and evidence out.
"""

from __future__ import annotations

from mtlsprobe.model import Case, Evidence, HttpExchange, Observation
from mtlsprobe.rules.facts import Chain, _baseline, _ev, _foreign
from mtlsprobe.rules.signatures import Match, match_chain, match_http

#: Signatures that say "some proxy", not which product.
GENERIC = frozenset({"HTTP proxy", "HTTP cache/proxy"})


def _real_server_says(case: Case, name: str) -> set[str]:
    """Values of a response header (server, via) the real server showed in the baseline."""
    base = _baseline(case)
    if base is None:
        return set()
    return {v for key, values in base.behaviour if key.startswith(f"http.{name}[")
            for v in values}


def _real_server_products(case: Case) -> set[str]:
    """The software the real server names itself (its Server header in the baseline)."""
    return {
        m.signature.product
        for value in _real_server_says(case, "server")
        for m in match_http(HttpExchange(path="/", headers=(("Server", value),)), kinds=("server",))
    }


def _http_hits(case: Case, observations: list[Observation]) -> list[tuple[Match, Observation]]:
    base = _baseline(case)
    own = _real_server_products(case)
    vias = _real_server_says(case, "via")
    hits = []
    for obs in observations:
        for m in match_http(obs.http):
            if m.signature.kind == "server" and (base is None or m.signature.product in own):
                continue  # the real server's own software (or, without a baseline, maybe)
            if m.field.lower() == "http.headers.via" and m.value in vias:
                continue
            hits.append((m, obs))
    return hits


def name_product(case: Case) -> tuple[str, list[Evidence]] | None:
    """The one product all the tells on this path name, with its evidence; else None."""
    hits: list[tuple[Match, Observation]] = []
    seen_by: list[Observation] = []
    chains: list[tuple[Chain, Observation]] = []
    for obs in case.observations:
        chain = obs.server_chain
        if chain and _foreign(case, chain, obs):
            chains.append((chain, obs))
            seen_by.append(obs)
    if not chains and not case.observations:
        return None
    for chain, obs in chains:
        hits.extend((m, obs) for m in match_chain(chain))
    hits.extend(_http_hits(case, seen_by or list(case.observations)))
    products = {m.signature.product for m, _ in hits} - GENERIC
    if len(products) != 1:
        return None
    (product,) = products
    evidence = []
    for m, obs in hits:
        if m.signature.product == product:
            evidence.append(_ev(obs, m.field, m.value))
            evidence.append(_ev(None, f"signature.{m.signature.id}",
                                f"{m.signature.source} ({m.signature.confidence})"))
    return product, evidence
