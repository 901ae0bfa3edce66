"""Pure checks of an agent's own client credentials: facts in, Findings and a verdict out.

Boundary: no file reading and no clock. ``commands/check_cert.py`` loads the files and
passes :class:`CredentialFacts` and the time to judge at. Rule ids MTLS1xx live in the
small table :data:`CRED_RULES` (not the engine's probe registry, whose rules run on every
probed path); ids are public API and never reused.

Verdict mapping, so exit codes follow the probe bands:
a ``rejects`` finding (a defect a server refuses the certificate for) -> client_cert_rejected
(exit 10); otherwise an ``unknown`` finding (no --ca: the chain could not be checked) ->
unknown (exit 12); otherwise pass_end_to_end (exit 0), warnings included.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from mtlsprobe.model import (
    CaseResult,
    CertInfo,
    Endpoint,
    Evidence,
    Finding,
    Route,
    Severity,
    Verdict,
)
from mtlsprobe.model.certs import CertError, DSAPublicKey, anchor_of, parse_der
from mtlsprobe.rules.engine import sort_key
from mtlsprobe.rules.registry import explanation_text

EXPIRY_WARNING = timedelta(days=30)
MIN_RSA_BITS = 2048
MIN_EC_BITS = 256
WEAK_HASHES = frozenset({"sha1", "md5", "md2", "md4"})
TARGET = Endpoint(host="<agent credentials>", port=0)
ROUTE = Route(kind="local")


@dataclass(frozen=True, slots=True)
class CredRule:
    """One MTLS1xx rule: same attribute names as ``rules.engine.RuleSpec`` for listings.
    `explanation`: for a helpdesk (`mtlsprobe rules ID`), written like a rule function's
    docstring and kept as paragraphs of one line each."""

    id: str
    title: str
    severity: Severity
    remediation: str | None = None
    explanation: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "explanation", explanation_text(self.explanation))

    @property
    def severities(self) -> tuple[Severity, ...]:
        return (self.severity,)


CRED_RULES: tuple[CredRule, ...] = (
    CredRule("MTLS100", "Private key does not match the certificate", Severity.REJECTS,
             "Pair the certificate with the key it was issued for (compare the public keys "
             "with `openssl x509 -noout -pubkey` and `openssl pkey -pubout`).",
             explanation="""
                 The private key given with the agent certificate is not the key the certificate
                 was issued for.

                 Rejects: in the handshake the agent proves it holds the key by signing
                 (CertificateVerify), and the server checks that signature with the
                 certificate's public key, so every handshake fails.

                 Pair the certificate with its own key; compare the public keys with `openssl
                 x509 -noout -pubkey` and `openssl pkey -pubout`.
             """),
    CredRule("MTLS101", "Certificate expired", Severity.REJECTS,
             "Renew the agent certificate (and any expired intermediate) and redeploy it.",
             explanation="""
                 The agent certificate, or a certificate in its chain, is past its expiry date.

                 Rejects: servers check the validity period, and the Endpoint Central server
                 refuses an expired agent certificate in the handshake.

                 Renew the agent certificate (and any expired intermediate) and redeploy it.
             """),
    CredRule("MTLS102", "Certificate not yet valid", Severity.REJECTS,
             "Check the agent's clock (NTP) or wait for the notBefore date; reissue if the "
             "date is wrong.",
             explanation="""
                 The agent certificate, or a certificate in its chain, is not valid yet: its
                 start date is in the future.

                 Rejects: servers refuse it until that date. Most often the agent's clock is
                 wrong.

                 Check the agent's clock (NTP) or wait for the start date; reissue the
                 certificate if the date is wrong.
             """),
    CredRule("MTLS103", "Certificate expires soon", Severity.WARNING,
             "Renew the agent certificate before it expires.",
             explanation="""
                 The agent certificate, or a certificate in its chain, expires within 30 days.

                 A warning: it works today and is refused from its expiry date on.

                 Renew the agent certificate before it expires.
             """),
    CredRule("MTLS104", "Extended key usage lacks clientAuth", Severity.REJECTS,
             "Reissue the certificate with extendedKeyUsage clientAuth (or without the "
             "extension).",
             explanation="""
                 The certificate's extended key usage lists purposes, but not TLS client
                 authentication (clientAuth).

                 Rejects: TLS servers refuse a client certificate that is not allowed for client
                 authentication.

                 Reissue the certificate with extendedKeyUsage clientAuth, or without the
                 extension.
             """),
    CredRule("MTLS105", "Weak or unsupported key", Severity.REJECTS,
             "Reissue with an RSA key of at least 2048 bits or an EC key on P-256 or larger.",
             explanation="""
                 The agent's key is too weak or of an unsupported kind: RSA under 2048 bits, EC
                 under 256 bits, DSA, or a key type that could not be read.

                 Rejects: servers at current security levels refuse such keys.

                 Reissue with an RSA key of at least 2048 bits or an EC key on P-256 or larger.
             """),
    CredRule("MTLS106", "Weak signature algorithm", Severity.REJECTS,
             "Reissue the certificate (and intermediates) signed with SHA-256 or stronger.",
             explanation="""
                 The agent certificate, or an intermediate, is signed with SHA-1 or MD5 (or the
                 older MD2 or MD4); self-signed roots are not checked.

                 Rejects: current TLS libraries refuse these signatures.

                 Reissue the certificate (and intermediates) signed with SHA-256 or stronger.
             """),
    CredRule("MTLS107", "CA certificate used as client certificate", Severity.WARNING,
             "Issue a dedicated end-entity client certificate (basicConstraints CA:FALSE) "
             "instead of using a CA certificate.",
             explanation="""
                 The client certificate is itself a CA certificate (basicConstraints CA:TRUE).

                 A warning: strict servers refuse it, and a leaked key could issue certificates.

                 Issue a dedicated end-entity client certificate (CA:FALSE) instead.
             """),
    CredRule("MTLS108", "Empty subject and no subjectAltName", Severity.WARNING,
             "Reissue with a subject CN or a subjectAltName that identifies the agent.",
             explanation="""
                 The certificate has an empty subject and no subjectAltName.

                 A warning: the server has no identity to map to the agent.

                 Reissue with a subject CN or a subjectAltName that identifies the agent.
             """),
    CredRule("MTLS109", "Private key file readable by others", Severity.WARNING,
             "Restrict the key file to its owner: chmod 600 FILE.",
             explanation="""
                 The private key file (or PKCS#12 file) can be read or changed by group or other
                 users (checked on Linux and macOS only).

                 A warning, not about the network: anyone who can read the key can pose as this
                 agent.

                 Restrict the key file to its owner: chmod 600 FILE.
             """),
    CredRule("MTLS110", "Chain does not build to the given CA", Severity.REJECTS,
             "Use a certificate issued under the CA the server trusts, and ship any "
             "intermediate with it (leaf first, then intermediates).",
             explanation="""
                 The agent certificate's chain does not build to any CA given with --ca; the
                 finding names the issuer when no certificate for it was given.

                 Rejects: a server that does not trust the issuer refuses the certificate,
                 typically with the alert unknown_ca.

                 Use a certificate issued under the CA the server trusts, and ship any
                 intermediate with it (leaf first, then intermediates).
             """),
    CredRule("MTLS111", "Chain not checked: no CA given", Severity.UNKNOWN,
             "Pass the server's client-CA bundle with --ca to check the chain.",
             explanation="""
                 No --ca was given, so whether the server trusts this chain was not checked.

                 Hides the answer: the verdict is unknown.

                 Pass the CA the server trusts for agent certificates with --ca (the README's
                 example uses DMRootCA.crt, which ships with the agent).
             """),
    CredRule("MTLS112", "Chain builds to the given CA", Severity.INFO,
             explanation="""
                 The agent certificate's chain builds to a CA given with --ca; the finding names
                 it.

                 Only context, and a good sign, as long as that is the CA the server trusts.

                 Nothing to do.
             """),
    CredRule("MTLS113", "Certificate validity", Severity.INFO,
             explanation="""
                 The agent certificate's validity dates and the days it has left, while it is
                 valid.

                 Only context: how long the agent can authenticate with this certificate.
                 MTLS103 warns from 30 days before the end.

                 Nothing to do; plan the renewal before the end date.
             """),
)
_BY_ID = {r.id: r for r in CRED_RULES}


@dataclass(frozen=True, slots=True, kw_only=True)
class CredentialFacts:
    """What check-cert read: the chain (leaf first), the key match, the key file's mode."""

    chain: tuple[CertInfo, ...]
    key_matches: bool | None = None  # None: no key was given
    key_file: str | None = None
    key_file_mode: int | None = None  # st_mode & 0o777 (POSIX); None elsewhere
    roots: tuple[CertInfo, ...] = ()


def _ev(field: str, value: object) -> Evidence:
    return Evidence(observation="", field=field, value=str(value))


def _f(rule_id: str, summary: str, *evidence: Evidence) -> Finding:
    r = _BY_ID[rule_id]
    return Finding(rule=rule_id, title=r.title, severity=r.severity, summary=summary,
                   evidence=evidence, remediation=r.remediation)


def _when(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%SZ")


def _days(n: int) -> str:
    return f"{n} day" if n == 1 else f"{n} days"


def _signed_certs(chain: Sequence[CertInfo]) -> list[tuple[int, CertInfo]]:
    """Chain members whose own signature a server checks (self-signed roots are not)."""
    return [(i, c) for i, c in enumerate(chain) if i == 0 or not c.self_issued]


def _key_bits(cert: CertInfo) -> tuple[str, int | None]:
    try:
        key = parse_der(cert.der).public_key()
    except (CertError, ValueError, TypeError):
        return "unsupported", None
    if isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey, DSAPublicKey)):
        kind = "RSA" if isinstance(key, rsa.RSAPublicKey) else (
            "EC" if isinstance(key, ec.EllipticCurvePublicKey) else "DSA")
        return kind, key.key_size
    return cert.key or type(key).__name__, None


