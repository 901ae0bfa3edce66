"""Test driver: the analyze JSON report of every capture we have, from one process.

Run as ``python -m tests.compiled_reports OUT`` (twice by tests/test_compiled_differential.py,
once with the mypyc-compiled modules and once with ``MTLSPROBE_PURE_PYTHON=1``). Writes to
OUT a JSON object: capture path -> its report (time stamp blanked) or its error's type and
text; first, under ``"-build"``, which build of the modules ran. Key logs are used where
the capture has one (``X.keys`` beside it, or the shared manifest's ``keylog``).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

from mtlsprobe import compiled
from mtlsprobe.model.errors import InputError
from mtlsprobe.report.jsonout import dumps
from mtlsprobe.run import expectations, pipeline
from mtlsprobe.run.analyze import analyze
from tests.coretwins import ROOT, SHARED, captures

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def keylogs() -> dict[Path, Path]:
    """capture -> key log, for the shared captures the manifest gives one."""
    manifest = SHARED / "manifest.json"
    if not manifest.is_file():
        return {}
    found = {}
    for entry in json.loads(manifest.read_text()):
        if entry.get("keylog"):
            found[SHARED / entry["path"]] = SHARED / entry["keylog"]
    return found


def report(path: Path, keylog: Path | None) -> str:
    expect = expectations.build(ca=(), pins=(), baseline=None)
    texts = [keylog.read_text(errors="replace")] if keylog and keylog.is_file() else []
    try:
        run = analyze([path], expect, keylog_texts=texts, jobs=1)
    except InputError as exc:
        return f"InputError: {exc}"
    made = pipeline.make_report("analyze", run.results, {"captures": [path.name]}, run.notes)
    return dumps(dataclasses.replace(made, generated_at=EPOCH))


def main(out: Path) -> None:
    keys = keylogs()
    results: dict[str, str] = {"-build": compiled.name()}
    for path in captures(ROOT / "fixtures" / "pcaps", SHARED):
        sidecar = path.with_name(path.name + ".keys")
        results[str(path.relative_to(ROOT.parent))] = report(
            path, sidecar if sidecar.is_file() else keys.get(path))
    out.write_text(json.dumps(results, indent=0, sort_keys=True))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
