"""The ClickHouse adapter: what the framework asks ClickHouse about its tables, and the statements
that publish staged rows, each written once (in the manner of SQLMesh's engine adapter).

Every read of ``system.tables``, ``system.columns`` and ``system.parts`` goes through here
(``store.adapter``): the loader, the data checks, row counts, the clean-up after dead runs, the
framework's own tables and ``check``'s look for materialized views.

Topology: the adapter knows where a table lives. Today that is always ``single`` (the embedded
engine or one server). Publishing staged rows differs per topology (on a Distributed or
replicated target, staging is per shard and each node replaces its partitions), so the loader's
write strategies never ask which one it is: they call :meth:`stage_like`,
:meth:`create_table`, :meth:`create_as`, :meth:`add_column`, :meth:`modify_column`, :meth:`replace_partitions`,
:meth:`attach_partition` and :meth:`exchange`, which an adapter for another topology overrides.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

from core.validators import quote_identifier

if TYPE_CHECKING:
    from core.store import Store

Topology = Literal["single"]


class ClickHouseAdapter:
    """Catalogue look-ups and publishing DDL on ``store``'s database."""

    #: Where the store's tables live (see the module doc); strategies do not branch on it.
    topology: Topology = "single"

    def __init__(self, store: Store) -> None:
        self.store = store

    def _system(self, sql: str, **parameters: Any) -> list[tuple[Any, ...]]:
        return self.store.query_rows(sql, {"db": self.store.database, **parameters})

    def _structure(self, sql: str, table: str) -> list[tuple[Any, ...]]:
        """``_system(sql, t=table)``, an answer about ``table``'s structure: kept while the embedded
        engine stays open and no DDL changes it (``core.store_memo``; a backfill asks per interval)."""
        return self.store.memo.get((sql, table), lambda: self._system(sql, t=table))

    # ---- tables -------------------------------------------------------------------------------

    def table_exists(self, table: str) -> bool:
        return self.store.table_exists(table)

    def tables(self, prefix: str = "", suffix: str = "", engine: str | None = None) -> list[str]:
        """Names of the database's tables starting with ``prefix``, ending with ``suffix`` (and of
        ``engine`` when given), sorted."""
        return [name for (name,) in self._system(
            "SELECT name FROM system.tables WHERE database = {db:String} AND startsWith(name, {p:String}) "
            "AND endsWith(name, {s:String}) AND ({e:String} = '' OR engine = {e:String}) ORDER BY name",
            p=prefix, s=suffix, e=engine or "")]

    def table_listing(self) -> list[dict[str, Any]]:
        """The database's tables: name, engine, rows (``None`` for views)."""
        return self.store.query_dicts("SELECT name, engine, total_rows AS rows FROM system.tables "
                                      "WHERE database = {db:String} ORDER BY name", {"db": self.store.database})

    def engine(self, table: str) -> str | None:
        """``table``'s engine (``MergeTree``, ``ReplacingMergeTree``...); ``None`` when it does not exist."""
        rows = self._structure("SELECT engine FROM system.tables WHERE database = {db:String} AND name = {t:String}",
                               table)
        return str(rows[0][0]) if rows else None

    def partition_key(self, table: str) -> str:
        """``table``'s PARTITION BY expression (``""``: none, or no such table)."""
        rows = self._structure("SELECT partition_key FROM system.tables WHERE database = {db:String} "
                               "AND name = {t:String}", table)
        return str(rows[0][0]) if rows else ""

    def create_statements(self, tables: Iterable[str]) -> dict[str, str]:
        """``CREATE TABLE`` statements of those of ``tables`` that exist, by name."""
        return dict(self._system("SELECT name, create_table_query FROM system.tables WHERE database = {db:String} "
                                 "AND name IN {t:Array(String)}", t=list(tables)))

    def dependents(self, tables: Iterable[str]) -> dict[str, list[str]]:
        """For each existing one of ``tables``, the tables of this database that depend on it (views)."""
        return {name: list(found) for name, found in self._system(
            "SELECT name, arrayFilter((t, d) -> d = {db:String}, dependencies_table, dependencies_database) "
            "FROM system.tables WHERE database = {db:String} AND name IN {names:Array(String)}",
            names=list(tables))}

    # ---- columns and partitions ---------------------------------------------------------------

    def columns(self, table: str) -> dict[str, str]:
        """``table``'s columns and their types, in table order (empty when it does not exist)."""
        return dict(self._structure("SELECT name, type FROM system.columns WHERE database = {db:String} "
                                    "AND table = {t:String} ORDER BY position", table))

    def column_defaults(self, table: str) -> dict[str, tuple[str, str, str]]:
        """``table``'s columns: name -> (type, default kind, default expression), in table order."""
        return {name: (type_, kind, expression) for name, type_, kind, expression in self._structure(
            "SELECT name, type, default_kind, default_expression FROM system.columns WHERE database = {db:String} "
            "AND table = {t:String} ORDER BY position", table)}

    def partitions(self, table: str, where: str | None = None, parameters: dict[str, Any] | None = None) -> list[str]:
        """Partition ids of ``table``, sorted: of its active parts, or of its rows matching the SQL
        condition ``where`` (with query ``parameters``)."""
        if where is None:
            rows = self._system("SELECT DISTINCT partition_id FROM system.parts WHERE database = {db:String} "
                                "AND table = {t:String} AND active", t=table)
        else:
            rows = self.store.query_rows(f"SELECT DISTINCT _partition_id FROM {self.store.table(table)} "
                                         f"WHERE {where}", parameters)
        return sorted(str(p) for (p,) in rows)

    def partition_counts(self, table: str) -> dict[str, int]:
        """``table``'s rows per partition id (partitions with rows only), in one query."""
        return {str(p): int(n) for p, n in self.store.query_rows(
            f"SELECT _partition_id, count() FROM {self.store.table(table)} GROUP BY _partition_id")}

    def partition_rows(self, table: str, partition: str) -> int:
        """Rows of ``table`` in partition ``partition`` (an id)."""
        return int(self.store.command(f"SELECT count() FROM {self.store.table(table)} WHERE _partition_id = "
                                      "{p:String}", {"p": partition}))

    # ---- publishing (per topology) ------------------------------------------------------------

    def stage_like(self, staging: str, target: str) -> None:
        """(Re)create ``staging`` with ``target``'s structure, partition key, ORDER BY and engine."""
        self.drop(staging, sync=False)
        self.create_as(staging, target)

    def create_table(self, table: str, columns: list[tuple[str, str]], engine: str, order_by: str,
                     partition_by: str | None = None) -> None:
        """Create ``table`` with ``columns`` (name, type), deduplicating inserts by their
        ``insert_deduplication_token`` (off by default on a non-replicated MergeTree)."""
        body = ",\n    ".join(f"{quote_identifier(column)} {type_}" for column, type_ in columns)
        self.store.command(f"CREATE TABLE {self.store.table(table)} (\n    {body}\n) ENGINE = {engine}\n"
                           + (f"PARTITION BY {partition_by}\n" if partition_by else "")
                           + f"ORDER BY ({order_by})\n"
                           + "SETTINGS non_replicated_deduplication_window = 1000")

    def create_as(self, table: str, source: str) -> None:
        """Create ``table`` with ``source``'s structure (a first run's target, from its staging table)."""
        self.store.command(f"CREATE TABLE {self.store.table(table)} AS {self.store.table(source)}")

    def add_column(self, table: str, column: str, type_: str) -> None:
        self.store.command(f"ALTER TABLE {self.store.table(table)} ADD COLUMN IF NOT EXISTS "
                           f"{quote_identifier(column)} {type_}")

    def modify_column(self, table: str, column: str, type_: str) -> None:
        self.store.command(f"ALTER TABLE {self.store.table(table)} MODIFY COLUMN {quote_identifier(column)} {type_}")

    def replace_partitions(self, target: str, staging: str, partitions: Iterable[str],
                           emptied: Iterable[str] = ()) -> None:
        """Swap ``partitions`` of ``target`` for ``staging``'s and drop the ``emptied`` ones, in one
        ``ALTER``. Atomic per partition, NOT across partitions: a reader (or a failure) between two
        of them sees some partitions new and others old. A partition with no staged rows must be
        passed as ``emptied`` (ClickHouse refuses ``REPLACE PARTITION`` from an empty source)."""
        source = self.store.table(staging)
        commands = [f"REPLACE PARTITION ID '{p}' FROM {source}" for p in partitions]
        commands += [f"DROP PARTITION ID '{p}'" for p in emptied]
        if commands:
            self.store.command(f"ALTER TABLE {self.store.table(target)} {', '.join(commands)}")

    def attach_partition(self, target: str, staging: str, partition: str) -> None:
        """Add ``staging``'s rows of ``partition`` to ``target`` (``ATTACH PARTITION ... FROM``: no copy)."""
        self.store.command(f"ALTER TABLE {self.store.table(target)} ATTACH PARTITION ID '{partition}' "
                           f"FROM {self.store.table(staging)}")

    def exchange(self, target: str, staging: str) -> None:
        """Swap ``target`` and ``staging`` (``EXCHANGE TABLES``: atomic on the Atomic database engine)."""
        self.store.command(f"EXCHANGE TABLES {self.store.table(target)} AND {self.store.table(staging)}")

    def rename(self, table: str, new_name: str) -> None:
        self.store.command(f"RENAME TABLE {self.store.table(table)} TO {self.store.table(new_name)}")

    def drop(self, table: str, sync: bool = True) -> None:
        """Drop ``table`` if it exists (``SYNC``: wait until its data is gone)."""
        self.store.command(f"DROP TABLE IF EXISTS {self.store.table(table)}{' SYNC' if sync else ''}")
