"""Coverage questions: is an interval done, failed, running, incomplete, partly loaded or missing?

A :class:`History` answers them for one pipeline and one window from two sources read once:

- the **covered** intervals (``_dp_coverage``: complete successes, kept for as long as the data),
- the window's **other runs** (``_dp_runs``: failed, crashed, running and incomplete runs).

Both are sorted once and searched with ``bisect``, so a question costs O(log n) and planning or
listing m intervals costs O((n + m) log n), whatever the number of runs ever recorded.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from core.intervals import Interval
from core.locks import run_is_alive
from core.models import RunRecord, as_utc
from core.store import Store
from record.coverage import Covered

State = Literal["done", "failed", "running", "incomplete", "partial", "missing"]



def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


@dataclass
class Coverage:
    """The state of one interval."""

    state: State
    why: str
    run: RunRecord | Covered | None = None


def covered_by(run: RunRecord) -> Covered:
    return Covered(as_utc(run.interval_start), as_utc(run.interval_end), run.run_id, run.trigger, run.rows_loaded,
                   as_utc(run.finished_at or run.started_at).timestamp())


def _alive(run: RunRecord) -> bool:
    """A ``running`` run still holds its lock (other hosts' runs cannot be checked: assume alive)."""
    return run_is_alive(run.pid, run.lock_file, run.host)


class _Index:
    """Items with ``[start, end)``, sorted by start: which overlap an interval (bisect, no scan)."""

    def __init__(self, items: Sequence[Any], start: Any, end: Any, presorted: bool = False) -> None:
        self.items = list(items) if presorted else sorted(items, key=lambda x: (start(x), end(x)))
        self.starts = [start(x) for x in self.items]
        self.end = end
        self.span = max((end(x) - start(x) for x in self.items), default=timedelta(0))

    def overlapping(self, interval: Interval) -> list[Any]:
        lo = bisect_left(self.starts, interval.start - self.span)
        hi = bisect_left(self.starts, interval.end)
        return [x for x in self.items[lo:hi] if self.end(x) > interval.start]


class History:
    """One pipeline's coverage and runs (read once, no writes).

    ``runs`` may hold every run (tests) or only the window's runs that are not complete successes
    (:func:`read_history`); ``covered`` defaults to the complete successes among ``runs``.
    """

    def __init__(self, runs: Sequence[RunRecord], covered: Sequence[Covered] | None = None,
                 newest: Interval | None = None) -> None:
        if covered is None:  # derived from the runs: several successes of one interval may be there
            covered = sorted((covered_by(r) for r in runs if r.status == "success" and not r.incomplete),
                             key=lambda c: c.when)
        # read_coverage returns one row per interval sorted by start; re-sorting sorted data is O(n)
        by_when = list(covered)
        self.covered = sorted(by_when, key=lambda c: (c.start, c.end))
        self.runs = [r for r in runs if not (r.status == "success" and not r.incomplete)]
        self.newest = newest or (Interval(*max((c.start, c.end) for c in self.covered)) if self.covered else None)
        # the newest success of an interval wins (later items overwrite earlier ones)
        self._exact: dict[tuple[datetime, datetime], Covered] = {(c.start, c.end): c for c in by_when}
        self._covered = _Index(self.covered, lambda c: c.start, lambda c: c.end, presorted=True)
        self._runs = _Index(self.runs, lambda r: as_utc(r.interval_start), lambda r: as_utc(r.interval_end))
        self._merged = _merge([(c.start, c.end) for c in self.covered])
        self._merged_starts = [s for s, _ in self._merged]

    def is_covered(self, interval: Interval) -> bool:
        i = bisect_right(self._merged_starts, interval.start) - 1
        return i >= 0 and self._merged[i][1] >= interval.end

    def coverage(self, interval: Interval) -> Coverage:
        exact = self._exact.get((interval.start, interval.end))
        if exact:
            return Coverage("done", f"run {exact.run_id} succeeded ({exact.trigger}, {exact.rows_loaded:,} rows)",
                            exact)
        if self.is_covered(interval):
            covering = self._covered.overlapping(interval)
            names = ", ".join(c.run_id for c in covering[:3]) + ("..." if len(covering) > 3 else "")
            return Coverage("done", f"covered by {len(covering)} successful run(s) ({names})", covering[-1])
        for run in sorted(self._runs.overlapping(interval), key=lambda r: as_utc(r.started_at), reverse=True):
            found = _state_of(run)
            if found:
                return found
        partly = self._covered.overlapping(interval)
        if partly:
            return Coverage("partial", "only part of it was loaded by successful runs", partly[-1])
        return Coverage("missing", "never run", None)


def _state_of(run: RunRecord) -> Coverage | None:
    """What the newest run of an interval that is not covered says about it."""
    if run.status == "running":
        if _alive(run):
            return Coverage("running", f"run {run.run_id} is running now (pid {run.pid} on {run.host})", run)
        return Coverage("failed", f"run {run.run_id} crashed (process {run.pid} is gone)", run)
    if run.status in ("failed", "crashed"):
        what = run.status if run.status == "crashed" else f"failed ({run.reason or 'error'})"
        error = f": {run.error.splitlines()[0][:160]}" if run.error else ""
        return Coverage("failed", f"run {run.run_id} {what}{error}", run)
    if run.incomplete:
        return Coverage("incomplete", f"run {run.run_id} started before the interval ended "
                                      f"({as_utc(run.started_at):%Y-%m-%d %H:%M} UTC), so it loaded part of it at most",
                        run)
    return None


def _merge(spans: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """Sorted spans -> their union as disjoint sorted spans (touching spans join)."""
    merged: list[tuple[datetime, datetime]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def read_history(store: Store, pipeline: str, *, create: bool, first: date | None = None,
                 last: date | None = None) -> History:
    """The pipeline's coverage and other runs in days ``first..last`` (all days without them).

    With ``create=False`` nothing is written (no tables yet: an empty history).
    """
    from record.coverage import COVERAGE_TABLE, newest_covered, read_coverage
    from record.history import window_runs
    from record.tables import RUNS_TABLE, ensure_framework_tables

    if create:
        ensure_framework_tables(store)
    elif not (store.database_exists() and store.table_exists(RUNS_TABLE)):
        return History([])
    start = _midnight(first) if first else None
    end = _midnight(last + timedelta(days=1)) if last else None
    if not store.table_exists(COVERAGE_TABLE):
        # A store from before the coverage table, read without writing: derive it from the runs
        # (the next run or backfill creates the table and fills it from the history).
        return History(window_runs(store, pipeline, start, end, complete=True))
    newest = newest_covered(store, pipeline)
    return History(window_runs(store, pipeline, start, end), read_coverage(store, pipeline, start, end),
                   Interval(*newest) if newest else None)


def read_histories(store: Store, pipelines: Sequence[str], first: date, last: date) -> dict[str, History]:
    """:func:`read_history` of many pipelines over days ``first..last`` in two queries, not three
    per pipeline (the status page's grid). Nothing is written. ``History.newest`` is the newest
    done interval of the window here, not of all time."""
    from record.coverage import COVERAGE_TABLE, covered_overlapping
    from record.history import runs_overlapping
    from record.tables import RUNS_TABLE

    if not (store.database_exists() and store.table_exists(RUNS_TABLE)):
        return {name: History([]) for name in pipelines}
    start, end = _midnight(first), _midnight(last + timedelta(days=1))
    runs: dict[str, list[RunRecord]] = {}
    for run in runs_overlapping(store, start, end):
        runs.setdefault(run.pipeline, []).append(run)
    if not store.table_exists(COVERAGE_TABLE):  # as read_history: derived from the runs
        return {name: History(runs.get(name, [])) for name in pipelines}
    covered = covered_overlapping(store, start, end)
    # History keeps only the runs that are not complete successes: those are in the coverage.
    return {name: History(runs.get(name, []), covered.get(name, [])) for name in pipelines}


# ---- summaries (backfill_list, backfill_counts) ------------------------------------------------

@dataclass
class CoverageSummary:
    """Intervals of a window by state, and the newest done interval."""

    done: int = 0
    failed: int = 0
    running: int = 0
    incomplete: int = 0
    missing: int = 0
    last_done: Interval | None = None


def summarize_coverage(history: History, intervals: Sequence[Interval]) -> CoverageSummary:
    summary = CoverageSummary()
    for interval in intervals:
        state = history.coverage(interval).state
        if state == "done":
            summary.done += 1
            summary.last_done = interval
        elif state in ("failed", "running", "incomplete"):
            setattr(summary, state, getattr(summary, state) + 1)
        else:
            summary.missing += 1
    return summary


def last_done_interval(history: History) -> Interval | None:
    """The newest interval a complete successful run loaded (any time, not only the window)."""
    return history.newest


def reported_rows_by_day(history: History, first: date, last: date) -> dict[date, int | None]:
    """Per day, the rows the runs that loaded it reported (``rows_loaded``).

    Covered intervals are replayed in the order their runs finished, each replacing the slices it
    overlaps (as the interval loader does), so a day re-run replaces its hours' counts. A day
    with no successful run is absent; a day touched by a run spanning several days, or whose
    earlier slice was partly replaced, is ``None`` (its rows cannot be split by day).
    """
    slices: dict[date, list[tuple[datetime, datetime, int]]] = {}
    spanning: set[date] = set()
    window_start, window_end = _midnight(first), _midnight(last + timedelta(days=1))
    for run in sorted(history.covered, key=lambda c: c.when):
        start, end = run.start, run.end
        if end <= window_start or start >= window_end:
            continue
        day = start.date()
        if end > _midnight(day) + timedelta(days=1):
            cursor = day
            while _midnight(cursor) < end:
                spanning.add(cursor)
                cursor += timedelta(days=1)
            continue
        earlier = slices.get(day, [])
        kept = [s for s in earlier if s[1] <= start or s[0] >= end]
        if any(s[0] < start or s[1] > end for s in earlier if s not in kept):
            # it replaced part of an earlier run's slice (an hour of a day recorded whole by older
            # code): how many of that run's rows are left cannot be told
            spanning.add(day)
        slices[day] = [*kept, (start, end, run.rows_loaded)]
    result: dict[date, int | None] = {day: sum(s[2] for s in parts) for day, parts in slices.items()}
    for day in spanning:
        result[day] = None
    return result


def incomplete_days(history: History, first: date, last: date) -> set[date]:
    """Days of ``first..last`` that an incomplete success touched (it loaded part of them at most)."""
    days: set[date] = set()
    for run in history.runs:
        if run.incomplete:
            day = max(first, as_utc(run.interval_start).date())
            end = min(last, (as_utc(run.interval_end) - timedelta(microseconds=1)).date())
            while day <= end:
                days.add(day)
                day += timedelta(days=1)
    return days