def _has_any_san(cert: CertInfo) -> bool:
    if cert.san_dns or cert.san_ip:
        return True
    try:
        ext = parse_der(cert.der).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (CertError, x509.ExtensionNotFound, ValueError):
        return False
    return len(ext.value) > 0


# --- the checks -----------------------------------------------------------------------


def _key_pair(facts: CredentialFacts) -> Iterator[Finding]:
    if facts.key_matches is False:
        yield _f("MTLS100", f"The private key in {facts.key_file} does not belong to the "
                 "certificate; no server can accept a handshake signed with it.",
                 _ev("key_file", facts.key_file), _ev("agent_chain[0].spki_pin",
                                                      facts.chain[0].spki_pin))


def _validity(facts: CredentialFacts, now: datetime) -> Iterator[Finding]:
    for i, c in enumerate(facts.chain):
        what = "The agent certificate" if i == 0 else f"Chain certificate {i} ({c.subject})"
        if c.not_after < now:
            yield _f("MTLS101", f"{what} expired on {_when(c.not_after)} "
                     f"({_days((now - c.not_after).days)} ago).",
                     _ev(f"agent_chain[{i}].not_after", _when(c.not_after)),
                     _ev("now", _when(now)))
        elif c.not_before > now:
            yield _f("MTLS102", f"{what} is not valid before {_when(c.not_before)}.",
                     _ev(f"agent_chain[{i}].not_before", _when(c.not_before)),
                     _ev("now", _when(now)))
    live = [(i, c) for i, c in enumerate(facts.chain) if c.not_before <= now <= c.not_after]
    if not live:
        return
    i, soonest = min(live, key=lambda ic: ic[1].not_after)
    left = soonest.not_after - now
    what = "The agent certificate" if i == 0 else f"Chain certificate {i} ({soonest.subject})"
    if left < EXPIRY_WARNING:
        yield _f("MTLS103", f"{what} expires in {_days(left.days)} ({_when(soonest.not_after)}).",
                 _ev(f"agent_chain[{i}].not_after", _when(soonest.not_after)),
                 _ev("days_left", left.days))
    leaf = facts.chain[0]
    if leaf.not_before <= now <= leaf.not_after:
        days = (leaf.not_after - now).days
        yield _f("MTLS113", f"Valid from {_when(leaf.not_before)} until "
                 f"{_when(leaf.not_after)}: {_days(days)} left.",
                 _ev("agent_chain[0].not_after", _when(leaf.not_after)),
                 _ev("days_left", days))


