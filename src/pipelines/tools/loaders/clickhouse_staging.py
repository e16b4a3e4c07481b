"""One run's staging table for the ClickHouse loader: its structure, schema evolution, the NULL rules.

The run's rows go to a staging table whose structure follows the target (or, for a first run,
the data); changes of structure are made to the staging table during the run and to the target
only at commit (:meth:`StagingTable.publish_structure`), under the commit lock. What happens to
the staged rows then is the write strategy's (``clickhouse_strategies``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from core.exceptions import LoadError, StoreError
from core.shards import drop_tables
from core.sql_literals import sql_literal
from core.validators import is_identifier, quote_identifier
from pipelines.interfaces import RunContext, SqlSource, run_table_name
from pipelines.tools.loaders.clickhouse_schema import (
    NULL_INTO_NON_NULLABLE,
    can_be_nullable,
    check_compatible,
    clickhouse_type,
    first_null,
    is_nullable,
    nullable_type,
    referenced_columns,
)
from pipelines.tools.loaders.clickhouse_sharded import ShardedStaging, topology_refusal

if TYPE_CHECKING:
    from core.store import Store

# Insert settings we rely on, set explicitly: defaults changed across ClickHouse releases. A NULL
# must never become a type's default: ``input_format_null_as_default`` covers format inserts
# (the server path), ``insert_null_as_default`` every ``INSERT ... SELECT`` (chdb's Python(), the
# Parquet push-down, partition rebuilds); both then fail with Code 349.
# Every insert goes to the run's staging table, so one touching many partitions (a year of daily
# partitions in one load) is normal there: no limit (the default of 100 would fail it). Through a
# Distributed staging table an insert has reached every shard when it returns (no background
# queue to lose rows in: ``insert_distributed_sync``, the name every release since 2016 knows).
INSERT_SETTINGS = {"async_insert": 0, "insert_null_as_default": 0, "input_format_null_as_default": 0,
                   "max_partitions_per_insert_block": 0, "insert_distributed_sync": 1}
# A source copied from outside the store (every push-down: files, S3, PostgreSQL, MySQL) is written
# in insert blocks of 100,000 rows and the staging table's merges are stopped from the copy on
# (wasted work: its parts are attached to the target as they are, or it becomes the target:
# StagingTable.stop_merges); a remote one (S3, databases) is also read, decoded, downloaded and
# written by one thread. With ClickHouse's defaults peak memory grows with the source: a thread and
# insert block per core and per file, blocks of up to 1,048,449 rows / 256 MiB, Parquet row groups
# decoded in parallel, merges of the staged parts. Measured (benchmarks/source_memory.py, peak RSS of
# a fresh process, 1M / 8M rows): S3 Parquet push-down 549-561 / 1012 MiB (1.84) with the defaults,
# 435 / 475 MiB with these (median of five runs, 1.09; 1.08-1.23 per run); PostgreSQL push-down
# 558 / 868 MiB (1.56) -> 483 / 509 MiB (1.05); two threads are not flat (1.22); no speed cost
# measurable on 2 cores (docs/connectors.md, "Memory is flat"). Local files keep ClickHouse's reading
# threads: one thread cost local Parquet push-down about a quarter of its speed
# (benchmarks/load_throughput.py, 2M rows: append 0.67 -> 0.48 of ClickHouse's own, which reads with
# every core).
COPY_SETTINGS = {"min_insert_block_size_rows": 100_000, "min_insert_block_size_bytes": 0}
REMOTE_COPY_SETTINGS = {**COPY_SETTINGS, "max_threads": 1, "max_insert_threads": 1, "max_parsing_threads": 1,
                        "max_download_threads": 1}


def insert_select(store: Store, sql: str, parameters: dict[str, Any] | None, settings: dict[str, Any]) -> None:
    """Run the ``INSERT ... SELECT`` ``sql`` with ``settings`` (the store puts them in the statement's
    own SETTINGS clause on the embedded engine where that is safe: :func:`core.store_inserts.inline_settings`)."""
    store.command(sql, parameters or None, settings=settings)


@dataclass(frozen=True)
class TableSpec:
    """What the loader was told about its table (the same for every run)."""

    table: str
    time_column: str | None = None
    order_by: list[str] = field(default_factory=list)
    partition_by: str | None = None
    primary_key: list[str] = field(default_factory=list)
    version_column: str | None = None
    run_id_column: str | None = None
    widen_to_nullable: bool = False

    def keys(self, names: list[str]) -> set[str]:
        """Which of ``names`` ClickHouse sorts or partitions by (never Nullable)."""
        exprs = [*self.order_by, self.partition_by or "", self.time_column or "", self.version_column or ""]
        return referenced_columns(exprs, names)


class StagingTable:
    """A run's private staging table (``_dp_stage_<table>_<run id>``) in the store; ``engine``:
    the table engine of a staging table (and so of a target) made from the data."""

    def __init__(self, spec: TableSpec, engine: str) -> None:
        self.spec = spec
        self.engine = engine
        self._name: str | None = None
        self.columns: dict[str, str] = {}  # the staging table's columns (the target's at commit)
        self.rows = 0
        self.batches = 0
        self.supplied: set[str] = set()  # the columns the run's data carries (their DEFAULTs do not apply)
        #: The per-shard side of the staging table when the target is Distributed (None: one table).
        self.sharded: ShardedStaging | None = None
        self.merges_stopped = False  # during a copy (:meth:`stop_merges`)

    @property
    def exists(self) -> bool:
        return self._name is not None

    @property
    def name(self) -> str:
        assert self._name is not None
        return self._name

    # ---- structure: staging during the run, the target at commit ------------------------

    def prepare(self, context: RunContext, schema: pa.Schema) -> None:
        """Before rows of ``schema`` go in: the table exists and has their columns."""
        if self._name is None:
            if context.store.adapter.table_exists(self.spec.table):  # another run created it since begin()
                self.like_target(context)
            else:
                self._create_from(context, schema)
        self._evolve(context, schema)
        self.supplied.update(schema.names)

    def _create_from(self, context: RunContext, schema: pa.Schema) -> None:
        spec, names = self.spec, list(schema.names)
        settings = context.store.settings
        if settings.clickhouse_cluster and not settings.is_embedded:  # issue 28: the shards' layout is the user's
            raise LoadError(f"the target table {context.store.database}.{spec.table} does not exist: on a cluster "
                            f"(CLICKHOUSE_CLUSTER={settings.clickhouse_cluster}) the loader does not create it; "
                            f"create it in a migration in {settings.migrations_dir} (docs/migrations.md)")
        missing = [c for c in [*spec.order_by, *([spec.time_column] if spec.time_column else [])]
                   if re.fullmatch(r"\w+", c) and c not in names]
        if missing:
            raise LoadError(f"Cannot create table '{spec.table}': the data has no column "
                            f"{', '.join(map(repr, missing))} (columns: {', '.join(names)})")
        keys = spec.keys(names)
        columns = [(f.name, clickhouse_type(f, nullable=f.nullable and f.name not in keys)) for f in schema]
        if spec.run_id_column:
            columns.append((spec.run_id_column, "String"))
        name = self._table_name(context)
        context.store.adapter.drop(name, sync=False)
        order = ", ".join(c if not is_identifier(c) else quote_identifier(c) for c in spec.order_by)
        context.store.adapter.create_table(name, columns, self.engine, order, spec.partition_by)
        self._name, self.merges_stopped = name, False
        self.columns = context.store.adapter.columns(name)

    def like_target(self, context: RunContext, again: bool = False) -> None:
        """(Re)create the staging table with the target's structure: per shard behind a Distributed
        staging table for a Distributed target (``clickhouse_sharded``), else one table; a target
        this topology cannot load exactly once is refused here, before any row."""
        adapter = context.store.adapter
        sharding = adapter.sharding(self.spec.table)
        refusal = topology_refusal(context, self.spec.table, sharding)
        if refusal:
            raise LoadError(refusal, table=self.spec.table)
        name = self._table_name(context, again)
        if sharding is None:
            self.sharded = None
            adapter.stage_like(name, self.spec.table)
        else:
            self.sharded = ShardedStaging(context, name, self._table_name(context, again, "_shard"), sharding)
            self.sharded.create()
        self._name, self.merges_stopped = name, False
        # Made like the target: the same columns, known already while nothing else can change it.
        known = context.store.memo.active
        self.columns = context.store.adapter.columns(self.spec.table if known else name)

    def _evolve(self, context: RunContext, schema: pa.Schema) -> None:
        """Add columns the data has and the staging table lacks; refuse incompatible types."""
        for f in schema:
            existing = self.columns.get(f.name)
            if existing is not None:
                check_compatible(f.name, existing, f, self.spec.table)
                continue
            new_type = clickhouse_type(f, nullable=True)
            self._refuse_sharded_change(f"has column '{f.name}', which")
            context.store.adapter.add_column(self.name, f.name, new_type)
            self.columns[f.name] = new_type

    def publish_structure(self, context: RunContext, restage: bool) -> bool:
        """Under the commit lock: create the target (then True), or bring it in line with the staging
        table and, when ``restage``, move the staged rows into the target's structure if it differs."""
        adapter, table = context.store.adapter, self.spec.table
        if not adapter.table_exists(table):
            adapter.create_as(table, self.name)
            return True
        target = adapter.columns(table)
        for column, type_ in self.columns.items():
            old = target.get(column)
            if old is None:
                adapter.add_column(table, column, type_)
                context.logger.warning("Schema evolution: added column %s %s to %s", column, type_, table)
            elif self.spec.widen_to_nullable and old != type_ and is_nullable(type_) and nullable_type(old) == type_:
                # Widened in staging by this run (opt-in); without the opt-in a NULL fails re-staging.
                adapter.modify_column(table, column, type_)
        if restage and list(adapter.columns(table).items()) != list(self.columns.items()):
            self._restage(context)
        return False

    def _restage(self, context: RunContext) -> None:
        """Another run created or changed the target meanwhile: move the rows into its structure."""
        store = context.store
        old, names = self.name, list(self.columns)
        self._name = None
        self.like_target(context, again=old == self._table_name(context))
        columns = ", ".join(quote_identifier(n) for n in names)
        try:
            insert_select(store, f"INSERT INTO {store.table(self.name)} ({columns}) SELECT {columns} FROM "
                          f"{store.table(old)}", None,
                          {**INSERT_SETTINGS, "insert_deduplication_token": f"{context.run_id}-restage"})
        except StoreError as exc:
            column = self._null_column(exc)
            if column is None:
                raise
            raise LoadError(self._null_message(column, self.columns[column], "the run's data (re-staged into "
                            f"{self.spec.table}, which another run created or changed meanwhile)")) from None
        finally:
            drop_tables(store, [old])
        context.logger.info("Table %s was created or changed by another run meanwhile: re-staged %d rows into "
                            "its structure", self.spec.table, self.rows)

    def _refuse_sharded_change(self, what: str) -> None:
        if self.sharded is not None:
            raise LoadError(f"Loader for '{self.spec.table}': the data {what} the Distributed table cannot take; "
                            "on a cluster the loader does not change a target's structure: do it with a migration",
                            table=self.spec.table)

    # ---- rows ----------------------------------------------------------------------------

    def constants(self, context: RunContext) -> dict[str, str]:
        """Columns with one value for the whole run (the run id, when the table records it)."""
        column = self.spec.run_id_column
        return {column: context.run_id} if column and column in self.columns else {}

    def insert(self, context: RunContext, data: pa.Table) -> int:
        """Stage one batch (its NULLs checked); returns its rows."""
        self.batches += 1
        token = f"{context.run_id}-{context.attempt}-{self.batches}"
        # The run id is a constant column: ClickHouse fills it during the insert (no 100k-row
        # string column built per batch in Python); a column of that name in the data is replaced.
        context.store.insert_arrow(self.name, data, constants=self.constants(context),
                                   settings={**INSERT_SETTINGS, "insert_deduplication_token": token})
        self.rows += data.num_rows
        return data.num_rows

    def insert_select(self, context: RunContext, source: SqlSource, names: list[str]) -> None:
        """Stage ``source`` (columns ``names``) with one ``INSERT ... SELECT``; a NULL for a column
        that cannot hold it widens the column (opt-in, then the insert is redone) or fails naming the row."""
        store = context.store
        staging = store.table(self.name)
        constants = self.constants(context)
        targets = [quote_identifier(n) for n in [*names, *constants]]
        values = [quote_identifier(n) for n in names] + [sql_literal(v) for v in constants.values()]
        insert = (f"INSERT INTO {staging} ({', '.join(targets)}) SELECT {', '.join(values)} "
                  f"FROM {source.expression}")
        copy = (REMOTE_COPY_SETTINGS if source.remote else COPY_SETTINGS) if source.copied else {}
        settings = {**INSERT_SETTINGS, **copy, **source.settings,
                    "insert_deduplication_token": f"{context.run_id}-{context.attempt}-sql"}
        while True:
            try:
                if source.copied:
                    self.stop_merges(context)
                insert_select(store, insert, source.parameters, settings)
                break
            except StoreError as exc:
                column = self._null_column(exc)
                if column is None:
                    raise
                where = self._first_null_in_source(context, source, column)
                self._null_into(context, column, self.columns[column], where)  # widens or raises
                store.command(f"TRUNCATE TABLE {staging}")

    def stop_merges(self, context: RunContext) -> None:
        """Stop the staging table's background merges until it is dropped or :meth:`start_merges`: a
        copy makes many parts, and merging them is wasted work (the table is attached whole, then
        dropped). A user without the SYSTEM MERGES grant copies with merges running."""
        if self.sharded is not None or self.merges_stopped:
            return
        try:
            context.store.command(f"SYSTEM STOP MERGES {context.store.table(self.name)}")
            self.merges_stopped = True
        except StoreError as exc:
            context.logger.debug("Staging %s: merges not stopped during the copy: %s", self.name, exc)

    def start_merges(self, context: RunContext) -> None:
        """Before the staging table becomes the target itself (EXCHANGE keeps its stopped merges)."""
        if self.merges_stopped:
            context.store.command(f"SYSTEM START MERGES {context.store.table(self.name)}")
            self.merges_stopped = False

    def partitions(self, context: RunContext) -> list[str]:
        """Partition ids of the staged rows (on any shard)."""
        return self.sharded.partitions() if self.sharded else context.store.adapter.partitions(self.name)

    def replace_partitions(self, context: RunContext, partitions: list[str], emptied: list[str]) -> None:
        """Swap ``partitions`` of the target for the staged ones and drop the ``emptied`` ones; per shard
        for a Distributed target, where a partition the shard staged no row of is dropped."""
        if self.sharded is not None:
            self.sharded.replace_partitions(sorted({*partitions, *emptied}))
        else:
            context.store.adapter.replace_partitions(self.spec.table, self.name, partitions, emptied)

    def count(self, context: RunContext) -> int:
        """Rows in the staging table now."""
        return int(context.store.command(f"SELECT count() FROM {context.store.table(self.name)}"))

    # ---- NULLs ---------------------------------------------------------------------------

    def check_nulls(self, context: RunContext, data: pa.Table) -> None:
        """A NULL for a column that cannot hold it: widen (opt-in) or fail naming the row."""
        for name in data.column_names:
            values = data.column(name)
            type_ = self.columns.get(name)
            if not values.null_count or type_ is None or is_nullable(type_) or not can_be_nullable(type_):
                continue
            row = self.rows + first_null(values) + 1
            where = f"row {row} of the run's data"
            if name in self.spec.keys([name]):
                where += f" ({values.null_count} NULL(s) in that batch)"
            self._null_into(context, name, type_, where, row)

    def _null_into(self, context: RunContext, column: str, type_: str, where: str, row: int | None = None) -> None:
        table = self.spec.table
        if column in self.spec.keys([column]):
            raise LoadError(f"Loader for '{table}': key column '{column}' (ORDER BY/PARTITION BY) is NULL in "
                            f"{where}; a key column cannot hold NULL: fill or filter it in a transformer",
                            table=table, column=column, row=row)
        if not self.spec.widen_to_nullable:
            raise LoadError(self._null_message(column, type_, where), table=table, column=column, row=row)
        widened = nullable_type(type_)
        self._refuse_sharded_change(f"has a NULL for column '{column}' ({type_}), which")
        context.store.adapter.modify_column(self.name, column, widened)
        self.columns[column] = widened
        context.logger.warning("Schema evolution: column %s of %s widened to %s (%s is NULL; widen_to_nullable=True)",
                               column, table, widened, where)

    def _null_message(self, column: str, type_: str, where: str) -> str:
        return (f"Loader for '{self.spec.table}': column '{column}' is {type_} (not Nullable) but is NULL in "
                f"{where}; a NULL is never stored as a default: make the column Nullable (a migration, or the "
                "loader's widen_to_nullable=True) or fill it in a transformer")

    @staticmethod
    def _null_column(exc: StoreError) -> str | None:
        match = NULL_INTO_NON_NULLABLE.search(str(exc))
        return match.group(2) if match else None

    @staticmethod
    def _first_null_in_source(context: RunContext, source: SqlSource, column: str) -> str:
        try:
            [(path, row)] = context.store.query_rows(
                f"SELECT _path, _row_number FROM {source.expression} WHERE {quote_identifier(column)} IS NULL "
                "ORDER BY _path, _row_number LIMIT 1", source.parameters or None)
            return f"row {int(row) + 1} of {path}"
        except (StoreError, ValueError):  # a source without those virtual columns
            return source.description

    # ---- the table's end -----------------------------------------------------------------

    def _table_name(self, context: RunContext, again: bool = False, part: str = "") -> str:
        # A run-private table: the framework drops a crashed run's leftovers (core.run_tables).
        return run_table_name(f"{self.spec.table}{'_restaged' if again else ''}{part}", context.run_id)

    def keep(self, context: RunContext, name: str) -> None:
        """Keep the staged rows as ``name`` (a failed check): they are then neither published nor dropped."""
        if self.sharded is not None:
            self.sharded.keep(name)
        else:
            self.start_merges(context)  # a table the user inspects, not a staging table any more
            context.store.adapter.rename(self.name, name)
        self._name = None

    def drop(self, context: RunContext) -> None:
        """Drop the staging table (nothing when there is none, or it was kept); never raises."""
        if self._name is not None:
            name, self._name = self._name, None
            try:
                drop_tables(context.store, [name])
            except Exception:
                context.logger.warning("Could not drop staging table %s; ./run.sh clean removes it", name)
