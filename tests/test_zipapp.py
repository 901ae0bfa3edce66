"""scripts/build-zipapp: the single-file build runs `--version` and `demo` on this machine,
with every Python 3.10+ found here that has cryptography; without cryptography it says so."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from mtlsprobe import __version__

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "build-zipapp"


@pytest.fixture(scope="module")
def pyz(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("zipapp") / "mtlsprobe.pyz"
    subprocess.run([sys.executable, str(SCRIPT), "--output", str(out)], check=True,
                   capture_output=True, timeout=60)
    return out


def clean_env() -> dict[str, str]:
    """No PYTHONPATH: the zipapp must bring mtlsprobe, click and tabulate itself."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def run(python: str, pyz: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([python, "-I", str(pyz), *args], capture_output=True, text=True,
                          timeout=120, env=clean_env(), cwd=cwd)


def test_archive_holds_the_package_and_pure_dependencies_only(pyz):
    names = zipfile.ZipFile(pyz).namelist()
    assert "__main__.py" in names
    assert "mtlsprobe/cli/main.py" in names and "mtlsprobe/report/schema/report-v1.json" in names
    assert "mtlsprobe/rules/signatures.json" in names
    assert any(n.startswith("click/") for n in names)
    assert any(n.startswith("tabulate/") for n in names)
    assert not any(n.startswith("cryptography/") or "__pycache__" in n for n in names)
    assert not any(n.endswith((".so", ".c", ".h", "_compiled.json")) for n in names)
    assert pyz.read_bytes().startswith(b"#!/usr/bin/env python3\n")


def test_zipapp_version_and_demo(pyz, tmp_path):
    version = run(sys.executable, pyz, "--version", cwd=tmp_path)
    assert version.returncode == 0, version.stderr
    assert __version__ in version.stdout
    # compiled modules cannot load from a zip
    assert "capture core Python, TLS and flow modules Python (not built))" in version.stdout
    demo = run(sys.executable, pyz, "demo", "--format", "json", cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr[-2000:]
    assert '"command": "demo"' in demo.stdout
    assert list(tmp_path.iterdir()) == []  # nothing left behind in the working folder


def other_pythons() -> list[str]:
    """Working interpreters >= 3.10 here other than the running one (e.g. pyenv's 3.10)."""
    candidates = []
    pyenv = Path.home() / ".pyenv" / "versions"
    for minor in ("3.10", "3.12", "3.13"):
        hits = sorted(pyenv.glob(f"{minor}*/bin/python{minor}")) if pyenv.is_dir() else []
        path = str(hits[-1]) if hits else shutil.which(f"python{minor}")
        if path and "shims" not in path:
            candidates.append(path)
    found = []
    for path in candidates:
        if Path(path).resolve() == Path(sys.executable).resolve():
            continue
        ok = subprocess.run([path, "-I", "-c", "import sys; assert sys.version_info >= (3, 10)"],
                            capture_output=True, timeout=30, env=clean_env())
        if ok.returncode == 0:
            found.append(path)
    return found


@pytest.mark.parametrize("python", other_pythons() or [pytest.param(None, marks=pytest.mark.skip(
    reason="no other Python >= 3.10 here"))])
def test_zipapp_on_other_pythons(pyz, tmp_path, python):
    has_crypto = subprocess.run([python, "-I", "-c", "import cryptography"],
                                capture_output=True, env=clean_env()).returncode == 0
    result = run(python, pyz, "--version", cwd=tmp_path)
    if not has_crypto:
        assert result.returncode == 4
        assert "cryptography" in result.stderr and "pip install" in result.stderr
        return
    assert result.returncode == 0, result.stderr
    demo = run(python, pyz, "demo", cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr[-2000:]


LOWEST = Path(os.environ.get("LOWEST_VENV", "/opt/mtlsprobe-lowest")) / "bin" / "python"
OLD = Path(os.environ.get("OLD_CRYPTO_VENV", "/opt/mtlsprobe-old-cryptography")) / "bin" / "python"


@pytest.mark.skipif(not LOWEST.exists(), reason="scripts/setup-test-env makes the lowest venv")
def test_zipapp_runs_on_the_lowest_supported_cryptography(pyz, tmp_path):
    version = run(str(LOWEST), pyz, "--version", cwd=tmp_path)
    assert version.returncode == 0, version.stderr
    assert "cryptography 41.0.0" in version.stdout
    demo = run(str(LOWEST), pyz, "demo", "--format", "json", cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr[-2000:]


@pytest.mark.skipif(not OLD.exists(), reason="scripts/setup-test-env makes the old venv")
def test_zipapp_refuses_a_too_old_cryptography_with_one_line(pyz, tmp_path):
    for args in (["probe", "127.0.0.1:9"], ["--version"]):
        done = run(str(OLD), pyz, *args, cwd=tmp_path)
        assert done.returncode == 4, args
        [line] = done.stderr.strip().splitlines()
        assert "cryptography 38.0.4 is too old: mtlsprobe needs 41 or newer" in line
        assert done.stdout == ""

