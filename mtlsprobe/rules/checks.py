"""The rule catalogue: each rule is a small pure function Case -> Findings.

Observations in a Case are the attempts of one target and route (or the connections of
a capture). Rules read facts only from the model; absent facts (Seen.UNKNOWN) are never
read as NO. Rule ids are public API: never renumber or reuse them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import timedelta

from mtlsprobe.certs import anchor_of, chain_pins, leaf_shares_issuer_key
from mtlsprobe.model import (
    BaselinePort,
    Case,
    CertInfo,
    CertKind,
    Direction,
    Evidence,
    Finding,
    Observation,
    Outcome,
    Seen,
    Severity,
    Stage,
)
from mtlsprobe.rules.engine import finding, rule
from mtlsprobe.rules.signatures import Match, match_chain, match_http

Chain = tuple[CertInfo, ...]

FRESH_LEAF = timedelta(hours=72)
NGINX_CERT_MARKERS = ("No required SSL certificate was sent", "The SSL certificate error")
CERT_HTTP_STATUSES = (495, 496)  # nginx: certificate error / certificate required
_PRE_TLS = (Stage.DNS, Stage.TCP, Stage.PROXY)

# --- small facts shared by several rules -------------------------------------------------


def _ev(obs: Observation | None, field: str, value: object) -> Evidence:
    return Evidence(observation=obs.label if obs else "", field=field, value=str(value))


def _target(case: Case) -> str:
    return str(case.target)


def _kind(obs: Observation) -> CertKind:
    return obs.attempt.client_cert if obs.attempt else CertKind.UNKNOWN


def _baseline(case: Case) -> BaselinePort | None:
    return case.expect.baseline_for(case.target.port)


def _chains(case: Case) -> list[tuple[Chain, list[Observation]]]:
    """Distinct server chains seen, in first-seen order, with the observations that saw them."""
    out: dict[tuple[str, ...], tuple[Chain, list[Observation]]] = {}
    for obs in case.observations:
        if obs.server_chain_seen is Seen.YES and obs.server_chain:
            key = tuple(c.sha256 for c in obs.server_chain)
            out.setdefault(key, (obs.server_chain, []))[1].append(obs)
    return list(out.values())


def _pin_match(case: Case, chain: Chain) -> bool:
    return bool(chain_pins(chain) & set(case.expect.pins))


def _baseline_has_chains(case: Case) -> bool:
    base = _baseline(case)
    return bool(base and (base.chain_sha256 or base.leaf_pins))


def _baseline_match(case: Case, chain: Chain) -> bool:
    base = _baseline(case)
    if base is None or not chain:
        return False
    leaves = {c[0] for c in base.chain_sha256 if c}
    return chain[0].sha256 in leaves or chain[0].spki_pin in base.leaf_pins


def _identity_checked(case: Case) -> bool:
    """Can we tell the real server's certificate from another one from the same CA?"""
    return bool(case.expect.pins) or _baseline_has_chains(case)


def _confirmed(case: Case, chain: Chain) -> bool:
    """The chain is the real server's, by --pin or by the baseline."""
    return (bool(case.expect.pins) and _pin_match(case, chain)) or (
        _baseline_has_chains(case) and _baseline_match(case, chain)
    )


def _anchor(case: Case, chain: Chain) -> CertInfo | None:
    return anchor_of(chain, case.expect.roots) if case.expect.roots else None


def _same_root_impostor(case: Case, chain: Chain) -> bool:
    """Builds to a --ca root, yet pin/baseline say it is not the real server (MTLS016)."""
    return (
        _anchor(case, chain) is not None
        and _identity_checked(case)
        and not _confirmed(case, chain)
    )


def _labels(observations: Sequence[Observation]) -> str:
    return ", ".join(o.label for o in observations)


_NOT_FATAL = ("close_notify", "user_canceled")


def _server_alerts(obs: Observation) -> list[str]:
    """Fatal alerts from the server side, as the observer judges them.

    RFC 8446 §6: in TLS 1.3 every alert but close_notify/user_canceled is fatal whatever
    its level byte. An undecryptable alert after the handshake may be a close_notify, so
    it is not counted.
    """
    out = []
    for a in obs.alerts:
        if a.sender is not Direction.S2C or a.description in _NOT_FATAL:
            continue
        if (
            a.level == "fatal"
            or (a.level == "warning" and obs.version == "TLSv1.3")
            or (a.level == "unknown" and not a.after_handshake)
        ):
            out.append(a.description)
    return out


def _rejection(obs: Observation) -> tuple[str, str] | None:
    """How the far end refused this connection, as (field, value); None if it did not."""
    alerts = _server_alerts(obs)
    if alerts:
        return "alerts", alerts[0]
    http = obs.http
    if http is not None and http.status in CERT_HTTP_STATUSES:
        return "http.status", str(http.status)
    if http is not None and http.status == 400:
        for marker in NGINX_CERT_MARKERS:
            if marker in http.body_excerpt:
                return "http.body_excerpt", f'HTTP 400 "{marker}"'
    if obs.outcome is Outcome.REJECTED_BY_SERVER:
        return "outcome", obs.outcome.value
    if obs.stage is Stage.FIRST_READ:
        # The observer's stage for "ended right after the handshake, before any data":
        # a TLS 1.3 server rejecting the certificate, when its alert got lost in an EOF/RST.
        return "stage", "closed right after the handshake (TLS 1.3 late rejection)"
    return None


def _accepted(obs: Observation) -> bool:
    """Handshake done, no refusal, and no HTTP answer that could be a certificate error."""
    if obs.outcome is not Outcome.ESTABLISHED or _rejection(obs) is not None:
        return False
    return not (obs.http is not None and obs.http.status == 400)


def _sent_cert(obs: Observation) -> bool:
    return obs.client_chain_seen is Seen.YES and bool(obs.client_chain)


def _sent_empty(obs: Observation) -> bool:
    return obs.client_chain_seen is Seen.YES and not obs.client_chain


def _no_server_hello(obs: Observation) -> bool:
    return obs.version is None and not obs.server_chain and obs.server_hello_ms is None


def _silenced(obs: Observation) -> bool:
    """Reset or silence right after our ClientHello."""
    return (
        obs.stage not in _PRE_TLS
        and obs.outcome in (Outcome.ABORTED, Outcome.NO_ANSWER)
        and _no_server_hello(obs)
    )


def _unreachable(obs: Observation) -> bool:
    return obs.stage in (Stage.DNS, Stage.TCP) or obs.route.connect_status in (502, 504)


def _connect_status(case: Case, obs: Observation) -> int | None:
    return obs.route.connect_status or case.route.connect_status


def _refused(status: int | None) -> bool:
    return status is not None and not 200 <= status < 300 and status not in (407, 502, 504)


def _authorities(obs: Observation) -> str:
    return "; ".join(obs.cert_request.authorities) or "(none listed)"


