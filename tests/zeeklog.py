"""Test helpers for Zeek logs: read Zeek's TSV, and import the deriver script.

``read_tsv`` reads Zeek's ASCII log format (several header blocks in one file too, as
btest concatenates them): rows as {field: text}. ``deriver`` imports
``scripts/zeek/zeek_logs_from_capture.py`` (scripts/ is not a package).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts" / "zeek"
DERIVER = SCRIPTS / "zeek_logs_from_capture.py"


def deriver_module(name: str) -> ModuleType:
    """One of the deriver's modules in scripts/ (``zeek_x509``, ``zeek_ssl``, ...)."""
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    return importlib.import_module(name)


def deriver() -> ModuleType:
    return deriver_module("zeek_logs_from_capture")


def read_tsv(path: Path) -> list[dict[str, str]]:
    """Every row of a Zeek TSV log as {field name: logged text}."""
    rows: list[dict[str, str]] = []
    fields: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#fields\t"):
            fields = line.split("\t")[1:]
        elif line and not line.startswith("#"):
            rows.append(dict(zip(fields, line.split("\t"), strict=True)))
    return rows


def conn_key(row: dict[str, str]) -> tuple[str, str, str, str]:
    return row["id.orig_h"], row["id.orig_p"], row["id.resp_h"], row["id.resp_p"]
