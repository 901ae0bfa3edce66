"""Whose certificate is this? The server chain against --ca, --pin, the baseline and the
signatures of interception products and load balancers (MTLS010-019, MTLS023).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from mtlsprobe.model import Case, Finding, Observation, Severity
from mtlsprobe.model.certs import leaf_shares_issuer_key
from mtlsprobe.rules.facts import (
    EXPECT_FIX,
    FRESH_LEAF,
    INSPECT_FIX,
    LB_FIX,
    Chain,
    _anchor,
    _baseline,
    _baseline_has_chains,
    _baseline_match,
    _chains,
    _confirmed,
    _dedupe,
    _ev,
    _identity_checked,
    _labels,
    _minted,
    _missing_issuer,
    _pin_match,
    _same_root_impostor,
    _signature_evidence,
    _target,
)
from mtlsprobe.rules.kind import kind_fix
from mtlsprobe.rules.products import name_product
from mtlsprobe.rules.registry import finding, rule
from mtlsprobe.rules.signatures import Match, match_chain, match_http


def _named(case: Case) -> str | None:
    named = name_product(case)
    return named[0] if named else None


def _load_balancer_seen(chain: Chain, seen_by: Sequence[Observation]) -> bool:
    """A load-balancer signature on the certificate or in the HTTP answers on it."""
    return bool(match_chain(chain, kinds=("load_balancer",))) or any(
        match_http(o.http, kinds=("load_balancer",)) for o in seen_by
    )


@rule("MTLS010", "Server chain does not build to the expected CA", Severity.BREAKS)
def chain_not_from_ca(case: Case) -> Iterator[Finding]:
    """The server certificate seen on this path does not build to any root given with --ca.
    Chains of a recognised load balancer (MTLS018) and incomplete chains that cannot be checked
    (MTLS023) are left to those rules.

    Breaks client-certificate authentication: something between the agent and the server
    re-signs the certificate. That is an SSL-intercepting proxy (Zscaler, Blue Coat, squid
    ssl-bump, an antivirus web shield) or a firewall's TLS inspection (FortiGate deep
    inspection, Palo Alto decryption, Check Point HTTPS inspection). It ends the agent's TLS
    session and opens its own, and it cannot present the agent's certificate because it does not
    hold the agent's private key.

    Exempt the Endpoint Central server name and ports (8383, 8027, 8443, 8031, and 8384 for a
    distribution server) from TLS inspection; when the evidence points to a load balancer, pass
    TCP through on it instead. If the server's certificate really changed, update --ca.
    """
    if not case.expect.roots:
        return
    for chain, seen_by in _chains(case):
        if _anchor(case, chain) is not None or _load_balancer_seen(chain, seen_by):
            continue  # a recognised load balancer is MTLS018's finding
        if _missing_issuer(chain) is not None and not _minted(seen_by[0], chain):
            continue  # cannot tell which root it builds to: MTLS023's finding
        top = chain[-1]
        via = f" (top of chain issued by {top.issuer})" if top.issuer != chain[0].issuer else ""
        yield finding(
            "MTLS010",
            f"The server certificate for {_target(case)} is issued by {chain[0].issuer}, which "
            f"does not build to any --ca root{via}: something between here and the server "
            "re-signs the certificate.",
            evidence=[
                _ev(seen_by[0], "server_chain[0].issuer", chain[0].issuer),
                _ev(seen_by[0], f"server_chain[{len(chain) - 1}].issuer", top.issuer),
                _ev(None, "expect.roots", "; ".join(r.subject for r in case.expect.roots)),
                _ev(None, "seen_by", _labels(seen_by)),
            ],
            remediation=kind_fix(case)
            + " If the server's certificate really changed, update --ca.",
            product=_named(case),
        )


@rule("MTLS011", "No certificate in the chain matches a pin", Severity.BREAKS)
def chain_not_pinned(case: Case) -> Iterator[Finding]:
    """A --pin was given, and no certificate in the chain seen on this path has a key that
    matches it: this is not the real server's certificate. A chain from your own CA is MTLS016's
    case.

    Breaks client-certificate authentication: a box on the path answers TLS with its own
    certificate (an intercepting proxy, a firewall with TLS inspection, or a load balancer that
    terminates TLS), so the agent's certificate ends there.

    Exempt the server name and port from TLS inspection, or pass TCP through on the load
    balancer, as the finding's remediation says. If the server's key was renewed, update --pin.
    """
    if not case.expect.pins:
        return
    for chain, seen_by in _chains(case):
        if _pin_match(case, chain) or _same_root_impostor(case, chain):
            continue
        yield finding(
            "MTLS011",
            f"No key in the server chain for {_target(case)} matches a --pin (leaf "
            f"{chain[0].subject}, issued by {chain[0].issuer}): this is not the real server's "
            "certificate.",
            evidence=[
                _ev(seen_by[0], "server_chain[0].spki_pin", chain[0].spki_pin),
                _ev(seen_by[0], "server_chain[0].issuer", chain[0].issuer),
                _ev(None, "expect.pins", ", ".join(case.expect.pins)),
            ],
            remediation=kind_fix(case)
            + " If the server's key was renewed, update --pin.",
            product=_named(case),
        )


@rule("MTLS012", "Chain differs from the baseline", Severity.BREAKS)
def chain_not_baseline(case: Case) -> Iterator[Finding]:
    """A baseline with the real server's certificates was given for this port and server name,
    and the certificate seen on this path is not one of them. A chain from your own CA is
    MTLS016's case.

    Breaks client-certificate authentication: a box on the path answers TLS with its own
    certificate (an intercepting proxy, a firewall with TLS inspection, or a load balancer that
    terminates TLS), so the agent's certificate ends there.

    Exempt the server name and port from TLS inspection, or pass TCP through on the load
    balancer, as the finding's remediation says. If the server's certificate was renewed since
    the baseline, take a new baseline on the server's LAN.
    """
    base = _baseline(case)
    if base is None or not _baseline_has_chains(case):
        return
    for chain, seen_by in _chains(case):
        if _baseline_match(case, chain) or _same_root_impostor(case, chain):
            continue
        yield finding(
            "MTLS012",
            f"The server chain for {_target(case)} (leaf {chain[0].subject}, issued by "
            f"{chain[0].issuer}) is not one the real server showed in the baseline.",
            evidence=[
                _ev(seen_by[0], "server_chain[0].sha256", chain[0].sha256),
                _ev(None, "baseline.chain_sha256[*][0]",
                    ", ".join(c[0] for c in base.chain_sha256 if c) or "-"),
                _ev(None, "seen_by", _labels(seen_by)),
            ],
            remediation=kind_fix(case)
            + " If the server's certificate was renewed, take a new baseline.",
            product=_named(case),
        )


def _unconfirmed_chains(case: Case) -> list[tuple[Chain, list[Observation]]]:
    return [(c, s) for c, s in _chains(case) if not _confirmed(case, c)]


def _signature_hits(case: Case, kind: str) -> list[tuple[Match, Observation]]:
    hits: list[tuple[Match, Observation]] = []
    for chain, seen_by in _unconfirmed_chains(case):
        hits.extend((m, seen_by[0]) for m in match_chain(chain, kinds=(kind,)))
    for obs in case.observations:
        hits.extend((m, obs) for m in match_http(obs.http, kinds=(kind,)))
    return _dedupe(hits)


@rule("MTLS013", "Interception product recognised", Severity.BREAKS)
def interception_product(case: Case) -> Iterator[Finding]:
    """A certificate not confirmed as the real server's, or an HTTP header in the answer,
    matches the signature of a known interception product (signatures.json): for example
    Zscaler, Fortinet FortiGate, Palo Alto Networks forward-trust, Blue Coat, Sophos,
    Forcepoint, Netskope, squid ssl-bump, mitmproxy, or the web shield of an antivirus such as
    Avast, Kaspersky or ESET.

    Breaks client-certificate authentication: the named product decrypts the agent's TLS and
    opens its own connection to the server, and it cannot present the agent's certificate there.

    Exempt the Endpoint Central server name and ports in that product: a decryption exclusion on
    Palo Alto, an SSL inspection bypass on Zscaler, an exempt entry in the FortiGate SSL/SSH
    inspection profile, a splice rule in squid, or an HTTPS-scanning exclusion in the antivirus
    on the agent host.
    """
    hits = _signature_hits(case, "interceptor")
    if not hits:
        return
    products = list(dict.fromkeys(m.signature.product for m, _ in hits))
    first = hits[0][0]
    yield finding(
        "MTLS013",
        f"{' / '.join(products)} intercepts TLS to {_target(case)} ({first.field} = "
        f"{first.value}); an intercepting proxy cannot present the agent's certificate.",
        evidence=_signature_evidence(hits),
        remediation=INSPECT_FIX.format(t=_target(case)),
        product=products[0],
    )


@rule("MTLS014", "Leaf shares its issuer's key (minted on the fly)", Severity.BREAKS)
def leaf_reuses_ca_key(case: Case) -> Iterator[Finding]:
    """The leaf certificate uses the same public key as the CA that issued it. Real certificate
    authorities never do this; mitmproxy and squid ssl-bump do when they mint a certificate on
    the fly for each server name.

    Breaks client-certificate authentication: this is proof of an intercepting proxy, which ends
    the agent's TLS session and cannot present the agent's certificate to the server.

    Exempt the server name and port from TLS inspection on that proxy (in squid: a splice rule),
    or route the agent around it.
    """
    for chain, seen_by in _unconfirmed_chains(case):
        if not leaf_shares_issuer_key((*chain, *case.expect.roots)):
            continue
        yield finding(
            "MTLS014",
            f"The leaf for {_target(case)} uses the same key as its issuing CA "
            f"({chain[0].issuer}): certificates minted on the fly, as mitmproxy and squid do.",
            evidence=[
                _ev(seen_by[0], "server_chain[0].spki_pin", chain[0].spki_pin),
                _ev(seen_by[0], "server_chain[0].issuer", chain[0].issuer),
            ],
            remediation=INSPECT_FIX.format(t=_target(case)),
        )


@rule("MTLS015", "Freshly minted server certificate", Severity.WARNING)
def fresh_leaf(case: Case) -> Iterator[Finding]:
    """A certificate that is not confirmed as the real server's became valid less than 72 hours
    before (or after) it was seen.

    A warning, not proof: interception products mint certificates on demand, so a brand-new
    certificate is a hint that one is on the path. A server whose certificate was just renewed
    looks the same.

    Compare with the certificate seen next to the server: re-run with --baseline or --pin.
    """
    for chain, seen_by in _unconfirmed_chains(case):
        obs = seen_by[0]
        age = obs.observed_at - chain[0].not_before
        if abs(age) > FRESH_LEAF:
            continue
        hours = age.total_seconds() / 3600
        yield finding(
            "MTLS015",
            f"The server certificate for {_target(case)} became valid {hours:.0f} h before it "
            "was seen: interception products mint certificates on demand (a hint, not proof).",
            evidence=[
                _ev(obs, "server_chain[0].not_before", chain[0].not_before.isoformat()),
                _ev(obs, "observed_at", obs.observed_at.isoformat()),
            ],
            remediation="Compare with the certificate seen next to the server (--baseline).",
        )


@rule("MTLS016", "Same-CA certificate that is not the real server's", Severity.BREAKS)
def same_root_terminator(case: Case) -> Iterator[Finding]:
    """The server certificate builds to your own CA (--ca), but the --pin or the baseline says
    it is not the real server's certificate.

    Breaks client-certificate authentication: a TLS terminator holding a certificate from your
    CA answers instead of the server, typically a load balancer or reverse proxy (F5 with a
    client-SSL profile, HAProxy or nginx terminating TLS, an AWS or Azure application load
    balancer). It can also be an inspection proxy whose CA sits under the corporate root. Either
    way the agent's certificate ends at that box.

    Configure TCP (L4) pass-through for the server's ports on the load balancer, or, for an
    inspection proxy, exempt them from inspection. If the server's certificate was renewed,
    refresh --pin or the baseline.
    """
    for chain, seen_by in _chains(case):
        if not _same_root_impostor(case, chain):
            continue
        anchor = _anchor(case, chain)
        assert anchor is not None
        yield finding(
            "MTLS016",
            f"The server chain for {_target(case)} builds to your CA ({anchor.subject}) but is "
            "not the real server's certificate (pin/baseline mismatch): a TLS terminator "
            "holding a certificate from your own CA answers instead of the server.",
            evidence=[
                _ev(seen_by[0], "server_chain[0].subject", chain[0].subject),
                _ev(seen_by[0], "server_chain[0].spki_pin", chain[0].spki_pin),
                _ev(None, "anchor", anchor.subject),
            ],
            remediation=LB_FIX.format(t=_target(case))
            + " If the server's certificate was renewed, refresh --pin/--baseline.",
        )


@rule("MTLS017", "Same-CA terminator cannot be ruled out", Severity.UNKNOWN)
def same_root_undecidable(case: Case) -> Iterator[Finding]:
    """The server certificate builds to your CA (--ca), but no --pin or baseline was given, so a
    box holding another certificate from the same CA cannot be told apart from the real server.

    Hides the answer: the verdict stays unknown. A load balancer or inspection proxy with a
    certificate from the corporate CA would look exactly like this.

    Add --pin with the real server's key pin, or take a baseline on the server's LAN (`mtlsprobe
    probe NAME:PORT --save-baseline FILE`) and probe with --baseline FILE.
    """
    if _identity_checked(case):
        return
    for chain, seen_by in _chains(case):
        anchor = _anchor(case, chain)
        if anchor is None:
            continue
        yield finding(
            "MTLS017",
            f"The server chain for {_target(case)} builds to your CA ({anchor.subject}), but "
            "without a pin or baseline a terminator holding a certificate from the same CA "
            "cannot be ruled out.",
            evidence=[
                _ev(seen_by[0], "server_chain[0].subject", chain[0].subject),
                _ev(seen_by[0], "server_chain[0].spki_pin", chain[0].spki_pin),
            ],
            remediation=EXPECT_FIX,
        )


@rule("MTLS018", "Load balancer recognised", Severity.BREAKS)
def load_balancer(case: Case) -> Iterator[Finding]:
    """A load balancer's signature was found on this path: on a certificate not confirmed as the
    real server's (F5 BIG-IP's default localhost.localdomain certificate, Caddy's local CA) or
    in the HTTP answer (cookies such as BIGipServer, AWSALB, AWSELB, NSC_ for Citrix NetScaler,
    ApplicationGatewayAffinity; a Server header such as awselb or BigIP).

    Breaks client-certificate authentication: the load balancer terminates TLS, and a signature
    seen inside the HTTP answer proves it decrypted the session. Its own "mutual TLS" modes
    (ALB, Application Gateway) hand the server at most a copy in an HTTP header, while Endpoint
    Central checks the certificate in the TLS handshake.

    Configure TCP (L4) pass-through for the Endpoint Central ports: an NLB TCP listener, an F5
    virtual server without a client-SSL profile, HAProxy mode tcp, nginx stream.
    """
    hits = _signature_hits(case, "load_balancer")
    if not hits:
        return
    products = list(dict.fromkeys(m.signature.product for m, _ in hits))
    first = hits[0][0]
    inside = " inside the TLS session, so an HTTP-aware box decrypted it" if (
        first.field.startswith("http.")
    ) else ""
    yield finding(
        "MTLS018",
        f"{' / '.join(products)} terminates TLS for {_target(case)} ({first.field} = "
        f"{first.value}{inside}).",
        evidence=_signature_evidence(hits),
        remediation=LB_FIX.format(t=_target(case)),
        product=products[0],
    )


@rule("MTLS019", "Server certificate not valid at the time seen", Severity.WARNING)
def server_cert_out_of_date(case: Case) -> Iterator[Finding]:
    """The server's leaf certificate was expired or not yet valid at the moment it was seen.

    A warning: it does not block client-certificate authentication by itself, but agents that
    validate the server (Endpoint Central's trusted communication) will refuse it. The measuring
    host's clock may also be wrong.

    Renew the server certificate, or fix the clock (NTP) of the host that took the measurement.
    """
    for chain, seen_by in _chains(case):
        obs = seen_by[0]
        leaf = chain[0]
        if leaf.not_before <= obs.observed_at <= leaf.not_after:
            continue
        state = "expired" if obs.observed_at > leaf.not_after else "not yet valid"
        yield finding(
            "MTLS019",
            f"The server certificate for {_target(case)} ({leaf.subject}) was {state} when "
            "seen: agents that validate the server (trusted communication) will refuse it.",
            evidence=[
                _ev(obs, "server_chain[0].not_before", leaf.not_before.isoformat()),
                _ev(obs, "server_chain[0].not_after", leaf.not_after.isoformat()),
                _ev(obs, "observed_at", obs.observed_at.isoformat()),
            ],
            remediation="Renew the server certificate (or fix the clock of the host that "
            "took this measurement).",
        )


@rule("MTLS023", "Server chain incomplete", Severity.UNKNOWN, also=(Severity.WARNING,))
def chain_incomplete(case: Case) -> Iterator[Finding]:
    """The server sent a chain that stops at a certificate whose issuer it did not include (an
    intermediate is missing), so the chain cannot be checked against --ca.

    Hides the answer: whether this is the real server stays unknown, unless --pin or the
    baseline identifies it, in which case this is only a warning. Agents and other clients that
    do not hold the intermediate will fail to validate the server.

    Configure the server to send its intermediate certificates (import a third-party certificate
    together with its intermediates). Meanwhile add the intermediate to --ca, or give --pin or
    --baseline.
    """
    if not case.expect.roots:
        return
    for chain, seen_by in _chains(case):
        missing = _missing_issuer(chain)
        if missing is None or _anchor(case, chain) is not None or _minted(seen_by[0], chain):
            continue
        confirmed = _confirmed(case, chain)
        unseen = any(c.known_by == "fingerprint" for c in chain)  # a Zeek log's chain
        yield finding(
            "MTLS023",
            (f"The server chain for {_target(case)} cannot be checked against --ca: no "
             f"x509.log row names {missing.removesuffix(' (known by its fingerprint only)')}"
             if unseen else
             f"The server for {_target(case)} sent an incomplete chain: {missing} is missing, "
             "so it cannot be checked against --ca")
            + (" (the pin/baseline still identifies the real server)." if confirmed else
               "; whether this is the real server stays open."),
            evidence=[
                _ev(seen_by[0], f"server_chain[{len(chain) - 1}].issuer", missing),
                _ev(None, "expect.roots", "; ".join(r.subject for r in case.expect.roots)),
            ],
            remediation=("Give the x509.log files of the same days (Zeek logs every "
                         "certificate of the chain unless log-hostcerts-only is loaded), or "
                         "give --baseline." if unseen else
                         "Configure the server to send its intermediate certificates; "
                         "meanwhile add the intermediate to --ca or give --pin/--baseline."),
            severity=Severity.WARNING if confirmed else Severity.UNKNOWN,
        )