INSPECT_FIX = (
    "Exempt {t} from TLS inspection (decryption exclusion / Do-Not-Inspect / splice list) "
    "so the agent's TLS session reaches the server unchanged."
)
LB_FIX = (
    "Use TCP (L4) pass-through on the load balancer for {t} (no client-SSL profile / TLS "
    "listener), so the server itself receives the agent certificate."
)
EXPECT_FIX = (
    "Re-run with --pin (the real server's key pin) or --baseline (a report taken next to "
    "the server) so a same-CA terminator can be told apart."
)

# --- client-certificate request ----------------------------------------------------------


@rule("MTLS001", "Far end requests a client certificate", Severity.INFO)
def cert_requested(case: Case) -> Iterator[Finding]:
    asked = [o for o in case.observations if o.cert_request.seen is Seen.YES]
    if not asked:
        return
    first = asked[0]
    where = first.cert_request.where or "handshake"
    yield finding(
        "MTLS001",
        f"The far end requests a client certificate ({where}); acceptable CAs: "
        f"{_authorities(first)}.",
        evidence=[_ev(o, "cert_request.authorities", _authorities(o)) for o in asked],
    )


@rule("MTLS002", "No CertificateRequest seen", Severity.INFO)
def cert_not_requested(case: Case) -> Iterator[Finding]:
    seen = {o.cert_request.seen for o in case.observations}
    if Seen.YES in seen or Seen.NO not in seen:
        return
    yield finding(
        "MTLS002",
        "No handshake carried a CertificateRequest: expected while the server does not "
        "enforce client certificates yet; it says nothing about whether this path will carry "
        "them once enforcement starts.",
        evidence=[
            _ev(o, "cert_request.seen", "no")
            for o in case.observations
            if o.cert_request.seen is Seen.NO
        ],
    )


# --- whose certificate is this? ------------------------------------------------------------


def _load_balancer_seen(chain: Chain, seen_by: Sequence[Observation]) -> bool:
    """A load-balancer signature on the certificate or in the HTTP answers on it."""
    return bool(match_chain(chain, kinds=("load_balancer",))) or any(
        match_http(o.http, kinds=("load_balancer",)) for o in seen_by
    )


@rule("MTLS010", "Server chain does not build to the expected CA", Severity.BREAKS)
def chain_not_from_ca(case: Case) -> Iterator[Finding]:
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
            remediation=INSPECT_FIX.format(t=_target(case))
            + " If the server's certificate really changed, update --ca.",
        )


@rule("MTLS011", "No certificate in the chain matches a pin", Severity.BREAKS)
def chain_not_pinned(case: Case) -> Iterator[Finding]:
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
            remediation=INSPECT_FIX.format(t=_target(case))
            + " If the server's key was renewed, update --pin.",
        )


@rule("MTLS012", "Chain differs from the baseline", Severity.BREAKS)
def chain_not_baseline(case: Case) -> Iterator[Finding]:
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
            remediation=INSPECT_FIX.format(t=_target(case))
            + " If the server's certificate was renewed, take a new baseline.",
        )


def _missing_issuer(chain: Chain) -> str | None:
    """The issuer name the chain stops at when the peer left it out (incomplete chain)."""
    top = chain[-1]
    if top.self_issued:
        return None
    if any(c.subject == top.issuer for c in chain):
        return None
    return top.issuer


def _minted(obs: Observation, chain: Chain) -> bool:
    """Signs of a certificate minted on the fly by an interception product."""
    return abs(obs.observed_at - chain[0].not_before) <= FRESH_LEAF or leaf_shares_issuer_key(
        chain
    )


def _unconfirmed_chains(case: Case) -> list[tuple[Chain, list[Observation]]]:
    return [(c, s) for c, s in _chains(case) if not _confirmed(case, c)]


def _dedupe(matches: list[tuple[Match, Observation]]) -> list[tuple[Match, Observation]]:
    seen: set[str] = set()
    out = []
    for m, obs in matches:
        if m.signature.id not in seen:
            seen.add(m.signature.id)
            out.append((m, obs))
    return out


def _signature_hits(case: Case, kind: str) -> list[tuple[Match, Observation]]:
    hits: list[tuple[Match, Observation]] = []
    for chain, seen_by in _unconfirmed_chains(case):
        hits.extend((m, seen_by[0]) for m in match_chain(chain, kinds=(kind,)))
    for obs in case.observations:
        hits.extend((m, obs) for m in match_http(obs.http, kinds=(kind,)))
    return _dedupe(hits)


def _signature_evidence(hits: list[tuple[Match, Observation]]) -> list[Evidence]:
    out = []
    for m, obs in hits:
        out.append(_ev(obs, m.field, m.value))
        out.append(_ev(None, f"signature.{m.signature.id}",
                       f"{m.signature.source} ({m.signature.confidence})"))
    return out


@rule("MTLS013", "Interception product recognised", Severity.BREAKS)
def interception_product(case: Case) -> Iterator[Finding]:
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


@rule("MTLS014", "Leaf shares its issuer's key (mitmproxy-style)", Severity.BREAKS)
def leaf_reuses_ca_key(case: Case) -> Iterator[Finding]:
    for chain, seen_by in _unconfirmed_chains(case):
        if not leaf_shares_issuer_key((*chain, *case.expect.roots)):
            continue
        yield finding(
            "MTLS014",
            f"The leaf for {_target(case)} uses the same key as its issuing CA "
            f"({chain[0].issuer}): certificates minted on the fly, as mitmproxy does.",
            evidence=[
                _ev(seen_by[0], "server_chain[0].spki_pin", chain[0].spki_pin),
                _ev(seen_by[0], "server_chain[0].issuer", chain[0].issuer),
            ],
            remediation=INSPECT_FIX.format(t=_target(case)),
            product="mitmproxy",
        )


@rule("MTLS015", "Freshly minted server certificate", Severity.WARNING)
def fresh_leaf(case: Case) -> Iterator[Finding]:
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


# --- CertificateRequest vs the baseline -------------------------------------------------


@rule("MTLS019", "Server certificate not valid at the time seen", Severity.WARNING)
def server_cert_out_of_date(case: Case) -> Iterator[Finding]:
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


@rule("MTLS020", "CertificateRequest missing on this path", Severity.BREAKS)
def cert_request_vanished(case: Case) -> Iterator[Finding]:
    base = _baseline(case)
    if base is None or base.cert_request is not Seen.YES:
        return
    missing = [o for o in case.observations if o.cert_request.seen is Seen.NO]
    if not missing:
        return
    yield finding(
        "MTLS020",
        f"The real server asks for a client certificate on port {case.target.port} "
        f"(baseline), but on this path no CertificateRequest arrived ({_labels(missing)}): "
        "something else completes the handshake.",
        evidence=[_ev(None, "baseline.cert_request", "yes")]
        + [_ev(o, "cert_request.seen", "no") for o in missing],
        remediation=INSPECT_FIX.format(t=_target(case)) + " Or: " + LB_FIX.format(
            t=_target(case)),
    )


