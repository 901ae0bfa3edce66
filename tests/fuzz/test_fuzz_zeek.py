"""Fuzz the Zeek-log input: ssl.log bytes (TSV and JSON lines, mutated or any) through
detection, the reader, the mapping to observations, the rules and the renderers."""

from __future__ import annotations

import targets
from fuzzing import budget, inputs
from hypothesis import given


@budget(150)
@given(inputs("zeek_log", max_size=3000))
def test_zeek_ssl_log_through_analyze(data: bytes) -> None:
    targets.zeek_log(data)
