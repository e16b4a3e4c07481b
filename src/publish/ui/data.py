"""The status page's read model: what the pages show, read from the store (never written).

Today it reads the run history (``_dp_runs``, through :mod:`record.history`) and derives
coverage with the backfill planner's rules (:class:`runner.backfill.History`), so the page and
``backfill_list`` can never disagree. Check results and dependencies are optional: they are
empty while the table (``_dp_checks``) or the registry key (``depends_on``) does not exist.
"""

from __future__ import annotations

import bisect
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from core.models import RunRecord
from core.store import Store
from pipelines.pipeline_registry import PipelineSpec, Registry
from record.tables import RUNS_TABLE
from runner import backfill as bf
from runner.intervals import Interval

CHECKS_TABLE = "_dp_checks"
# Coverage cell states, in the order of the legend.
STATES = ("done", "incomplete", "failed", "crashed", "running", "missing")
# Row counts of a table per day are recomputed at most this often while no run of the pipeline
# finished in between (a new run invalidates them at once).
COUNTS_MAX_AGE = 600.0


@dataclass
class Freshness:
    """How old the last successful run is against the pipeline's freshness rule."""

    state: str  # fresh, stale, never, n/a (no schedule and no freshness_hours)
    age_seconds: float | None = None
    rule: str = ""


@dataclass
class PipelineRow:
    """One line of the pipelines page (and the source of its metrics)."""

    spec: PipelineSpec
    next_run: datetime | None
    last_run: RunRecord | None
    last_success: RunRecord | None
    freshness: Freshness
    failures_total: int = 0
    failing_checks: list[str] = field(default_factory=list)
    depends_on: list[str] = field(default_factory=list)

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

    def count(self, state: str) -> int:
        return sum(1 for c in self.cells if c.state == state)


@dataclass
class DayCount:
    day: date
    rows: int
    reported: int | None
    status: str