@rule("MTLS021", "CertificateRequest CA names differ from the baseline", Severity.BREAKS)
def cert_request_cas_differ(case: Case) -> Iterator[Finding]:
    base = _baseline(case)
    if base is None or base.cert_request is not Seen.YES:
        return
    want = set(base.cert_request_authorities)
    odd = [
        o for o in case.observations
        if o.cert_request.seen is Seen.YES and set(o.cert_request.authorities) != want
    ]
    if not odd:
        return
    yield finding(
        "MTLS021",
        f"The CertificateRequest on this path lists {_authorities(odd[0])}, but the real "
        f"server lists {'; '.join(base.cert_request_authorities) or '(none)'}: another TLS "
        "endpoint builds its own request.",
        evidence=[_ev(None, "baseline.cert_request_authorities",
                      "; ".join(base.cert_request_authorities) or "(none)")]
        + [_ev(o, "cert_request.authorities", _authorities(o)) for o in odd],
        remediation=LB_FIX.format(t=_target(case)),
    )


@rule("MTLS022", "Agent certificate issuer not among the requested CAs", Severity.WARNING)
def agent_issuer_not_requested(case: Case) -> Iterator[Finding]:
    agent = case.expect.agent_cert
    if agent is None:
        return
    # The issuer or any CA of the supplied agent chain may be the one the server names.
    names = {agent.issuer} | {c.subject for c in case.expect.agent_chain} | {
        c.issuer for c in case.expect.agent_chain
    }
    for obs in case.observations:
        listed = obs.cert_request.authorities
        if obs.cert_request.seen is Seen.YES and listed and not names & set(listed):
            yield finding(
                "MTLS022",
                f"The agent certificate is issued by {agent.issuer}, which is not among the "
                f"CAs the far end asks for ({'; '.join(listed)}); the TLS client may send no "
                "certificate.",
                evidence=[
                    _ev(None, "expect.agent_cert.issuer", agent.issuer),
                    _ev(obs, "cert_request.authorities", "; ".join(listed)),
                ],
                remediation="Use an agent certificate issued by one of the requested CAs, or "
                "add its CA to the server's client-CA list.",
            )
            return


# --- what the far end does with client certificates ---------------------------------------


@rule("MTLS023", "Server chain incomplete", Severity.UNKNOWN)
def chain_incomplete(case: Case) -> Iterator[Finding]:
    if not case.expect.roots:
        return
    for chain, seen_by in _chains(case):
        missing = _missing_issuer(chain)
        if missing is None or _anchor(case, chain) is not None or _minted(seen_by[0], chain):
            continue
        confirmed = _confirmed(case, chain)
        yield finding(
            "MTLS023",
            f"The server for {_target(case)} sent an incomplete chain: {missing} is missing, "
            "so it cannot be checked against --ca"
            + (" (the pin/baseline still identifies the real server)." if confirmed else
               "; whether this is the real server stays open."),
            evidence=[
                _ev(seen_by[0], f"server_chain[{len(chain) - 1}].issuer", missing),
                _ev(None, "expect.roots", "; ".join(r.subject for r in case.expect.roots)),
            ],
            remediation="Configure the server to send its intermediate certificates; "
            "meanwhile add the intermediate to --ca or give --pin/--baseline.",
            severity=Severity.WARNING if confirmed else Severity.UNKNOWN,
        )


def _demands_cert_over_http(obs: Observation) -> str | None:
    """The nginx-style page saying no client certificate arrived, if this is one."""
    http = obs.http
    if http is None or http.status not in (400, 496):
        return None
    if http.status == 496 or NGINX_CERT_MARKERS[0] in http.body_excerpt:
        return f"HTTP {http.status} {NGINX_CERT_MARKERS[0]!r}"
    return None


@rule("MTLS024", "Server behind the path wants a certificate the path never asked for",
      Severity.BREAKS)
def cert_demanded_behind_path(case: Case) -> Iterator[Finding]:
    for obs in case.observations:
        page = _demands_cert_over_http(obs)
        if page is None or obs.cert_request.seen is not Seen.NO:
            continue
        if _kind(obs) not in (CertKind.AGENT, CertKind.UNTRUSTED):
            continue  # only meaningful when we had a certificate ready to send
        yield finding(
            "MTLS024",
            f"The server behind {_target(case)} answered {page}, yet no CertificateRequest "
            "reached us although we had a certificate ready: a device on the path terminates "
            "TLS and opens its own session to the server.",
            evidence=[
                _ev(obs, "http.status", obs.http.status if obs.http else "-"),
                _ev(obs, "cert_request.seen", "no"),
                _ev(obs, "attempt.client_cert", _kind(obs).value),
            ],
            remediation=LB_FIX.format(t=_target(case))
            + " If it is an inspecting proxy, exempt the target from TLS inspection instead.",
        )
        return


def _attempts(case: Case, kind: CertKind) -> list[Observation]:
    return [o for o in case.observations if _kind(o) is kind]


@rule("MTLS030", "Untrusted certificate accepted where the server rejects it", Severity.BREAKS)
def untrusted_accepted_vs_baseline(case: Case) -> Iterator[Finding]:
    base = _baseline(case)
    if base is None or base.rejects_untrusted_cert is not Seen.YES:
        return
    for obs in _attempts(case, CertKind.UNTRUSTED):
        if not _accepted(obs):
            continue
        how = ("accepted a throwaway certificate from an unknown CA" if _sent_cert(obs)
               else "completed the handshake without asking for the certificate")
        yield finding(
            "MTLS030",
            f"The far end {how}, but the real server rejects untrusted certificates "
            "(baseline): something other than the server completed the handshake.",
            evidence=[
                _ev(None, "baseline.rejects_untrusted_cert", "yes"),
                _ev(obs, "outcome", obs.outcome.value),
                _ev(obs, "http.status", obs.http.status if obs.http else "-"),
            ],
            remediation=LB_FIX.format(t=_target(case)),
        )
        return


@rule("MTLS031", "Untrusted certificate accepted (no enforcement)", Severity.INFO)
def untrusted_accepted(case: Case) -> Iterator[Finding]:
    base = _baseline(case)
    if base is not None and base.rejects_untrusted_cert is Seen.YES:
        return
    for obs in _attempts(case, CertKind.UNTRUSTED):
        if _sent_cert(obs) and _accepted(obs):  # never asked for: nothing was accepted
            yield finding(
                "MTLS031",
                "The far end accepted a throwaway certificate from an unknown CA: it does not "
                "enforce client certificates (yet).",
                evidence=[_ev(obs, "outcome", obs.outcome.value),
                          _ev(obs, "client_chain_seen", obs.client_chain_seen.value)],
            )
            return


@rule("MTLS032", "Untrusted certificate rejected", Severity.INFO)
def untrusted_rejected(case: Case) -> Iterator[Finding]:
    for obs in _attempts(case, CertKind.UNTRUSTED):
        how = _rejection(obs)
        if how is None:
            continue
        yield finding(
            "MTLS032",
            f"The far end rejected a throwaway certificate from an unknown CA ({how[1]}): it "
            "validates client certificates.",
            evidence=[_ev(obs, how[0], how[1])],
        )
        return


