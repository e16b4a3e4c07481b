"""Rows per day in a pipeline's table beside the rows its runs reported loading.

One computation for ``./run.sh backfill_counts`` and the status page's rows page, so the two
never disagree: the table's rows per UTC day of the loader's time column, the rows the complete
successful runs reported for each day (read from the coverage table, :mod:`runner.coverage`),
and a status per day.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date, timedelta

from core.store import Store
from pipelines.pipeline_registry import PipelineSpec


@dataclass
class DayCount:
    """One day: rows in the table, rows the runs reported (None: not comparable) and its status."""

    day: date
    rows: int
    reported: int | None
    status: str


@dataclass
class RowCounts:
    """A pipeline's table counted over a window (``days`` is empty without a time column)."""

    pipeline: str
    table: str
    time_column: str | None
    mode: str | None
    exists: bool
    total: int
    days: list[DayCount]
    computed_at: float
    #: Rows whose time column is NULL: they belong to no interval and to no day (every rebuild keeps them).
    without_time: int = 0


def day_status(rows: int, reported: int | None, has_run: bool, comparable: bool, incomplete: bool = False) -> str:
    """ok, no data, mismatch, incomplete (only a run that started before the day ended), no run
    (rows but no successful run recorded) or n/a."""
    if comparable and not has_run and incomplete:
        return "incomplete"
    if comparable and has_run and reported is not None and reported != rows:
        return "mismatch"
    if rows == 0:
        return "no data"
    if comparable and not has_run:
        return "no run"
    if comparable and reported is None:
        return "n/a"
    return "ok"


def count_rows(store: Store, spec: PipelineSpec, first: date, last: date) -> RowCounts:
    """Rows per day of ``spec``'s table over days ``first..last`` beside what its runs reported.

    Only tables written in an interval-scoped mode are compared (their runs own whole days);
    nothing is written (no tables yet: counts of zero, ``exists`` False).
    """
    from runner import coverage as cov

    loader = spec.pipeline.loader
    table = loader.table or ""
    time_column = loader.time_column
    comparable = loader.interval_scoped
    total, per_day = table_counts(store, table, time_column, first, last)
    without_time = per_day.pop(None, 0)
    days = []
    if time_column:
        history = cov.read_history(store, spec.name, create=False, first=first, last=last)
        reported = cov.reported_rows_by_day(history, first, last) if comparable else {}
        partly = cov.incomplete_days(history, first, last) if comparable else set()
        for day in days_between(first, last):
            rows = per_day.get(day, 0)
            days.append(DayCount(day, rows, reported.get(day) if comparable else None,
                                 day_status(rows, reported.get(day), day in reported, comparable, day in partly)))
    return RowCounts(spec.name, table, time_column, loader.mode, total is not None, total or 0,
                     days, time.time(), without_time)


def table_counts(store: Store, table: str, time_column: str | None, first: date,
                 last: date) -> tuple[int | None, dict[date | None, int]]:
    """Total rows of ``table`` (None when it does not exist) and rows per UTC day of ``time_column``;
    the key None counts the rows whose time column is NULL (they are in no day)."""
    from core.validators import quote_identifier

    if not store.database_exists() or not store.table_exists(table):
        return None, {}
    total = int(store.command(f"SELECT count() FROM {store.table(table)}"))
    if not time_column:
        return total, {}
    kind = store.adapter.columns(table).get(time_column, "")
    column = quote_identifier(time_column)
    day = column if kind.removeprefix("Nullable(").startswith("Date") and "DateTime" not in kind \
        else f"toDate({column}, 'UTC')"
    rows = store.query_rows(
        f"SELECT {day} AS d, count() FROM {store.table(table)} "
        "WHERE d IS NULL OR (d >= {first:Date} AND d <= {last:Date}) GROUP BY d ORDER BY d",
        {"first": first, "last": last})
    return total, {d: int(n) for d, n in rows}


def days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]
