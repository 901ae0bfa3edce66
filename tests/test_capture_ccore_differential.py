"""The C capture core against its Python twin on every capture we have (issue 14).

- At the boundary: every capture in fixtures/pcaps (lab/ too) and ../shared/pcaps (when
  present) gives the same frames, comments, notes, key log, segments and skip counts.
- Through analyze (in process, so the bulk shortcut's claims run on the C walk): the same
  results and notes for every one of them.
- End to end: ``analyze --format json`` is byte-identical apart from its time stamp.
- ``--version`` names the core that runs; MTLSPROBE_PURE_PYTHON=1 forces Python.
Skipped, with the reason, when the extension is not built (CI builds it).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mtlsprobe.capture import core
from mtlsprobe.run import expectations
from mtlsprobe.run.analyze import analyze
from tests import pcapgen
from tests.coretwins import (
    ROOT,
    SHARED,
    assert_same,
    captures,
    needs_ccore,
    observe,
    running,
)

FIXTURES = captures(ROOT / "fixtures" / "pcaps")
SHARED_CAPTURES = captures(SHARED)
SKIP_SHARED = pytest.mark.skipif(not SHARED_CAPTURES, reason=f"{SHARED} is absent")
# a sample for the end-to-end runs: plain and with a key log, pcap and pcapng, the lab
SAMPLE = ("direct-tls12.pcap", "connect-tunnel.pcap", "intercepting-proxy.pcapng",
          "lab/mitmproxy-transparent.pcapng", "lab/haproxy-terminator.pcapng")

pytestmark = needs_ccore


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT.parent))


def test_fixture_captures_are_there():
    assert len(FIXTURES) >= 20


@pytest.mark.parametrize("path", FIXTURES, ids=_rel)
def test_every_fixture_capture_gives_the_same_frames_and_segments(path):
    result = assert_same(path.read_bytes(), _rel(path))
    assert result["segments"]


@SKIP_SHARED
def test_every_shared_capture_gives_the_same_frames_and_segments():
    decoded = 0
    for path in SHARED_CAPTURES:
        result = assert_same(path.read_bytes(), _rel(path))
        decoded += sum(s is not None for s in result.get("segments", ()))  # type: ignore[attr-defined]
    assert decoded > 10_000


def _analyze_both(paths: list[Path]) -> None:
    expect = expectations.build(ca=(), pins=(), baseline=None)
    for path in paths:
        keys = path.with_name(path.name + ".keys")
        texts = [keys.read_text()] if keys.is_file() else []
        with running(False):
            python = analyze([path], expect, keylog_texts=texts, jobs=1)
        with running(True):
            c = analyze([path], expect, keylog_texts=texts, jobs=1)
        assert c.results == python.results, _rel(path)
        assert c.notes == python.notes, _rel(path)
        assert observe(path, True) == observe(path, False), _rel(path)


def test_every_fixture_capture_gives_the_same_analysis():
    _analyze_both(FIXTURES)


@SKIP_SHARED
def test_every_shared_capture_gives_the_same_analysis():
    _analyze_both(SHARED_CAPTURES)


def test_generated_links_and_encapsulations_give_the_same_analysis(tmp_path):
    """Every link type and encapsulation tests/pcapgen.py writes, in pcap both byte orders
    and nanoseconds, and in pcapng with PB, SPB, comments and a key log."""
    segs = pcapgen.conversation([("c", b"\x16\x03\x01\x00\x05hello"),
                                 ("s", b"\x16\x03\x03\x00\x02hi" + b"x" * 3000)])
    paths = []
    for i, link in enumerate([*pcapgen.LINKTYPES, *pcapgen.ENCAPSULATIONS, "mpls/vlan/vxlan",
                              "vlan/gre6/erspan3"]):
        paths.append(pcapgen.capture(segs, tmp_path / f"{i}.pcap", link, nano=bool(i % 2),
                                     big_endian=bool(i % 3 == 0)))
    frames = pcapgen.frames(segs, "vlan")
    packets = [(i % 2, ts, frame) for i, (ts, frame) in enumerate(frames)]
    for big in (False, True):
        paths.append(pcapgen.write_pcapng(
            tmp_path / f"ng{big}.pcapng", [(1, 6), (1, 9)], packets, big_endian=big,
            keylog="CLIENT_RANDOM 00 11\n", kinds={1: "pb", 4: "spb"},
            epb_options={2: [(1, b"mtlsprobe attempt: a; client certificate: none")]}))
    _analyze_both(paths)
    for path in paths:
        assert_same(path.read_bytes(), path.name)


@pytest.mark.parametrize("link", ["vlan", "raw6", "sll2"])
def test_jobs_shares_give_the_same_analysis_on_both_cores(tmp_path, link):
    """--jobs workers drop other shares' frames with the C claimant (ShareCore) as with
    the Python one: the same results as one reader, on both cores."""
    messages = [("c", b"\x16\x03\x01\x00\x05hello"), ("s", b"\x16\x03\x03\x00\x02hi"),
                ("c", b"\x17\x03\x03\x00\x10" + b"q" * 16),
                ("s", (b"\x17\x03\x03\x40\x00" + b"r" * 16384) * 8)]
    segs: list[pcapgen.Seg] = []
    for i in range(8):
        client = ("2001:db8::1" if link == "raw6" else "10.0.0.1", 40000 + i)
        server = ("2001:db8::2" if link == "raw6" else "10.0.0.2", 443)
        segs += pcapgen.conversation(messages, client=client, server=server,
                                     start=1_700_000_000 + i / 7)
    path = pcapgen.capture(sorted(segs, key=lambda s: s.ts), tmp_path / "shares.pcap", link)
    expect = expectations.build(ca=(), pins=(), baseline=None)
    runs = {}
    for ccore in (False, True):
        with running(ccore):
            for jobs in (1, 3):
                run = analyze([path], expect, jobs=jobs)
                runs[ccore, jobs] = (run.results, run.notes)
    assert runs[True, 3] == runs[False, 3] == runs[False, 1] == runs[True, 1]
    assert runs[True, 1][0]


def _json_report(path: Path, pure: bool) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if k != core.PURE_PYTHON_ENV}
    env["PYTHONPATH"] = str(ROOT)
    if pure:
        env[core.PURE_PYTHON_ENV] = "1"
    keys = path.with_name(path.name + ".keys")
    cmd = [sys.executable, "-m", "mtlsprobe", "analyze", "--format", "json", str(path)]
    if keys.is_file():
        cmd += ["--keylog", str(keys)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, re.sub(r'"generated_at": "[^"]*"', '"generated_at": ""', proc.stdout)


@pytest.mark.parametrize("name", SAMPLE)
def test_analyze_json_is_byte_identical_on_both_cores(name):
    path = ROOT / "fixtures" / "pcaps" / name
    python, c = _json_report(path, pure=True), _json_report(path, pure=False)
    assert '"results"' in c[1] and c == python


def _version(pure: bool) -> str:
    env = {k: v for k, v in os.environ.items() if k != core.PURE_PYTHON_ENV}
    env["PYTHONPATH"] = str(ROOT)
    if pure:
        env[core.PURE_PYTHON_ENV] = "1"
    proc = subprocess.run([sys.executable, "-m", "mtlsprobe", "--version"], capture_output=True,
                          text=True, env=env, timeout=60, check=True)
    return proc.stdout


def test_version_names_the_core_that_runs():
    assert "capture core C," in _version(pure=False)
    assert "capture core Python (MTLSPROBE_PURE_PYTHON set)," in _version(pure=True)
