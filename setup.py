"""Build hook for the optional compiled code; everything else is in pyproject.toml.

Two optional parts, each with a pure-Python twin that runs where it is absent:
- the C capture core (``mtlsprobe.capture._ccore``, plain C on the CPython C API);
- the hot TLS and flow modules listed in ``mtlsprobe/compiled.py``, compiled with mypyc
  when mypy is importable (it is in ``build-system.requires``).
Every extension is ``optional``: where there is no C compiler (or no Python headers)
setuptools warns, skips it, and the install goes on. The mypyc set is used only when all of
it built: ``build_ext`` then writes ``mtlsprobe/_compiled.json`` (each source's SHA-256), and
without that manifest the package loads the modules from source (mtlsprobe/compiled.py).
MTLSPROBE_NO_MYPYC=1 skips mypyc (it type-checks the package first: ~40 s more per build).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import ModuleType

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
SOURCES = ("module", "walk", "formats", "decode", "lease", "stream")
CCORE = Extension(
    "mtlsprobe.capture._ccore",
    sources=[f"mtlsprobe/capture/ccore/{name}.c" for name in SOURCES],
    depends=[f"mtlsprobe/capture/ccore/{name}.h" for name in ("ccore", "walker")],
    # C11; no FMA contraction, so time stamps round exactly as the Python twin's
    extra_compile_args=["-std=c11", "-ffp-contract=off", "-Wall", "-Wextra"],
    optional=True,
)


def _compiled_spec() -> ModuleType:
    """mtlsprobe/compiled.py, read without importing the package (stdlib only)."""
    spec = ModuleType("mtlsprobe_compiled_spec")
    path = HERE / "mtlsprobe" / "compiled.py"
    spec.__file__ = str(path)
    exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), spec.__dict__)
    return spec


COMPILED = _compiled_spec()


def _mypyc_extensions() -> list[Extension]:
    if os.environ.get("MTLSPROBE_NO_MYPYC", "") not in ("", "0"):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("mtlsprobe: mypy is not installed; the TLS and flow modules stay Python")
        return []
    paths = [str(COMPILED.source_path(m, Path("mtlsprobe"))) for m in COMPILED.MODULES]
    try:
        extensions = mypycify(["--ignore-missing-imports", *paths], opt_level="3",
                              group_name=COMPILED.GROUP)
    except (Exception, SystemExit) as exc:  # a mypy error: build the rest, run the sources
        print(f"mtlsprobe: mypyc failed ({exc}); the TLS and flow modules stay Python")
        return []
    for ext in extensions:
        ext.optional = True
    return extensions


class BuildExt(build_ext):
    """build_ext that adds the mypyc set (when building: mypyc type-checks the package, so
    not for metadata) and records it, but only when every part of it was built."""

    def finalize_options(self) -> None:
        dist = self.distribution
        if not any(ext is not CCORE for ext in dist.ext_modules or ()):
            dist.ext_modules = [CCORE, *_mypyc_extensions()]
        super().finalize_options()

    def build_extension(self, ext: Extension) -> None:
        super().build_extension(ext)  # raises when it fails (then it is skipped: optional)
        self.succeeded.add(ext.name)

    def run(self) -> None:
        self.succeeded: set[str] = set()
        super().run()
        mypyc = [ext for ext in self.extensions if ext is not CCORE]
        if not mypyc:
            return
        # this run's outcome, not the files: an older build's may still lie there
        built = all(ext.name in self.succeeded for ext in mypyc)
        root = HERE if self.inplace else Path(self.build_lib)
        target = root / "mtlsprobe" / COMPILED.MANIFEST
        if built:
            manifest = COMPILED.manifest_for(COMPILED.MODULES, HERE / "mtlsprobe")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        else:
            print("mtlsprobe: not every mypyc module built; the TLS and flow modules stay "
                  "Python")
            target.unlink(missing_ok=True)


setup(ext_modules=[CCORE], cmdclass={"build_ext": BuildExt})
