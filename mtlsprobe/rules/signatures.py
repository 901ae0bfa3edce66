"""Middlebox signatures: knowledge kept as data in ``signatures.json``, matched here.

Pure: loading validates the packaged file once; matching takes CertInfo / HttpExchange
values and returns what matched and where. No network, no clock.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from mtlsprobe.model import CertInfo, HttpExchange

KINDS = ("interceptor", "load_balancer", "proxy", "server")
CONFIDENCES = ("official", "community", "unverified")
_MATCH_KEYS = ("issuer_regex", "subject_regex", "header", "cookie_regex", "server_regex",
               "body_regex")
_BODY_LIMIT = 4096


class SignatureError(ValueError):
    """The signature file is malformed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Signature:
    id: str
    product: str
    kind: str  # "interceptor" | "load_balancer" | "proxy" | "server"
    source: str
    confidence: str
    issuer: re.Pattern[str] | None = None
    subject: re.Pattern[str] | None = None
    header_name: str | None = None  # exact, case-insensitive; a trailing "*" makes it a prefix
    header_value: re.Pattern[str] | None = None
    cookie: re.Pattern[str] | None = None  # matched against Set-Cookie names
    server: re.Pattern[str] | None = None
    body: re.Pattern[str] | None = None

    def header_name_matches(self, name: str) -> bool:
        if self.header_name is None:
            return False
        want = self.header_name.lower()
        if want.endswith("*"):
            return name.lower().startswith(want[:-1])
        return name.lower() == want


@dataclass(frozen=True, slots=True, kw_only=True)
class Match:
    """One signature hit: which field of what carried the tell."""

    signature: Signature
    field: str  # "server_chain[1].issuer", "http.headers.Via", "http.cookie", ...
    value: str


def _compile(entry_id: str, key: str, pattern: object) -> re.Pattern[str]:
    if not isinstance(pattern, str) or not pattern:
        raise SignatureError(f"{entry_id}: {key} must be a non-empty string")
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise SignatureError(f"{entry_id}: {key} does not compile: {exc}") from None


def parse_signatures(doc: Any) -> tuple[Signature, ...]:
    """Validate a decoded signature document. Raises SignatureError on any defect."""
    if not isinstance(doc, dict) or not isinstance(doc.get("signatures"), list):
        raise SignatureError("expected an object with a 'signatures' list")
    out: list[Signature] = []
    seen: set[str] = set()
    for i, entry in enumerate(doc["signatures"]):
        if not isinstance(entry, dict):
            raise SignatureError(f"entry {i} is not an object")
        sid = entry.get("id")
        if not isinstance(sid, str) or not sid:
            raise SignatureError(f"entry {i} has no id")
        if sid in seen:
            raise SignatureError(f"duplicate id {sid}")
        seen.add(sid)
        for key in ("product", "source"):
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                raise SignatureError(f"{sid}: missing {key}")
        if entry.get("kind") not in KINDS:
            raise SignatureError(f"{sid}: kind must be one of {KINDS}")
        if entry.get("confidence") not in CONFIDENCES:
            raise SignatureError(f"{sid}: confidence must be one of {CONFIDENCES}")
        match = entry.get("match")
        if not isinstance(match, dict) or not match:
            raise SignatureError(f"{sid}: match must be a non-empty object")
        unknown = set(match) - set(_MATCH_KEYS)
        if unknown:
            raise SignatureError(f"{sid}: unknown match keys {sorted(unknown)}")
        fields: dict[str, Any] = {}
        for key, name in (("issuer_regex", "issuer"), ("subject_regex", "subject"),
                          ("cookie_regex", "cookie"), ("server_regex", "server"),
                          ("body_regex", "body")):
            if key in match:
                fields[name] = _compile(sid, key, match[key])
        if "header" in match:
            header = match["header"]
            if not isinstance(header, dict) or not isinstance(header.get("name"), str):
                raise SignatureError(f"{sid}: header needs a name and a regex")
            fields["header_name"] = header["name"]
            fields["header_value"] = _compile(sid, "header.regex", header.get("regex"))
        out.append(Signature(id=sid, product=entry["product"], kind=entry["kind"],
                             source=entry["source"], confidence=entry["confidence"], **fields))
    return tuple(out)


@lru_cache(maxsize=1)
def load_signatures() -> tuple[Signature, ...]:
    """The packaged signatures, validated once."""
    text = resources.files("mtlsprobe.rules").joinpath("signatures.json").read_text("utf-8")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SignatureError(f"signatures.json is not JSON: {exc}") from None
    return parse_signatures(doc)


def _select(kinds: Iterable[str] | None, sigs: Sequence[Signature] | None) -> list[Signature]:
    pool = load_signatures() if sigs is None else sigs
    wanted = set(kinds) if kinds is not None else set(KINDS)
    return [s for s in pool if s.kind in wanted]


def match_chain(
    chain: Sequence[CertInfo],
    kinds: Iterable[str] | None = None,
    sigs: Sequence[Signature] | None = None,
) -> list[Match]:
    """Signatures whose issuer/subject pattern matches any certificate of `chain`."""
    hits: list[Match] = []
    for sig in _select(kinds, sigs):
        for i, cert in enumerate(chain):
            if sig.issuer is not None and sig.issuer.search(cert.issuer):
                hits.append(Match(signature=sig, field=f"server_chain[{i}].issuer",
                                  value=cert.issuer))
                break
            if sig.subject is not None and sig.subject.search(cert.subject):
                hits.append(Match(signature=sig, field=f"server_chain[{i}].subject",
                                  value=cert.subject))
                break
    return hits


def set_cookie_names(http: HttpExchange) -> list[str]:
    names = []
    for name, value in http.headers:
        if name.lower() == "set-cookie":
            names.append(value.split("=", 1)[0].strip())
    return names


def match_body(body: str, sigs: Sequence[Signature] | None = None) -> list[Match]:
    """Signatures whose body pattern matches the start of an HTTP response body (what
    ``match_http`` reads of a body, for callers that keep only that)."""
    if not body:
        return []
    head = body[:_BODY_LIMIT]
    hits = []
    for sig in _select(None, sigs):
        found = sig.body.search(head) if sig.body is not None else None
        if found:
            hits.append(Match(signature=sig, field="http.body_excerpt", value=found.group(0)))
    return hits


def match_http(
    http: HttpExchange | None,
    kinds: Iterable[str] | None = None,
    sigs: Sequence[Signature] | None = None,
) -> list[Match]:
    """Signatures that match the response's headers, cookies, Server header or body."""
    if http is None:
        return []
    hits: list[Match] = []
    cookies = set_cookie_names(http)
    body = http.body_excerpt[:_BODY_LIMIT]
    for sig in _select(kinds, sigs):
        hit: Match | None = None
        if sig.header_name is not None and sig.header_value is not None:
            for name, value in http.headers:
                if sig.header_name_matches(name) and sig.header_value.search(value):
                    hit = Match(signature=sig, field=f"http.headers.{name}", value=value)
                    break
        if hit is None and sig.cookie is not None:
            cookie = next((c for c in cookies if sig.cookie.search(c)), None)
            if cookie is not None:
                hit = Match(signature=sig, field="http.set_cookie", value=cookie)
        if hit is None and sig.server is not None:
            for name, value in http.headers:
                if name.lower() == "server" and sig.server.search(value):
                    hit = Match(signature=sig, field="http.headers.Server", value=value)
                    break
        if hit is None and sig.body is not None:
            found = sig.body.search(body)
            if found:
                hit = Match(signature=sig, field="http.body_excerpt", value=found.group(0))
        if hit is not None:
            hits.append(hit)
    return hits
