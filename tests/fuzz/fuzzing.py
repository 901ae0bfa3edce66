"""The hypothesis side of the fuzz harness: budgets and inputs for ``targets``.

``HYPOTHESIS_PROFILE=long`` (what ``scripts/fuzz --hypothesis`` sets) multiplies every
budget by ``LONG`` and explores anew each run; by default (the normal suite) each test
runs its small fixed number of examples, derandomized, with no deadline: the same inputs
every run, so a failure is a regression, never a flake.
"""

from __future__ import annotations

import os

import targets
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

LONG = 200
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
settings.register_profile("fuzz-ci", deadline=None, derandomize=True, database=None,
                          suppress_health_check=_QUIET, print_blob=True)
settings.register_profile("fuzz-long", deadline=None, suppress_health_check=_QUIET,
                          print_blob=True)


def budget(examples: int) -> settings:
    """Settings for a test of ``examples`` examples (times LONG in the long profile)."""
    if PROFILE == "long":
        return settings(settings.get_profile("fuzz-long"), max_examples=examples * LONG)
    return settings(settings.get_profile("fuzz-ci"), max_examples=examples)


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """One of ``seeds`` with a few bytes flipped, cut out, inserted or cut off."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 6))):
        i = draw(st.integers(0, len(data)))
        op = draw(st.integers(0, 4))
        if op <= 1 and i < len(data):
            data[i] = draw(st.integers(0, 255))
        elif op == 2:
            del data[i : i + draw(st.integers(1, 64))]
        elif op == 3:
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        else:
            big = draw(st.sampled_from([b"\xff\xff", b"\x00\x00", b"\x7f\xff\xff\xff",
                                        b"\xff\xff\xff\xff", b"\x80"]))
            data[i : i + len(big)] = big
    if draw(st.integers(0, 7)) == 0:
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


def inputs(name: str, max_size: int = 2000) -> st.SearchStrategy[bytes]:
    """Bytes for target ``name``: its seeds mutated, or any bytes."""
    return st.one_of(mutated(targets.SEEDS[name]()), st.binary(max_size=max_size))


def reports(name: str) -> st.SearchStrategy[bytes]:
    """Bytes for a target reading reports: its seeds mutated as bytes, or by their
    structure (``targets.report_bytes``: hostile values anywhere)."""
    structured = st.binary(min_size=3, max_size=40).map(lambda b: bytes([targets.MUTATED]) + b)
    return st.one_of(inputs(name), structured)
