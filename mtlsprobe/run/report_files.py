"""Stream JSON documents out of report files, folders, stdin, gzip: one at a time.

Accepts full JSON reports (pretty-printed, as `--format json` writes them; several may be
concatenated), JSON Lines (`--format jsonl`), JSON arrays of either, and gzip of all of
these. Nothing here is fatal: unreadable paths and malformed lines are counted in
:class:`InputStats` (with a few examples) and reading goes on.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import sys
import zlib
from collections.abc import Iterable, Iterator
from typing import IO, Any

from mtlsprobe.report.fleet.records import InputStats

SUFFIXES = (".json", ".jsonl", ".ndjson", ".gz")
MAX_DOCUMENT = 64 * 1024 * 1024  # a report (or a line) larger than this is given up on
MAX_DEPTH = 64  # our reports nest about 8 deep; deeper is not ours (and could exhaust the stack)
TOO_LONG = "\x00too long"  # what _lines yields in place of a line over MAX_DOCUMENT
_GZIP_MAGIC = b"\x1f\x8b"


def expand(paths: Iterable[str], stats: InputStats) -> Iterator[str]:
    """Files to read: '-' and files as given; folders recursively (*.json, *.jsonl, *.gz)."""
    for p in paths:
        if p == "-":
            yield p
        elif os.path.isdir(p):
            found = False
            for root, dirs, files in os.walk(p):
                dirs.sort()
                for name in sorted(files):
                    if name.endswith(SUFFIXES):
                        found = True
                        path = os.path.join(root, name)
                        if os.path.isfile(path):
                            yield path
                        else:  # a named pipe or device in a folder would be waited on
                            stats.unreadable.append(f"{path}: not a regular file; skipped")
            if not found:
                stats.unreadable.append(f"{p}: folder holds no *.json, *.jsonl or *.gz file")
        elif os.path.exists(p):
            yield p
        else:
            stats.unreadable.append(f"{p}: no such file or folder")


def _open(path: str) -> IO[str]:
    raw: Any = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    try:
        if not hasattr(raw, "peek"):
            raw = io.BufferedReader(raw)
        if raw.peek(2)[:2] == _GZIP_MAGIC:
            raw = gzip.GzipFile(fileobj=raw, mode="rb")
        return io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline=None)
    except Exception:
        if path != "-":
            raw.close()
        raise


def _lines(stream: IO[str]) -> Iterator[str]:
    """The lines of `stream`, each read with a bound: a line over MAX_DOCUMENT is skipped
    (read on to its end in bounded pieces) and stands as TOO_LONG."""
    while True:
        line = stream.readline(MAX_DOCUMENT + 1)
        if not line:
            return
        if len(line) > MAX_DOCUMENT and not line.endswith("\n"):
            while (rest := stream.readline(MAX_DOCUMENT)) and not rest.endswith("\n"):
                pass
            yield TOO_LONG
            continue
        yield line


def _depth_ok(value: object) -> bool:
    """Whether `value` nests at most MAX_DEPTH levels (walked without recursion)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            if depth > MAX_DEPTH:
                return False
            stack.extend((v, depth + 1) for v in item if isinstance(v, (dict, list)))
    return True


def _loads(text: str) -> object:
    """json.loads, with documents nested too deeply refused as malformed (ValueError)."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels") from None
    if not _depth_ok(value):
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    return value


def _from_value(value: object) -> Iterator[object]:
    if isinstance(value, list):
        yield from value
    else:
        yield value


def documents_in(lines: Iterable[str], name: str, stats: InputStats) -> Iterator[
        tuple[str, object]]:
    """(where, JSON value) for each document in a stream of text lines.

    One JSON value per line, or pretty-printed values whose first line is a lone '{' or '['
    and whose top-level closing bracket starts a line (what json.dumps(indent=...) writes).
    """
    pending: list[str] = []
    size = start = 0
    for n, line in enumerate(lines, 1):
        if pending:
            if line.startswith(("{", "[")) and line.strip() in ("{", "["):
                stats.bad_line(f"{name}:{start}", "unterminated JSON document")
                pending, size, start = [line], len(line), n
                continue
            pending.append(line)
            size += len(line)
            if line.startswith(("}", "]")):
                try:
                    value = _loads("".join(pending))
                except ValueError:
                    if size <= MAX_DOCUMENT:
                        continue  # a nested bracket at column 0: keep reading
                    stats.bad_line(f"{name}:{start}", "JSON document too large or malformed")
                    pending, size = [], 0
                    continue
                pending, size = [], 0
                for v in _from_value(value):
                    yield f"{name}:{start}", v
            elif size > MAX_DOCUMENT:
                stats.bad_line(f"{name}:{start}", "JSON document too large")
                pending, size = [], 0
            continue
        if line is TOO_LONG:
            stats.bad_line(f"{name}:{n}", f"line longer than {MAX_DOCUMENT // 2**20} MiB")
            continue
        text = line.strip()
        if not text:
            continue
        if text in ("{", "["):
            pending, size, start = [line], len(line), n
            continue
        try:
            value = _loads(text)
        except ValueError as exc:  # JSONDecodeError, an integer too long, or too deep
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            stats.bad_line(f"{name}:{n}", f"not JSON ({reason})")
            continue
        for v in _from_value(value):
            yield f"{name}:{n}", v
    if pending:
        try:
            value = _loads("".join(pending))
        except ValueError:
            stats.bad_line(f"{name}:{start}", "unterminated JSON document")
        else:
            for v in _from_value(value):
                yield f"{name}:{start}", v


def read_documents(paths: Iterable[str], stats: InputStats) -> Iterator[tuple[str, object]]:
    """Every JSON document in every input, in order; problems go to `stats`."""
    for path in expand(paths, stats):
        name = "<stdin>" if path == "-" else path
        try:
            stream = _open(path)
        except OSError as exc:
            stats.unreadable.append(f"{name}: {exc.strerror or exc}")
            continue
        stats.streams += 1
        try:
            with stream:
                for where, value in documents_in(_lines(stream), name, stats):
                    stats.documents += 1
                    yield where, value
        except (OSError, EOFError, zlib.error) as exc:  # zlib.error: a broken deflate stream
            stats.unreadable.append(f"{name}: read failed ({exc})")
