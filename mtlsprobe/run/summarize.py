"""The streaming loop: inputs -> documents -> rows -> aggregator -> FleetSummary.

Each document is dropped as soon as its rows are folded in, so memory follows the number
of agents, not of reports.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from mtlsprobe.live.files import read_text_limited
from mtlsprobe.model.errors import InputError
from mtlsprobe.report.fleet.aggregate import FleetAggregator, FleetSummary
from mtlsprobe.report.fleet.records import Foreign, InputStats, rows_of
from mtlsprobe.report.fleet.sites import SiteMap, parse_site_map
from mtlsprobe.run.report_files import read_documents


def roll_up(
    paths: Iterable[str],
    *,
    now: datetime,
    stale_after_days: float = 7.0,
    sites: SiteMap | None = None,
) -> FleetSummary:
    """Read every input and summarise. Raises InputError when no report could be read."""
    stats = InputStats()
    agg = FleetAggregator()
    for where, doc in read_documents(paths, stats):
        try:
            agg.add_all(list(rows_of(doc)))
        except Foreign as exc:
            stats.foreign_document(where, str(exc))
    if not len(agg):
        problems = [f"{stats.malformed} malformed line(s)", f"{stats.foreign} foreign document(s)"]
        problems += stats.unreadable[:3]
        raise InputError("no mtlsprobe report could be read (" + "; ".join(problems) + ")")
    return agg.summary(now, stale_after_days, sites, stats)


def load_site_map(path: Path) -> SiteMap:
    """Read --site-map FILE (CSV ``key,site``); one InputError line when it cannot be read."""
    text = read_text_limited(path, "site map")
    return parse_site_map(text.splitlines(), str(path))
