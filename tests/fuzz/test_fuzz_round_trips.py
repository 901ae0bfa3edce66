"""Round trips where we write what we read: report JSON (every value an Observation can
hold, written by ``report.jsonout`` and read back by ``report.jsonin``, as ``--baseline``
does). The pcapng writer and the key log round trips are in test_fuzz_captures.py and
test_fuzz_tls.py."""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import datetime, timezone

from fuzzing import budget
from hypothesis import given
from hypothesis import strategies as st

from mtlsprobe.model import Observation
from mtlsprobe.report.jsonin import from_jsonable
from mtlsprobe.report.jsonout import SecretError, to_jsonable


def _as_reported(value: object) -> object:
    """``value`` as a report can hold it: datetimes in UTC (naive ones are taken as UTC),
    floats not NaN (NaN equals nothing, itself included)."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value
    if isinstance(value, float) and math.isnan(value):
        return 0.0
    if isinstance(value, tuple):
        return tuple(_as_reported(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{  # type: ignore[arg-type]
            f.name: _as_reported(getattr(value, f.name))
            for f in dataclasses.fields(value) if f.init})
    return value


@budget(150)
@given(st.from_type(Observation).map(_as_reported))
def test_an_observation_written_to_json_reads_back_the_same(obs: Observation) -> None:
    try:
        text = json.dumps(to_jsonable(obs))
    except SecretError:
        return  # key material is refused on the way out, by design
    assert from_jsonable(Observation, json.loads(text)) == obs