def _usage(facts: CredentialFacts) -> Iterator[Finding]:
    leaf = facts.chain[0]
    if leaf.eku is not None and not {"clientAuth", "anyExtendedKeyUsage"} & set(leaf.eku):
        yield _f("MTLS104", "The certificate's extended key usage ("
                 f"{', '.join(leaf.eku) or 'empty'}) does not allow client authentication; "
                 "TLS servers refuse it as a client certificate.",
                 _ev("agent_chain[0].eku", ", ".join(leaf.eku) or "(empty)"))
    if leaf.is_ca:
        yield _f("MTLS107", "The client certificate is a CA certificate (basicConstraints "
                 "CA:TRUE); strict servers refuse it and a leaked key could issue certificates.",
                 _ev("agent_chain[0].is_ca", "true"))
    if not leaf.subject and not _has_any_san(leaf):
        yield _f("MTLS108", "The certificate has an empty subject and no subjectAltName: "
                 "the server has no identity to map to the agent.",
                 _ev("agent_chain[0].subject", "(empty)"))


def _strength(facts: CredentialFacts) -> Iterator[Finding]:
    kind, bits = _key_bits(facts.chain[0])
    weak = (
        (kind == "RSA" and bits is not None and bits < MIN_RSA_BITS)
        or (kind == "EC" and bits is not None and bits < MIN_EC_BITS)
        or kind in ("DSA", "unsupported")
    )
    if weak:
        desc = f"{kind} {bits}" if bits else kind
        yield _f("MTLS105", f"The agent key is {desc}; servers at current security levels "
                 "refuse it (RSA needs >= 2048 bits, EC >= 256).",
                 _ev("agent_chain[0].key", facts.chain[0].key or desc))
    for i, c in _signed_certs(facts.chain):
        if c.signature_algorithm.lower() in WEAK_HASHES:
            what = "The agent certificate" if i == 0 else f"Chain certificate {i} ({c.subject})"
            yield _f("MTLS106", f"{what} is signed with {c.signature_algorithm.upper()}, "
                     "which current TLS libraries reject.",
                     _ev(f"agent_chain[{i}].signature_algorithm", c.signature_algorithm))