@rule("MTLS033", "Agent certificate rejected", Severity.REJECTS)
def agent_rejected(case: Case) -> Iterator[Finding]:
    for obs in _attempts(case, CertKind.AGENT):
        how = _rejection(obs)
        if how is None or _sent_empty(obs) or _no_server_hello(obs):
            continue
        if obs.client_chain_seen is Seen.NO:
            continue  # never asked, never sent: not a judgement on it (see MTLS024)
        note = "" if _sent_cert(obs) else " (whether the certificate was sent is unknown)"
        yield finding(
            "MTLS033",
            f"The far end rejected the agent certificate ({how[1]}){note}.",
            evidence=[
                _ev(obs, how[0], how[1]),
                _ev(obs, "client_chain[0].subject",
                    obs.client_chain[0].subject if obs.client_chain else "-"),
                _ev(obs, "cert_request.authorities", _authorities(obs)),
            ],
            remediation="Check that the agent certificate is issued by a CA the server trusts, "
            "is valid now and has clientAuth; re-issue it from the server's CA if not.",
        )
        return


@rule("MTLS034", "Agent sent no certificate", Severity.REJECTS)
def agent_sent_empty(case: Case) -> Iterator[Finding]:
    for obs in _attempts(case, CertKind.AGENT):
        if not _sent_empty(obs):
            continue
        yield finding(
            "MTLS034",
            "The TLS client sent an empty Certificate with the agent credentials: the agent "
            f"certificate does not match the requested CAs ({_authorities(obs)}) or could not "
            "be used.",
            evidence=[
                _ev(obs, "client_chain_seen", "yes (empty)"),
                _ev(obs, "cert_request.authorities", _authorities(obs)),
            ],
            remediation="Use an agent certificate (with its chain) issued by one of the "
            "requested CAs, with a matching private key and clientAuth usage.",
        )
        return


@rule("MTLS035", "Agent certificate accepted", Severity.INFO)
def agent_accepted(case: Case) -> Iterator[Finding]:
    for obs in _attempts(case, CertKind.AGENT):
        if _sent_cert(obs) and _accepted(obs):
            yield finding(
                "MTLS035",
                "The far end accepted the agent certificate.",
                evidence=[_ev(obs, "client_chain[0].subject", obs.client_chain[0].subject),
                          _ev(obs, "outcome", obs.outcome.value)],
            )
            return


# --- consistency across handshakes --------------------------------------------------------


@rule("MTLS040", "Server chain differs between handshakes", Severity.UNKNOWN)
def chain_varies(case: Case) -> Iterator[Finding]:
    chains = _chains(case)
    leaves = {c[0].sha256 for c, _ in chains}
    if len(leaves) < 2 or all(_confirmed(case, c) for c, _ in chains):
        return
    severity = Severity.WARNING if case.expect.any else Severity.UNKNOWN
    yield finding(
        "MTLS040",
        f"{_target(case)} presented {len(leaves)} different server certificates across "
        "handshakes: a pool of terminators or selective interception.",
        evidence=[_ev(o, "server_chain[0].sha256", c[0].sha256) for c, seen in chains
                  for o in seen],
        remediation=EXPECT_FIX if severity is Severity.UNKNOWN else
        "Check each chain's finding; exempt the target from inspection on every path.",
        severity=severity,
    )


@rule("MTLS041", "Behaviour changes between repeats", Severity.WARNING)
def behaviour_varies(case: Case) -> Iterator[Finding]:
    evidence: list[Evidence] = []
    reqs = [o for o in case.observations if o.cert_request.seen in (Seen.YES, Seen.NO)]
    if len({o.cert_request.seen for o in reqs}) > 1:
        evidence += [_ev(o, "cert_request.seen", o.cert_request.seen.value) for o in reqs]
    groups: dict[tuple[CertKind, str | None], list[Observation]] = {}
    for o in case.observations:
        if o.attempt is not None:
            key = (o.attempt.client_cert, o.attempt.max_version)
            groups.setdefault(key, []).append(o)
    for same in groups.values():
        if len({o.outcome for o in same}) > 1:
            evidence += [_ev(o, "outcome", o.outcome.value) for o in same]
    if evidence:
        yield finding(
            "MTLS041",
            f"Identical attempts to {_target(case)} were treated differently (CertificateRequest "
            "or outcome changed): selective or cached inspection (e.g. a decryption exclusion "
            "cache) or a pool of differently configured terminators.",
            evidence=evidence,
            remediation="Make the exemption explicit for " + _target(case)
            + " rather than relying on a learned exclusion cache.",
        )


@rule("MTLS042", "TLS version or cipher differs from the baseline", Severity.WARNING)
def parameters_differ(case: Case) -> Iterator[Finding]:
    base = _baseline(case)
    if base is None:
        return
    evidence: list[Evidence] = []
    for o in case.observations:
        if o.version and base.versions and o.version not in base.versions:
            evidence.append(_ev(o, "version", o.version))
        if o.cipher_suite and base.cipher_suites and o.cipher_suite not in base.cipher_suites:
            evidence.append(_ev(o, "cipher_suite", o.cipher_suite))
    if evidence:
        evidence.append(_ev(None, "baseline.versions", ", ".join(base.versions) or "-"))
        evidence.append(_ev(None, "baseline.cipher_suites", ", ".join(base.cipher_suites) or "-"))
        yield finding(
            "MTLS042",
            "The negotiated TLS version or cipher differs from what the real server chose "
            "(baseline): another TLS stack may be answering.",
            evidence=evidence,
            remediation="Compare the chains; if they match, check for a TLS-terminating device "
            "holding the server's certificate.",
        )


@rule("MTLS050", "Client certificate requested after the handshake", Severity.WARNING)
def late_cert_request(case: Case) -> Iterator[Finding]:
    late = [
        o for o in case.observations
        if o.cert_request.seen is Seen.YES
        and o.cert_request.where in ("renegotiation", "post_handshake")
    ]
    if late:
        yield finding(
            "MTLS050",
            f"The client certificate is requested only via {late[0].cert_request.where} "
            "(TLS 1.2 renegotiation / TLS 1.3 post-handshake auth): fragile, and impossible "
            "over HTTP/2 (RFC 8740).",
            evidence=[_ev(o, "cert_request.where", o.cert_request.where) for o in late],
            remediation="Configure the server to request the certificate in the initial "
            "handshake, or keep the agent on HTTP/1.1.",
        )


# --- the path carries nothing ------------------------------------------------------------


# --- MTLS05x: where on the path (hop trace and passive TCP/IP evidence) ------------------

_INITIAL_TTLS = (32, 64, 128, 255)


