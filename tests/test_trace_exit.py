"""`mtlsprobe trace` exits with what the trace found (issue 16): a hop found (10 answers in
the server's place, 11 resets the ClientHello), none found (0), or could not trace (12);
no raw sockets is 4 (tests/test_unprivileged.py). Found hops in a routed lab:
tests/trace/test_trace_lab.py."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest

from mtlsprobe.model import Endpoint, HopTrace
from mtlsprobe.run.path import judge_trace, trace_exit_code, trace_outcome

ROOT = str(Path(__file__).resolve().parents[1])
TARGET = Endpoint(host="192.0.2.7", port=8383, ip="192.0.2.7")


def hops(**kw) -> HopTrace:
    return HopTrace(target=TARGET, **kw)


CLEAN = hops(ip_distance=3, tcp_distance=3, tls_distance=3, tls_answer="tls")
ANSWERS = hops(ip_distance=3, tcp_distance=2, tls_distance=2, tls_answer="tls",
               middlebox_hop=2, middlebox_addr="10.0.1.1", middlebox_answer="tcp")
RESETS = hops(ip_distance=3, tcp_distance=3, tls_distance=2, tls_answer="rst",
              middlebox_hop=1, middlebox_addr="10.0.0.1", middlebox_answer="rst")
FAILED = hops(error="hop trace needs an IPv4 address, not ::1")
SILENT = hops(notes=("no answer",))  # nothing answered at any TTL
HELLO_UNANSWERED = hops(ip_distance=1, tcp_distance=1)  # connection refused: no ClientHello


@pytest.mark.parametrize(("trace", "code"), [
    (CLEAN, 0), (ANSWERS, 10), (RESETS, 11), (FAILED, 12), (SILENT, 12),
    (HELLO_UNANSWERED, 12), (None, 12),
])
def test_each_trace_outcome_has_its_exit_code(trace, code):
    assert trace_outcome(trace) == code


def test_a_found_hop_outranks_a_failed_trace_which_outranks_a_clean_one():
    def run(*traces: HopTrace) -> int:
        return trace_exit_code([judge_trace(TARGET, t) for t in traces])

    assert run(CLEAN, FAILED, ANSWERS) == 10
    assert run(CLEAN, RESETS, FAILED) == 11
    assert run(CLEAN, FAILED) == 12
    assert run(CLEAN, CLEAN) == 0
    assert trace_exit_code([]) == 12


def _trace(*args: str) -> tuple[int, dict | None, str]:
    """(exit code, JSON report validated against the shipped schema, stderr)."""
    proc = subprocess.run(
        [sys.executable, "-m", "mtlsprobe", "trace", *args, "--timeout", "10",
         "--probe-timeout", "0.3", "--max-ttl", "3", "--format", "json"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": ROOT},
        check=False)
    report = json.loads(proc.stdout) if proc.stdout else None
    if report is not None:
        jsonschema.validate(report, json.loads(
            files("mtlsprobe").joinpath("report/schema/report-v1.json").read_text("utf-8")))
    return proc.returncode, report, proc.stderr


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="raw sockets need root (CI is root)")


@needs_root
def test_trace_of_a_loopback_server_found_no_hop_and_a_refused_one_could_not_trace(
        mtls_server):
    code, report, _ = _trace(f"127.0.0.1:{mtls_server.port}")
    assert code == 0 and report is not None and report["exit_code"] == 0
    (result,) = report["results"]
    assert result["hops"]["tls_distance"] == 1 and result["hops"]["middlebox_hop"] is None

    with socket.socket() as s:  # a loopback port nothing listens on: the ClientHello never goes
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    code, report, _ = _trace(f"127.0.0.1:{closed}")
    assert code == 12 and report is not None and report["exit_code"] == 12

    code, report, _ = _trace("[::1]:8383")  # IPv6: the trace cannot run
    assert code == 12 and report is not None
    assert "needs an IPv4 address" in report["results"][0]["reason"]


def test_trace_help_ends_with_its_own_exit_codes():
    from click.testing import CliRunner

    from mtlsprobe.cli.main import main

    out = CliRunner().invoke(main, ["trace", "--help"]).output
    epilog = out.rpartition("Options:")[2]
    assert "10  found the hop" in epilog and "12  could not trace" in epilog
    assert "0  traced: the server itself answers" in epilog