def _permissions(facts: CredentialFacts) -> Iterator[Finding]:
    mode = facts.key_file_mode
    if mode is not None and mode & 0o077:
        yield _f("MTLS109", f"The private key file {facts.key_file} has mode {mode:04o}: "
                 "group or other users can read or change it.",
                 _ev("key_file", facts.key_file), _ev("key_file_mode", f"{mode:04o}"))


def _chain(facts: CredentialFacts) -> Iterator[Finding]:
    if not facts.roots:
        yield _f("MTLS111", "No --ca given: whether the server trusts this chain was not "
                 "checked.", _ev("ca", "(none)"))
        return
    root = anchor_of(facts.chain, facts.roots)
    if root is None:
        leaf = facts.chain[0]
        known = {c.subject for c in facts.chain[1:]} | {r.subject for r in facts.roots}
        hint = "" if leaf.issuer in known else (
            f"; no certificate for its issuer {leaf.issuer} was given")
        yield _f("MTLS110", f"The chain does not build to any given CA{hint}.",
                 _ev("agent_chain[0].issuer", leaf.issuer),
                 _ev("ca", "; ".join(r.subject for r in facts.roots)))
    else:
        yield _f("MTLS112", f"The chain builds to {root.subject}.",
                 _ev("anchor", root.subject), _ev("anchor.sha256", root.sha256))


def check_credentials(facts: CredentialFacts, now: datetime) -> tuple[Finding, ...]:
    """Every MTLS1xx check, sorted by severity rank then id. `facts.chain` must be non-empty."""
    if not facts.chain:
        raise ValueError("no certificate to check")
    found = [
        *_key_pair(facts), *_validity(facts, now), *_usage(facts), *_strength(facts),
        *_permissions(facts), *_chain(facts),
    ]
    return tuple(sorted(found, key=sort_key))


def _verdict(findings: Sequence[Finding]) -> tuple[Verdict, str]:
    rejects = [f for f in findings if f.severity is Severity.REJECTS]
    if rejects:
        return Verdict.CLIENT_CERT_REJECTED, rejects[0].summary
    unknown = [f for f in findings if f.severity is Severity.UNKNOWN]
    if unknown:
        return Verdict.UNKNOWN, unknown[0].summary
    warnings = sum(1 for f in findings if f.severity is Severity.WARNING)
    reason = "fit for client authentication"
    anchored = next((f for f in findings if f.rule == "MTLS112"), None)
    if anchored:
        reason += f"; {anchored.summary[0].lower()}{anchored.summary[1:].rstrip('.')}"
    if warnings:
        reason += f"; {warnings} warning{'s' if warnings > 1 else ''}"
    return Verdict.PASS_END_TO_END, reason


def judge_credentials(facts: CredentialFacts, now: datetime) -> CaseResult:
    """One CaseResult for the credentials (target ``<agent credentials>:0``, route local)."""
    findings = check_credentials(facts, now)
    verdict, reason = _verdict(findings)
    return CaseResult(target=TARGET, route=ROUTE, verdict=verdict, reason=reason, product=None,
                      findings=findings, observations=(), source=None)
