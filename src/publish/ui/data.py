"""The status page's read model: what the pages show, read from the store (never written).

It reads the run history (``_dp_runs``, :mod:`record.history`), the coverage table
(``_dp_coverage``) through the planner's :class:`runner.coverage.History`, so the grid and
``backfill_list`` can never disagree, the check results (``_dp_checks``, :mod:`audit.results`)
and the rows per day of :mod:`runner.counts` (what ``backfill_counts`` prints). Before the first
run none of the tables exists: the pages are empty, and nothing is created.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from audit.results import CHECKS_TABLE, CheckResult, latest_by_pipeline, results_of_runs
from core.intervals import Interval
from core.models import RunRecord, as_utc
from core.store import Store
from pipelines.pipeline_registry import PipelineSpec, Registry
from record.tables import RUNS_TABLE
from record.totals import Totals, read_totals
from runner import backfill as bf
from runner import coverage as cov
from runner.counts import DayCount, RowCounts, count_rows
from runner.status import PipelineStatus, pipeline_statuses

__all__ = ["DayCount", "RowCounts", "as_utc"]  # re-exported for the pages (runner.counts, core.models)
# Coverage cell states, in the order of the legend.
STATES = ("done", "incomplete", "failed", "crashed", "running", "missing")
# Row counts of a table per day are recomputed at most this often while no run of the pipeline
# finished in between (a new run invalidates them at once).
COUNTS_MAX_AGE = 600.0


@dataclass
class Freshness:
    """A pipeline's freshness on the page, from runner.status (the rule of check)."""

    state: str  # fresh, stale, never, n/a (no schedule and no freshness_hours)
    age_seconds: float | None = None
    rule: str = ""


@dataclass
class PipelineRow:
    """One line of the pipelines page (and the source of its metrics)."""

    spec: PipelineSpec
    next_run: datetime | None
    last_run: RunRecord | None
    freshness: Freshness
    failing_checks: list[str] = field(default_factory=list)
    depends_on: list[str] = field(default_factory=list)
    status: PipelineStatus | None = None  # data freshness, open failures (runner.status)
    totals: Totals = field(default_factory=Totals)
    checks: list[CheckResult] = field(default_factory=list)  # of its most recently checked run

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass
class Cell:
    """One interval of the coverage grid."""

    interval: Interval
    state: str
    why: str
    run_id: str | None


@dataclass
class GridRow:
    name: str
    granularity: str
    cells: list[Cell]
    interval_aware: bool = True  # False: runs do not own an interval, nothing is "missing"

    def count(self, state: str) -> int:
        return sum(1 for c in self.cells if c.state == state)

    def periods(self) -> list[tuple[str, list[Cell]]]:
        """The cells by month (by day for hours): the grid's date axis, a boundary between each."""
        found: dict[str, list[Cell]] = {}
        shape = "%Y-%m" if self.granularity == "day" else "%Y-%m-%d"
        for cell in self.cells:
            found.setdefault(cell.interval.start.strftime(shape), []).append(cell)
        return list(found.items())


def has_history(store: Store) -> bool:
    """True once the run history table exists (before setup_db or the first run it does not)."""
    return bool(store.database_exists() and store.table_exists(RUNS_TABLE))


# ---- pipelines page ------------------------------------------------------------------------

def freshness(spec: PipelineSpec, status: PipelineStatus | None, now: datetime) -> Freshness:
    """The rule of ``./run.sh check``, from :mod:`runner.status` (data for interval-aware pipelines,
    the last success for the others); the age is of what freshness is judged on."""
    mark = status.freshness_mark if status else None
    age = None if mark is None else max(0.0, (now - mark).total_seconds())
    if status is None or status.expected_until is None:
        return Freshness("n/a", age, status.rule if status else "")
    basis = "data loaded up to" if status.freshness_basis == "data" else "last success"
    rule = f"{status.rule}; freshness on {basis.replace(' up to', '')}"
    if mark is None:
        return Freshness("never", None, rule)
    return Freshness("fresh" if status.fresh else "stale", age, rule)


def latest_checks(store: Store) -> dict[str, list[CheckResult]]:
    """Per pipeline, the check results of its most recently checked run, by check name; empty
    while ``_dp_checks`` does not exist."""
    if not store.table_exists(CHECKS_TABLE):
        return {}
    return {pipeline: sorted(results, key=lambda r: r.check_name)
            for pipeline, results in latest_by_pipeline(store).items()}


