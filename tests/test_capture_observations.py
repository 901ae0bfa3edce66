"""The streaming analyze path (capture.observations) against the Transcript path, and the
progress hook/bar.

The streaming reader must give exactly the observations that ``observe(transcript,
keylog=...)`` gives for every transcript ``CaptureReader`` yields, on the committed
fixture captures (real loopback TLS, with key logs) and the shared real-world corpus.
"""

from __future__ import annotations

import io
import json
import os
import pty
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from tools import drain_pty

from mtlsprobe.capture.observations import ObservationReader, iter_observations
from mtlsprobe.capture.transcripts import CaptureReader
from mtlsprobe.run.progress import ProgressBar, progress_for
from mtlsprobe.tls.keylog import KeyLog, merge_keylogs, parse_keylogs
from mtlsprobe.tls.observer import observe

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures" / "pcaps"
SHARED = ROOT.parent / "shared" / "pcaps"


def _fixture_captures() -> list[Path]:
    if not FIXTURES.is_dir():
        return []
    return sorted(p for p in FIXTURES.iterdir() if p.suffix in (".pcap", ".pcapng"))


def _shared_captures() -> list[tuple[Path, Path | None]]:
    manifest = SHARED / "manifest.json"
    if not manifest.exists():
        return []
    out = []
    for entry in json.loads(manifest.read_text()):
        keylog = entry.get("keylog")
        out.append((SHARED / entry["path"], SHARED / keylog if keylog else None))
    return out


def _transcript_path(path: Path, keylog: KeyLog | None) -> list:
    reader = CaptureReader(path, max_bytes=None)  # the streaming reader reads all
    out = []
    for t in reader:
        embedded = KeyLog.parse(reader.keylog_text) if reader.keylog_text else None
        out.append(observe(t, keylog=merge_keylogs(keylog, embedded)))
    return out


def _same(streamed: list, transcripts: list) -> bool:
    """Equal observations, notes compared as sets: the streaming reader learns of a gap
    when the peer's ACK passes it, while the transcript path places it in stream order, so
    a gap's note may come before or after the notes of records read meanwhile."""

    def norm(observations: list) -> list:
        return [replace(o, notes=tuple(sorted(o.notes))) for o in observations]

    return norm(streamed) == norm(transcripts)


def _keys_for(path: Path) -> KeyLog | None:
    keys = path.with_name(path.name + ".keys")
    return KeyLog.parse(keys.read_text()) if keys.exists() else None


@pytest.mark.parametrize("path", _fixture_captures(), ids=lambda p: p.name)
def test_fixture_captures_stream_like_transcripts(path: Path) -> None:
    keylog = _keys_for(path)
    streamed = list(iter_observations(path, keylog=keylog))
    assert streamed, "fixture capture with no TLS connection"
    assert _same(streamed, _transcript_path(path, keylog))


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"{SHARED} absent")
def test_shared_corpus_streams_like_transcripts() -> None:
    compared = 0
    for path, keylog_path in _shared_captures():
        keylog = KeyLog.parse(keylog_path.read_text()) if keylog_path else None
        try:
            streamed = list(iter_observations(path, keylog=keylog))
        except Exception as exc:  # a capture the reader refuses must be refused by both
            with pytest.raises(type(exc)):
                _transcript_path(path, keylog)
            continue
        assert _same(streamed, _transcript_path(path, keylog)), path
        compared += len(streamed)
    assert compared > 500  # the corpus has ~1000 TLS handshakes


def test_keylog_text_and_parsed_keylog_agree() -> None:
    captures = [p for p in _fixture_captures() if _keys_for(p) is not None]
    if not captures:
        pytest.skip("no fixture capture with a key log")
    path = captures[0]
    text = path.with_name(path.name + ".keys").read_text()
    by_text = list(iter_observations(path, keylog=text))
    assert by_text == list(iter_observations(path, keylog=KeyLog.parse(text)))
    assert any(o.decrypted for o in by_text)
    assert not any(o.decrypted for o in iter_observations(path))


def test_merge_keylogs_keeps_every_secret() -> None:
    a = KeyLog.parse(f"CLIENT_RANDOM {'11' * 32} {'aa' * 48}\n")
    b = KeyLog.parse(f"CLIENT_RANDOM {'22' * 32} {'bb' * 48}\nnonsense\n")
    merged = merge_keylogs(a, None, b)
    assert merged is not None and len(merged) == 2 and merged.skipped_lines == 1
    assert merge_keylogs(None, None) is None
    assert merge_keylogs(a) is a


