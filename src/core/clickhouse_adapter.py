"""The ClickHouse adapter: what the framework asks ClickHouse about its tables, and the statements
that publish staged rows, each written once (in the manner of SQLMesh's engine adapter).

Every read of ``system.tables``, ``system.columns`` and ``system.parts`` goes through here
(``store.adapter``): the loader, the data checks, row counts, the clean-up after dead runs, the
framework's own tables and ``check``'s look for materialized views.

Topology: the adapter tells what a table is made of. A replicated target (``Replicated*`` or
``Shared*MergeTree``) is staged in its non-replicated twin (:meth:`stage_like`), so its partition
swap runs on one node and replicates; ``EXCHANGE`` is for plain targets only (:meth:`swappable`).
A ``Distributed`` target (:meth:`sharding`) is staged per shard (``core.clickhouse_cluster``); its
Distributed staging table is dropped with its local tables on every node (``core.shards``), so
every clean-up of run tables covers the whole cluster.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

from core.clickhouse_cluster import Sharding, plain_engine
from core.validators import quote_identifier

if TYPE_CHECKING:
    from core.store import Store

Topology = Literal["single"]


def replace_partitions_sql(target: str, staging: str, partitions: Iterable[str], emptied: Iterable[str] = ()) -> str:
    """One ``ALTER`` of the quoted ``target`` swapping ``partitions`` for the quoted ``staging``'s and
    dropping the ``emptied`` ones (``""``: nothing to do)."""
    commands = [f"REPLACE PARTITION ID '{p}' FROM {staging}" for p in partitions]
    commands += [f"DROP PARTITION ID '{p}'" for p in emptied]
    return f"ALTER TABLE {target} {', '.join(commands)}" if commands else ""


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

    def engine_full(self, table: str) -> str | None:
        """``table``'s whole engine clause (``None`` when it does not exist)."""
        rows = self._system("SELECT engine_full FROM system.tables WHERE database = {db:String} AND name = {t:String}",
                            t=table)
        return str(rows[0][0]) if rows else None

    def sharding(self, table: str) -> Sharding | None:
        """What the ``Distributed`` table ``table`` spreads over (``None``: not a Distributed table)."""
        engine = self.engine_full(table)
        return Sharding.of(table, engine) if engine and engine.startswith("Distributed(") else None

    def distributed_over(self, table: str) -> list[Sharding]:
        """The Distributed tables of this node whose local table is ``table`` of this database."""
        found = [Sharding.of(name, engine) for name, engine in self.store.query_rows(
            "SELECT concat(database, '.', name), engine_full FROM system.tables WHERE engine = 'Distributed'")]
        return [s for s in found if s.points_at(self.store.database, table)]

    def swappable(self, table: str) -> bool:
        """True when ``table``'s staging is a copy of it (``AS`` it), so ``EXCHANGE`` may swap them;
        never on a cluster (``CLICKHOUSE_CLUSTER``): EXCHANGE renames on one node, nothing replicates it."""
        if self.store.settings.clickhouse_cluster:
            return False
        engine = self.engine_full(table) or ""
        return plain_engine(engine) is None and not engine.startswith("Distributed(")

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

    def partition_rows(self, table: str, partition: str) -> int:
        """Rows of ``table`` in partition ``partition`` (an id)."""
        return int(self.store.command(f"SELECT count() FROM {self.store.table(table)} WHERE _partition_id = "
                                      "{p:String}", {"p": partition}))

    # ---- publishing (per topology) ------------------------------------------------------------

    def stage_like(self, staging: str, target: str) -> None:
        """(Re)create ``staging`` with ``target``'s structure, partition key, ORDER BY, primary key and
        engine; a replicated engine's non-replicated twin (``AS`` a replicated table would register a
        second replica at its path: Code 253)."""
        self.drop(staging, sync=False)
        plain = plain_engine(self.engine_full(target) or "")
        if plain is None:
            self.create_as(staging, target)
        else:
            self.store.command(f"CREATE TABLE {self.store.table(staging)} AS {self.store.table(target)} "
                               f"ENGINE = {plain}")

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
        statement = replace_partitions_sql(self.store.table(target), self.store.table(staging), partitions, emptied)
        if statement:
            self.store.command(statement)

    def replace_all_sql(self, target: str, staging: str) -> str:
        """The ``ALTER`` making ``target`` hold exactly ``staging``'s rows: each of ``staging``'s
        partitions swapped in, every other partition of ``target`` dropped (``""``: both empty)."""
        staged = set(self.partitions(staging))
        everything = sorted(staged | set(self.partitions(target)))
        return replace_partitions_sql(self.store.table(target), self.store.table(staging),
                                      [p for p in everything if p in staged],
                                      [p for p in everything if p not in staged])

    def replace_all(self, target: str, staging: str) -> None:
        """Replace ``target``'s rows by ``staging``'s partition by partition (a ``replace`` commit
        where ``EXCHANGE`` cannot be used: atomic per partition, not across partitions)."""
        statement = self.replace_all_sql(target, staging)
        if statement:
            self.store.command(statement)

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
        """Drop ``table`` if it exists (``SYNC``: wait until its data is gone); a run's table that
        may be a Distributed staging is dropped with ``core.shards.drop_tables``."""
        self.store.command(f"DROP TABLE IF EXISTS {self.store.table(table)}{' SYNC' if sync else ''}")
