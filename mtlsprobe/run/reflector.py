"""`probe --reflector`: the usual attempts against an `mtlsprobe serve` reflector, judged.

Boundary: the probe side only. Each attempt fetches the reflector's echo (format and
signature check: ``live.reflector_echo``); the echo is attached, beside the digest and JA3
of the ClientHello we sent, to the Observation as a ``ReflectorEcho``, and the pipeline
judges it (rules MTLS080-MTLS084 compare). The listener itself is ``live.reflector``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from mtlsprobe.live.probe import ProbeOptions, probe_target
from mtlsprobe.live.reflector_echo import (
    DEFAULT_PORT,
    ECHO_PATH,
    first_client_hello,
    parse_echo,
    read_secret,
)
from mtlsprobe.live.targets import parse_target
from mtlsprobe.model import (
    CaseResult,
    Direction,
    Endpoint,
    Expectations,
    Observation,
    ReflectorEcho,
    Transcript,
)
from mtlsprobe.run import pipeline
from mtlsprobe.tls import fingerprint
from mtlsprobe.tls.hellos import ClientHello
from mtlsprobe.tls.observer import observe


def sent_hello(transcript: Transcript) -> tuple[ClientHello, str] | None:
    """Our own first ClientHello, from the transcript's client->server bytes."""
    stream = b"".join(c.data for c in transcript.chunks if c.direction is Direction.C2S)
    return first_client_hello(stream)


def _strings(value: object) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def _opt(value: object) -> str | None:
    return value if isinstance(value, str) else None


def reflected(transcript: Transcript, obs: Observation, secret: bytes | None) -> ReflectorEcho:
    """The ReflectorEcho for one connection: the far end's report beside what we sent."""
    ours = sent_hello(transcript)
    sent_sha256 = ours[1] if ours else None
    sent_ja3 = fingerprint.ja3(ours[0]) if ours else None
    if obs.http is None or obs.http.status is None:
        why = (obs.http.error if obs.http is not None else None) or "no HTTP answer"
        return ReflectorEcho(status="missing", error=why,
                             sent_hello_sha256=sent_sha256, sent_ja3=sent_ja3)
    status, echo, signed, error = parse_echo(obs.http.headers, secret)
    if echo is None or status == "bad_signature":
        return ReflectorEcho(status=status, error=error,
                             sent_hello_sha256=sent_sha256, sent_ja3=sent_ja3)
    hello = echo.get("client_hello") if isinstance(echo.get("client_hello"), dict) else {}
    tls = echo.get("tls") if isinstance(echo.get("tls"), dict) else {}
    assert isinstance(hello, dict) and isinstance(tls, dict)
    return ReflectorEcho(
        status=status,
        signed=signed,
        peer=_opt(echo.get("peer")),
        hello_sha256=_opt(hello.get("sha256")),
        ja3=_opt(hello.get("ja3")),
        offered_versions=_strings(hello.get("versions")),
        cipher_suites=_strings(hello.get("cipher_suites")),
        sni=_opt(hello.get("sni")),
        alpn_offered=_strings(hello.get("alpn")),
        version=_opt(tls.get("version")),
        cipher_suite=_opt(tls.get("cipher")),
        client_chain_sha256=_strings(echo.get("client_chain_sha256")),
        server_chain_sha256=_strings(echo.get("server_chain_sha256")),
        error=error,
        sent_hello_sha256=sent_sha256,
        sent_ja3=sent_ja3,
    )


def probe_reflector(
    target: Endpoint,
    options: ProbeOptions,
    expect: Expectations,
    secret: bytes | None = None,
    source: str = "reflector",
) -> list[CaseResult]:
    """Run the usual attempts against a reflector (each fetching the echo) and judge them.

    --ca and --pin judge the chain the reflector path shows, as for any target (a reflector
    run with the real server's certificate, or one whose pin was taken next to it); its echo
    is judged beside them. A --baseline describes the real server's behaviour, which the
    reflector does not share: it is left out.
    """
    opts = dataclasses.replace(options, http_path=ECHO_PATH, other_name=False)
    own = dataclasses.replace(expect, baseline=())
    results = []
    for route, transcripts in probe_target(target, opts):
        observations = []
        for t in transcripts:
            obs = observe(t)
            observations.append(dataclasses.replace(obs, reflected=reflected(t, obs, secret)))
        results.append(pipeline.judge(target, route, observations, own, source))
    return results


def probe_reflectors(
    texts: Sequence[str],
    options: ProbeOptions,
    expect: Expectations,
    secret_file: Path | None = None,
) -> list[CaseResult]:
    """`probe --reflector HOST[:PORT]` (repeatable): each reflector in turn, source
    "reflector". Raises InputError for a bad address or secret file."""
    secret = read_secret(secret_file)
    results: list[CaseResult] = []
    for text in texts:
        host, port = parse_target(text)
        target = Endpoint(host=host, port=port or DEFAULT_PORT)
        results.extend(probe_reflector(target, options, expect, secret))
    return results