@pytest.mark.parametrize("texts", [
    [],
    ["", "  \n"],
    ["# only a comment\n"],
    [f"CLIENT_RANDOM {'11' * 32} {'aa' * 48}", f"CLIENT_RANDOM {'11' * 32} {'cc' * 48}\nbad\n"],
    [f"CLIENT_RANDOM {'11' * 32} {'aa' * 48}\r", "", f"EXPORTER_SECRET {'11' * 32} {'dd' * 32}"],
])
def test_parse_keylogs_equals_parsing_the_joined_texts(texts: list[str]) -> None:
    """Each --keylog text parsed and merged equals the texts joined and parsed once (what
    analyze did before the merge lived in tls.keylog): later texts win, skips add up."""
    joined = "\n".join(t for t in texts if t)
    expected = KeyLog.parse(joined) if joined.strip() else None
    assert parse_keylogs(texts) == expected


def test_progress_hook_reaches_the_file_size() -> None:
    path = _fixture_captures()[0] if _fixture_captures() else None
    if path is None:
        pytest.skip("no fixture captures")
    calls: list[tuple[int, int | None]] = []
    reader = ObservationReader(path, progress=lambda done, total: calls.append((done, total)))
    list(reader)
    size = path.stat().st_size
    assert calls and calls[-1] == (size, size)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_progress_bar_renders_and_erases() -> None:
    out = io.StringIO()
    bar = ProgressBar(200_000_000, stream=out, interval=0.0)
    bar(50_000_000)
    bar(200_000_000)
    assert "25%" in out.getvalue() and "100%" in out.getvalue()
    bar.close()
    assert out.getvalue().endswith("\r")


def test_progress_only_for_large_inputs_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert progress_for(10 << 30, stream=io.StringIO()) is None  # not a terminal
    assert progress_for(1000, stream=Tty()) is None  # small
    assert progress_for(None, stream=Tty()) is None  # stdin: size unknown
    assert isinstance(progress_for(10 << 30, stream=Tty()), ProgressBar)


def _padded_capture(tmp_path: Path) -> Path:
    """A fixture capture followed by 66 MB of non-IP frames: large enough for the bar."""
    source = FIXTURES / "direct-tls12.pcap"
    frame = bytes(12) + b"\x88\xb5" + bytes(65536 - 14)  # EtherType 0x88B5: local experimental
    record = (0).to_bytes(4, "little") * 2 + len(frame).to_bytes(4, "little") * 2 + frame
    path = tmp_path / "big.pcap"
    with path.open("wb") as out:
        out.write(source.read_bytes())
        for _ in range((66 << 20) // len(record) + 1):
            out.write(record)
    return path


def _analyze_with_stderr(path: Path, out: Path, stderr: int,
                         *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "mtlsprobe", "analyze", str(path), "--format", "json",
         "--output", str(out), *extra],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
    )


@pytest.mark.skipif(not FIXTURES.is_dir(), reason="no fixture captures")
def test_analyze_draws_a_progress_bar_on_a_terminal_only(tmp_path: Path) -> None:
    path = _padded_capture(tmp_path)
    master, slave = pty.openpty()
    proc = _analyze_with_stderr(path, tmp_path / "tty.json", slave)
    os.close(slave)
    seen = drain_pty(master)
    assert proc.wait(timeout=60) in (0, 12)
    assert b"reading [" in seen and b"100%" in seen  # drawn while reading
    bar, _, said = seen.partition(b"mtlsprobe: report written to ")
    assert bar.endswith(b"\r")  # and erased before the line that says where the report went
    assert said.startswith(str(tmp_path / "tty.json").encode())
    assert json.loads((tmp_path / "tty.json").read_text())["results"]

    piped = _analyze_with_stderr(path, tmp_path / "pipe.json", subprocess.PIPE)
    _, err = piped.communicate(timeout=60)
    assert b"reading [" not in err  # a pipe or a CI log gets no bar

    master, slave = pty.openpty()
    quiet = _analyze_with_stderr(path, tmp_path / "quiet.json", slave, "-q")
    os.close(slave)
    assert drain_pty(master) == b""  # -q: nothing but errors, on a terminal too
    assert quiet.wait(timeout=60) in (0, 12)
    assert json.loads((tmp_path / "quiet.json").read_text())["results"]
