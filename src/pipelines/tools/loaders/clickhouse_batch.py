"""A batch in ``interval`` mode: one run of several contiguous intervals, judged per interval.

The batch's staged rows are counted per interval (one ``GROUP BY`` over the staging table), so
the run can record each interval's rows in its coverage (``RunContext.rows_by_interval``), and
an interval with 0 rows is refused exactly as a run of it alone would be: when the target holds
rows there and the pipeline does not ``allow_empty``.
"""

from __future__ import annotations

from datetime import datetime

from core.exceptions import LoadError
from core.intervals import Interval
from core.validators import quote_identifier
from pipelines.interfaces import RunContext


def rows_by_interval(context: RunContext, table: str, column: str) -> dict[datetime, int]:
    """Rows of ``table`` in each of the batch's intervals (by interval start; all intervals present)."""
    store, intervals = context.store, context.intervals
    bounds = [i.start for i in intervals] + [intervals[-1].end]
    time = f"toDateTime64({quote_identifier(column)}, 6, 'UTC')"
    # The interval of a row: how many interval starts lie at or before its time (1-based).
    found = store.query_rows(
        f"SELECT arrayFirstIndex(b -> b > {time}, {{bounds:Array(DateTime64(6, 'UTC'))}}) - 1 AS i, count() "
        f"FROM {store.table(table)} WHERE {time} >= {{first:DateTime64(6, 'UTC')}} "
        f"AND {time} < {{last:DateTime64(6, 'UTC')}} GROUP BY i",
        {"bounds": bounds, "first": bounds[0], "last": bounds[-1]})
    counts = dict.fromkeys((i.start for i in intervals), 0)
    for index, rows in found:
        if 1 <= index <= len(intervals):
            counts[intervals[index - 1].start] = int(rows)
    return counts


def refuse_empty_intervals(context: RunContext, target: str, staging: str, column: str, target_exists: bool) -> None:
    """Count the batch's staged rows per interval (into ``context.rows_by_interval``) and refuse an
    interval with none that would empty rows of the target (unless ``allow_empty``)."""
    staged = rows_by_interval(context, staging, column)
    context.rows_by_interval = staged
    empty = [i for i in context.intervals if not staged[i.start]]
    if not empty or context.allow_empty or not target_exists:
        return
    held = rows_by_interval(context, target, column)
    for interval in empty:
        if held[interval.start]:
            raise LoadError(_message(interval, held[interval.start]))


def _message(interval: Interval, held: int) -> str:
    """The words of a run of the interval alone (``WriteStrategy._refuse_empty_replacement``)."""
    return (f"source returned 0 rows for {interval.label}, which holds {held:,} rows; "
            "set allow_empty=True if an empty interval is real")
