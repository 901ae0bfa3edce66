"""Every crash the fuzz harness found, as a test with its input built here, and the fix
it led to (see the commit that added each)."""

from __future__ import annotations

import base64
import gzip
import importlib.machinery
import io
import json
import struct
import types
from datetime import datetime, timezone
from pathlib import Path

import pytest
import targets
from click.testing import CliRunner

from mtlsprobe.capture import pcapfile
from mtlsprobe.capture.pcapfile import MAX_BLOCK, CaptureFile
from mtlsprobe.capture.pcapng_writer import PcapngWriter
from mtlsprobe.capture.tcp import TcpReassembler
from mtlsprobe.cli.main import main
from mtlsprobe.live.reflector_echo import ECHO_HEADER, parse_echo
from mtlsprobe.model.errors import InputError
from mtlsprobe.report.fleet.records import InputStats
from mtlsprobe.report.jsonin import from_jsonable
from mtlsprobe.report.jsonout import rfc3339
from mtlsprobe.run import expectations
from mtlsprobe.run.discovery import read_serverinfo
from mtlsprobe.run.report_files import read_documents
from mtlsprobe.run.summarize import roll_up

HERE = Path(__file__).parent
SCRIPT = HERE.parents[1] / "scripts" / "fuzz"
FIXTURE = HERE.parents[1] / "fixtures" / "pcaps" / "direct-tls12.pcap"
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
BAD_DEFLATE_BLOCK = b"\x06"  # a deflate block of the reserved type 3: zlib.error, no OSError


def _stored(data: bytes) -> bytes:
    """``data`` as deflate stored blocks (not final), so what follows decides the end."""
    out = b""
    for i in range(0, len(data), 60000):
        part = data[i : i + 60000]
        out += b"\x00" + struct.pack("<HH", len(part), len(part) ^ 0xFFFF) + part
    return out


def _pcap(frames: int) -> bytes:
    frame = bytes(100)
    records = struct.pack("<IIII", 1, 0, len(frame), len(frame)) + frame
    return struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + records * frames


def test_broken_deflate_data_at_the_start_is_not_a_capture() -> None:
    with pytest.raises(InputError, match="broken gzip data"):
        CaptureFile(io.BytesIO(GZIP_HEADER + BAD_DEFLATE_BLOCK))


def test_broken_deflate_data_mid_file_stops_with_a_note_after_the_frames_before() -> None:
    capture = CaptureFile(io.BytesIO(GZIP_HEADER + _stored(_pcap(2000)) + BAD_DEFLATE_BLOCK))
    frames = list(capture)
    assert 1000 < len(frames) < 2000
    assert capture.notes[-1].startswith("read error, stopped: Error -3 while decompressing")


def test_a_snap_length_of_4_gib_does_not_let_a_frame_be_read_whole() -> None:
    # a 2 MB .gz capture (snap length 0xffffffff, a 2 GiB record of zeros) was a MemoryError
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 0xFFFFFFFF, 1)
    record = struct.pack("<IIII", 1, 0, MAX_BLOCK + 1, MAX_BLOCK + 1)
    capture = CaptureFile(io.BytesIO(gzip.compress(header + record + bytes(1 << 20))))
    assert list(capture) == []
    assert capture.notes[-1] == (
        f"corrupt pcap record after 0 packets ({MAX_BLOCK + 1}-byte frame), stopped")


def test_embedded_key_logs_are_read_up_to_a_limit(monkeypatch) -> None:
    # a gzip'd pcapng can hold gigabytes of Decryption Secrets Blocks in a few megabytes
    monkeypatch.setattr(pcapfile, "MAX_KEYLOG", 1000)
    line = "CLIENT_RANDOM " + "ab" * 32 + " " + "cd" * 48 + "\n"  # 176 bytes
    out = io.BytesIO()
    writer = PcapngWriter(out)
    for _ in range(10):
        writer.add_secrets(line)
    capture = CaptureFile(io.BytesIO(gzip.compress(out.getvalue())))
    assert list(capture) == []
    assert capture.keylog_text == line * 6  # the block that crosses the limit is still read
    assert capture.notes[1:] == ["ignored decryption secrets past 0 MiB"] * 4


def test_a_segment_waiting_across_the_cap_leaves_no_gap_past_the_cap_when_flushed() -> None:
    r = TcpReassembler(64)
    r.syn(1000)
    assert r.segment(1001 + 63, bytes(range(22))) == ()  # offsets 63..84, a hole before
    assert r.flush() == [b"\x00"]  # the one byte below the cap
    assert r.gaps == [(0, 63)] and r.next_offset == 64 and r.beyond_cap == 21


