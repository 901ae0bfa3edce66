"""Ctrl-C during a probe stops at once whatever --timeout is: one line, exit 130, no
traceback, no key log or key copy left on disk (issue 16)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time


def test_ctrl_c_stops_a_probe_of_a_silent_server_at_once(tmp_path):
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted = threading.Event()
    held: list[socket.socket] = []

    def accept_and_stay_silent() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            held.append(conn)
            if len(held) >= 3:
                accepted.set()

    threading.Thread(target=accept_and_stay_silent, daemon=True).start()
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mtlsprobe", "probe", f"127.0.0.1:{port}", "--timeout", "30",
         "--no-env-proxy"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert accepted.wait(20), "the probe never connected"
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.send_signal(signal.SIGINT)  # a second Ctrl-C: still no traceback
        out, err = proc.communicate(timeout=10)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
        listener.close()
        for conn in held:
            conn.close()
    assert proc.returncode == 130
    assert took < 5, f"took {took:.1f} s after Ctrl-C (the deadline was 30 s)"
    assert err.strip().splitlines() == ["mtlsprobe: interrupted"], err
    assert out == ""
    assert [p.name for p in tmp_path.iterdir()] == []  # no key log or key copy left
