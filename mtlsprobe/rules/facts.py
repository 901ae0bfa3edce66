"""Facts several rules share: chains seen, pins and baselines confirmed, how the far end refused,
remediation texts. Pure helpers over the model; no rule is registered here.
Names keep their leading underscore: they are the rule modules' shared vocabulary, not an API
outside mtlsprobe.rules.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from datetime import timedelta

from mtlsprobe.model import (
    BaselinePort,
    Case,
    CertInfo,
    CertKind,
    Direction,
    Evidence,
    Observation,
    Outcome,
    Seen,
    Stage,
)
from mtlsprobe.model.certs import anchor_of, chain_pins, leaf_shares_issuer_key
from mtlsprobe.rules.signatures import Match

Chain = tuple[CertInfo, ...]

FRESH_LEAF = timedelta(hours=72)
NGINX_CERT_MARKERS = ("No required SSL certificate was sent", "The SSL certificate error")
CERT_HTTP_STATUSES = (495, 496)  # nginx: certificate error / certificate required
_PRE_TLS = (Stage.DNS, Stage.TCP, Stage.PROXY)

def _ev(obs: Observation | None, field: str, value: object) -> Evidence:
    return Evidence(observation=obs.label if obs else "", field=field, value=str(value))


def _target(case: Case) -> str:
    return str(case.target)


def _kind(obs: Observation) -> CertKind:
    return obs.attempt.client_cert if obs.attempt else CertKind.UNKNOWN


def _server_name(case: Case) -> str | None:
    """The name the agent asks for: the SNI sent, else the target when it is a name."""
    name = next((o.sni for o in case.observations if o.sni), None)
    if name:
        return name
    host = case.target.host
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host
    return None


def _baseline(case: Case) -> BaselinePort | None:
    return case.expect.baseline_for(case.target.port, _server_name(case))


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


def _missing_issuer(chain: Chain) -> str | None:
    """The issuer name the chain stops at when the peer left it out (incomplete chain)."""
    unknown = next((c for c in chain if c.known_by == "fingerprint"), None)
    if unknown is not None:  # a Zeek chain entry without its x509.log row: cannot tell
        return f"the certificate {unknown.sha256} (known by its fingerprint only)"
    top = chain[-1]
    if top.self_issued:
        return None
    if any(c.subject == top.issuer for c in chain):
        return None
    return top.issuer


def _minted(obs: Observation, chain: Chain) -> bool:
    """Signs of a certificate minted on the fly by an interception product."""
    if chain[0].known_by == "fingerprint":  # no dates, no key (a Zeek log without x509.log)
        return False
    return abs(obs.observed_at - chain[0].not_before) <= FRESH_LEAF or leaf_shares_issuer_key(
        chain
    )


def _foreign(case: Case, chain: Chain, obs: Observation) -> bool:
    """The expectations say this chain is not the real server's (what MTLS010-012 and
    MTLS016 report); an incomplete chain that cannot be checked is not (MTLS023's case)."""
    if _confirmed(case, chain):
        return False
    if _same_root_impostor(case, chain):
        return True
    if case.expect.pins or _baseline_has_chains(case):
        return True
    if case.expect.roots and _anchor(case, chain) is None:
        return _missing_issuer(chain) is None or _minted(obs, chain)
    return False


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
    if late_rejection(obs):
        return "stage", "closed right after the handshake (TLS 1.3 late rejection)"
    return None


def late_rejection(obs: Observation) -> bool:
    """Ended right after the handshake, before any data, in TLS 1.3 (or an unseen version).

    A TLS 1.3 server judges the client's certificate after its own Finished, so an EOF/RST
    there can be a rejection whose alert got lost. In TLS 1.0-1.2 the server sends its
    Finished only after it accepted the client's Certificate and CertificateVerify: a close
    after that is no rejection.
    """
    return obs.stage is Stage.FIRST_READ and obs.version not in TLS12_AND_OLDER


TLS12_AND_OLDER = frozenset({"SSLv3", "TLSv1.0", "TLSv1.1", "TLSv1.2"})


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


AUTHORITIES_SHOWN = 5  # a CertificateRequest may list 1,400 CA names: show a few and the count


def _authorities(obs: Observation) -> str:
    if not obs.cert_request.authorities_seen:
        return "(CA list not logged)"
    return _names(obs.cert_request.authorities, "(none listed)")


def _names(names: Sequence[str], none: str = "(none)") -> str:
    """CA names for a sentence: the first few and how many in all."""
    if len(names) > AUTHORITIES_SHOWN:
        shown = "; ".join(names[:AUTHORITIES_SHOWN])
        return f"{shown}; and {len(names) - AUTHORITIES_SHOWN} more ({len(names)} CA names)"
    return "; ".join(names) or none


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


def _dedupe(matches: list[tuple[Match, Observation]]) -> list[tuple[Match, Observation]]:
    seen: set[str] = set()
    out = []
    for m, obs in matches:
        if m.signature.id not in seen:
            seen.add(m.signature.id)
            out.append((m, obs))
    return out


def _signature_evidence(hits: list[tuple[Match, Observation]]) -> list[Evidence]:
    out = []
    for m, obs in hits:
        out.append(_ev(obs, m.field, m.value))
        out.append(_ev(None, f"signature.{m.signature.id}",
                       f"{m.signature.source} ({m.signature.confidence})"))
    return out


def _all(case: Case, pred: Callable[[Observation], bool]) -> bool:
    return bool(case.observations) and all(pred(o) for o in case.observations)


def _proxy_auth(case: Case) -> list[Observation]:
    return [o for o in case.observations if _connect_status(case, o) == 407]


def _proxy_refused(case: Case) -> list[Observation]:
    return [o for o in case.observations if _refused(_connect_status(case, o))]


def _not_tls(case: Case) -> bool:
    tls = [o for o in case.observations if o.stage not in _PRE_TLS]
    return bool(tls) and all(o.outcome is Outcome.NOT_TLS for o in tls)