@dataclass
class RowCounts:
    """Rows per day in a pipeline's table beside what its runs reported (``backfill_counts``)."""

    pipeline: str
    table: str
    time_column: str | None
    exists: bool
    total: int
    days: list[DayCount]
    computed_at: float


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC (naive values from the store are UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def has_history(store: Store) -> bool:
    """True once the run history table exists (before setup_db or the first run it does not)."""
    return bool(store.database_exists() and store.table_exists(RUNS_TABLE))


# ---- pipelines page ------------------------------------------------------------------------

def freshness(spec: PipelineSpec, success: RunRecord | None, now: datetime) -> Freshness:
    """The same rule as ``./run.sh check`` (two schedule periods, or ``freshness_hours``)."""
    from ops.health import freshness_limit

    if not spec.entry.schedule and not spec.entry.freshness_hours:
        return Freshness("n/a", _age(success, now))
    limit, rule = freshness_limit(spec, now)
    if success is None:
        return Freshness("never", None, rule)
    state = "stale" if as_utc(success.started_at) < limit else "fresh"
    return Freshness(state, _age(success, now), rule)


def _age(run: RunRecord | None, now: datetime) -> float | None:
    return None if run is None else max(0.0, (now - as_utc(run.started_at)).total_seconds())


def failure_counts(store: Store) -> dict[str, int]:
    """Failed or crashed runs per pipeline in the kept history (``RUN_HISTORY_TTL_DAYS``)."""
    rows = store.query_rows(f"SELECT pipeline, count() FROM {store.table(RUNS_TABLE)} FINAL "
                            "WHERE status IN ('failed', 'crashed') GROUP BY pipeline")
    return {str(name): int(n) for name, n in rows}


def failing_checks(store: Store) -> dict[str, list[str]]:
    """Names of the checks whose latest result failed, per pipeline; empty without ``_dp_checks``.

    Reads the columns it finds (``pipeline``, ``check`` or ``name``, ``status`` or ``passed``,
    ``checked_at``), so a first version of the checks table works without changing this page.
    """
    if not store.table_exists(CHECKS_TABLE):
        return {}
    columns = {str(r[0]) for r in store.query_rows(
        "SELECT name FROM system.columns WHERE database = {db:String} AND table = {t:String}",
        {"db": store.database, "t": CHECKS_TABLE})}
    name = next((c for c in ("check", "name", "check_name") if c in columns), None)
    when = next((c for c in ("checked_at", "finished_at", "created_at") if c in columns), None)
    if "pipeline" not in columns or name is None or when is None:
        return {}
    if "status" in columns:
        failing = "lower(toString(`status`)) IN ('fail', 'failed', 'error')"
    elif "passed" in columns:
        failing = "`passed` = 0"
    else:
        return {}
    rows = store.query_rows(
        f"SELECT pipeline, `{name}` FROM (SELECT pipeline, `{name}`, {failing} AS bad FROM "
        f"{store.table(CHECKS_TABLE)} ORDER BY `{when}` DESC LIMIT 1 BY pipeline, `{name}`) WHERE bad "
        f"ORDER BY pipeline, `{name}`")
    result: dict[str, list[str]] = defaultdict(list)
    for pipeline, check in rows:
        result[str(pipeline)].append(str(check))
    return dict(result)


def run_checks(store: Store, run_id: str) -> list[dict[str, Any]]:
    """Every check result recorded for a run (all columns as stored); empty without ``_dp_checks``."""
    if not store.table_exists(CHECKS_TABLE):
        return []
    columns = {str(r[0]) for r in store.query_rows(
        "SELECT name FROM system.columns WHERE database = {db:String} AND table = {t:String}",
        {"db": store.database, "t": CHECKS_TABLE})}
    if "run_id" not in columns:
        return []
    return store.query_dicts(f"SELECT * FROM {store.table(CHECKS_TABLE)} WHERE run_id = {{r:String}}",
                             {"r": run_id})


def dependencies(spec: PipelineSpec) -> list[str]:
    """The pipelines this one waits for (a ``depends_on`` entry key or pipeline attribute), if any."""
    found = getattr(spec.entry, "depends_on", None) or getattr(spec.pipeline, "depends_on", None) or []
    return [found] if isinstance(found, str) else [str(name) for name in found]


def overview(store: Store, registry: Registry, now: datetime | None = None) -> list[PipelineRow]:
    """Every discovered pipeline with its schedule, last run, freshness, failures and checks."""
    from cli.pipelines import next_run
    from record.history import last_runs, last_success

    now = now or datetime.now(UTC)
    last, success, failures, checks = {}, {}, {}, {}
    if has_history(store):
        last, success, failures = last_runs(store), last_success(store), failure_counts(store)
        checks = failing_checks(store)
    return [PipelineRow(spec, next_run(spec, now), last.get(spec.name), success.get(spec.name),
                        freshness(spec, success.get(spec.name), now), failures.get(spec.name, 0),
                        checks.get(spec.name, []), dependencies(spec))
            for spec in sorted(registry.pipelines.values(), key=lambda s: s.name)]


# ---- coverage grid -------------------------------------------------------------------------

def cell_state(coverage: bf.Coverage) -> str:
    """The grid's state of an interval: the planner's, with crashed runs and partial loads named."""
    if coverage.state == "partial":
        return "incomplete"
    if coverage.state == "failed" and coverage.run is not None and coverage.run.status in ("crashed", "running"):
        return "crashed"
    return coverage.state


def _row(spec: PipelineSpec, intervals: Sequence[Interval], runs: Sequence[RunRecord]) -> GridRow:
    """Coverage of each interval, each judged on only the runs overlapping it (same answer as the
    planner, which looks at all of them, in time linear in runs + intervals)."""
    starts = [i.start for i in intervals]
    touching: list[list[RunRecord]] = [[] for _ in intervals]
    for run in runs:
        begin, end = as_utc(run.interval_start), as_utc(run.interval_end)
        first = max(0, bisect.bisect_right(starts, begin) - 1)
        for index in range(first, len(intervals)):
            if intervals[index].start >= end:
                break
            if intervals[index].end > begin:
                touching[index].append(run)
    cells = []
    for interval, overlapping in zip(intervals, touching, strict=True):
        coverage = bf.History(overlapping).coverage(interval)
        cells.append(Cell(interval, cell_state(coverage), coverage.why,
                          coverage.run.run_id if coverage.run else None))
    granularity = "hour" if len(intervals) > 1 and intervals[1].start - intervals[0].start < timedelta(days=1) \
        else "day"
    return GridRow(spec.name, granularity, cells)


def coverage_grid(store: Store, registry: Registry, first: date, last: date, hourly: bool = False,
                  now: datetime | None = None) -> list[GridRow]:
    """A row of intervals per pipeline over days ``first..last`` (hours for hourly pipelines when
    ``hourly``), read in one query."""
    from record.history import runs_overlapping

    specs = sorted(registry.pipelines.values(), key=lambda s: s.name)
    window = (datetime(first.year, first.month, first.day, tzinfo=UTC),
              datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1))
    by_pipeline: dict[str, list[RunRecord]] = defaultdict(list)
    if has_history(store):
        for run in runs_overlapping(store, *window):
            by_pipeline[run.pipeline].append(run)
    return [_row(spec, bf.intervals_for(spec, first, last, hourly, now), by_pipeline.get(spec.name, []))
            for spec in specs]


# ---- rows per day --------------------------------------------------------------------------

def counted_specs(registry: Registry) -> list[PipelineSpec]:
    """Pipelines that load a ClickHouse table (those have rows to count)."""
    return [s for s in sorted(registry.pipelines.values(), key=lambda s: s.name)
            if getattr(s.pipeline.loader, "table", None)]


def row_counts(store: Store, spec: PipelineSpec, first: date, last: date) -> RowCounts:
    """What ``backfill_counts`` prints for one pipeline: rows in the table and rows reported, by day."""
    from cli.backfill import day_status

    loader = spec.pipeline.loader
    table: str = loader.table  # type: ignore[attr-defined]
    time_column = getattr(loader, "time_column", None)
    comparable = bool(getattr(loader, "interval_scoped", False))
    total, per_day = bf.table_counts(store, table, time_column, first, last)
    reported = bf.reported_rows_by_day(bf.read_history(store, spec.name, create=False), first, last) \
        if comparable else {}
    days = []
    if time_column:
        for day in bf.days_between(first, last):
            rows = per_day.get(day, 0)
            days.append(DayCount(day, rows, reported.get(day) if comparable else None,
                                 day_status(rows, reported.get(day), day in reported, comparable)))
    return RowCounts(spec.name, table, time_column, total is not None, total or 0, days, time.time())


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
        counts = row_counts(store, spec, first, last)
        self._entries[key] = (stamp, counts)
        return counts
