"""The ClickHouse loader's ``interval`` write strategy: a run replaces exactly its slice.

The run's slice ``[start, end)`` of ``time_column`` is replaced as a whole. Every partition the
slice touches is rebuilt in staging (rows of that partition outside the slice are copied in) and
swapped in with one ``ALTER ... REPLACE PARTITION`` (atomic per partition, not across them); a
partition left with no rows is dropped. With daily partitions and daily runs nothing is copied.
Re-running an interval, a retry or a backfill twice gives exactly the same rows. Every row a run
writes must lie in its slice; a NULL time places a row in no slice and fails the run.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc

from core.exceptions import LoadError
from core.intervals import in_slice_sql, outside_slice_sql, slice_parameters
from core.validators import quote_identifier
from pipelines.interfaces import RunContext
from pipelines.tools.loaders.clickhouse_layout import Layout, read_layout, report_rebuild
from pipelines.tools.loaders.clickhouse_staging import INSERT_SETTINGS, TableSpec, insert_select
from pipelines.tools.loaders.clickhouse_strategies import WriteStrategy

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class IntervalStrategy(WriteStrategy):
    """``interval`` (see the module doc)."""

    mode = "interval"
    # A run replaces exactly its slice: backfillable, and runs of different intervals may overlap.
    interval_scoped = True
    replaces = True

    def __init__(self, spec: TableSpec) -> None:
        if not spec.time_column:
            raise LoadError(f"ClickHouse loader for '{spec.table}': mode 'interval' needs time_column (the column "
                            "that places a row in a run's interval)")
        super().__init__(spec)
        self.column: str = spec.time_column

    # ---- the run's rows lie in its slice ----------------------------------------------------

    def check_columns(self, names: list[str]) -> None:
        if self.column not in names:
            raise LoadError(f"Loader for '{self.spec.table}' (interval mode): the data has no time column "
                            f"'{self.column}' (columns: {', '.join(names)})")

    def check_batch(self, data: pa.Table, context: RunContext) -> None:
        self.check_columns(data.column_names)
        column, table = self.column, self.spec.table
        values = data.column(column)
        if pa.types.is_date(values.type):
            values = pc.cast(values, pa.timestamp("s"))
        if pa.types.is_timestamp(values.type) and values.type.tz is None:
            values = pc.assume_timezone(values, "UTC")
        if not pa.types.is_timestamp(values.type):
            raise LoadError(f"Loader for '{table}': time column '{column}' must be a date or timestamp, "
                            f"got {values.type}")
        values = pc.cast(values, pa.timestamp("us", tz="UTC"))
        if values.null_count:
            raise LoadError(self._null_time_message(values.null_count), table=table, column=column)
        # The common case (every row inside) with min/max on integers: comparing against Python
        # scalars would make pyarrow import pandas (~0.5 s per run) for nothing.
        micros = pc.min_max(values.cast(pa.int64()))
        low, high = micros["min"].as_py(), micros["max"].as_py()
        if low is not None and _micros(context.start) <= low and high < _micros(context.end):
            return
        start = pa.scalar(context.start, type=pa.timestamp("us", tz="UTC"))
        end = pa.scalar(context.end, type=pa.timestamp("us", tz="UTC"))
        outside = pc.or_kleene(pc.less(values, start), pc.greater_equal(values, end))
        bad = pc.sum(outside).as_py() or 0
        if bad:
            first = pc.filter(values, outside)[0]
            raise LoadError(self._outside_message(bad, context, first.as_py()), table=table, column=column)

    def check_staged_rows(self, context: RunContext) -> int:
        store, column = context.store, quote_identifier(self.column)
        outside = outside_slice_sql(column)
        [(rows, bad, nulls, first)] = store.query_rows(
            f"SELECT count(), countIf({outside}), countIf({column} IS NULL), minIf({column}, {outside}) "
            f"FROM {store.table(self.staging.name)}", slice_parameters(context.start, context.end))
        if nulls:
            raise LoadError(self._null_time_message(nulls), table=self.spec.table, column=self.column)
        if bad:
            raise LoadError(self._outside_message(bad, context, first), table=self.spec.table, column=self.column)
        return int(rows)

    def _null_time_message(self, nulls: int) -> str:
        return (f"Loader for '{self.spec.table}': {nulls} row(s) have a NULL time column '{self.column}', which "
                "places no row in an interval; an interval run may only write rows of its own slice: "
                "fill or filter them")

    def _outside_message(self, bad: int, context: RunContext, first: object) -> str:
        return (f"Loader for '{self.spec.table}': {bad} row(s) have {self.column} outside the run's interval "
                f"[{context.start.isoformat()}, {context.end.isoformat()}) (first: {first}); "
                "an interval run may only write its own slice: filter the source by {start}/{end}")

    # ---- commit -----------------------------------------------------------------------------

    def _refuse_empty_replacement(self, context: RunContext) -> None:
        """A batch is judged per interval (``clickhouse_batch``); a run of one interval as every mode."""
        if not context.intervals:
            return super()._refuse_empty_replacement(context)
        from pipelines.tools.loaders.clickhouse_batch import refuse_empty_intervals

        refuse_empty_intervals(context, self.spec.table, self.staging.name, self.column,
                               context.store.adapter.table_exists(self.spec.table))
        return None

    def held(self, context: RunContext) -> tuple[int, str]:
        store = context.store
        rows = int(store.command(f"SELECT count() FROM {store.table(self.spec.table)} WHERE "
                                 f"{in_slice_sql(quote_identifier(self.column))}",
                                 slice_parameters(context.start, context.end)))
        return rows, f"which holds {rows:,} rows"

    def layout(self, context: RunContext) -> Layout:
        """The target's partitions against the time column (DEFAULTs of columns the data supplied do not count)."""
        sharded = self.staging.sharded
        table = sharded.sharding.local if sharded else self.spec.table  # a Distributed table has no partitions
        return read_layout(context.store, table, self.column, self.staging.supplied)

    def publish_lock(self, context: RunContext) -> AbstractContextManager[None]:
        """On a server, rebuilds that copy rows from outside the slice are serialised across hosts
        (the commit's file lock covers one host). A slice of whole partitions copies nothing, and
        ``REPLACE PARTITION`` is atomic, so it needs no lock (the run lock excludes its interval)."""
        if not context.store.is_server or self.layout(context).follows(context.store, context.start, context.end):
            return nullcontext()
        from core.shared_locks import rebuild_lock

        return rebuild_lock(context.store, self.spec.table, context.settings.store_lock_timeout,
                            f"commit of run {context.run_id}")

    def publish(self, context: RunContext) -> None:
        store, adapter, staged_rows = context.store, context.store.adapter, self.staging.rows
        target, staging = self.spec.table, self.staging.name
        column, bounds = quote_identifier(self.column), slice_parameters(context.start, context.end)
        held = adapter.partitions(target, in_slice_sql(column), bounds)
        touched = sorted(set(held) | set(self.staging.partitions(context)))
        for partition in touched:
            # Rebuild the whole partition in staging: the slice's new rows are there already;
            # copy the partition's rows outside the slice (none when partitions align with runs),
            # rows whose time column is NULL included: they belong to no interval.
            insert_select(
                store, f"INSERT INTO {store.table(staging)} SELECT * FROM {store.table(target)} "
                f"WHERE _partition_id = {{p:String}} AND {outside_slice_sql(column)}",
                {**bounds, "p": partition},
                {**INSERT_SETTINGS, "insert_deduplication_token": f"{context.run_id}-keep-{partition}"},
            )
        staged = set(self.staging.partitions(context))
        # A partition left with no rows: the slice is empty on purpose (ClickHouse refuses
        # REPLACE PARTITION from an empty source, and an empty result must not be a no-op).
        self.staging.replace_partitions(context, [p for p in touched if p in staged],
                                        [p for p in touched if p not in staged])
        kept = self.staging.count(context) - staged_rows
        context.logger.info("Replaced interval %s..%s of %s: %d rows loaded, %d partition(s) swapped%s",
                            bounds["start"], bounds["end"], target, staged_rows, len(touched),
                            f", {kept} rows outside the interval kept" if kept else "")
        if kept:  # the layout (two catalogue reads) explains a copy; nothing to explain without one
            report_rebuild(context, self.layout(context), kept, staged_rows, len(touched))


def _micros(moment: datetime) -> int:
    """Microseconds since the epoch of an aware datetime (exact: no float rounding)."""
    delta = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
