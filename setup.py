"""Build hook for the optional C capture core (``mtlsprobe.capture._ccore``).

Everything else is declared in pyproject.toml. The extension is ``optional``: where there is
no C compiler (or no Python headers) setuptools prints a warning, skips it, and the install
goes on with the pure-Python capture core (``mtlsprobe.capture.core``).
"""

from setuptools import Extension, setup

SOURCES = ("module", "walk", "formats", "decode", "lease", "stream")
CCORE = Extension(
    "mtlsprobe.capture._ccore",
    sources=[f"mtlsprobe/capture/ccore/{name}.c" for name in SOURCES],
    depends=[f"mtlsprobe/capture/ccore/{name}.h" for name in ("ccore", "walker")],
    # C11; no FMA contraction, so time stamps round exactly as the Python twin's
    extra_compile_args=["-std=c11", "-ffp-contract=off", "-Wall", "-Wextra"],
    optional=True,
)

setup(ext_modules=[CCORE])
