"""Which capture core runs: the optional C extension or its pure-Python twin.

The C core (``mtlsprobe.capture._ccore``, built by ``pip install`` where a compiler is
present) walks pcap/pcapng files (``Walker``) and decodes frames to ``TcpSegment``s
(``decode``); the Python modules (``pcapfile``, ``linklayer``, ``tunnels``) do the same and
are what runs without it, in the zipapp, and when ``MTLSPROBE_PURE_PYTHON=1``. Both give
identical results (the differential and fuzz tests hold them to it). ``ACTIVE`` is read once
per capture file, so a test may switch it between files.
"""

from __future__ import annotations

import os
from types import ModuleType

from mtlsprobe.compiled import PURE_PYTHON_ENV

API_VERSION = 2  # the C core's API these modules use (ccore.h's CCORE_API_VERSION)

BUILT: ModuleType | None  # the C core when it is built, whether or not it runs
try:
    from mtlsprobe.capture import _ccore as BUILT  # type: ignore[attr-defined,no-redef]
except ImportError:  # no compiler at install time, or the zipapp
    BUILT = None
#: A C core built from other sources than these modules' (rebuild: pip install -e .)
STALE = BUILT is not None and getattr(BUILT, "API_VERSION", None) != API_VERSION
if STALE:
    BUILT = None

#: The C core when it runs, None for the Python one.
ACTIVE: ModuleType | None = (
    None if os.environ.get(PURE_PYTHON_ENV, "") not in ("", "0") else BUILT
)


def name() -> str:
    """The core that runs, for ``mtlsprobe --version``."""
    if ACTIVE is not None:
        return "C"
    if BUILT is not None:
        return f"Python ({PURE_PYTHON_ENV} set)"
    if STALE:
        return "Python (the C core is out of date: rebuild it with pip install .)"
    return "Python"
