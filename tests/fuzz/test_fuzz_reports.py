"""Fuzz what reports are read back as: a saved report's observations (``report.jsonin``),
``--baseline`` files, ``summarize``'s agents' reports and their rendering."""

from __future__ import annotations

import targets
from fuzzing import budget, reports
from hypothesis import given


@budget(300)
@given(reports("report_observation"))
def test_report_observation(data: bytes) -> None:
    targets.report_observation(data)


@budget(200)
@given(reports("baseline"))
def test_baseline_file(data: bytes) -> None:
    targets.baseline(data)


@budget(250)
@given(reports("summarize"))
def test_summarize_reading_and_rendering(data: bytes) -> None:
    targets.summarize(data)
