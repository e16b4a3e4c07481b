"""ClickHouse loader: Arrow batches into a MergeTree table, with idempotent write modes.

Every mode writes the run's batches into a private staging table (``_dp_stage_<table>_<run>``,
made like the target so structure, partition key and ORDER BY match) and touches the target
only in :meth:`commit`, so a failed run leaves the target as it was. The staging follows the
target's topology (``clickhouse_sharded``, docs/deployment.md "Loading per topology"): a
replicated target's is its non-replicated twin, a ``Distributed`` target's is one local table per
shard behind a Distributed staging table, published shard by shard; the shard-local table of a
Distributed table, and modes that cannot be exactly-once on a Distributed target, are refused
before any row. A missing target is created at
commit too (from the staging table's structure), and changes of structure (added columns,
``widen_to_nullable``) are made to the staging table during the run and to the target at commit.
Under the commit lock the target is looked at again: when another run created or changed it
meanwhile, the run's rows are re-staged into its structure first.

Columns the loader creates are ``Nullable`` unless the source declares them non-null; key columns
(``time_column``, ``order_by``, ``partition_by``) are not, and a NULL in one fails the run. A NULL
never becomes a type's default (``insert_null_as_default=0``, ``input_format_null_as_default=0`` on
every insert): a NULL for a non-Nullable column fails the run naming the column and the row.

Each mode is a write strategy (``clickhouse_strategies``, ``clickhouse_interval``), chosen once
when the loader is built: it owns the run's staging table (``clickhouse_staging``), its commit,
whether the loader is ``interval_scoped`` and ``idempotent_commit``, and keeping the staged rows
when a data check fails. Catalogue look-ups and the publishing DDL go through the store's
adapter (``core.clickhouse_adapter``).

``interval`` (default when ``time_column`` is given)
    The run's slice ``[start, end)`` of ``time_column`` is replaced as a whole. Every partition
    the slice touches is rebuilt in staging (rows of that partition outside the slice are copied
    in) and swapped in with one ``ALTER ... REPLACE PARTITION``, atomic per partition (not across
    partitions); a partition left with no rows is dropped. With daily partitions and daily runs
    nothing is copied. Re-running an interval, a retry or a backfill twice gives exactly the same rows.
``append``
    The staged partitions are attached to the target (``ATTACH PARTITION ... FROM``, no copy).
    Each staged batch carries an ``insert_deduplication_token`` (run id + attempt + batch).
``replace``
    The staged table becomes the target with ``EXCHANGE TABLES`` (atomic); the old data is dropped.
    A replicated or Distributed target gets every partition replaced or dropped instead.
``merge``
    A ReplacingMergeTree on ``primary_key`` with ``version_column``: staged partitions are attached;
    ClickHouse keeps the newest version of each key at merge time, so readers use ``FINAL``.
"""

from __future__ import annotations

import pyarrow as pa

from core.exceptions import LoadError
from core.validators import is_identifier, quote_identifier
from pipelines.interfaces import Batch, Loader, RunContext, SqlSource, to_arrow
from pipelines.tools.factory import component_factory
from pipelines.tools.loaders.clickhouse_interval import IntervalStrategy
from pipelines.tools.loaders.clickhouse_schema import check_values_fit, may_not_fit, times_as_text
from pipelines.tools.loaders.clickhouse_staging import TableSpec
from pipelines.tools.loaders.clickhouse_strategies import (
    AppendStrategy,
    MergeStrategy,
    Mode,
    ReplaceStrategy,
    WriteStrategy,
)

RUN_ID_COLUMN = "_dp_run_id"
#: The write strategy of each mode (the loader picks one when it is built).
STRATEGIES: dict[str, type[WriteStrategy]] = {
    s.mode: s for s in (IntervalStrategy, AppendStrategy, ReplaceStrategy, MergeStrategy)}


class ClickHouseLoader(Loader):
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
    is staged); ``idempotent_commit`` in every mode. The staging tables are run-private tables
    (``run_table_name``), which the framework drops after a crash, so :meth:`Loader.clean_up_run`
    has nothing more to do.
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
        if mode not in STRATEGIES:
            raise LoadError(f"{where}: mode must be one of {', '.join(STRATEGIES)}, got '{mode}'")
        if not is_identifier(table):
            raise LoadError(f"{where}: the table name must be a plain identifier")
        keys = [primary_key] if isinstance(primary_key, str) else list(primary_key or [])
        default_order = keys or ([time_column] if time_column else [])
        #: How this loader writes, chosen once: the mode's strategy owns each run's staging and commit.
        self.strategy: WriteStrategy = STRATEGIES[mode](TableSpec(
            table, time_column, [order_by] if isinstance(order_by, str) else list(order_by or default_order),
            partition_by or (f"toDate({quote_identifier(time_column)})" if time_column else None),
            keys, version_column, run_id_column, widen_to_nullable))

    # ---- capabilities: the strategy's -------------------------------------------------------

    @property  # type: ignore[override]
    def table(self) -> str:
        return self.strategy.spec.table

    @property  # type: ignore[override]
    def time_column(self) -> str | None:
        return self.strategy.spec.time_column

    @property  # type: ignore[override]
    def mode(self) -> Mode:
        return self.strategy.mode

    @property  # type: ignore[override]
    def interval_scoped(self) -> bool:
        return self.strategy.interval_scoped

    @property  # type: ignore[override]
    def idempotent_commit(self) -> bool:
        """Every mode's commit can be repeated: ``interval`` (REPLACE PARTITION) and ``replace``
        (EXCHANGE TABLES) by nature; ``append``/``merge`` skip partitions this run attached already."""
        return self.strategy.idempotent

    # ---- lifecycle ---------------------------------------------------------------------

    def begin(self, context: RunContext) -> None:
        self.strategy.begin(context)

    def write(self, batch: Batch, context: RunContext) -> int:
        data = to_arrow(batch)
        if data.num_rows == 0:
            return 0
        run_id_column = self.strategy.spec.run_id_column
        if run_id_column in data.column_names:
            data = data.drop_columns([run_id_column])
        data = times_as_text(data)
        staging = self.strategy.staging
        staging.prepare(context, data.schema)
        for name in data.column_names:
            check_values_fit(name, staging.columns.get(name, ""), data.column(name), self.table, staging.rows + 1)
        staging.check_nulls(context, data)
        self.strategy.check_batch(data, context)
        return staging.insert(context, data)

    def write_sql(self, source: SqlSource, context: RunContext) -> int | None:
        """Load a source ClickHouse reads itself with one ``INSERT ... SELECT`` into staging."""
        schema = pa.schema([f for f in source.schema if f.name != self.strategy.spec.run_id_column])
        staging = self.strategy.staging
        narrow = [f.name for f in schema if f.name in staging.columns and may_not_fit(staging.columns[f.name], f.type)]
        if narrow:  # ClickHouse would not refuse a value too wide for them: each is checked in Python
            context.logger.info("Loader for '%s': the source's %s wider than the table's column(s): the rows "
                                "go through Python, where every value is checked", self.table, ", ".join(narrow) +
                                (" is" if len(narrow) == 1 else " are"))
            return None
        staging.prepare(context, schema)
        self.strategy.check_columns(schema.names)
        staging.insert_select(context, source, schema.names)
        staging.rows = self.strategy.check_staged_rows(context)
        return staging.rows

    def commit(self, context: RunContext) -> None:
        self.strategy.commit(context)

    def rollback(self, context: RunContext) -> None:
        self.strategy.rollback(context)


create_clickhouse_loader = component_factory(ClickHouseLoader, "create_clickhouse_loader")
