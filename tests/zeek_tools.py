"""Helpers of the Zeek log tests: read logs as Observations, and write Zeek's JSON form of a
TSV log (a small independent converter, so the JSON reader is checked against the TSV one)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from mtlsprobe.capture.zeek.zeek_observations import TLS13_NOTE
from mtlsprobe.model import Observation, Outcome, Seen
from mtlsprobe.run.zeek_inputs import ZeekLogs, split_zeek_logs

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
ZEEK_LOGS = SHARED / "zeek-logs"
TRACES = SHARED / "pcaps" / "zeek__zeek" / "testing" / "btest" / "Traces"


def zeek_observations(paths: Sequence[Path]) -> tuple[list[Observation], list[str]]:
    captures, logs = split_zeek_logs([str(p) for p in paths])
    assert not captures, captures
    reader = ZeekLogs(logs)
    return list(reader), reader.notes


def _unescape(text: str) -> str:
    return bytes(text, "latin-1").decode("unicode_escape").encode("latin-1").decode(
        "utf-8", "replace") if "\\" in text else text


def tsv_to_json_lines(tsv: str) -> str:
    """Zeek's JSON writer's form of a TSV log: one object per row, unset fields left out,
    containers as arrays, bools and numbers as JSON (``LogAscii::use_json=T``)."""
    out: list[str] = []
    sep, set_sep, fields, types = "\t", ",", [], []
    for line in tsv.splitlines():
        if line.startswith("#separator"):
            sep = _unescape(line.split(" ", 1)[1])
            continue
        if line.startswith("#"):
            key, _, value = line[1:].partition(sep)
            if key == "set_separator":
                set_sep = value
            elif key == "fields":
                fields = value.split(sep)
            elif key == "types":
                types = value.split(sep)
            continue
        row: dict[str, object] = {}
        for name, kind, raw in zip(fields, types, line.split(sep), strict=True):
            if raw == "-":
                continue
            if kind.startswith(("vector", "set")):
                row[name] = [] if raw == "(empty)" else [_unescape(v) for v in raw.split(set_sep)]
            elif kind == "bool":
                row[name] = raw == "T"
            elif kind in ("port", "count", "int"):
                row[name] = int(raw)
            elif kind == "time" and raw[0].isdigit():
                row[name] = float(raw)
            else:
                row[name] = _unescape(raw)
        out.append(json.dumps(row))
    return "\n".join(out) + "\n"


def key(obs: Observation) -> tuple[object, ...]:
    """A connection by its addresses and ports (how Zeek rows meet capture connections)."""
    return (obs.client.ip, obs.client.port, obs.server.ip, obs.server.port)


def last_plain_alert(obs: Observation) -> tuple[str, str] | None:
    plain = [a for a in obs.alerts if a.description != "encrypted" and not a.decrypted]
    return (plain[-1].sender.value, plain[-1].description) if plain else None


def _same_or_unknown(zeek: Seen, capture: Seen, what: str) -> None:
    """What Zeek shows equals what the capture shows; unknown is always allowed, never "no"
    where the capture saw "yes" (or the other way round)."""
    if zeek is not Seen.UNKNOWN:
        assert zeek is capture, what


def assert_same_facts(z: Observation, c: Observation, where: str) -> None:
    """Every fact the Zeek row shows equals the capture connection's; what Zeek cannot see
    is unknown and says why."""
    if c.version is not None and z.version is not None:
        assert z.version == c.version, where
    if z.cipher_suite and c.cipher_suite:
        assert z.cipher_suite == c.cipher_suite, where
    assert z.sni == c.sni, where
    assert z.resumed == c.resumed, where
    assert z.hello_retry == c.hello_retry, where
    _same_or_unknown(z.server_chain_seen, c.server_chain_seen, f"server chain {where}")
    if z.server_chain_seen is Seen.YES:
        assert [x.sha256 for x in z.server_chain] == [x.sha256 for x in c.server_chain]
    _same_or_unknown(z.cert_request.seen, c.cert_request.seen, f"CertificateRequest {where}")
    _same_or_unknown(z.client_chain_seen, c.client_chain_seen, f"client chain {where}")
    if z.client_chain_seen is Seen.YES:
        assert [x.sha256 for x in z.client_chain] == [x.sha256 for x in c.client_chain]
    if z.alerts and z.alerts[0].description != "encrypted":
        assert (z.alerts[0].sender.value, z.alerts[0].description) == last_plain_alert(c)
    if z.outcome is Outcome.ESTABLISHED and c.version is not None and z.version != "TLSv1.3":
        # in TLS 1.0-1.2 established is acceptance; in TLS 1.3 it proves nothing (the server
        # may refuse the client's certificate after it, which Zeek no longer reads)
        assert c.outcome is Outcome.ESTABLISHED, where
    elif z.outcome is Outcome.REJECTED_BY_SERVER:
        assert c.outcome is Outcome.REJECTED_BY_SERVER, where
    # where Zeek cannot see, it says why
    if z.version == "TLSv1.3":
        assert TLS13_NOTE in z.notes, where
        assert z.cert_request.seen is Seen.UNKNOWN and z.client_chain_seen is Seen.UNKNOWN
