"""The ClickHouse loader's staging table and its structure, and the NULL rules.

The run's rows go to a staging table whose structure follows the target (or, for a first run,
the data); changes of structure are made to the staging table during the run and to the target
only at commit (:meth:`StagedStructure._publish_structure`), under the commit lock.
"""

from __future__ import annotations

import re
from typing import Literal

import pyarrow as pa

from core.exceptions import LoadError, StoreError
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

Mode = Literal["interval", "append", "replace", "merge"]
MODES = ("interval", "append", "replace", "merge")

# Insert settings we rely on, set explicitly: defaults changed across ClickHouse releases. A NULL
# must never become a type's default: ``input_format_null_as_default`` covers format inserts
# (the server path), ``insert_null_as_default`` every ``INSERT ... SELECT`` (chdb's Python(), the
# Parquet push-down, partition rebuilds); both then fail with Code 349.
# Every insert goes to the run's staging table, so one touching many partitions (a year of daily
# partitions in one load) is normal there: no limit (the default of 100 would fail it).
_INSERT_SETTINGS = {"async_insert": 0, "insert_null_as_default": 0, "input_format_null_as_default": 0,
                    "max_partitions_per_insert_block": 0}


class StagedStructure:
    """Staging-table structure and NULL handling for :class:`ClickHouseLoader` (a mixin)."""

    table: str
    mode: Mode
    time_column: str | None
    order_by: list[str]
    partition_by: str | None
    version_column: str | None
    run_id_column: str | None
    widen_to_nullable: bool
    _staging: str | None
    _columns: dict[str, str]
    _rows: int

    # ---- structure: staging during the run, the target at commit ------------------------

    def _ensure_staging(self, context: RunContext, schema: pa.Schema) -> None:
        """The run's staging table, before its first rows: like the target, or from the data."""
        if self._staging is not None:
            return
        if context.store.table_exists(self.table):  # another run created it since begin()
            self._stage_like_target(context)
            return
        names = list(schema.names)
        missing = [c for c in [*self.order_by, *([self.time_column] if self.time_column else [])]
                   if re.fullmatch(r"\w+", c) and c not in names]
        if missing:
            raise LoadError(f"Cannot create table '{self.table}': the data has no column "
                            f"{', '.join(map(repr, missing))} (columns: {', '.join(names)})")
        keys = self._keys(names)
        columns = [(f.name, clickhouse_type(f, nullable=f.nullable and f.name not in keys)) for f in schema]
        if self.run_id_column:
            columns.append((self.run_id_column, "String"))
        name = self._staging_table_name(context)
        context.store.command(f"DROP TABLE IF EXISTS {context.store.table(name)}")
        context.store.command(self._create_ddl(context, name, columns))
        self._staging = name
        self._columns = self._table_columns(context, name)

    def _create_ddl(self, context: RunContext, name: str, columns: list[tuple[str, str]]) -> str:
        body = ",\n    ".join(f"{quote_identifier(column)} {type_}" for column, type_ in columns)
        if self.mode == "merge":
            engine = f"ReplacingMergeTree({quote_identifier(self.version_column)})" if self.version_column \
                else "ReplacingMergeTree"
        else:
            engine = "MergeTree"
        order = ", ".join(c if not is_identifier(c) else quote_identifier(c) for c in self.order_by) or ""
        return (f"CREATE TABLE {context.store.table(name)} (\n    {body}\n) ENGINE = {engine}\n"
                + (f"PARTITION BY {self.partition_by}\n" if self.partition_by else "")
                + f"ORDER BY ({order})\n"
                + "SETTINGS non_replicated_deduplication_window = 1000")

    def _stage_like_target(self, context: RunContext, again: bool = False) -> None:
        store = context.store
        self._refuse_distributed(context)
        name = self._staging_table_name(context, again)
        store.command(f"DROP TABLE IF EXISTS {store.table(name)}")
        store.command(f"CREATE TABLE {store.table(name)} AS {store.table(self.table)}")
        self._staging = name
        self._columns = self._table_columns(context, name)

    def _refuse_distributed(self, context: RunContext) -> None:
        """Staging made ``AS`` a Distributed target is Distributed too: rows would go straight into the
        shards and the partition swap fails (issue 28). Refused until per-topology publish exists."""
        store = context.store
        engine = store.query_rows("SELECT engine FROM system.tables WHERE database = {db:String} AND name = {t:String}",
                                  {"db": store.database, "t": self.table})
        if engine and engine[0][0] == "Distributed":
            raise LoadError(f"the target {store.database}.{self.table} is a Distributed table: loading into it is "
                            "not supported yet, see docs/deployment.md (Clusters and Cloud)")

    def _publish_structure(self, context: RunContext) -> None:
        """Under the commit lock: create the target, or bring it and the staging table in line."""
        store = context.store
        if not store.table_exists(self.table):
            store.command(f"CREATE TABLE {store.table(self.table)} AS {store.table(self._staging_name)}")
            context.logger.info("Created table %s (%s mode) from the run's data", self.table, self.mode)
            return
        target = self._table_columns(context, self.table)
        for column, type_ in self._columns.items():
            old = target.get(column)
            if old is None:
                store.command(f"ALTER TABLE {store.table(self.table)} ADD COLUMN IF NOT EXISTS "
                              f"{quote_identifier(column)} {type_}")
                context.logger.warning("Schema evolution: added column %s %s to %s", column, type_, self.table)
            elif self.widen_to_nullable and old != type_ and is_nullable(type_) and nullable_type(old) == type_:
                # Widened in staging by this run (opt-in); without the opt-in a NULL fails re-staging.
                store.command(f"ALTER TABLE {store.table(self.table)} MODIFY COLUMN {quote_identifier(column)} {type_}")
        target = self._table_columns(context, self.table)
        if list(target.items()) != list(self._columns.items()) and self.mode != "replace":
            self._restage(context)

    def _restage(self, context: RunContext) -> None:
        """Another run created or changed the target meanwhile: move the rows into its structure."""
        store = context.store
        old, names = self._staging_name, list(self._columns)
        self._staging = None
        self._stage_like_target(context, again=old == self._staging_table_name(context))
        columns = ", ".join(quote_identifier(n) for n in names)
        try:
            store.command(f"INSERT INTO {store.table(self._staging_name)} ({columns}) "
                          f"SELECT {columns} FROM {store.table(old)}",
                          settings={**_INSERT_SETTINGS, "insert_deduplication_token": f"{context.run_id}-restage"})
        except StoreError as exc:
            column = self._null_column(exc)
            if column is None:
                raise
            raise LoadError(self._null_message(column, self._columns[column], "the run's data (re-staged into "
                            f"{self.table}, which another run created or changed meanwhile)")) from None
        finally:
            store.command(f"DROP TABLE IF EXISTS {store.table(old)} SYNC")
        context.logger.info("Table %s was created or changed by another run meanwhile: re-staged %d rows into "
                            "its structure", self.table, self._rows)

    # ---- NULLs ---------------------------------------------------------------------------

    def _keys(self, names: list[str]) -> set[str]:
        """Columns ClickHouse sorts or partitions by (never Nullable)."""
        exprs = [*self.order_by, self.partition_by or "", self.time_column or "", self.version_column or ""]
        return referenced_columns(exprs, names)

    def _check_nulls(self, context: RunContext, data: pa.Table) -> None:
        """A NULL for a column that cannot hold it: widen (opt-in) or fail naming the row."""
        for name in data.column_names:
            values = data.column(name)
            type_ = self._columns.get(name)
            if not values.null_count or type_ is None or is_nullable(type_) or not can_be_nullable(type_):
                continue
            row = self._rows + first_null(values) + 1
            where = f"row {row} of the run's data"
            if name in self._keys([name]):
                where += f" ({values.null_count} NULL(s) in that batch)"
            self._null_into(context, name, type_, where, row)

    def _null_into(self, context: RunContext, column: str, type_: str, where: str, row: int | None = None) -> None:
        if column in self._keys([column]):
            raise LoadError(f"Loader for '{self.table}': key column '{column}' (ORDER BY/PARTITION BY) is NULL in "
                            f"{where}; a key column cannot hold NULL: fill or filter it in a transformer",
                            table=self.table, column=column, row=row)
        if not self.widen_to_nullable:
            raise LoadError(self._null_message(column, type_, where), table=self.table, column=column, row=row)
        widened = nullable_type(type_)
        context.store.command(f"ALTER TABLE {context.store.table(self._staging_name)} MODIFY COLUMN "
                              f"{quote_identifier(column)} {widened}")
        self._columns[column] = widened
        context.logger.warning("Schema evolution: column %s of %s widened to %s (%s is NULL; widen_to_nullable=True)",
                               column, self.table, widened, where)

    def _null_message(self, column: str, type_: str, where: str) -> str:
        return (f"Loader for '{self.table}': column '{column}' is {type_} (not Nullable) but is NULL in {where}; "
                "a NULL is never stored as a default: make the column Nullable (a migration, or the loader's "
                "widen_to_nullable=True) or fill it in a transformer")

    @staticmethod
    def _null_column(exc: StoreError) -> str | None:
        match = NULL_INTO_NON_NULLABLE.search(str(exc))
        return match.group(2) if match else None

    def _first_null_in_source(self, context: RunContext, source: SqlSource, column: str) -> str:
        try:
            [(path, row)] = context.store.query_rows(
                f"SELECT _path, _row_number FROM {source.expression} WHERE {quote_identifier(column)} IS NULL "
                "ORDER BY _path, _row_number LIMIT 1", source.parameters or None)
            return f"row {int(row) + 1} of {path}"
        except (StoreError, ValueError):  # a source without those virtual columns
            return source.description


    # ---- staging helpers ------------------------------------------------------------------

    @property
    def _staging_name(self) -> str:
        assert self._staging is not None
        return self._staging

    def _staging_table_name(self, context: RunContext, again: bool = False) -> str:
        # A run-private table: the framework drops a crashed run's leftovers (core.run_tables).
        return run_table_name(f"{self.table}{'_restaged' if again else ''}", context.run_id)

    def _table_columns(self, context: RunContext, table: str) -> dict[str, str]:
        rows = context.store.query_rows(
            "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = {t:String} "
            "ORDER BY position", {"db": context.store.database, "t": table})
        return dict(rows)

    def _partitions(self, context: RunContext, table: str) -> list[str]:
        return [p for (p,) in context.store.query_rows(
            "SELECT DISTINCT partition_id FROM system.parts WHERE database = {db:String} AND table = {t:String} "
            "AND active", {"db": context.store.database, "t": table})]

    def _drop_staging(self, context: RunContext) -> None:
        if self._staging is not None:
            name, self._staging = self._staging, None
            try:
                context.store.command(f"DROP TABLE IF EXISTS {context.store.table(name)} SYNC")
            except Exception:
                context.logger.warning("Could not drop staging table %s; ./run.sh clean removes it", name)

    def _evolve(self, context: RunContext, schema: pa.Schema) -> None:
        """Add columns the data has and the staging table lacks; refuse incompatible types."""
        store = context.store
        for field in schema:
            existing = self._columns.get(field.name)
            if existing is not None:
                check_compatible(field.name, existing, field, self.table)
                continue
            new_type = clickhouse_type(field, nullable=True)
            store.command(f"ALTER TABLE {store.table(self._staging_name)} ADD COLUMN IF NOT EXISTS "
                          f"{quote_identifier(field.name)} {new_type}")
            self._columns[field.name] = new_type

