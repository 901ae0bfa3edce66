"""`probe` tells a person at a terminal which target, route and attempt it is at (issue 16):
one line on stderr, redrawn in place and erased before the report; nothing on a pipe or
with -q. Run as a person does: the real command, stderr on a pseudo-terminal."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from tools import drain_pty

from mtlsprobe.live.probe import ProbeStep
from mtlsprobe.model import Endpoint
from mtlsprobe.run.progress import StatusLine, describe, status_for

ROOT = str(Path(__file__).resolve().parents[1])


def _probe(server, proxy, *extra: str, stderr_tty: bool = True) -> tuple[int, str, bytes]:
    """(exit code, stdout, what reached stderr) of a probe of `server`, direct and via `proxy`
    (whose URL holds a password)."""
    cmd = [sys.executable, "-m", "mtlsprobe", "probe", f"127.0.0.1:{server.port}",
           "--proxy", f"http://agent:s3cret-pw@127.0.0.1:{proxy.port}", "--no-env-proxy",
           "--repeat", "2", "--timeout", "10", *extra]
    env = {**os.environ, "PYTHONPATH": ROOT}
    if not stderr_tty:
        proc = subprocess.run(cmd, capture_output=True, env=env, timeout=60, check=False)
        return proc.returncode, proc.stdout.decode(), proc.stderr
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    seen = drain_pty(master)
    out, _ = child.communicate(timeout=60)
    return child.returncode, out.decode(), seen


def test_progress_on_a_terminal_names_target_route_and_attempt_then_is_erased(
        mtls_server, connect_proxy):
    code, out, seen = _probe(mtls_server, connect_proxy)
    assert code == 12  # no --ca/--pin: unknown
    text = seen.decode()
    target = f"127.0.0.1:{mtls_server.port}"
    assert f"\rprobing {target} direct ... attempt " in text
    assert f"\rprobing {target} via proxy http://agent@127.0.0.1:{connect_proxy.port} ..." in text
    assert "attempt 5/5: " in text and "TLS 1.2, no client cert" in text
    assert "s3cret-pw" not in text  # the proxy's password never
    assert "\n" not in text  # one line, redrawn in place
    drawn, _, rest = text.rpartition("\r")
    assert rest == "" and drawn.rpartition("\r")[2].strip() == ""  # erased at the end
    assert len(max(drawn.split("\r"), key=len)) < 120  # never wraps on a 120-column terminal
    assert "probing" not in out and "\r" not in out and "Overall: unknown" in out


def test_no_progress_when_stderr_is_not_a_terminal_or_with_quiet(mtls_server, connect_proxy):
    code, out, err = _probe(mtls_server, connect_proxy, stderr_tty=False)
    assert code == 12 and "Overall: unknown" in out
    assert err == b""
    code, out, seen = _probe(mtls_server, connect_proxy, "-q")
    assert code == 12 and out == "" and seen == b""


def test_the_status_line_escapes_names_and_fits_an_unsized_terminal():
    stream = io.StringIO()
    line = StatusLine(stream)
    line(ProbeStep(Endpoint(host="e\x1b]0;pwn\x07", port=8383), None,
                   "agent-cert", 4, 7))
    drawn = stream.getvalue()
    assert "\x1b" not in drawn and "\\x1b]0;pwn\\x07" in drawn
    assert drawn.startswith("\rprobing e\\x1b") and "attempt 4/7: the agent's client cert" in drawn
    line.show("x" * 500)  # a StringIO has no size: cut to 79 columns
    assert len(stream.getvalue().rpartition("\r")[2]) == 79
    line.close()
    assert stream.getvalue().endswith("\r" + " " * 79 + "\r")
    assert status_for(io.StringIO()) is None  # not a terminal: no line at all


def test_describe_names_the_route_and_counts_attempts():
    target = Endpoint(host="ec.corp.example", port=8383)
    assert describe(ProbeStep(target, "http://10.0.0.1:3128", None, 0, 6)) == (
        "probing ec.corp.example:8383 via proxy http://10.0.0.1:3128 ... 6 attempts")
    assert describe(ProbeStep(target, None, "repeat-3", 5, 6)) == (
        "probing ec.corp.example:8383 direct ... attempt 5/6: repeat 3")


def test_ctrl_c_erases_the_progress_line_before_saying_so():
    import signal
    import socket
    import threading
    import time

    listener = socket.create_server(("127.0.0.1", 0))  # accepts and never answers
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    child = subprocess.Popen(
        [sys.executable, "-m", "mtlsprobe", "probe", f"127.0.0.1:{listener.getsockname()[1]}",
         "--no-env-proxy", "--timeout", "30"],
        stdout=subprocess.PIPE, stderr=slave, env={**os.environ, "PYTHONPATH": ROOT})
    os.close(slave)
    try:
        seen = b""
        while b"attempts" not in seen:  # the line is drawn: the probe is under way
            seen += os.read(master, 4096)
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        seen += drain_pty(master)
        assert child.wait(timeout=10) == 130
        assert time.monotonic() - sent < 5  # --timeout 30: stopped at once
    finally:
        if child.poll() is None:
            child.kill()
        listener.close()
        for conn in held:
            conn.close()
    assert seen.endswith(b"\r\x1b[Kmtlsprobe: interrupted\r\n"), seen[-200:]
    assert child.stdout is not None and child.stdout.read() == b""


def test_a_step_of_its_own_is_named_without_a_count():
    target = Endpoint(host="ec.corp.example", port=8383)
    assert describe(ProbeStep(target, None, "hop-trace", 0, 0)) == (
        "probing ec.corp.example:8383 direct ... tracing the path hop by hop (--trace)")


@pytest.mark.skipif(os.geteuid() != 0, reason="--trace needs raw sockets (CI runs as root)")
def test_the_line_says_when_the_hop_trace_runs(mtls_server, connect_proxy):
    code, out, seen = _probe(mtls_server, connect_proxy, "--trace")
    assert code == 12 and "Overall: unknown" in out
    target = f"127.0.0.1:{mtls_server.port}"
    assert f"\rprobing {target} direct ... tracing the path hop by hop (--trace)" in (
        seen.decode())
