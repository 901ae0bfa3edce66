"""Helpers of the Zeek log tests: read logs as Observations, and write Zeek's JSON form of a
TSV log (a small independent converter, so the JSON reader is checked against the TSV one)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from mtlsprobe.model import Observation
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
