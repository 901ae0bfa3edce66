"""Which kind of box re-signs the chain: an interceptor (mints a certificate for whatever
name is asked) or a terminator (one fixed certificate for this name, from its own or a
public CA) (MTLS025-026). The remediation follows the kind: exempt from inspection, or pass
TCP through on the load balancer.

Evidence, by strength (the strongest wins; at equal strength, the interceptor):
- proof: a certificate naming the unrelated name of the other-name handshake, or a leaf
  reusing its issuer's key (interceptor); the very same leaf for the unrelated name
  (terminator);
- medium, all terminator: a load balancer's signature; a CertificateRequest beside the
  foreign chain (an interceptor cannot use the agent's certificate, so it does not ask); a
  self-signed leaf; the same foreign leaf on several handshakes beside the real server's (a
  pool with one terminating member); a certificate from your own CA that is not the real
  server's (an inspection CA under the corporate root mints, so proof of minting outweighs
  it);
- weak: a leaf made hours ago or an explicit proxy on the route (interceptor); the
  unrelated name refused while the agent's name is answered (terminator).
"""

from __future__ import annotations

from collections.abc import Iterator

from mtlsprobe.model import Case, CertInfo, Evidence, Finding, Observation, Seen, Severity
from mtlsprobe.model.certs import leaf_shares_issuer_key
from mtlsprobe.rules.facts import (
    FRESH_LEAF,
    INSPECT_FIX,
    LB_FIX,
    Chain,
    _anchor,
    _chains,
    _ev,
    _foreign,
    _same_root_impostor,
    _target,
)
from mtlsprobe.rules.products import name_product
from mtlsprobe.rules.registry import finding, rule
from mtlsprobe.rules.signatures import match_chain, match_http

STRONG, MEDIUM, WEAK = 3, 2, 1


def foreign_chains(case: Case) -> list[tuple[Chain, list[Observation]]]:
    """Chains that are not the real server's, as far as the expectations tell."""
    return [(c, seen) for c, seen in _chains(case) if _foreign(case, c, seen[0])]


def _names(cert: CertInfo) -> str:
    return " ".join((cert.subject, *cert.san_dns)).lower()


def _other_name_leaves(case: Case) -> list[tuple[Observation, CertInfo]]:
    return [(o, o.server_chain[0]) for o in case.other_name if o.server_chain]


def interceptor_evidence(case: Case, chain: Chain, seen_by: list[Observation]
                         ) -> tuple[int, list[Evidence]]:
    """(strength, evidence) that `chain` was minted on the path; strength 0: none."""
    leaf, obs = chain[0], seen_by[0]
    for other, other_leaf in _other_name_leaves(case):
        asked = other.sni
        if asked and asked.lower() in _names(other_leaf):
            return STRONG, [_ev(other, "server_chain[0].subject", other_leaf.subject),
                            _ev(other, "server_chain[0].san_dns",
                                ", ".join(other_leaf.san_dns) or "-"),
                            _ev(other, "attempt.sni", asked)]
    if leaf_shares_issuer_key((*chain, *case.expect.roots)):
        return STRONG, [_ev(obs, "server_chain[0].spki_pin", leaf.spki_pin),
                        _ev(obs, "server_chain[0].issuer", f"{leaf.issuer} (same key)")]
    if abs(obs.observed_at - leaf.not_before) <= FRESH_LEAF:
        return WEAK, [_ev(obs, "server_chain[0].not_before", leaf.not_before.isoformat()),
                      _ev(obs, "observed_at", obs.observed_at.isoformat())]
    if case.route.kind == "http_proxy":
        return WEAK, [_ev(None, "route", case.route.name)]
    return 0, []