def run_checks(store: Store, run_id: str) -> list[dict[str, Any]]:
    """The check results recorded for a run, as the run page shows them; empty without ``_dp_checks``."""
    if not store.table_exists(CHECKS_TABLE):
        return []
    return [{"check": r.check_name, "kind": r.kind, "severity": r.severity, "status": r.status,
             "failing": r.failing, "detail": r.detail, "kept table": r.kept_table or "-",
             "checked at": r.checked_at.strftime("%Y-%m-%d %H:%M:%S")}
            for r in sorted(results_of_runs(store, [run_id]).get(run_id, []), key=lambda r: r.check_name)]


def overview(store: Store, registry: Registry, now: datetime | None = None,
             only: str | None = None) -> list[PipelineRow]:
    """Every discovered pipeline (``only``: that one) with its schedule, last run, freshness,
    failures and checks."""
    from cli.pipelines import next_run
    from record.history import last_runs

    now = now or datetime.now(UTC)
    last: dict[str, RunRecord] = {}
    checks: dict[str, list[CheckResult]] = {}
    totals: dict[str, Totals] = {}
    statuses: dict[str, PipelineStatus] = {}
    specs = sorted((s for s in registry.pipelines.values() if only is None or s.name == only), key=lambda s: s.name)
    if has_history(store):
        last, checks, totals = last_runs(store), latest_checks(store), read_totals(store)
        statuses = pipeline_statuses(store, specs, now)
    rows = []
    for spec in specs:
        status = statuses.get(spec.name)
        failing = sorted({r.check_name for r in status.failing_checks if r.status != "pass"}) if status else []
        rows.append(PipelineRow(spec, next_run(spec, now), last.get(spec.name), freshness(spec, status, now), failing,
                                list(spec.entry.depends_on), status,
                                totals.get(spec.name, Totals()), checks.get(spec.name, [])))
    return rows


# ---- coverage grid -------------------------------------------------------------------------

def cell_state(coverage: cov.Coverage) -> str:
    """The grid's state of an interval: the planner's, with crashed runs and partial loads named."""
    if coverage.state == "partial":
        return "incomplete"
    if coverage.state == "failed" and isinstance(coverage.run, RunRecord) \
            and coverage.run.status in ("crashed", "running"):
        return "crashed"
    return coverage.state


def _row(spec: PipelineSpec, intervals: Sequence[Interval], history: cov.History) -> GridRow:
    if not getattr(spec.pipeline, "interval_aware", False):
        return GridRow(spec.name, "day", [], interval_aware=False)
    cells = []
    for interval in intervals:
        coverage = history.coverage(interval)
        cells.append(Cell(interval, cell_state(coverage), coverage.why,
                          coverage.run.run_id if coverage.run else None))
    granularity = "hour" if len(intervals) > 1 and intervals[1].start - intervals[0].start < timedelta(days=1) \
        else "day"
    return GridRow(spec.name, granularity, cells)


def coverage_grid(store: Store, registry: Registry, first: date, last: date, hourly: bool = False,
                  now: datetime | None = None, only: str | None = None) -> list[GridRow]:
    """A row of intervals per pipeline (``only``: of that one) over days ``first..last`` (hours for
    hourly pipelines when ``hourly``), read from the coverage table and the window's runs in two
    queries. Pipelines whose runs own no interval get a row without cells."""
    specs = sorted((s for s in registry.pipelines.values() if only is None or s.name == only), key=lambda s: s.name)
    histories = cov.read_histories(store, [s.name for s in specs], first, last)
    return [_row(spec, bf.intervals_for(spec, first, last, hourly, now), histories[spec.name]) for spec in specs]


# ---- rows per day --------------------------------------------------------------------------

def counted_specs(registry: Registry) -> list[PipelineSpec]:
    """Pipelines that load a ClickHouse table (those have rows to count)."""
    return [s for s in sorted(registry.pipelines.values(), key=lambda s: s.name)
            if s.pipeline.loader.table]


class CountsCache:
    """Row counts per (pipeline, window), kept until the pipeline's newest run changes or
    ``COUNTS_MAX_AGE`` passes: counting a big table on every page load would be the slow part."""

    def __init__(self, max_age: float = COUNTS_MAX_AGE) -> None:
        self.max_age = max_age
        self._entries: dict[tuple[str, date, date], tuple[tuple[Any, ...], RowCounts]] = {}

    def get(self, store: Store, spec: PipelineSpec, first: date, last: date,
            newest: RunRecord | None) -> RowCounts:
        key = (spec.name, first, last)
        stamp = (newest.run_id, newest.status, newest.finished_at) if newest else ()
        cached = self._entries.get(key)
        if cached and cached[0] == stamp and time.time() - cached[1].computed_at < self.max_age:
            return cached[1]
        counts = count_rows(store, spec, first, last)
        self._entries[key] = (stamp, counts)
        return counts