def test_summarize_counts_a_report_with_broken_deflate_data_as_unreadable(tmp_path) -> None:
    lines = b"".join(b'{"n": %d}\n' % i for i in range(20000))
    path = tmp_path / "reports.jsonl.gz"
    path.write_bytes(GZIP_HEADER + _stored(lines) + BAD_DEFLATE_BLOCK)
    stats = InputStats()
    read = [value for _, value in read_documents([str(path)], stats)]
    assert 0 < len(read) < 20000 and read[0] == {"n": 0}
    assert stats.unreadable == [
        f"{path}: read failed (Error -3 while decompressing data: invalid block type)"]


# --- JSON from files and peers: nested a thousand deep, numbers too large ---------------

DEEP = "[" * 100_000  # json.loads: RecursionError, which is no ValueError


@pytest.mark.parametrize(("text", "why"), [
    (DEEP, "not a JSON report (nested too deeply)"),
    ('{"schema_version": 1, "results": [{"target": {"port": 1e400}}]}',
     "not an mtlsprobe report (target port 'inf' is not a port number)"),
    ('{"schema_version": 1, "results": [{"target": {"port": 1.5}}]}',
     "not an mtlsprobe report (target port '1.5' is not a port number)"),
], ids=["deep", "infinite-port", "fractional-port"])
def test_a_hostile_baseline_is_one_line_and_exit_3(tmp_path, text, why) -> None:
    path = tmp_path / "baseline.json"
    path.write_text(text)
    with pytest.raises(InputError) as caught:
        expectations.load_baseline_file(path)
    assert str(caught.value) == f"--baseline {path}: {why}"
    assert caught.value.exit_code == 3


def test_a_reflector_echo_nested_a_thousand_deep_is_malformed_not_a_crash() -> None:
    header = base64.urlsafe_b64encode(DEEP[:12_000].encode()).decode()
    assert parse_echo([(ECHO_HEADER, header)], None) == (
        "malformed", None, False, "echo does not decode: nested too deeply")


def test_an_agent_configuration_nested_a_thousand_deep_is_a_note(tmp_path) -> None:
    path = tmp_path / "serverinfo.json"
    path.write_text(DEEP)
    found = read_serverinfo(path)
    assert found.notes == (f"{path}: not valid JSON (nested too deeply); ignored",)


def test_a_date_before_the_year_1000_is_written_with_four_digits_and_reads_back() -> None:
    # a certificate may say notBefore 0999: strftime wrote "999-01-01T...", unreadable
    when = datetime(999, 1, 1, tzinfo=timezone.utc)
    assert rfc3339(when) == "0999-01-01T00:00:00Z"
    assert from_jsonable(datetime, rfc3339(when)) == when


def test_scripts_fuzz_runs_every_target_and_each_has_its_test() -> None:
    loader = importlib.machinery.SourceFileLoader("scripts_fuzz", str(SCRIPT))
    script = types.ModuleType(loader.name)
    script.__file__ = str(SCRIPT)
    loader.exec_module(script)
    assert set(script.TESTS) == set(targets.TARGETS) == set(targets.SEEDS)
    for test in script.TESTS.values():
        path, name = test.split("::")
        assert f"def {name}(" in (HERE / path).read_text(), test


# --- agents' reports and bad values quoted in error lines -------------------------------


def test_a_report_with_findings_a_number_and_verdicts_lists_is_read_not_fatal(tmp_path) -> None:
    # findings 1.5: "TypeError: 'float' object is not iterable" ended the whole roll-up
    docs = [
        {"schema_version": 1, "host": {"hostname": "a"}, "generated_at": "2026-01-01T00:00:00Z",
         "results": [{"verdict": "inspected", "findings": 1.5, "target": {"host": "h"}}]},
        {"schema_version": 1, "host": {"hostname": "b"}, "results": [{"verdict": ["inspected"]}]},
        {"schema_version": 1, "record": "result", "host": {"hostname": "c"}, "verdict": {}},
    ]
    path = tmp_path / "reports.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    summary = roll_up([str(path)], now=datetime(2026, 1, 2, tzinfo=timezone.utc))
    assert sorted(a.agent for a in summary.agents) == ["a", "b", "c"]


def test_an_error_line_quotes_a_bad_value_escaped_and_cut(tmp_path) -> None:
    # an observation's time that is no time: the message quoted the 3,000-character value
    # whole, controls and all
    value = "\x1b]0;owned\x07" + "x" * 3000
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps({"schema_version": 1, "results": [
        {"target": {"port": 443}, "observations": [{"observed_at": value}]}]}))
    out = CliRunner().invoke(main, ["analyze", str(FIXTURE), "--baseline", str(path)])
    assert out.exit_code == 3
    [line] = out.stderr.splitlines()
    assert line.startswith(f"mtlsprobe: error: --baseline {path}: not an mtlsprobe report (")
    assert "\\x1b]0;owned\\x07" in line and "\x1b" not in line
    assert line.endswith("more characters)") and len(line) < 1100
