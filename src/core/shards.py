"""The nodes of a ``Distributed`` table's cluster, each reached with a store of its own, and the
run-private staging spread over them (issue 28; the tables themselves: ``core.clickhouse_cluster``).

The nodes are reached as :func:`core.topology.cluster_nodes` lists them (host from
``system.clusters``, the HTTP port each node reports), with the store's user and password. A run's
Distributed staging table is dropped with its local table on every node (:func:`drop_table`), so
every clean-up of run tables (the loader's, the crashed-run reaper's, ``kill``, ``clean``) covers the
whole cluster from the node the run talked to.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.clickhouse_cluster import Sharding
from core.exceptions import LoadError
from core.run_tables import STAGING_PREFIX, run_tables

if TYPE_CHECKING:
    from core.store import Store


@dataclass
class ShardNode:
    """One node of a Distributed table's cluster, as the framework reaches it."""

    shard: int
    address: str
    store: Store


@contextmanager
def shard_nodes(store: Store, sharding: Sharding) -> Iterator[list[ShardNode]]:
    """A store on every node of ``sharding``'s cluster (one replica per shard: see :func:`replica_refusal`),
    closed afterwards."""
    from core.topology import Topology, cluster_nodes

    nodes = cluster_nodes(store, sharding.cluster)
    problems = Topology("cluster", sharding.cluster, tuple(nodes)).problems()
    if problems:
        raise LoadError(f"the Distributed table {store.database}.{sharding.table} cannot be loaded: {problems[0]}")
    opened: list[ShardNode] = []
    try:
        for node in nodes:
            settings = store.settings.model_copy(update={
                "clickhouse_host": node.host, "clickhouse_port": node.http_port, "clickhouse_url": None})
            opened.append(ShardNode(node.shard, node.address, type(store)(settings, linger=0)))  # no import cycle
        yield opened
    finally:
        for node in opened:
            node.store.close()


def replica_refusal(store: Store, sharding: Sharding) -> str | None:
    """Why ``sharding``'s cluster cannot be staged per shard (None: it can). With several replicas
    in a shard, the Distributed staging would insert into one replica's (non-replicated) staging and
    the others would publish an empty one: refused, not guessed."""
    rows = store.query_rows("SELECT shard_num, count() FROM system.clusters WHERE cluster = {c:String} "
                            "GROUP BY shard_num HAVING count() > 1 ORDER BY shard_num", {"c": sharding.cluster})
    if rows:
        return (f"the Distributed table {store.database}.{sharding.table} is on cluster {sharding.cluster}, "
                f"whose shard {rows[0][0]} has {rows[0][1]} replicas: loading is supported with one replica per "
                "shard only (docs/deployment.md, Clusters and Cloud)")
    return None


def drop_table(store: Store, table: str, staging_prefix: str, sync: bool = True) -> None:
    """Drop ``table``; when it is a Distributed table over tables named ``staging_prefix...`` (a run's
    Distributed staging), their copy on every node of its cluster first (a crash in between leaves
    the Distributed table, which the next clean-up follows again)."""
    sharding = store.adapter.sharding(table) if table.startswith(staging_prefix) else None
    if sharding is not None and sharding.local.startswith(staging_prefix):
        with shard_nodes(store, sharding) as nodes:
            for node in nodes:
                node.store.adapter.drop(sharding.local, sync)
    store.adapter.drop(table, sync)


def drop_tables(store: Store, names: Iterable[str]) -> None:
    """Drop these tables of the store's database (those already gone are no error); a run's
    Distributed staging table with its local table on every node (``core.shards``)."""
    for name in names:
        drop_table(store, name, STAGING_PREFIX)


def drop_run_tables(store: Store, run_id: str) -> list[str]:
    """Drop the run-private tables of a dead run; returns their names."""
    names = run_tables(store, run_id)
    drop_tables(store, names)
    return names
