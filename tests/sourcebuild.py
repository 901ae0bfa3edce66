"""Test helper: run a test on the modules' source when they are mypyc-compiled.

A test that patches a function or method of a compiled module (a spy, a fault injected)
cannot work on the compiled build: compiled callers call it natively. Such a test starts
with ``if on_source_build(request): return``: on the compiled build that runs the same test
in a child pytest with MTLSPROBE_PURE_PYTHON=1 and asserts it passed; on the source build
it returns False and the test goes on here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mtlsprobe import compiled

ROOT = Path(__file__).resolve().parents[1]


def on_source_build(request: pytest.FixtureRequest) -> bool:
    if not compiled.active():
        return False
    env = {**os.environ, compiled.PURE_PYTHON_ENV: "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", request.node.nodeid],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout, proc.stdout[-2000:]
    return True
