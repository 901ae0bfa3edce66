"""Remake ``scripts/zeek/zeek_consts.json`` (Zeek's SSL name tables) from Zeek's own source.

Usage:
    cd scripts/zeek && python3 zeek_consts_from_source.py CONSTS_ZEEK [COMMIT] > zeek_consts.json

CONSTS_ZEEK is Zeek's ``scripts/base/protocols/ssl/consts.zeek`` (BSD-3-Clause; e.g.
``git --git-dir=<zeek clone> show HEAD:scripts/base/protocols/ssl/consts.zeek``). It keeps
the four tables ssl.log needs, by number: ``version_strings``, ``cipher_desc``,
``ec_curves`` and ``alert_descriptions``; the deriver (``zeek_logs_from_capture.py``)
writes the names Zeek writes, and Zeek's own ``&default`` for a number not in a table.
"""

from __future__ import annotations

import json
import re
import sys

TABLES = ("version_strings", "cipher_desc", "ec_curves", "alert_descriptions")
_CONST = re.compile(r"^\s*const\s+(\w+)\s*=\s*(0x[0-9A-Fa-f]+|\d+)\s*;", re.M)
_ENTRY = re.compile(r'^\s*\[(\w+)\]\s*=\s*"([^"]*)"', re.M)


def tables(text: str) -> dict[str, dict[str, str]]:
    """The named tables of consts.zeek as {table: {number as decimal text: name}}."""
    consts = {name: int(value, 0) for name, value in _CONST.findall(text)}
    out: dict[str, dict[str, str]] = {}
    for table in TABLES:
        start = text.index(f"const {table}:")
        end = text.index("&default", start)
        entries: dict[str, str] = {}
        for key, name in _ENTRY.findall(text[start:end]):
            number = int(key, 0) if key[0].isdigit() else consts[key]
            entries[str(number)] = name
        out[table] = entries
    return out


def main(argv: list[str]) -> int:
    with open(argv[1], encoding="utf-8") as f:
        text = f.read()
    commit = argv[2] if len(argv) > 2 else "unknown"
    data = {"source": f"zeek/zeek {commit}: scripts/base/protocols/ssl/consts.zeek "
                      "(BSD-3-Clause)", **tables(text)}
    json.dump(data, sys.stdout, indent=1, sort_keys=False)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
