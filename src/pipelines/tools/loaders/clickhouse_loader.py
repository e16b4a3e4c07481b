"""ClickHouse loader: Arrow batches into a MergeTree table, with idempotent write modes.

Every mode writes the run's batches into a private staging table (``_dp_stage_<table>_<run>``,
created ``AS`` the target so structure, partition key and ORDER BY match) and touches the target
only in :meth:`commit`, so a failed run leaves the target as it was. A missing target is created at
commit too (from the staging table's structure), and changes of structure (added columns,
``widen_to_nullable``) are made to the staging table during the run and to the target at commit.
Under the commit lock the target is looked at again: when another run created or changed it
meanwhile, the run's rows are re-staged into its structure first.

Columns the loader creates are ``Nullable`` unless the source declares them non-null; key columns
(``time_column``, ``order_by``, ``partition_by``) are not, and a NULL in one fails the run. A NULL
never becomes a type's default (``insert_null_as_default=0``, ``input_format_null_as_default=0`` on
every insert): a NULL for a non-Nullable column fails the run naming the column and the row.

``interval`` (default when ``time_column`` is given)
    The run's slice ``[start, end)`` of ``time_column`` is replaced as a whole. Every partition
    the slice touches is rebuilt in staging (rows of that partition outside the slice are copied
    in) and swapped in with ``REPLACE PARTITION``, atomically per partition; a partition left
    with no rows is dropped. With daily partitions and daily runs nothing is copied. Re-running
    an interval, a retry or a backfill twice gives exactly the same rows.
``append``
    The staged partitions are attached to the target (``ATTACH PARTITION ... FROM``, no copy).
    Each staged batch carries an ``insert_deduplication_token`` (run id + attempt + batch).
``replace``
    The staged table becomes the target with ``EXCHANGE TABLES`` (atomic); the old data is dropped.
``merge``
    A ReplacingMergeTree on ``primary_key`` with ``version_column``: staged partitions are attached;
    ClickHouse keeps the newest version of each key at merge time, so readers use ``FINAL``.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc

from core.exceptions import LoadError, StoreError
from core.intervals import in_slice_sql, outside_slice_sql, slice_parameters
from core.locks import FileLock
from core.sql_literals import sql_literal
from core.validators import is_identifier, quote_identifier
from pipelines.interfaces import Batch, Loader, RunContext, SqlSource, Staged, to_arrow
from pipelines.tools.factory import component_factory
from pipelines.tools.loaders.clickhouse_attach import attach_recorded, ensure_attached_table, partitions_of_run
from pipelines.tools.loaders.clickhouse_layout import Layout, read_layout, report_rebuild
from pipelines.tools.loaders.clickhouse_schema import check_values_fit, may_not_fit, times_as_text
from pipelines.tools.loaders.clickhouse_staging import _INSERT_SETTINGS, MODES, Mode, StagedStructure

RUN_ID_COLUMN = "_dp_run_id"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ClickHouseLoader(StagedStructure, Loader):
    """Load into ClickHouse table ``table`` (in ``CLICKHOUSE_DATABASE``); the module doc details the modes.

    ``mode``: ``interval`` (default when ``time_column`` is set), ``append`` (default otherwise),
    ``replace`` or ``merge``. A missing table is created from the first batch (MergeTree, ORDER BY
    ``order_by``, PARTITION BY ``partition_by``, by default ``toDate(time_column)``); new columns
    in the data are added to it. ``run_id_column`` (``_dp_run_id``) records which run wrote a row
    when the table has that column (tables created here do); ``None`` turns it off.

    Created columns are ``Nullable`` unless the source declares them non-null; key columns
    (``time_column``, ``order_by``, ``partition_by``) never are. A NULL for a non-Nullable column
    fails the run naming the column and the first such row; ``widen_to_nullable=True`` instead
    makes such a (non-key) column ``Nullable`` (logged).

    Capabilities: ``interval_scoped`` in mode ``interval``; ``supports_checks`` always (every run
    is staged). The staging tables are run-private tables (``run_table_name``), which the
    framework drops after a crash, so :meth:`Loader.clean_up_run` has nothing more to do.
    """

    supports_checks = True

    def __init__(self, table: str, mode: Mode | None = None, *, time_column: str | None = None,
                 order_by: str | list[str] | None = None, partition_by: str | None = None,
                 primary_key: str | list[str] | None = None, version_column: str | None = None,
                 run_id_column: str | None = RUN_ID_COLUMN, widen_to_nullable: bool = False,
                 name: str | None = None) -> None:
        super().__init__(name or f"ClickHouse {table}")
        mode = mode or ("interval" if time_column else "append")
        where = f"ClickHouse loader for '{table}'"
        if mode not in MODES:
            raise LoadError(f"{where}: mode must be one of {', '.join(MODES)}, got '{mode}'")
        if not is_identifier(table):
            raise LoadError(f"{where}: the table name must be a plain identifier")
        if mode == "interval" and not time_column:
            raise LoadError(f"{where}: mode 'interval' needs time_column (the column that places a row "
                            "in a run's interval)")
        if mode == "merge" and not primary_key:
            raise LoadError(f"{where}: mode 'merge' needs primary_key (and usually version_column)")
        self.table = table
        self.mode: Mode = mode
        self.time_column = time_column
        self.primary_key = [primary_key] if isinstance(primary_key, str) else list(primary_key or [])
        self.version_column = version_column
        default_order = self.primary_key or ([time_column] if time_column else [])
        self.order_by = [order_by] if isinstance(order_by, str) else list(order_by or default_order)
        self.partition_by = partition_by or (f"toDate({quote_identifier(time_column)})" if time_column else None)
        self.run_id_column = run_id_column
        self.widen_to_nullable = widen_to_nullable
        # A run replaces exactly its slice: backfillable, and runs of different intervals may overlap.
        self.interval_scoped = mode == "interval"
        self._reset()

    #: Every mode's commit can be repeated: ``interval`` (REPLACE PARTITION) and ``replace``
    #: (EXCHANGE TABLES) by nature; ``append``/``merge`` skip partitions this run attached already,
    #: told by the run id column or, without one, by ``_dp_attached`` (:meth:`_commit_append`).
    idempotent_commit = True

    def _reset(self) -> None:
        self._staging: str | None = None
        self._columns: dict[str, str] = {}  # the staging table's columns (the target's at commit)
        self._batch_no = 0
        self._rows = 0
        self._supplied: set[str] = set()  # the columns the run's data carries (their DEFAULTs do not apply)

    # ---- lifecycle ---------------------------------------------------------------------

    def begin(self, context: RunContext) -> None:
        self._reset()
        if context.store.table_exists(self.table):
            self._stage_like_target(context)

    def write(self, batch: Batch, context: RunContext) -> int:
        data = to_arrow(batch)
        if data.num_rows == 0:
            return 0
        if self.run_id_column in data.column_names:
            data = data.drop_columns([self.run_id_column])
        data = times_as_text(data)
        self._ensure_staging(context, data.schema)
        self._evolve(context, data.schema)
        for name in data.column_names:
            check_values_fit(name, self._columns.get(name, ""), data.column(name), self.table, self._rows + 1)
        self._supplied.update(data.column_names)
        self._check_nulls(context, data)
        if self.mode == "interval":
            self._check_interval(data, context)
        self._batch_no += 1
        token = f"{context.run_id}-{context.attempt}-{self._batch_no}"
        # The run id is a constant column: ClickHouse fills it during the insert (no 100k-row
        # string column built per batch in Python); a column of that name in the data is replaced.
        context.store.insert_arrow(self._staging_name, data, constants=self._constants(context),
                                   settings={**_INSERT_SETTINGS, "insert_deduplication_token": token})
        self._rows += data.num_rows
        return data.num_rows

    def write_sql(self, source: SqlSource, context: RunContext) -> int | None:
        """Load a source ClickHouse reads itself with one ``INSERT ... SELECT`` into staging."""
        store = context.store
        schema = pa.schema([f for f in source.schema if f.name != self.run_id_column])
        narrow = [f.name for f in schema if f.name in self._columns and may_not_fit(self._columns[f.name], f.type)]
        if narrow:  # ClickHouse would not refuse a value too wide for them: each is checked in Python
            context.logger.info("Loader for '%s': the source's %s wider than the table's column(s): the rows "
                                "go through Python, where every value is checked", self.table, ", ".join(narrow) +
                                (" is" if len(narrow) == 1 else " are"))
            return None
        self._ensure_staging(context, schema)
        self._evolve(context, schema)
        self._supplied.update(schema.names)
        if self.mode == "interval" and self.time_column not in schema.names:
            raise LoadError(f"Loader for '{self.table}' (interval mode): the data has no time column "
                            f"'{self.time_column}' (columns: {', '.join(schema.names)})")
        staging = store.table(self._staging_name)
        constants = self._constants(context)
        targets = [quote_identifier(n) for n in [*schema.names, *constants]]
        values = [quote_identifier(n) for n in schema.names] + [sql_literal(v) for v in constants.values()]
        insert = (f"INSERT INTO {staging} ({', '.join(targets)}) SELECT {', '.join(values)} "
                  f"FROM {source.expression}")
        settings = {**_INSERT_SETTINGS, **source.settings,
                    "insert_deduplication_token": f"{context.run_id}-{context.attempt}-sql"}
        while True:
            try:
                store.command(insert, source.parameters or None, settings=settings)
                break
            except StoreError as exc:
                column = self._null_column(exc)
                if column is None:
                    raise
                where = self._first_null_in_source(context, source, column)
                self._null_into(context, column, self._columns[column], where)  # widens or raises
                store.command(f"TRUNCATE TABLE {staging}")
        if self.mode == "interval":
            column = quote_identifier(self.time_column or "")
            [(bad, nulls, first)] = store.query_rows(
                f"SELECT count(), countIf({column} IS NULL), min({column}) FROM {staging} "
                f"WHERE {outside_slice_sql(column)}", self._bounds(context))
            if nulls:
                raise LoadError(self._null_time_message(nulls), table=self.table, column=self.time_column)
            if bad:
                raise LoadError(self._outside_message(bad, context, first), table=self.table, column=self.time_column)
        self._rows = int(store.command(f"SELECT count() FROM {staging}"))
        return self._rows

    def commit(self, context: RunContext) -> None:
        store = context.store
        # Commits that rebuild a partition must not interleave (two hourly runs of one day), and
        # two first runs must not both create the table.
        lock = FileLock(context.settings.run_dir / "locks" / f"table-{store.database}.{self.table}.lock")
        if not lock.acquire(context.settings.store_lock_timeout, note=f"commit of run {context.run_id}"):
            raise LoadError(f"Timed out waiting for another run's commit to {self.table} ({lock.holder()})")
        try:
            if self._staging is None:
                if self.mode not in ("interval", "replace") or not store.table_exists(self.table):
                    context.logger.info("No rows and no table '%s' yet: nothing to load", self.table)
                    return
                self._stage_like_target(context)  # an empty interval or snapshot empties its slice
            self._refuse_empty_replacement(context)
            # Write-audit-publish: data checks see the staged slice before the target changes at all
            # (a first run's target is created only once its checks pass).
            context.check_staged(Staged(self.table, self._staging_name, self.mode, self.time_column, self.primary_key))
            self._publish_structure(context)
            with self._rebuild_lock(context):
                getattr(self, f"_commit_{self.mode}")(context)
        finally:
            lock.release()
            self._drop_staging(context)

    def _rebuild_lock(self, context: RunContext) -> AbstractContextManager[None]:
        """On a server, rebuilds that copy rows from outside the slice are serialised across hosts
        (the file lock above covers one host). A slice of whole partitions copies nothing, and
        ``REPLACE PARTITION`` is atomic, so it needs no lock (the run lock excludes its interval)."""
        if self.mode != "interval" or not context.store.is_server \
                or self._layout(context).follows(context.store, context.start, context.end):
            return nullcontext()
        from core.shared_locks import rebuild_lock

        return rebuild_lock(context.store, self.table, context.settings.store_lock_timeout,
                            f"commit of run {context.run_id}")

    def _layout(self, context: RunContext) -> Layout:
        """The target's partitions against the time column (DEFAULTs of columns the data supplied do not count)."""
        return read_layout(context.store, self.table, self.time_column or "", self._supplied)

    def rollback(self, context: RunContext) -> None:
        self._drop_staging(context)

    def _refuse_empty_replacement(self, context: RunContext) -> None:
        """0 rows must not silently replace existing rows: a source outage looks exactly like that.

        Only replacing modes can wipe (``interval``: the slice; ``replace``: the whole table);
        the pipeline's ``allow_empty=True`` (``context.allow_empty``) says an empty result is real.
        """
        if self._rows or context.allow_empty or self.mode not in ("interval", "replace") \
                or not context.store.table_exists(self.table):
            return
        from core.intervals import Interval

        store = context.store
        label = Interval(context.start, context.end).label
        if self.mode == "interval":
            in_slice = in_slice_sql(quote_identifier(self.time_column or ""))
            held = int(store.command(f"SELECT count() FROM {store.table(self.table)} WHERE {in_slice}",
                                     self._bounds(context)))
            what = f"which holds {held:,} rows"
        else:
            held = int(store.command(f"SELECT count() FROM {store.table(self.table)}"))
            what = f"which would replace all {held:,} rows of {self.table}"
        if held:
            raise LoadError(f"source returned 0 rows for {label}, {what}; set allow_empty=True "
                            "if an empty interval is real")

    # ---- commits -----------------------------------------------------------------------

    def _commit_append(self, context: RunContext) -> None:
        store = context.store
        tagged = self.run_id_column if self.run_id_column in self._columns else None
        done = partitions_of_run(context, self.table, tagged)
        if not tagged:
            ensure_attached_table(store)  # once per commit, not per partition
        for partition in self._partitions(context, self._staging_name):
            if not tagged:
                attach_recorded(context, self.table, self._staging_name, partition)
                continue
            if partition in done:
                # This run attached it already (a retry after a lost response): attaching again
                # would double its rows. ATTACH is atomic per partition, so skipping is exact.
                context.logger.warning("Partition %s of %s already holds rows of run %s: not attached again",
                                       partition, self.table, context.run_id)
                continue
            store.command(f"ALTER TABLE {store.table(self.table)} "
                          f"ATTACH PARTITION ID '{partition}' FROM {store.table(self._staging_name)}")
        context.logger.info("Appended %d rows to %s", self._rows, self.table)

    _commit_merge = _commit_append

    def _commit_replace(self, context: RunContext) -> None:
        store = context.store
        store.command(f"EXCHANGE TABLES {store.table(self.table)} AND {store.table(self._staging_name)}")
        context.logger.info("Replaced %s with %d rows (EXCHANGE TABLES)", self.table, self._rows)

    def _commit_interval(self, context: RunContext) -> None:
        store = context.store
        target, staging = store.table(self.table), store.table(self._staging_name)
        column, bounds = quote_identifier(self.time_column or ""), self._bounds(context)
        held = store.query_rows(f"SELECT DISTINCT _partition_id FROM {target} WHERE {in_slice_sql(column)}", bounds)
        touched = sorted({p for (p,) in held} | set(self._partitions(context, self._staging_name)))
        for partition in touched:
            # Rebuild the whole partition in staging: the slice's new rows are there already;
            # copy the partition's rows outside the slice (none when partitions align with runs),
            # rows whose time column is NULL included: they belong to no interval.
            store.command(
                f"INSERT INTO {staging} SELECT * FROM {target} WHERE _partition_id = {{p:String}} "
                f"AND {outside_slice_sql(column)}",
                {**bounds, "p": partition},
                settings={**_INSERT_SETTINGS, "insert_deduplication_token": f"{context.run_id}-keep-{partition}"},
            )
        staged = set(self._partitions(context, self._staging_name))
        for partition in touched:
            if partition in staged:
                store.command(f"ALTER TABLE {target} REPLACE PARTITION ID '{partition}' FROM {staging}")
            else:
                # Nothing left in this partition: the slice is empty on purpose (ClickHouse refuses
                # REPLACE PARTITION from an empty source, and an empty result must not be a no-op).
                store.command(f"ALTER TABLE {target} DROP PARTITION ID '{partition}'")
        kept = int(store.command(f"SELECT count() FROM {staging}")) - self._rows
        context.logger.info("Replaced interval %s..%s of %s: %d rows loaded, %d partition(s) swapped%s",
                            bounds["start"], bounds["end"], self.table, self._rows, len(touched),
                            f", {kept} rows outside the interval kept" if kept else "")
        report_rebuild(context, self._layout(context), kept, self._rows, len(touched))

    # ---- helpers -----------------------------------------------------------------------

    def _constants(self, context: RunContext) -> dict[str, str]:
        """Columns with one value for the whole run (the run id, when the table records it)."""
        if self.run_id_column and self.run_id_column in self._columns:
            return {self.run_id_column: context.run_id}
        return {}

    @staticmethod
    def _bounds(context: RunContext) -> dict[str, str]:
        """The run's interval as the parameters of ``core.intervals.in_slice_sql``."""
        return slice_parameters(context.start, context.end)

    def _null_time_message(self, nulls: int) -> str:
        return (f"Loader for '{self.table}': {nulls} row(s) have a NULL time column '{self.time_column}', which "
                "places no row in an interval; an interval run may only write rows of its own slice: "
                "fill or filter them")

    def _outside_message(self, bad: int, context: RunContext, first: object) -> str:
        return (f"Loader for '{self.table}': {bad} row(s) have {self.time_column} outside the run's interval "
                f"[{context.start.isoformat()}, {context.end.isoformat()}) (first: {first}); "
                "an interval run may only write its own slice: filter the source by {start}/{end}")

    def _check_interval(self, data: pa.Table, context: RunContext) -> None:
        column = self.time_column or ""
        if column not in data.column_names:
            raise LoadError(f"Loader for '{self.table}' (interval mode): the data has no time column '{column}' "
                            f"(columns: {', '.join(data.column_names)})")
        values = data.column(column)
        if pa.types.is_date(values.type):
            values = pc.cast(values, pa.timestamp("s"))
        if pa.types.is_timestamp(values.type) and values.type.tz is None:
            values = pc.assume_timezone(values, "UTC")
        if not pa.types.is_timestamp(values.type):
            raise LoadError(f"Loader for '{self.table}': time column '{column}' must be a date or timestamp, "
                            f"got {values.type}")
        values = pc.cast(values, pa.timestamp("us", tz="UTC"))
        if values.null_count:
            raise LoadError(self._null_time_message(values.null_count), table=self.table, column=column)
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
            raise LoadError(self._outside_message(bad, context, first.as_py()), table=self.table, column=column)




def _micros(moment: datetime) -> int:
    """Microseconds since the epoch of an aware datetime (exact: no float rounding)."""
    delta = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


create_clickhouse_loader = component_factory(ClickHouseLoader, "create_clickhouse_loader")
