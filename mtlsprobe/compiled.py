"""Which build of the hot Python modules runs: mypyc-compiled, or their own source.

``pip install .`` compiles the modules in ``MODULES`` with mypyc where mypy and a C compiler
are present (setup.py), and writes ``_compiled.json``: the set built and a SHA-256 over the
package's sources at build time. The compiled modules are used only as a set, and only when
that manifest matches the sources beside it and every extension file is there; otherwise
(no compiler, the zipapp, any source edited since the build, ``MTLSPROBE_PURE_PYTHON=1``)
every one of them loads from its ``.py`` file. All or nothing, because compiled modules call
each other natively: a compiled caller with a source callee would mix two classes of one
name.

Both builds give identical reports (tests/test_compiled_differential.py). This module is
never compiled and uses the standard library only: setup.py reads ``MODULES`` from it.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

PURE_PYTHON_ENV = "MTLSPROBE_PURE_PYTHON"
MANIFEST = "_compiled.json"
#: The modules mypyc compiles: the TLS record and handshake path and the capture adapter's
#: per-connection work (bench, 22,000 handshakes on the C core: 3.95 s -> 2.44 s to read
#: them into observations), and the key-log path's record decryption, key state and HTTP
#: head (observing a decrypted handshake: 108 -> 96 us). Compiling more of the package
#: (the key log and fingerprint modules, the model, the tallies) gained nothing or lost.
MODULES = tuple(f"mtlsprobe.{name}" for name in (
    "tls.records",
    "tls.observer",
    "tls.state",
    "tls.message_reader",
    "tls.handshake_framing",
    "tls.hellos",
    "tls.conclusions",
    "tls.extensions",
    "tls.handshake_messages",
    "tls.decrypt",
    "tls.keystate",
    "tls.http_head",
    "capture.flowtable",
    "capture.connection",
    "capture.observations",
    "capture.transcripts",
    "capture.compact",
))
PACKAGE_DIR = Path(__file__).resolve().parent


def source_path(module: str, root: Path = PACKAGE_DIR) -> Path:
    """The ``.py`` file of ``module`` under the package directory ``root``."""
    parts = module.split(".")[1:]
    return root.joinpath(*parts[:-1], parts[-1] + ".py")


def package_digest(root: Path = PACKAGE_DIR) -> str:
    """SHA-256 over every module of the package (path and bytes): compiled code bakes in
    the types of what it imports, so an edit anywhere may make the build stale."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def manifest_for(modules: Sequence[str], root: Path = PACKAGE_DIR) -> dict[str, object]:
    """The manifest setup.py writes after a build of ``modules`` from the package ``root``."""
    return {"format": 2, "modules": list(modules), "package_sha256": package_digest(root)}


GROUP = "mtlsprobe"  # mypyc's group name (setup.py)
RUNTIME = f"{GROUP}__mypyc"  # the group's shared library: a top-level extension module


def _extension_file(module: str) -> Path | None:
    if module == RUNTIME:
        folder, stem = PACKAGE_DIR.parent, RUNTIME
    else:
        folder, stem = source_path(module).parent, module.rsplit(".", 1)[1]
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = folder / (stem + suffix)
        if candidate.is_file():
            return candidate
    return None


def _why_not() -> str | None:
    """None when the compiled set may load; otherwise why the sources load instead."""
    if not (PACKAGE_DIR / MANIFEST).is_file():
        return "not built"
    if os.environ.get(PURE_PYTHON_ENV, "") not in ("", "0"):
        return f"{PURE_PYTHON_ENV} set"
    try:
        manifest = json.loads((PACKAGE_DIR / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "build manifest unreadable"
    if not isinstance(manifest, dict) or manifest.get("modules") != list(MODULES):
        return "built for another module set: rebuild with pip install ."
    if any(_extension_file(module) is None for module in (*MODULES, RUNTIME)):
        return "not built"
    try:
        if package_digest() != manifest.get("package_sha256"):
            return "out of date: rebuild with pip install ."
    except OSError:
        return "sources unreadable"
    return None


class _SourceFinder(importlib.abc.MetaPathFinder):
    """Loads a module of ours from its ``.py`` file when an extension beside it would
    shadow it and is not to run: every one of ``MODULES`` when the compiled set does not
    run, and always a stray one (left by an older build of another module set)."""

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith(f"{GROUP}.") or (REASON is None and fullname in _MODULE_SET):
            return None
        if _extension_file(fullname) is None:
            return None  # nothing shadows the source: the normal import
        source = source_path(fullname)
        if not source.is_file():
            return None  # an extension with no Python twin of that name (the C core)
        return importlib.util.spec_from_file_location(fullname, source)


_MODULE_SET = frozenset(MODULES)
#: None when the compiled modules run, else why not (for ``mtlsprobe --version``).
REASON: str | None = None


def install() -> None:
    """Decide once, at package import, before any of ``MODULES`` is imported."""
    global REASON
    REASON = _why_not()
    if not any(isinstance(f, _SourceFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _SourceFinder())


def active() -> bool:
    """True when the mypyc-compiled modules run (all of them)."""
    return REASON is None


def loaded_compiled(module: ModuleType) -> bool:
    """True when ``module`` was loaded from an extension file, not from source."""
    return str(getattr(module, "__file__", "")).endswith(tuple(
        importlib.machinery.EXTENSION_SUFFIXES))


def name() -> str:
    """How the TLS and connection layer runs, for ``mtlsprobe --version``."""
    return "mypyc" if REASON is None else f"Python ({REASON})"
