"""How a table's partitions relate to a run's interval, and what an interval commit's rebuild costs.

An ``interval`` commit rebuilds every partition its slice touches: rows of those partitions outside
the slice are copied into staging, then the partitions are swapped. When partitions follow the
run's intervals (``toDate(ts)`` for daily runs) nothing is copied; otherwise each run copies the
rest of its partition(s), which matters only when that is many rows. So the loader reports the
rebuild after the fact, with what it really copied: at INFO while it is cheap, as a WARNING from
:data:`REBUILD_WARN_ROWS` copied rows, always saying why (the layout) and how to avoid it.

A partition key is *derived from the time column* when it uses the time column only, directly or
through columns ClickHouse computes from it: ``MATERIALIZED`` columns, and ``DEFAULT`` columns the
run's data does not supply (a column the data supplies holds whatever the data says).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from core.exceptions import StoreError
from core.sql_literals import sql_literal
from core.store import Store
from core.validators import quote_identifier
from pipelines.interfaces import RunContext
from pipelines.tools.loaders.clickhouse_schema import referenced_columns

#: Rows copied by one commit's rebuild from which the layout is worth a warning (below it the copy
#: takes a fraction of a second; the INFO line still says what it copied).
REBUILD_WARN_ROWS = 100_000


@dataclass(frozen=True)
class Layout:
    """A table's partition key (``""``: none) and, when it is derived from the time column, the
    columns it uses computed from that column alone (``derived``: name -> expression)."""

    table: str
    key: str
    time_column: str
    time_type: str
    derived: dict[str, str] | None

    def partitions_at(self, store: Store, moments: list[datetime]) -> list[str]:
        """The partition (as text) a row whose time column is each of ``moments`` falls into."""
        column = quote_identifier(self.time_column)
        values = ", ".join(f"'{m.astimezone(UTC):%Y-%m-%d %H:%M:%S.%f}'" for m in moments)
        extra = "".join(f", {expression} AS {quote_identifier(name)}"
                        for name, expression in (self.derived or {}).items())
        [(found,)] = store.query_rows(
            f"SELECT groupArray(p) FROM (SELECT toString({self.key}) AS p FROM (SELECT {column}{extra} FROM ("
            f"SELECT CAST(parseDateTime64BestEffort(arrayJoin([{values}]), 6, 'UTC'), "
            f"{sql_literal(self.time_type)}) AS {column})))")
        return list(found)

    def follows(self, store: Store, start: datetime, end: datetime) -> bool:
        """True when partitions change exactly at ``start`` and ``end`` (the slice is whole partitions;
        partition keys are monotonic in time: toDate, toYYYYMM, toStartOfHour...)."""
        if self.derived is None:
            return False
        edge = timedelta(microseconds=1)
        try:
            before, first, last, after = self.partitions_at(store, [start - edge, start, end - edge, end])
        except StoreError:  # a key ClickHouse cannot compute from the time column alone: cannot tell
            return False
        return before != first and last != after


def read_layout(store: Store, table: str, time_column: str, supplied: set[str]) -> Layout:
    """``table``'s layout; ``supplied``: the columns the run's data carries (their DEFAULTs do not apply)."""
    key = store.adapter.partition_key(table)
    columns = store.adapter.column_defaults(table)
    names = list(columns)
    time_type = columns.get(time_column, ("DateTime64(6, 'UTC')", "", ""))[0]
    used = referenced_columns([key], names) if key else set()
    derived: dict[str, str] | None = {}
    for name in sorted(used - {time_column}):
        _, kind, expression = columns[name]
        computed = kind == "MATERIALIZED" or (kind == "DEFAULT" and name not in supplied)
        if not computed or referenced_columns([expression], names) != {time_column}:
            derived = None
            break
        derived[name] = expression  # type: ignore[index]
    if not used:
        derived = None
    return Layout(table, key or "", time_column, time_type, derived)


def report_rebuild(context: RunContext, layout: Layout, copied: int, loaded: int, partitions: int) -> None:
    """Log what an interval commit's rebuild copied (nothing when it copied nothing), and why."""
    if not copied:
        return
    column = layout.time_column
    where = f"[{context.start.isoformat()}, {context.end.isoformat()})"
    if layout.derived is None:
        why = (f"partitions of {layout.table} ({layout.key or 'none'}) are not derived from the time column "
               f"{column}")
    elif not layout.follows(context.store, context.start, context.end):
        why = f"partitions of {layout.table} ({layout.key}) are coarser than the run's interval {where}"
    else:
        why = f"partitions of {layout.table} hold rows outside the run's interval {where}"
    cost = (f"to replace its interval, this run rebuilt {partitions} partition(s), copying {copied:,} rows "
            f"of other intervals besides its own {loaded:,}")
    if copied >= REBUILD_WARN_ROWS:
        context.logger.warning("Rebuild cost: %s; %s (every run pays this); partition by the interval "
                               "(e.g. toDate(%s) for daily runs) to avoid it", why, cost, column)
    else:
        context.logger.info("Rebuild cost: %s; %s (cheap at this size: a warning comes from %s copied rows)",
                            why, cost, f"{REBUILD_WARN_ROWS:,}")
