"""Assemble a Report from judged results. Pure apart from the default timestamp."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone

from mtlsprobe import __version__
from mtlsprobe.model import CaseResult, Report
from mtlsprobe.rules.engine import exit_code, overall

SCHEMA_VERSION = 1


def build_report(
    command: str,
    results: Sequence[CaseResult],
    inputs: Mapping[str, object],
    host: Mapping[str, str],
    notes: Iterable[str] = (),
    *,
    generated_at: datetime | None = None,
) -> Report:
    """A schema-v1 Report; the overall verdict and exit code follow the engine's bands."""
    when = generated_at or datetime.now(timezone.utc).replace(microsecond=0)
    return Report(
        schema_version=SCHEMA_VERSION,
        tool_version=__version__,
        generated_at=when,
        command=command,
        host=dict(host),
        inputs=dict(inputs),
        results=tuple(results),
        verdict=overall(results),
        exit_code=exit_code(results),
        notes=tuple(notes),
    )
