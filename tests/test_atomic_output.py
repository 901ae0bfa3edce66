"""-o/--output and every other path the tool writes: atomic for regular files, never a
device or FIFO replaced, symlinks followed, modes kept (issue 16)."""

from __future__ import annotations

import os
import stat
import threading

import pytest

from mtlsprobe.model.errors import EnvironmentProblem, InputError
from mtlsprobe.report.atomic import write_atomic

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root (CI runs as root)")


def test_a_regular_file_is_replaced_whole_and_keeps_its_mode(tmp_path):
    dest = tmp_path / "report.json"
    dest.write_text("old")
    dest.chmod(0o640)
    write_atomic(dest, "new")
    assert dest.read_text() == "new"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_a_new_file_gets_the_umask_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        write_atomic(tmp_path / "new.json", "x")
        write_atomic(tmp_path / "secret.pcapng", b"x", mode=0o600)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "secret.pcapng").stat().st_mode) == 0o600


def test_a_symlink_is_followed_and_stays_a_symlink(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    write_atomic(link, "new")
    assert link.is_symlink() and real.read_text() == "new"


def test_a_fifo_is_written_into_not_replaced(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    write_atomic(fifo, "through the pipe\n")
    reader.join(timeout=10)
    assert got == [b"through the pipe\n"]
    assert stat.S_ISFIFO(fifo.stat().st_mode)


@root_only
def test_a_character_device_stays_a_device(tmp_path):
    null = tmp_path / "null"
    os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    write_atomic(null, "discarded")
    assert stat.S_ISCHR(null.stat().st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["null"]


@root_only
def test_a_full_disk_is_the_environment_not_bad_input(tmp_path):
    full = tmp_path / "full"
    os.mknod(full, 0o666 | stat.S_IFCHR, os.makedev(1, 7))
    with pytest.raises(EnvironmentProblem, match="No space left"):
        write_atomic(full, "x" * 100)


def test_unusable_paths_are_bad_input(tmp_path):
    with pytest.raises(InputError, match="directory"):
        write_atomic(tmp_path, "x")
    with pytest.raises(InputError, match="cannot write"):
        write_atomic(tmp_path / "missing" / "r.json", "x")


@root_only
def test_a_report_to_a_full_disk_is_exit_4_with_one_line(tmp_path):
    import subprocess
    import sys

    full = tmp_path / "full"
    os.mknod(full, 0o666 | stat.S_IFCHR, os.makedev(1, 7))
    with open(full, "wb") as out:
        done = subprocess.run([sys.executable, "-m", "mtlsprobe", "rules"], stdout=out,
                              stderr=subprocess.PIPE, text=True, timeout=60)
    assert done.returncode == 4
    assert done.stderr.splitlines() == [
        "mtlsprobe: error: cannot write the report: No space left on device"]


def test_a_symlink_loop_is_one_line_and_exit_3(tmp_path):
    from click.testing import CliRunner

    from mtlsprobe.cli.main import main

    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    res = CliRunner().invoke(main, ["demo", "-o", str(tmp_path / "a")])
    assert res.exit_code == 3, res.output
    assert res.stderr == f"mtlsprobe: error: cannot write {tmp_path / 'a'}: symbolic link loop\n"


@pytest.mark.parametrize("args", [["demo"], ["schema"], ["rules", "--format", "json"],
                                  ["probe", "--help"], ["--version"]])
def test_a_closed_pipe_is_exit_4_with_one_line_not_a_silent_1(args):
    import subprocess
    import sys

    read_end, write_end = os.pipe()
    os.close(read_end)  # `| head -1` that has already gone
    try:
        done = subprocess.run([sys.executable, "-m", "mtlsprobe", *args], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=60, check=False)
    finally:
        os.close(write_end)
    assert done.returncode == 4, done.stderr
    assert done.stderr.splitlines() == ["mtlsprobe: error: cannot write the report: Broken pipe"]