def _hops_back(ttl: int) -> tuple[int, int]:
    """(assumed initial TTL, routers between the sender and us) for a received TTL."""
    initial = next(i for i in _INITIAL_TTLS if i >= ttl)
    return initial, initial - ttl


def _sender(ttl: int) -> str:
    initial, back = _hops_back(ttl)
    return f"TTL {ttl} (initial {initial}, {back} hop{'s' if back != 1 else ''} back)"


def _middlebox(case: Case, answers: tuple[str, ...]) -> Iterator[tuple[str, str, str]]:
    """(rule-ready 'hop N (addr)', what it did, evidence list) when the trace located one."""
    t = case.hops
    if t is None or t.middlebox_hop is None or (t.middlebox_answer or "tls") not in answers:
        return
    where = f"hop {t.middlebox_hop}" + (f" ({t.middlebox_addr})" if t.middlebox_addr else "")
    what = {"tcp": "terminates TCP and answers the ClientHello",
            "rst": "resets the connection after the ClientHello",
            "fin": "closes the connection after the ClientHello"}.get(
        t.middlebox_answer or "", "answers the ClientHello")
    yield where, what, f"{t.ip_distance or t.tcp_distance}"


def _hop_evidence(case: Case) -> list[Evidence]:
    t = case.hops
    assert t is not None
    return [
        Evidence(observation="", field="hops.middlebox_hop", value=str(t.middlebox_hop)),
        Evidence(observation="", field="hops.middlebox_addr", value=t.middlebox_addr or "?"),
        Evidence(observation="", field="hops.middlebox_reason", value=t.middlebox_reason or "-"),
        Evidence(observation="", field="hops.distances",
                 value=f"ip {t.ip_distance}, tcp {t.tcp_distance}, tls {t.tls_distance}"),
    ]


@rule("MTLS051", "Early hop answers the ClientHello", Severity.WARNING)
def early_hop_answers(case: Case) -> Iterator[Finding]:
    for where, what, server in _middlebox(case, ("tcp", "tls", "data")):
        yield finding(
            "MTLS051",
            f"Middlebox at {where}: it {what} instead of {_target(case)}, which is {server} "
            "hops away.",
            evidence=_hop_evidence(case),
            remediation=f"Give the network team {where}: exempt {_target(case)} from TLS "
            "interception there, or route around it. Whether it breaks client certificates "
            "is what the chain findings say.",
        )


def _server_ttls(obs: Observation) -> tuple[int | None, tuple[int, ...]]:
    tcp = obs.tcp
    if tcp is None:
        return None, ()
    return tcp.synack_ttl, tcp.server_ttls


@rule("MTLS052", "TTL discontinuity: TLS answered by a different machine than TCP",
      Severity.WARNING)
def ttl_discontinuity(case: Case) -> Iterator[Finding]:
    odd: list[Evidence] = []
    for o in case.observations:
        synack, later = _server_ttls(o)
        if synack is None or not later:
            continue
        differ = [ttl for ttl in later if _hops_back(ttl) != _hops_back(synack)]
        if differ:
            odd.append(_ev(o, "tcp.synack_ttl", _sender(synack)))
            odd.extend(_ev(o, "tcp.server_ttls", _sender(ttl)) for ttl in differ)
    t = case.hops
    if t is not None:
        synack = next((p for p in t.probes if p.phase == "tcp" and p.answer == "synack"
                       and p.ttl == t.tcp_distance and p.reply_ttl), None)
        hello = next((p for p in t.probes if p.phase == "tls" and p.ttl == t.tls_distance
                      and p.answer in ("tls", "rst", "fin") and p.reply_ttl), None)
        if synack and hello and _hops_back(synack.reply_ttl) != _hops_back(hello.reply_ttl):
            odd.append(Evidence(observation="", field="hops.synack_reply_ttl",
                                value=_sender(synack.reply_ttl or 0)))
            odd.append(Evidence(observation="", field=f"hops.{hello.answer}_reply_ttl",
                                value=_sender(hello.reply_ttl or 0)))
    if odd:
        yield finding(
            "MTLS052",
            f"The SYN-ACK from {_target(case)} and the later TLS segments arrive with TTLs of "
            "different senders: one machine answered TCP and another one answers TLS.",
            evidence=odd,
            remediation="Look for a SYN proxy, load balancer or inspecting firewall in front "
            "of the server (the TTLs say how many hops back each sender is).",
        )


@rule("MTLS053", "Injected RST", Severity.WARNING)
def injected_rst(case: Case) -> Iterator[Finding]:
    for o in case.observations:
        tcp = o.tcp
        if tcp is None or tuple(tcp.rst_from) != (Direction.S2C,) or not tcp.rst_ttls:
            continue  # only when every RST came from the server's side
        known = [x for x in (tcp.synack_ttl, *tcp.server_ttls) if x is not None]
        if not known:
            continue
        senders = {_hops_back(x) for x in known}
        foreign = [x for x in tcp.rst_ttls if _hops_back(x) not in senders]
        if not foreign:
            continue
        yield finding(
            "MTLS053",
            f"A reset on {o.label} carries {_sender(foreign[0])}, unlike every other segment "
            f"from {_target(case)} ({', '.join(_sender(x) for x in sorted(set(known)))}): "
            "something on the path injected it.",
            evidence=[_ev(o, "tcp.rst_ttls", _sender(x)) for x in foreign]
            + [_ev(o, "tcp.synack_ttl", tcp.synack_ttl)],
            remediation="Find the device that resets TLS to this server (probe --trace names "
            "its hop) and exempt the server there.",
        )
        return


@rule("MTLS054", "TCP/IP headers rewritten on the path", Severity.WARNING)
def headers_rewritten(case: Case) -> Iterator[Finding]:
    t = case.hops
    if t is None:
        return
    first: dict[str, int] = {}
    evidence: list[Evidence] = []
    for p in sorted(t.probes, key=lambda p: (p.ttl, p.phase)):
        for change in p.rewritten:
            if change.startswith(("src ", "ports ")):
                continue  # NAT: everywhere, and harmless to TLS
            what = change.split(" ", 1)[0] if "->" in change else change
            if what in first:
                continue
            first[what] = p.ttl
            evidence.append(Evidence(observation="", field=f"hops[{p.phase} ttl {p.ttl}]",
                                     value=f"{change} (quoted by {p.addr or '?'})"))
    if evidence:
        hop = min(first.values())
        yield finding(
            "MTLS054",
            f"The probe's packets arrive changed at hop {hop} ({', '.join(sorted(first))}): "
            f"a device before hop {hop} rewrites them.",
            evidence=evidence,
            remediation="MSS clamping is often benign; other rewriting (options stripped, "
            "payload or addresses changed) marks a middlebox: ask its owner what it does.",
        )


@rule("MTLS055", "Early hop resets the ClientHello", Severity.BLOCKS)
def early_hop_resets(case: Case) -> Iterator[Finding]:
    for where, what, server in _middlebox(case, ("rst", "fin")):
        yield finding(
            "MTLS055",
            f"Middlebox at {where}: it {what} to {_target(case)}, which is {server} hops "
            "away.",
            evidence=_hop_evidence(case),
            remediation=f"Give the network team {where}: allow TLS to {_target(case)} "
            "through that firewall/IPS.",
        )

