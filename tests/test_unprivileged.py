"""What an ordinary user meets (issue 16): reports written to a device node, a symlink, a FIFO
and a read-only directory, and the raw-socket commands refused with exit 4, run as a process
without privileges: uid nobody when it can run this Python, else root with every capability
dropped (no DAC override, no CAP_NET_RAW). The device node is the test's own (mknod)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = str(Path(__file__).resolve().parents[1])
NOBODY = 65534
DROP = ["setpriv", "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"]

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="dropping privileges needs root and setpriv (CI runs as root)")


def _as_nobody() -> list[str]:
    return [*DROP[:1], f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *DROP[1:]]


def _can_run_as_nobody() -> bool:
    probe = subprocess.run([*_as_nobody(), sys.executable, "-c", "import click, cryptography"],
                           capture_output=True, check=False, env={"PYTHONPATH": ROOT})
    return probe.returncode == 0


@pytest.fixture(scope="module")
def unprivileged() -> list[str]:
    """The command prefix that drops privileges (uid nobody when possible)."""
    return _as_nobody() if _can_run_as_nobody() else DROP


def run(prefix: list[str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, "--", sys.executable, "-m", "mtlsprobe", *args], cwd=cwd,
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "PYTHONPATH": ROOT, "HOME": str(cwd)})


@pytest.fixture
def home(tmp_path: Path, unprivileged: list[str]) -> Iterator[Path]:
    """A folder the unprivileged process owns (as nobody: in /tmp itself, since pytest's
    own temporary folders are root's alone)."""
    if unprivileged == DROP:
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(prefix="mtlsprobe-unprivileged-"))
    os.chown(folder, NOBODY, NOBODY)
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


def _not_ours(path: Path, unprivileged: list[str]) -> None:
    """Give `path` to another user than the unprivileged process."""
    owner = 0 if unprivileged != DROP else NOBODY
    os.chown(path, owner, owner)


def _read_all(fd: int) -> bytes:
    data = b""
    while chunk := os.read(fd, 65536):
        data += chunk
    os.close(fd)
    return data


def test_reports_to_a_device_a_symlink_a_fifo_and_a_read_only_directory(unprivileged, home):
    device = home / "null"
    os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.chmod(device, 0o666)
    done = run(unprivileged, "demo", "--format", "json", "-o", str(device), cwd=home)
    assert done.returncode == 0, done.stderr
    assert stat.S_ISCHR(os.lstat(device).st_mode)  # written into, never replaced

    (home / "real.json").touch()
    os.chown(home / "real.json", NOBODY, NOBODY)
    (home / "link.json").symlink_to("real.json")
    done = run(unprivileged, "demo", "--format", "json", "-o", "link.json", cwd=home)
    assert done.returncode == 0, done.stderr
    assert (home / "link.json").is_symlink() and (home / "real.json").read_text().startswith("{")

    fifo = home / "fifo"
    os.mkfifo(fifo, 0o666)
    os.chmod(fifo, 0o666)
    got: list[bytes] = []
    end = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader: the child's open returns
    keep = os.open(fifo, os.O_WRONLY)  # and a writer of ours: no EOF before the child writes
    os.set_blocking(end, True)
    reader = threading.Thread(target=lambda: got.append(_read_all(end)), daemon=True)
    reader.start()
    try:
        done = run(unprivileged, "demo", "--format", "json", "-o", str(fifo), cwd=home)
    finally:
        os.close(keep)  # now EOF once what the child wrote is read
    reader.join(timeout=60)
    assert done.returncode == 0, done.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and got and got[0].startswith(b"{")

    locked = home / "locked"  # read-only, and another's without search permission
    locked.mkdir(mode=0o555)
    _not_ours(locked, unprivileged)
    hidden = home / "hidden"
    (hidden / "inner").mkdir(parents=True)
    hidden.chmod(0o700)
    _not_ours(hidden, unprivileged)
    for where in (locked / "r.json", hidden / "inner" / "r.json"):
        for option in ("-o", "--save-baseline"):
            args = (["demo", "-o", str(where)] if option == "-o" else
                    ["probe", "127.0.0.1:9", "--no-env-proxy", "--repeat", "1", "--timeout",
                     "2", "--save-baseline", str(where), "-q"])
            done = run(unprivileged, *args, cwd=home)
            assert done.returncode == 3, (option, where, done.stderr)
            assert done.stderr == f"mtlsprobe: error: cannot write {where}: Permission denied\n"
    assert list(locked.iterdir()) == [] and list((hidden / "inner").iterdir()) == []


@pytest.mark.parametrize("args", [
    ["trace", "127.0.0.1:9"],
    ["probe", "127.0.0.1:9", "--trace", "--no-env-proxy"],
    ["probe", "127.0.0.1:9", "--capture", "c.pcapng", "--no-env-proxy"],
])
def test_raw_socket_commands_are_exit_4_with_the_reason(unprivileged, home, args):
    done = run(unprivileged, *args, cwd=home)
    assert done.returncode == 4, done.stderr
    assert done.stdout == "" and done.stderr.count("\n") == 1
    assert "CAP_NET_RAW" in done.stderr and done.stderr.startswith("mtlsprobe: error: ")
    assert not (home / "c.pcapng").exists()
