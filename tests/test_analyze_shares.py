"""analyze --jobs: a capture read in shares by forked processes gives the same report as
one reader (analyze_shares). Real captures: the committed fixtures and the shared corpus."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from mtlsprobe.capture import bulk
from mtlsprobe.model.errors import InputError
from mtlsprobe.run import expectations
from mtlsprobe.run import shares as analyze_shares
from mtlsprobe.run.analyze import analyze

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures" / "pcaps"
SHARED = ROOT.parent / "shared" / "pcaps"
EXPECT = expectations.build(ca=(), pins=(), baseline=None)


def _fixtures() -> list[Path]:
    return sorted(p for p in FIXTURES.iterdir() if p.suffix in (".pcap", ".pcapng"))


def _keys(path: Path) -> list[str]:
    keys = path.with_name(path.name + ".keys")
    return [keys.read_text()] if keys.exists() else []


def _same_run(path: Path, parts: int, keylogs: list[str]) -> None:
    one = analyze([path], EXPECT, keylog_texts=keylogs, jobs=1)
    shared = analyze([path], EXPECT, keylog_texts=keylogs, jobs=parts)
    assert shared.results == one.results
    assert shared.notes == one.notes


@pytest.mark.parametrize("path", _fixtures(), ids=lambda p: p.name)
def test_fixture_captures_read_in_shares_give_the_same_report(path: Path) -> None:
    _same_run(path, 3, _keys(path))


def test_forgetting_other_shares_keys_changes_nothing(monkeypatch) -> None:
    """A worker forgets the raw keys of other shares' connections past OTHERS_MEMORY; their
    next frames are decoded and hashed again. At a memory of one key, every fixture still
    gives the single reader's report (the workers are forked with the patched limit)."""
    monkeypatch.setattr(bulk, "OTHERS_MEMORY", 1)
    for path in _fixtures():
        _same_run(path, 3, _keys(path))


def _busiest_shared_captures(n: int) -> list[tuple[Path, Path | None]]:
    manifest = json.loads((SHARED / "manifest.json").read_text())
    entries = sorted(manifest, key=lambda e: -len(e.get("handshakes", [])))[:n]
    return [(SHARED / e["path"], SHARED / e["keylog"] if e.get("keylog") else None)
            for e in entries]


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"{SHARED} absent")
def test_busy_real_captures_read_in_shares_give_the_same_report() -> None:
    compared = 0
    for path, keylog in _busiest_shared_captures(12):
        if path.suffix == ".gz":
            continue
        _same_run(path, 2, [keylog.read_text()] if keylog else [])
        compared += 1
    assert compared >= 8


def test_what_is_read_in_shares(tmp_path: Path) -> None:
    capture = _fixtures()[0]
    assert analyze_shares.shares_for(capture, 3) == 3  # asked for
    assert analyze_shares.shares_for(capture, 1) == 1
    assert analyze_shares.shares_for(capture, None) == 1  # small: not worth forking
    packed = tmp_path / "x.pcap.gz"
    packed.write_bytes(gzip.compress(capture.read_bytes()))
    assert analyze_shares.shares_for(packed, 4) == 1  # each worker would inflate it
    assert analyze_shares.shares_for("-", 4) == 1  # stdin cannot be read twice
    assert analyze_shares.shares_for(tmp_path, 4) == 1  # a folder: its files are sources


def test_not_a_capture_is_one_input_error_before_any_worker(tmp_path: Path) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("not a capture\n" * 100)
    with pytest.raises(InputError, match="not a pcap or pcapng capture"):
        analyze([junk], EXPECT, jobs=2)


def test_the_command_reads_in_shares_with_the_same_report(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from mtlsprobe.cli.main import main

    path = _fixtures()[0]
    reports = []
    for jobs in ("1", "2"):
        out = tmp_path / f"j{jobs}.json"
        result = CliRunner().invoke(main, ["analyze", str(path), "--jobs", jobs,
                                           "--format", "json", "--output", str(out)])
        assert result.exit_code in (0, 10, 11, 12), result.output
        report = json.loads(out.read_text())
        report.pop("generated_at")
        reports.append(report)
    assert reports[0] == reports[1]