def _all(case: Case, pred: Callable[[Observation], bool]) -> bool:
    return bool(case.observations) and all(pred(o) for o in case.observations)


def _proxy_auth(case: Case) -> list[Observation]:
    return [o for o in case.observations if _connect_status(case, o) == 407]


def _proxy_refused(case: Case) -> list[Observation]:
    return [o for o in case.observations if _refused(_connect_status(case, o))]


def _not_tls(case: Case) -> bool:
    tls = [o for o in case.observations if o.stage not in _PRE_TLS]
    return bool(tls) and all(o.outcome is Outcome.NOT_TLS for o in tls)


@rule("MTLS060", "Proxy requires authentication", Severity.BLOCKS)
def proxy_auth_required(case: Case) -> Iterator[Finding]:
    hits = _proxy_auth(case)
    if hits:
        schemes = hits[0].route.proxy_auth_schemes or case.route.proxy_auth_schemes
        yield finding(
            "MTLS060",
            f"The proxy {hits[0].route.proxy or ''} answered CONNECT {_target(case)} with 407 "
            f"(schemes: {', '.join(schemes) or 'none given'}).",
            evidence=[_ev(hits[0], "route.connect_status", 407),
                      _ev(hits[0], "route.proxy_auth_schemes", ", ".join(schemes) or "-")],
            remediation=f"Give the proxy credentials or exempt the agent ({_target(case)}) "
            "from proxy authentication.",
        )


@rule("MTLS061", "Proxy refused CONNECT", Severity.BLOCKS)
def proxy_refused(case: Case) -> Iterator[Finding]:
    hits = _proxy_refused(case)
    if hits:
        o = hits[0]
        status = _connect_status(case, o)
        yield finding(
            "MTLS061",
            f"The proxy refused CONNECT {_target(case)} with {status} "
            f"{o.route.connect_reason or ''}".rstrip() + ".",
            evidence=[_ev(h, "route.connect_status", _connect_status(case, h)) for h in hits],
            remediation=f"Allow CONNECT to {_target(case)} on the proxy.",
        )


@rule("MTLS062", "Target unreachable", Severity.BLOCKS)
def unreachable(case: Case) -> Iterator[Finding]:
    if _all(case, _unreachable):
        yield finding(
            "MTLS062",
            f"{_target(case)} could not be reached on any attempt (DNS/TCP failure or proxy "
            "gateway error).",
            evidence=[
                _ev(o, "stage", o.stage.value) if o.stage in (Stage.DNS, Stage.TCP)
                else _ev(o, "route.connect_status", o.route.connect_status)
                for o in case.observations
            ] + [_ev(o, "local_error", o.local_error) for o in case.observations[:1]
                 if o.local_error],
            remediation=f"Check DNS, routing and firewall rules for {_target(case)} from "
            "this host.",
        )


@rule("MTLS063", "Reset or silence after ClientHello", Severity.BLOCKS)
def hello_blocked(case: Case) -> Iterator[Finding]:
    if _all(case, _silenced):
        yield finding(
            "MTLS063",
            f"Every TLS attempt to {_target(case)} was reset or went unanswered right after "
            "the ClientHello: a firewall blocks it (often by SNI).",
            evidence=[_ev(o, "outcome", o.outcome.value) for o in case.observations]
            + [_ev(o, "sni", o.sni) for o in case.observations[:1] if o.sni],
            remediation=f"Allow TLS to {_target(case)} (SNI {case.observations[0].sni or '-'})"
            " on the firewall.",
        )


@rule("MTLS064", "Some attempts reset after ClientHello", Severity.WARNING)
def hello_partly_blocked(case: Case) -> Iterator[Finding]:
    tls = [o for o in case.observations if o.stage not in _PRE_TLS]
    cut = [o for o in tls if _silenced(o)]
    if cut and len(cut) < len(tls):
        yield finding(
            "MTLS064",
            f"Some attempts were reset right after the ClientHello ({_labels(cut)}) while "
            "others got an answer: a filter treats some TLS versions or offers differently.",
            evidence=[
                _ev(o, "outcome",
                    f"{o.outcome.value} (max {o.attempt.max_version if o.attempt else '-'})")
                for o in cut
            ],
            remediation="Allow every TLS version the agent may offer to " + _target(case) + ".",
        )


@rule("MTLS065", "HTTP proxy visible in the response", Severity.WARNING)
def proxy_headers(case: Case) -> Iterator[Finding]:
    hits: list[tuple[Match, Observation]] = []
    for obs in case.observations:
        hits.extend((m, obs) for m in match_http(obs.http, kinds=("proxy",)))
    hits = _dedupe(hits)
    if hits:
        first = hits[0][0]
        yield finding(
            "MTLS065",
            f"The HTTP response shows a proxy ({first.field}: {first.value}): something "
            "HTTP-aware handled the request inside TLS.",
            evidence=_signature_evidence(hits),
            remediation="Confirm the server itself adds these headers; otherwise exempt "
            + _target(case) + " from inspection.",
        )


@rule("MTLS066", "Far end does not speak TLS", Severity.BLOCKS)
def not_tls(case: Case) -> Iterator[Finding]:
    if _not_tls(case):
        yield finding(
            "MTLS066",
            f"{_target(case)} answered with something that is not TLS (block page, captive "
            "portal or wrong port).",
            evidence=[_ev(o, "outcome", o.outcome.value) for o in case.observations
                      if o.outcome is Outcome.NOT_TLS],
            remediation=f"Allow TLS to {_target(case)} and check the port.",
        )


# --- captures: connections of a client we did not drive ------------------------------------

CERT_ALERTS = frozenset({
    "no_certificate", "bad_certificate", "unsupported_certificate", "certificate_revoked",
    "certificate_expired", "certificate_unknown", "unknown_ca", "access_denied",
    "certificate_required",
})


def _captured(case: Case) -> list[Observation]:
    """Observations of captured traffic: no attempt of ours, so the client's choices."""
    return [o for o in case.observations if o.attempt is None]


def _connections(observations: Iterable[Observation]) -> int:
    """Connections behind ``observations`` (analyze keeps one per behaviour, with repeats)."""
    return sum(o.repeats for o in observations)


def _client_closed(obs: Observation) -> bool:
    """The client ended the connection itself (its close_notify came first)."""
    after = [a for a in obs.alerts if a.after_handshake]
    return bool(after) and after[0].sender is Direction.C2S and (
        after[0].description == "close_notify"
    )


