"""The project's standard: `ruff check` and `mypy` are clean (both configured in pyproject.toml).

Each runs from the repository root with the interpreter running the tests, as a developer
would; skipped only when the tool is not installed (both are in the `test` extra). Neither
writes a cache into the checkout: ruff runs without one, mypy's goes to a temporary folder
(a cold run takes a few seconds).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_ruff_is_clean() -> None:
    pytest.importorskip("ruff")
    done = _run("ruff", "check", "--no-cache", ".")
    assert done.returncode == 0, f"ruff check found problems:\n{done.stdout}{done.stderr}"


def test_mypy_is_clean(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    done = _run("mypy", "--cache-dir", str(tmp_path / "mypy_cache"))
    assert done.returncode == 0, f"mypy found problems:\n{done.stdout}{done.stderr}"
