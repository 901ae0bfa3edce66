"""Test driver: the analyze JSON report of every capture we have, from one process.

Run as ``python -m tests.compiled_reports OUT`` (twice by tests/test_compiled_differential.py,
once with the mypyc-compiled modules and once with ``MTLSPROBE_PURE_PYTHON=1``). Writes to
OUT a JSON object: capture path -> its report (time stamp fixed) or its error's type and
text; first, under ``"-build"``, which build of the modules ran. Key logs are used where
the capture has one (``X.keys`` beside it, or the shared manifest's ``keylog``). Then hostile
input: seeded mutants and truncations of the fixture captures (scripts/fuzz_captures.py's
mutations; ``MTLSPROBE_FUZZ_SCALE=N`` makes N times as many), under ``mutant:...`` keys.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import random
import sys
import tempfile
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
    except Exception as exc:  # a bug: the test fails on it, with both builds' text
        return f"BUG {type(exc).__name__}: {exc}"
    made = pipeline.make_report("analyze", run.results, {"captures": [path.name]}, run.notes)
    return dumps(dataclasses.replace(made, generated_at=EPOCH))


def main(out: Path) -> None:
    keys = keylogs()
    results: dict[str, str] = {"-build": compiled.name()}
    for path in captures(ROOT / "fixtures" / "pcaps", SHARED):
        sidecar = path.with_name(path.name + ".keys")
        results[str(path.relative_to(ROOT.parent))] = report(
            path, sidecar if sidecar.is_file() else keys.get(path))
    results.update(mutants(keys))
    out.write_text(json.dumps(results, indent=0, sort_keys=True))


def mutants(keys: dict[Path, Path]) -> dict[str, str]:
    """Reports of seeded mutants and truncations of the fixture captures."""
    spec = importlib.util.spec_from_file_location(
        "fuzz_captures", ROOT / "scripts" / "fuzz_captures.py")
    assert spec is not None and spec.loader is not None
    fuzz = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fuzz)
    scale = max(1, int(os.environ.get("MTLSPROBE_FUZZ_SCALE", "1")))
    rnd = random.Random(140 * scale)
    results: dict[str, str] = {}
    seeds = [p for p in captures(ROOT / "fixtures" / "pcaps") if p.stat().st_size < 400_000]
    with tempfile.TemporaryDirectory(prefix="mtlsprobe-mutants-") as tmp:
        for path in seeds:
            data = path.read_bytes()
            sidecar = path.with_name(path.name + ".keys")
            keylog = sidecar if sidecar.is_file() else keys.get(path)
            cuts = sorted({len(data) // 2, len(data) - 1, *rnd.sample(range(len(data)), 2)})
            variants = [fuzz.mutate(data, rnd) for _ in range(6 * scale)]
            variants += [data[:cut] for cut in cuts]
            for i, variant in enumerate(variants):
                name = f"mutant:{path.relative_to(ROOT)}:{i}"
                mutant = Path(tmp) / f"m{i}{path.suffix}"
                mutant.write_bytes(variant)
                results[name] = report(mutant, keylog).replace(str(mutant), "MUTANT")
    return results


if __name__ == "__main__":
    main(Path(sys.argv[1]))