def _cert_refusal(obs: Observation) -> tuple[str, str] | None:
    """How the far end refused the client's certificate (or its absence), or None.

    Decisive: a certificate-related fatal alert from the server, or any server refusal of a
    connection whose client answered a CertificateRequest (empty or not).
    """
    if _no_server_hello(obs):
        return None
    for description in _server_alerts(obs):
        if description in CERT_ALERTS:
            return "alerts", description
    how = _rejection(obs)
    if how is None or (how[0] == "stage" and _client_closed(obs)):
        return None
    if obs.cert_request.seen is Seen.YES and obs.client_chain_seen is Seen.YES:
        return how
    return None


def _captured_accepted(obs: Observation) -> bool:
    return _sent_cert(obs) and (
        _accepted(obs) or (obs.outcome is Outcome.ESTABLISHED and _client_closed(obs))
    )


def _maybe_accepted(obs: Observation) -> bool:
    """Completed with its client certificate hidden (TLS 1.3 without keys): may carry one."""
    return (
        obs.client_chain_seen is Seen.UNKNOWN
        and (obs.outcome is Outcome.ESTABLISHED or obs.stage is Stage.ESTABLISHED)
        and _cert_refusal(obs) is None
    )


@rule("MTLS070", "Client certificate rejected in the capture", Severity.REJECTS)
def captured_cert_rejected(case: Case) -> Iterator[Finding]:
    captured = _captured(case)
    refused = [(o, how) for o in captured if (how := _cert_refusal(o)) is not None]
    if not refused or any(_captured_accepted(o) or _maybe_accepted(o) for o in captured):
        return  # a certificate got (or may have got) through elsewhere: the server validates
    obs, how = refused[0]
    sent = (
        f"its certificate ({obs.client_chain[0].subject})" if _sent_cert(obs)
        else "an empty Certificate" if _sent_empty(obs)
        else "a certificate that could not be seen"
    )
    yield finding(
        "MTLS070",
        f"The far end refused the captured client, which sent {sent}, on "
        f"{_connections(o for o, _ in refused)} of {_connections(captured)} connection(s) "
        f"({how[1]}), and accepted a client "
        "certificate on none.",
        evidence=[_ev(o, h[0], h[1]) for o, h in refused]
        + [_ev(obs, "client_chain_seen",
               f"{obs.client_chain_seen.value} ({len(obs.client_chain)} certificate(s))"),
           _ev(obs, "cert_request.authorities", _authorities(obs))],
        remediation="Give the client a certificate issued by one of the requested CAs "
        f"({_authorities(obs)}), valid now, with clientAuth, and configure it to send it.",
    )


@rule("MTLS071", "Connections in the capture", Severity.INFO)
def captured_summary(case: Case) -> Iterator[Finding]:
    captured = _captured(case)
    if not captured:
        return
    chains = _chains(case)
    total = _connections(captured)
    sent = _connections(o for o in captured if _sent_cert(o))
    empty = _connections(o for o in captured if _sent_empty(o))
    hidden = _connections(o for o in captured if o.client_chain_seen is Seen.UNKNOWN)
    accepted = _connections(o for o in captured if _captured_accepted(o))
    last_seen = max(o.last_observed_at or o.observed_at for o in captured)
    chain_text = (
        "no server chain visible" if not chains
        else "the same server chain on every connection that showed one" if len(chains) == 1
        else f"{len(chains)} different server chains"
    )
    yield finding(
        "MTLS071",
        f"{total} TLS connection(s) to {_target(case)} in the capture: {chain_text}; "
        f"client certificate sent on {sent} (accepted on {accepted}), empty on {empty}, "
        f"not visible on {hidden}.",
        evidence=[_ev(None, "connections", total),
                  _ev(None, "distinct_server_chains", len(chains)),
                  _ev(None, "first_seen", min(o.observed_at for o in captured).isoformat()),
                  _ev(None, "last_seen", last_seen.isoformat())],
    )


# --- reflector (`mtlsprobe serve`): what the far end received vs what we sent ---------------
# The echo is attached by mtlsprobe.reflector; only echoes with status "ok" (decoded, and
# HMAC-verified when a secret was given) are compared.


def _echoed(case: Case) -> list[Observation]:
    return [o for o in case.observations if o.reflected is not None and o.reflected.status == "ok"]


def _hello_differs(obs: Observation) -> bool:
    e = obs.reflected
    assert e is not None
    if e.hello_sha256 and e.sent_hello_sha256:
        return e.hello_sha256 != e.sent_hello_sha256
    return bool(e.ja3 and e.sent_ja3 and e.ja3 != e.sent_ja3)


def _reflected_cert_problem(obs: Observation) -> str | None:
    """How the client certificate failed to reach the reflector unchanged, or None."""
    e = obs.reflected
    assert e is not None
    sent = obs.attempt.client_cert_sha256 if obs.attempt else None
    got = e.client_chain_sha256[0] if e.client_chain_sha256 else None
    if sent and got is None:
        return "did not arrive"
    if sent and got != sent:
        return "arrived as a different certificate"
    if obs.attempt is not None and not sent and got:
        return "arrived although we sent none"
    return None


def _reflected_chain_differs(obs: Observation) -> bool:
    e = obs.reflected
    assert e is not None
    if obs.server_chain_seen is not Seen.YES or not obs.server_chain:
        return False
    return bool(e.server_chain_sha256) and obs.server_chain[0].sha256 != e.server_chain_sha256[0]


def _reflected_ok(obs: Observation) -> bool:
    return not (
        _hello_differs(obs) or _reflected_cert_problem(obs) or _reflected_chain_differs(obs)
    )


@rule("MTLS080", "Reflector received a different ClientHello", Severity.BREAKS)
def reflector_hello_differs(case: Case) -> Iterator[Finding]:
    differ = [o for o in _echoed(case) if _hello_differs(o)]
    if not differ:
        return
    e = differ[0].reflected
    assert e is not None
    yield finding(
        "MTLS080",
        f"The reflector at {_target(case)} received a different ClientHello than the one we "
        f"sent (JA3 {e.ja3} there, {e.sent_ja3} here) on {len(differ)} connection(s): "
        "something between here and there re-originates the TLS connection.",
        evidence=[ev for o in differ for ev in (
            _ev(o, "reflected.ja3", o.reflected.ja3 if o.reflected else None),
            _ev(o, "reflected.sent_ja3", o.reflected.sent_ja3 if o.reflected else None),
            _ev(o, "reflected.hello_sha256", o.reflected.hello_sha256 if o.reflected else None),
            _ev(o, "reflected.sent_hello_sha256",
                o.reflected.sent_hello_sha256 if o.reflected else None),
        )],
        remediation=INSPECT_FIX.format(t=_target(case)),
    )


@rule("MTLS081", "Client certificate did not reach the reflector intact", Severity.BREAKS)
def reflector_cert_lost(case: Case) -> Iterator[Finding]:
    lost = [(o, why) for o in _echoed(case) if (why := _reflected_cert_problem(o))]
    if not lost:
        return
    obs, why = lost[0]
    yield finding(
        "MTLS081",
        f"The client certificate {why} at the reflector {_target(case)} ({obs.label}): the "
        "path does not carry client certificates to the far end.",
        evidence=[ev for o, w in lost for ev in (
            _ev(o, "attempt.client_cert_sha256",
                (o.attempt.client_cert_sha256 if o.attempt else None) or "none"),
            _ev(o, "reflected.client_chain_sha256",
                ", ".join(o.reflected.client_chain_sha256 if o.reflected else ()) or "none"),
            _ev(o, "reflected.problem", w),
        )],
        remediation=INSPECT_FIX.format(t=_target(case)),
    )


