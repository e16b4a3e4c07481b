"""A run's staging for a ``Distributed`` target (issue 28): one local staging table per shard behind a
Distributed staging table, and the publishing each shard's node does against its own local table.

Inserts go through the Distributed staging table synchronously (``insert_distributed_sync``, in the
loader's insert settings), with the target's sharding key, so each shard's local staging holds
exactly the rows that shard is to get. Publishing runs node by node: ``REPLACE PARTITION`` of every
partition the interval touches (a partition the shard staged no row of is dropped there: a shard with
no rows for the interval is emptied, explicitly), ``ATTACH PARTITION`` for append/merge (skipping
partitions whose local table already holds the run's rows: a retry), or every partition replaced
for ``replace``. Atomic per partition on each shard, not across shards: a failure between two nodes
leaves the run failed, and running the interval again gives exactly the right rows on every shard.

Which modes a Distributed target allows, and why, is :func:`mode_refusal`'s.
"""

from __future__ import annotations

from core.clickhouse_adapter import replace_partitions_sql
from core.clickhouse_cluster import Sharding, distributed_statement
from core.shards import drop_tables, replica_refusal, shard_nodes
from core.validators import quote_identifier
from pipelines.interfaces import RunContext
from pipelines.tools.loaders.clickhouse_schema import referenced_columns


def topology_refusal(context: RunContext, table: str, sharding: Sharding | None) -> str | None:
    """Why ``table`` cannot be loaded on this topology, whatever the mode (None: it can)."""
    store = context.store
    if sharding is None:
        over = store.adapter.distributed_over(table)
        if over:
            return (f"the target {store.database}.{table} is the shard-local table of the Distributed table "
                    f"{over[0].table} (cluster {over[0].cluster}): a write through one node would be "
                    f"exactly-once on that node only; load into {over[0].table}")
        return None
    if not sharding.points_at(store.database, sharding.local):
        return (f"the Distributed table {store.database}.{table} reads {sharding.database}.{sharding.local}: "
                f"loading is supported when its local table is in the same database ({store.database})")
    return replica_refusal(store, sharding)


def mode_refusal(context: RunContext, mode: str, sharding: Sharding, run_id_column: str | None,
                 primary_key: list[str]) -> str | None:
    """Why ``mode`` cannot be exactly-once into ``sharding``'s table (None: it can).

    ``interval`` and ``replace`` rebuild whole partitions on every shard: always. ``append`` and
    ``merge`` attach each shard's staged partitions; a retried commit must know which shards got
    them already, which the run id column in the target tells per shard (``_dp_attached`` records
    one table, not one per shard): without it they are refused. ``merge`` also needs every version
    of a key on one shard (``FINAL`` collapses per shard): the sharding key must be made of the
    primary key's columns.
    """
    where = f"mode '{mode}' into the Distributed table {context.store.database}.{sharding.table}"
    if mode not in ("append", "merge"):
        return None
    columns = context.store.adapter.columns(sharding.table)
    if not run_id_column or run_id_column not in columns:
        return (f"{where} needs the run id column {run_id_column or '_dp_run_id'} in it (each shard's rows of a "
                "run are told by it when a commit is retried): add it with a migration")
    if mode == "merge":
        used = referenced_columns([sharding.key or ""], list(columns))
        if not used or not used <= set(primary_key):
            return (f"{where} needs a sharding key made of the primary key ({', '.join(primary_key)}), "
                    f"not {sharding.key or 'none'}: versions of one key must meet on one shard")
    return None


class ShardedStaging:
    """The per-shard side of a run's staging table ``name`` for the Distributed target ``sharding``."""

    def __init__(self, context: RunContext, name: str, local: str, sharding: Sharding) -> None:
        self.context, self.name, self.local, self.sharding = context, name, local, sharding

    def create(self) -> None:
        """The Distributed staging first (a crash then leaves what ``core.shards.drop_tables``
        follows to every node), then each node's local staging made like its local table."""
        store = self.context.store
        drop_tables(store, [self.name])
        store.command(distributed_statement(self.name, self.local, self.sharding, store))
        with shard_nodes(store, self.sharding) as nodes:
            for node in nodes:
                node.store.adapter.stage_like(self.local, self.sharding.local)

    def partitions(self) -> list[str]:
        """Partition ids staged on any shard (read through the Distributed staging: it has no parts)."""
        return self.context.store.adapter.partitions(self.name, "1")

    def replace_partitions(self, partitions: list[str]) -> None:
        """On every shard: each of ``partitions`` swapped for the shard's staged one, or dropped when
        the shard staged no row of it."""
        with shard_nodes(self.context.store, self.sharding) as nodes:
            for node in nodes:
                staged = set(node.store.adapter.partitions(self.local))
                statement = replace_partitions_sql(
                    node.store.table(self.sharding.local), node.store.table(self.local),
                    [p for p in partitions if p in staged], [p for p in partitions if p not in staged])
                if statement:
                    node.store.command(statement)

    def replace_all(self) -> None:
        """On every shard: the local table made exactly the shard's staged rows."""
        with shard_nodes(self.context.store, self.sharding) as nodes:
            for node in nodes:
                node.store.adapter.replace_all(self.sharding.local, self.local)

    def attach(self, run_id_column: str) -> int:
        """On every shard: attach the staged partitions whose local partition holds no row of this run
        yet (a retried commit attaches only what is missing); returns the partitions attached."""
        context, attached = self.context, 0
        where = f"{quote_identifier(run_id_column)} = {{r:String}}"
        with shard_nodes(context.store, self.sharding) as nodes:
            for node in nodes:
                done = set(node.store.adapter.partitions(self.sharding.local, where, {"r": context.run_id}))
                for partition in node.store.adapter.partitions(self.local):
                    if partition in done:
                        context.logger.warning("Partition %s of %s on %s already holds rows of run %s: not "
                                               "attached again", partition, self.sharding.local, node.address,
                                               context.run_id)
                        continue
                    node.store.adapter.attach_partition(self.sharding.local, self.local, partition)
                    attached += 1
        return attached

    def keep(self, name: str) -> None:
        """Keep the staged rows of every shard in one plain table ``name`` on this node (a failed check)."""
        store = self.context.store
        store.command(f"CREATE TABLE {store.table(name)} ENGINE = MergeTree ORDER BY tuple() "
                      f"AS SELECT * FROM {store.table(self.name)}")
        drop_tables(store, [self.name])