def terminator_evidence(case: Case, chain: Chain, seen_by: list[Observation]
                        ) -> tuple[int, list[Evidence]]:
    """(strength, evidence) that `chain` is one fixed certificate; strength 0: none."""
    others = _other_name_leaves(case)
    same = [(o, c) for o, c in others if c.sha256 == chain[0].sha256]
    if same:
        o, c = same[0]
        return STRONG, [_ev(o, "server_chain[0].sha256", f"{c.sha256} (the same leaf)"),
                        _ev(o, "sni", o.sni or "-")]
    lb = match_chain(chain, kinds=("load_balancer",)) or [
        m for o in seen_by for m in match_http(o.http, kinds=("load_balancer",))]
    if lb:
        return MEDIUM, [_ev(seen_by[0], lb[0].field, lb[0].value)]
    asking = [o for o in seen_by if o.cert_request.seen is Seen.YES]
    if asking:  # an interceptor cannot use the agent's certificate, so it does not ask
        return MEDIUM, [_ev(asking[0], "cert_request.seen", "yes"),
                        _ev(asking[0], "server_chain[0].issuer", chain[0].issuer)]
    if len(chain) == 1 and chain[0].self_issued:  # openssl req -x509 marks it a CA, too
        return MEDIUM, [_ev(seen_by[0], "server_chain[0].issuer",
                            f"{chain[0].issuer} (self-signed, no CA behind it)")]
    real = [o for o in case.observations
            if o.server_chain and not _foreign(case, o.server_chain, o)]
    # the same foreign leaf again beside the real server's: on several handshakes, which a
    # capture's observation counts in ``repeats`` (one per behaviour, see run.tallies)
    if real and sum(o.repeats for o in seen_by) > 1:
        return MEDIUM, [_ev(seen_by[0], "server_chain[0].sha256", chain[0].sha256),
                        _ev(real[0], "server_chain[0].sha256",
                            f"{real[0].server_chain[0].sha256} (the real server's)")]
    if _same_root_impostor(case, chain):
        anchor = _anchor(case, chain)
        return MEDIUM, [_ev(seen_by[0], "server_chain[0].subject", chain[0].subject),
                        _ev(None, "anchor", anchor.subject if anchor else "-")]
    refused = [o for o in case.other_name if not o.server_chain and o.version is None]
    if case.other_name and len(refused) == len(case.other_name):
        return WEAK, [_ev(o, "outcome", o.outcome.value) for o in refused]
    return 0, []


def _kind(case: Case) -> tuple[str, list[Evidence]] | None:
    """'interceptor' or 'terminator' for the foreign chains of this case, with evidence."""
    best: tuple[int, str, list[Evidence]] = (0, "", [])
    for chain, seen_by in foreign_chains(case):
        i, i_ev = interceptor_evidence(case, chain, seen_by)
        t, t_ev = terminator_evidence(case, chain, seen_by)
        # strong beats weak; at equal strength the interceptor's evidence wins
        for strength, kind, ev in ((i, "interceptor", i_ev), (t, "terminator", t_ev)):
            if strength > best[0]:
                best = (strength, kind, ev)
    return (best[1], best[2]) if best[0] else None


def kind_fix(case: Case) -> str:
    """The remediation for a foreign chain: by the kind of box, inspection when unknown."""
    kind = _kind(case)
    fix = LB_FIX if kind is not None and kind[0] == "terminator" else INSPECT_FIX
    return fix.format(t=_target(case))


@rule("MTLS025", "Certificates minted on the path (an interceptor)", Severity.BREAKS)
def interceptor(case: Case) -> Iterator[Finding]:
    """The certificate on this path is not the real server's, and the strongest evidence says it
    was minted on the fly: the probe's handshake for an unrelated name got a certificate naming
    that name, the leaf reuses its CA's key, or (weaker) the leaf is only hours old or an
    explicit proxy is on the route.

    Breaks client-certificate authentication: an SSL-intercepting proxy or a firewall with TLS
    inspection re-signs the session, and it cannot present the agent's certificate to the
    server. The product is named when its signature matches.

    Exempt the Endpoint Central server name and ports from TLS inspection (decryption exclusion,
    Do-Not-Inspect or splice list) so the agent's TLS session reaches the server unchanged.
    """
    kind = _kind(case)
    if kind is None or kind[0] != "interceptor":
        return
    named = name_product(case)
    yield finding(
        "MTLS025",
        f"Something between here and {_target(case)} mints the server certificate on the fly "
        "(an SSL-intercepting proxy or a firewall's TLS inspection); it cannot present the "
        "agent's certificate to the server.",
        evidence=kind[1] + (named[1] if named else []),
        remediation=INSPECT_FIX.format(t=_target(case)),
        product=named[0] if named else None,
    )


@rule("MTLS026", "One fixed certificate of its own (a terminator)", Severity.BREAKS)
def terminator(case: Case) -> Iterator[Finding]:
    """The certificate on this path is not the real server's, and the evidence says one fixed
    certificate answers for it: the same leaf even for an unrelated name, a load balancer's
    signature, a CertificateRequest beside the foreign certificate, a self-signed leaf, one
    foreign leaf among the real server's in a pool, a certificate from your own CA that is not
    the server's, or (weaker) the unrelated name refused while the server's name is answered.

    Breaks client-certificate authentication: a TLS terminator (load balancer or reverse proxy)
    ends the agent's session; the agent's certificate goes no further than that box.

    Configure TCP (L4) pass-through on the load balancer for the Endpoint Central ports (no
    client-SSL profile, no TLS listener), so the server itself receives the agent's certificate.
    """
    kind = _kind(case)
    if kind is None or kind[0] != "terminator":
        return
    named = name_product(case)
    yield finding(
        "MTLS026",
        f"A TLS terminator (load balancer or reverse proxy) answers for {_target(case)} with "
        "one fixed certificate of its own; the agent's certificate ends there.",
        evidence=kind[1] + (named[1] if named else []),
        remediation=LB_FIX.format(t=_target(case)),
        product=named[0] if named else None,
    )
