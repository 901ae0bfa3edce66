"""How the far end behaves, as comparable facts: one function for what is seen now and for
what the real server showed in the baseline (read back as the same Observations).

A fact is ``"layer.name[context]" -> value``. The context holds whatever the value depends
on besides the far end (the client's offer, our attempt, the HTTP path and status), so two
facts are compared only where the question asked was the same. Layers:

- ``tls``: the far end's TLS stack: version, cipher and ServerHello extensions (in order) for
  a given ClientHello, the ALPN it
  selects for an offer, how many session tickets it sends, how it answers no certificate,
  an untrusted certificate, the agent's certificate. A difference means another TLS stack.
- ``http``: the answer to our GET: its status per attempt, header names in order and case,
  Server, Via.
- ``tcp``: the SYN-ACK's initial TTL class and TCP options: another TCP stack, which an L4
  proxy is too, so never a verdict on its own.

Facts the connection could not show (a resumed or undecrypted handshake) are left out.
Pure: an Observation in, a dict out.
"""

from __future__ import annotations

from collections.abc import Iterable

from mtlsprobe.model import CertKind, Direction, Observation, Outcome, Stage

TLS, HTTP, TCP = "tls", "http", "tcp"
_INITIAL_TTLS = (32, 64, 128, 255)
_NOT_FATAL = ("close_notify", "user_canceled")


def layer_of(key: str) -> str:
    return key.split(".", 1)[0]


def behaviour_facts(obs: Observation) -> dict[str, str]:
    """Every comparable fact this connection showed."""
    out: dict[str, str] = {}
    if obs.version is not None and not obs.resumed:
        offer = obs.ja4 or obs.ja3 or "?"
        out[f"tls.server_hello[{offer}]"] = f"{obs.version} {obs.cipher_suite or '?'}"
        if obs.server_extensions:
            out[f"tls.server_extensions[{offer}]"] = ",".join(map(str, obs.server_extensions))
        alpn_offer = ",".join(obs.alpn_offered) or "none"
        out[f"tls.alpn[{alpn_offer}]"] = obs.alpn or "none"
        if _handshake_done(obs) and (obs.decrypted or obs.version != "TLSv1.3"):
            out[f"tls.session_tickets[{offer}]"] = str(obs.history.count("t"))
        reaction = _cert_reaction(obs)
        if reaction is not None and obs.attempt is not None:
            out[f"tls.answer_to_{_cert_kind(obs)}[{obs.version}]"] = reaction
    if obs.http is not None and obs.http.status is not None and obs.http.error is None:
        if obs.attempt is not None:
            out[f"http.status_for_{_cert_kind(obs)}[{obs.http.path}]"] = str(obs.http.status)
        ctx = f"{obs.http.path} {obs.http.status}"
        names = [n for n, _ in obs.http.headers]
        out[f"http.header_names[{ctx}]"] = "|".join(names)
        out[f"http.server[{ctx}]"] = _header(obs, "server") or "none"
        out[f"http.via[{ctx}]"] = _header(obs, "via") or "none"
    tcp = obs.tcp
    if tcp is not None and tcp.synack_ttl is not None:
        out["tcp.initial_ttl"] = str(next(i for i in _INITIAL_TTLS if i >= tcp.synack_ttl))
    if tcp is not None and tcp.synack_options:
        out["tcp.synack_options"] = ",".join(o.split("=")[0] for o in tcp.synack_options)
    return out


def merged(observations: Iterable[Observation]) -> dict[str, tuple[str, ...]]:
    """Fact -> every distinct value over `observations`, in first-seen order."""
    acc: dict[str, list[str]] = {}
    for obs in observations:
        for key, value in behaviour_facts(obs).items():
            values = acc.setdefault(key, [])
            if value not in values:
                values.append(value)
    return {k: tuple(v) for k, v in acc.items()}


def _handshake_done(obs: Observation) -> bool:
    return obs.outcome is Outcome.ESTABLISHED or obs.stage in (
        Stage.ESTABLISHED, Stage.FIRST_READ
    )


def _cert_kind(obs: Observation) -> str:
    kind = obs.attempt.client_cert if obs.attempt is not None else CertKind.UNKNOWN
    return {CertKind.NONE: "no_cert", CertKind.UNTRUSTED: "untrusted_cert",
            CertKind.AGENT: "agent_cert"}.get(kind, "unknown_cert")


def _cert_reaction(obs: Observation) -> str | None:
    """How the far end answered our attempt: its fatal alert, or how the connection went on."""
    for alert in obs.alerts:
        if alert.sender is Direction.S2C and alert.description not in _NOT_FATAL and (
            alert.description != "encrypted"
        ):
            return f"alert {alert.description}"
    if obs.outcome is Outcome.ESTABLISHED:
        return "completed"
    if obs.stage is Stage.FIRST_READ:
        return "closed right after the handshake"
    return None


def _header(obs: Observation, name: str) -> str | None:
    assert obs.http is not None
    return next((v for n, v in obs.http.headers if n.lower() == name), None)
