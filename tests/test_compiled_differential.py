"""The mypyc-compiled TLS and flow modules against their own source (issue 14).

- Every capture in fixtures/pcaps and ../shared/pcaps (with its key log where there is
  one), and seeded mutants and truncations of the fixtures, give a byte-identical analyze
  report from both builds (time stamp fixed), and no error but InputError.
- The build is used all or nothing, and only when it matches the sources beside it:
  MTLSPROBE_PURE_PYTHON=1, a missing or stale manifest each load every module from source.
Skipped, with the reason, when the modules are not compiled (CI compiles them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mtlsprobe import compiled
from tests.coretwins import ROOT

pytestmark = pytest.mark.skipif(
    not compiled.active(),
    reason=f"the TLS and flow modules are not compiled ({compiled.REASON}): pip install -e . "
           "with mypy and a C compiler; CI compiles them",
)


def _env(pure: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != compiled.PURE_PYTHON_ENV}
    env["PYTHONPATH"] = str(ROOT)
    if pure:
        env[compiled.PURE_PYTHON_ENV] = "1"
    return env


def _reports(out: Path, pure: bool) -> dict[str, str]:
    proc = subprocess.run([sys.executable, "-m", "tests.compiled_reports", str(out)],
                          cwd=ROOT, env=_env(pure), capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    reports: dict[str, str] = json.loads(out.read_text())
    return reports


@pytest.mark.slow
def test_every_capture_gives_a_byte_identical_report_from_both_builds(tmp_path):
    native = _reports(tmp_path / "native.json", pure=False)
    source = _reports(tmp_path / "source.json", pure=True)
    assert native.pop("-build") == "mypyc"
    assert source.pop("-build") == f"Python ({compiled.PURE_PYTHON_ENV} set)"
    assert native.keys() == source.keys()
    assert len(native) >= 40
    differ = [name for name in native if native[name] != source[name]]
    assert not differ, differ
    assert sum('"verdict"' in text for text in native.values()) >= 40
    mutants = [name for name in native if name.startswith("mutant:")]
    assert len(mutants) >= 200
    bugs = {name: text for name, text in native.items() if text.startswith("BUG")}
    assert not bugs, bugs


_PROBE = """
import json, sys
import mtlsprobe.tls.observer as o, mtlsprobe.capture.flowtable as f
from mtlsprobe import compiled
print(json.dumps([compiled.name(), compiled.loaded_compiled(o), compiled.loaded_compiled(f)]))
"""


def _which(env: dict[str, str], cwd: Path) -> list[object]:
    proc = subprocess.run([sys.executable, "-c", _PROBE], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60, check=True)
    loaded: list[object] = json.loads(proc.stdout)
    return loaded


def test_compiled_modules_load_as_a_set_and_the_variable_forces_source(tmp_path):
    assert _which(_env(pure=False), tmp_path) == ["mypyc", True, True]
    assert _which(_env(pure=True), tmp_path) == [
        f"Python ({compiled.PURE_PYTHON_ENV} set)", False, False]


def _copy_package(tmp_path: Path) -> Path:
    """The package, its extensions and its manifest, copied for editing."""
    shutil.copytree(ROOT / "mtlsprobe", tmp_path / "mtlsprobe",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for shared in ROOT.glob(f"{compiled.RUNTIME}.*"):
        shutil.copy2(shared, tmp_path / shared.name)
    return tmp_path


def test_a_stray_extension_of_a_module_not_in_the_set_does_not_shadow_its_source(tmp_path):
    """An older build of another module set leaves extensions the current set lacks."""
    root = _copy_package(tmp_path)
    observer = next((root / "mtlsprobe" / "tls").glob("observer.*.so"))
    stray = root / "mtlsprobe" / "capture" / observer.name.replace("observer", "linklayer")
    stray.write_bytes(observer.read_bytes())
    probe = ("import mtlsprobe.capture.linklayer as m; from mtlsprobe import compiled; "
             "print(compiled.name(), m.__file__.endswith('.py'))")
    for pure in (False, True):
        env = {**_env(pure=pure), "PYTHONPATH": str(root)}
        proc = subprocess.run([sys.executable, "-c", probe], cwd=root, env=env,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.split()[-1] == "True"
    fixture = ROOT / "fixtures" / "pcaps" / "direct-tls12.pcap"
    proc = subprocess.run([sys.executable, "-m", "mtlsprobe", "analyze", "--format", "json",
                           str(fixture)], cwd=root, env={**_env(pure=False),
                                                         "PYTHONPATH": str(root)},
                          capture_output=True, text=True, timeout=120)
    assert '"results"' in proc.stdout and "Traceback" not in proc.stderr, proc.stderr[-2000:]


def test_a_source_edited_after_the_build_makes_every_module_load_from_source(tmp_path):
    root = _copy_package(tmp_path)
    env = {**_env(pure=False), "PYTHONPATH": str(root)}
    assert _which(env, root) == ["mypyc", True, True]
    hellos = root / "mtlsprobe" / "tls" / "hellos.py"
    hellos.write_text(hellos.read_text() + "\n# edited\n")
    assert _which(env, root) == [
        "Python (out of date: rebuild with pip install .)", False, False]
    for runtime in root.glob(f"{compiled.RUNTIME}.*"):  # the shared library gone
        runtime.unlink()
    hellos.write_text(hellos.read_text().replace("\n# edited\n", ""))
    assert _which(env, root) == ["Python (not built)", False, False]
    (root / "mtlsprobe" / compiled.MANIFEST).unlink()
    assert _which(env, root) == ["Python (not built)", False, False]