@rule("MTLS082", "Reflector's certificate differs from the one received", Severity.BREAKS)
def reflector_chain_differs(case: Case) -> Iterator[Finding]:
    differ = [o for o in _echoed(case) if _reflected_chain_differs(o)]
    if not differ:
        return
    obs = differ[0]
    yield finding(
        "MTLS082",
        f"The reflector at {_target(case)} presented another certificate than the one we "
        f"received (issued by {obs.server_chain[0].issuer}): something in between answers "
        "TLS with its own certificate.",
        evidence=[ev for o in differ for ev in (
            _ev(o, "server_chain[0].sha256", o.server_chain[0].sha256),
            _ev(o, "reflected.server_chain_sha256[0]",
                o.reflected.server_chain_sha256[0] if o.reflected else None),
        )],
        remediation=INSPECT_FIX.format(t=_target(case)),
    )


@rule("MTLS083", "Reflector confirms the connection end to end", Severity.INFO)
def reflector_confirms(case: Case) -> Iterator[Finding]:
    echoed = _echoed(case)
    done = [o for o in case.observations if o.outcome is Outcome.ESTABLISHED]
    with_cert = [o for o in echoed if o.attempt is not None and o.attempt.client_cert_sha256]
    if (
        not echoed
        or not with_cert
        or any(o.reflected is None or o.reflected.status != "ok" for o in done)
        or not all(_reflected_ok(o) for o in echoed)
    ):
        return
    signed = all(o.reflected is not None and o.reflected.signed for o in echoed)
    how = "signed echo" if signed else (
        "unsigned echo: give both sides a --secret-file so a middlebox cannot forge it"
    )
    yield finding(
        "MTLS083",
        f"The reflector at {_target(case)} received our own ClientHello and client "
        f"certificate and presented the certificate we saw, on {len(echoed)} connection(s) "
        f"({how}): nothing re-originates TLS to this port.",
        evidence=[_ev(o, "reflected", f"hello, client certificate and chain match"
                      f"{' (signed)' if o.reflected and o.reflected.signed else ''}")
                  for o in echoed],
    )


@rule("MTLS084", "Reflector echo missing or unverifiable", Severity.UNKNOWN)
def reflector_echo_unusable(case: Case) -> Iterator[Finding]:
    bad = [o for o in case.observations if o.reflected is not None
           and o.reflected.status != "ok" and o.outcome is Outcome.ESTABLISHED]
    if not bad:
        return
    e = bad[0].reflected
    assert e is not None
    yield finding(
        "MTLS084",
        f"{len(bad)} connection(s) to the reflector {_target(case)} completed without a "
        f"usable echo ({e.status}: {e.error or 'no detail'}): cannot compare what arrived.",
        evidence=[_ev(o, "reflected.status",
                      f"{o.reflected.status}: {o.reflected.error}" if o.reflected else "")
                  for o in bad],
        remediation=f"Check that `mtlsprobe serve` listens at {_target(case)} and that the "
        "probe and the reflector use the same --secret-file; a missing or altered echo may "
        "itself mean something in between answers instead.",
    )


# --- what we could not tell ----------------------------------------------------------------


@rule("MTLS090", "No expectations given", Severity.UNKNOWN)
def no_expectations(case: Case) -> Iterator[Finding]:
    if case.expect.any or not any(o.stage not in _PRE_TLS for o in case.observations):
        return
    yield finding(
        "MTLS090",
        "No --ca, --pin or --baseline was given: cannot tell whether the certificate is the "
        "real server's.",
        evidence=[_ev(None, "expect", "none")],
        remediation=EXPECT_FIX.replace("--pin (", "--ca (the server's CA), --pin ("),
    )


def _why_hidden(obs: Observation) -> str:
    if obs.gaps:
        return f"capture gap of {sum(g.length for g in obs.gaps)} bytes"
    if obs.version == "TLSv1.3" and not obs.decrypted:
        return "TLS 1.3 encrypts it and no key log was available"
    if obs.end is not None and obs.end.value == "capture_ended":
        return "the capture ended first"
    return "not visible"


@rule("MTLS091", "A decisive fact could not be seen", Severity.UNKNOWN)
def hidden_fact(case: Case) -> Iterator[Finding]:
    obs_all = case.observations
    if not _chains(case):
        hidden = [o for o in obs_all
                  if o.server_chain_seen is Seen.UNKNOWN and not _no_server_hello(o)]
        if hidden:
            yield finding(
                "MTLS091",
                "The server certificate was not visible on any handshake "
                f"({_why_hidden(hidden[0])}).",
                evidence=[_ev(o, "server_chain_seen", f"unknown: {_why_hidden(o)}")
                          for o in hidden],
                remediation="Re-run live (the probe keeps its own keys) or supply the key log "
                "(SSLKEYLOGFILE / pcapng secrets) with the capture.",
            )
    base = _baseline(case)
    if base is not None and base.cert_request is Seen.YES:
        known = [o for o in obs_all if o.cert_request.seen in (Seen.YES, Seen.NO)]
        hidden = [o for o in obs_all if o.cert_request.seen is Seen.UNKNOWN]
        if not known and hidden:
            yield finding(
                "MTLS091",
                "Whether the far end asks for a client certificate could not be seen "
                f"({_why_hidden(hidden[0])}), and the baseline says the real server does.",
                evidence=[_ev(o, "cert_request.seen", f"unknown: {_why_hidden(o)}")
                          for o in hidden],
                remediation="Re-run live or supply the key log with the capture.",
            )


@rule("MTLS092", "No handshake completed", Severity.UNKNOWN)
def nothing_completed(case: Case) -> Iterator[Finding]:
    obs_all = case.observations
    if _chains(case) or any(o.outcome is Outcome.ESTABLISHED for o in obs_all):
        return
    explained = (
        _proxy_auth(case) or _proxy_refused(case) or _all(case, _unreachable)
        or _all(case, _silenced) or _not_tls(case)
        or any(o.server_chain_seen is Seen.UNKNOWN and not _no_server_hello(o) for o in obs_all)
    )
    if explained:
        return
    yield finding(
        "MTLS092",
        f"No TLS handshake with {_target(case)} completed and no rule explains why.",
        evidence=[_ev(o, "outcome", f"{o.outcome.value} at {o.stage.value}"
                      + (f": {o.local_error}" if o.local_error else ""))
                  for o in obs_all] or [_ev(None, "observations", "none")],
        remediation="Re-run with a capture (or --verbose) and inspect the local errors.",
    )
