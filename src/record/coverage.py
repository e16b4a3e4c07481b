"""Coverage in ClickHouse (``_dp_coverage``): which intervals of a pipeline are loaded, for good.

One row per pipeline and interval: its last *complete* successful run (run id, trigger, rows,
when). The runner writes it right after the run's final record, in the same path; it has no TTL,
so coverage outlives the run history (``_dp_runs`` expires after ``RUN_HISTORY_TTL_DAYS``) and a
backfilled 2013 stays done. Every coverage question (backfill planning, ``backfill_list``,
``backfill_counts``) reads it for the window asked for only, so its cost does not grow with the
number of runs ever recorded.

Only interval-aware pipelines write coverage (their runs own their slice). When the table is
created it is filled once from the existing history (complete successes), which is what the
derived coverage used to be.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.framework_layout import framework_layout
from core.intervals import Interval
from core.models import RunRecord, as_utc
from core.store import Store

COVERAGE_TABLE = "_dp_coverage"
_UTC_MS = "DateTime64(3, 'UTC')"
_COLUMNS = ("pipeline", "interval_start", "interval_end", "run_id", "trigger", "rows_loaded", "started_at",
            "finished_at", "version")


def coverage_ddl(store: Store) -> str:
    # ReplacingMergeTree: the newest complete success of an interval wins (readers use FINAL).
    layout = framework_layout(store.settings)
    return f"""CREATE TABLE IF NOT EXISTS {store.table(COVERAGE_TABLE)}{layout.on_cluster} (
        pipeline LowCardinality(String),
        interval_start {_UTC_MS},
        interval_end {_UTC_MS},
        run_id String,
        trigger LowCardinality(String),
        rows_loaded UInt64,
        started_at {_UTC_MS},
        finished_at Nullable({_UTC_MS}),
        version UInt64
    ) ENGINE = {layout.engine(COVERAGE_TABLE, "ReplacingMergeTree", "version")}
    ORDER BY (pipeline, interval_start, interval_end)"""


def fill_from_history(store: Store, runs_table: str) -> None:
    """Copy every complete success still in the run history (done once, when the table is new)."""
    store.command(
        f"INSERT INTO {store.table(COVERAGE_TABLE)} ({', '.join(_COLUMNS)}) "
        "SELECT pipeline, interval_start, interval_end, run_id, trigger, rows_loaded, started_at, finished_at, "
        f"toUnixTimestamp64Nano(started_at) FROM {store.table(runs_table)} FINAL "
        "WHERE status = 'success' AND started_at >= interval_end",
        settings={"async_insert": 0})


@dataclass(frozen=True)
class Covered:
    """An interval a complete successful run loaded."""

    start: datetime
    end: datetime
    run_id: str
    trigger: str
    rows_loaded: int
    when: float  # when its run finished (epoch seconds): the newest run of an interval wins


def record_coverage(store: Store, run: RunRecord, batch: Sequence[Interval] = (),
                    rows: Mapping[datetime, int] | None = None) -> None:
    """Record that ``run`` (a complete success) loaded its interval, or each interval of its
    ``batch`` (one row each, pointing at the batch's run; ``rows``: each one's rows by start)."""
    if run.status != "success" or run.incomplete:
        return
    version = time.time_ns()
    spans = [(i.start, i.end, (rows or {}).get(i.start, 0)) for i in batch] or [
        (run.interval_start, run.interval_end, run.rows_loaded)]
    store.insert_rows(COVERAGE_TABLE, [[run.pipeline, start, end, run.run_id, run.trigger, n, run.started_at,
                                        run.finished_at, version] for start, end, n in spans], _COLUMNS)



def read_coverage(store: Store, pipeline: str, start: datetime | None = None,
                  end: datetime | None = None) -> list[Covered]:
    """Covered intervals of ``pipeline`` overlapping ``[start, end)`` (all without bounds), by start."""
    return _read(store, pipeline, start, end).get(pipeline, [])


def covered_overlapping(store: Store, start: datetime, end: datetime) -> dict[str, list[Covered]]:
    """Covered intervals of every pipeline overlapping ``[start, end)``, by start (one query, for
    pages that show many pipelines at once)."""
    return _read(store, None, start, end)


def _read(store: Store, pipeline: str | None, start: datetime | None,
          end: datetime | None) -> dict[str, list[Covered]]:
    where, params = ("pipeline = {p:String}", {"p": pipeline}) if pipeline is not None else ("1", {})
    if start is not None and end is not None:
        where += " AND interval_start < {end:DateTime64(3, 'UTC')} AND interval_end > {start:DateTime64(3, 'UTC')}"
        params |= {"start": start, "end": end}
    # Sorted by ClickHouse; "when" as a number: a datetime per value costs ~10 us in Python, and a
    # 400-day listing of an hourly pipeline reads ~10,000 rows.
    sql = (f"SELECT pipeline, interval_start, interval_end, run_id, trigger, rows_loaded, "
           f"toUnixTimestamp64Milli(coalesce(finished_at, started_at)) "
           f"FROM {store.table(COVERAGE_TABLE)} FINAL WHERE {where} ORDER BY pipeline, interval_start, interval_end")
    utc = UTC
    found: dict[str, list[Covered]] = {}
    for p, s, e, r, t, n, w in store.query_rows(sql, params):
        found.setdefault(p, []).append(Covered(s.replace(tzinfo=utc), e.replace(tzinfo=utc), r, t, n, w / 1000))
    return found


def newest_covered(store: Store, pipeline: str) -> tuple[datetime, datetime] | None:
    """The newest interval ever loaded (any time, not only a window)."""
    rows: list[Any] = store.query_rows(
        f"SELECT interval_start, interval_end FROM {store.table(COVERAGE_TABLE)} FINAL WHERE pipeline = {{p:String}} "
        "ORDER BY interval_start DESC LIMIT 1", {"p": pipeline})
    return (as_utc(rows[0][0]), as_utc(rows[0][1])) if rows else None


@dataclass(frozen=True)
class LastLoad:
    """The newest complete successful run of a pipeline, as coverage remembers it."""

    run_id: str
    started_at: datetime
    rows_loaded: int


def last_loads(store: Store) -> dict[str, LastLoad]:
    """Per pipeline, the complete success that started last (freshness; outlives the run history)."""
    rows = store.query_rows(
        f"SELECT pipeline, argMax(run_id, started_at), max(started_at), argMax(rows_loaded, started_at) "
        f"FROM {store.table(COVERAGE_TABLE)} FINAL GROUP BY pipeline")
    return {p: LastLoad(r, as_utc(s), int(n)) for p, r, s, n in rows}
