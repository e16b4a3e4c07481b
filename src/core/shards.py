"""The nodes of a ``Distributed`` table's cluster, each reached with a store of its own, and the
run-private staging spread over them (issue 28; the tables themselves: ``core.clickhouse_cluster``).

The nodes are reached as :func:`core.topology.cluster_nodes` lists them (host from
``system.clusters``, the HTTP port each node reports), with the store's user and password. A run's
Distributed staging table is dropped with its local table on every node (:func:`drop_table`), so
every clean-up of run tables (the loader's, the crashed-run reaper's, ``kill``, ``clean``) covers the
whole cluster from the node the run talked to. With ``CLICKHOUSE_CLUSTER`` set, the reaper, ``kill``
and ``clean`` find dead runs' tables on every node (:func:`find_run_tables`, one query) and drop each
on its node, whichever node they talk to (behind a load balancer, not the run's).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.clickhouse_cluster import Sharding
from core.exceptions import LoadError
from core.run_tables import STAGING_PREFIX, run_suffix, run_tables
from core.sql_literals import sql_literal

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


@dataclass(frozen=True)
class FoundTables:
    """Run-private tables found by :func:`find_run_tables`, by node: key 0 is the store's own node (no
    cluster), else the node's number in ``cluster_nodes`` order (``clusterAllReplicas``' ``_shard_num``)."""

    by_node: dict[int, tuple[str, ...]]

    def names(self) -> list[str]:
        """Each table's name once, sorted (a run's local staging has one name on every node)."""
        return sorted({name for names in self.by_node.values() for name in names})

    def except_runs(self, run_ids: Iterable[str]) -> FoundTables:
        """Without the tables of these runs (the running ones)."""
        return self._where(run_ids, False)

    def of_run(self, run_id: str) -> FoundTables:
        """Only the tables of this run."""
        return self._where([run_id], True)

    def _where(self, run_ids: Iterable[str], of_them: bool) -> FoundTables:
        suffixes = tuple(run_suffix(run_id) for run_id in run_ids)
        kept = {node: tuple(n for n in names if bool(suffixes and n.endswith(suffixes)) == of_them)
                for node, names in self.by_node.items()}
        return FoundTables({node: names for node, names in kept.items() if names})

    def drop(self, store: Store) -> None:
        """Drop each table on the node it is on (:func:`drop_tables`: a Distributed staging with its
        local tables on every node; those already gone are no error); nothing opened when none is found."""
        if list(self.by_node) in ([], [0]):
            drop_tables(store, self.by_node.get(0, ()))
            return
        from core.topology import cluster_nodes, node_store

        nodes = cluster_nodes(store, store.settings.clickhouse_cluster or "")
        for index, names in sorted(self.by_node.items()):
            on_node = node_store(store, nodes[index - 1])
            try:
                drop_tables(on_node, names)
            finally:
                on_node.close()


def find_run_tables(store: Store, run_id: str | None = None) -> FoundTables:
    """Run-private tables (of one run, or of every run) in the store's database: on a self-managed
    cluster (``CLICKHOUSE_CLUSTER``) on every node, in one query through the store's node (a node that
    does not answer is skipped: its tables are found by a later sweep), else on the store's node."""
    settings = store.settings
    if settings.is_embedded or not settings.clickhouse_cluster:
        return FoundTables({0: tuple(names)} if (names := run_tables(store, run_id)) else {})
    rows = store.query_rows(
        f"SELECT _shard_num, name FROM clusterAllReplicas({sql_literal(settings.clickhouse_cluster)}, system.tables) "
        "WHERE database = {db:String} AND startsWith(name, {p:String}) AND endsWith(name, {s:String}) "
        "ORDER BY _shard_num, name SETTINGS skip_unavailable_shards = 1",
        {"db": store.database, "p": STAGING_PREFIX, "s": run_suffix(run_id) if run_id else ""})
    by_node: dict[int, list[str]] = {}
    for node, name in rows:
        by_node.setdefault(int(node), []).append(str(name))
    return FoundTables({node: tuple(names) for node, names in by_node.items()})


def drop_run_tables(store: Store, run_id: str, found: FoundTables | None = None) -> list[str]:
    """Drop the run-private tables of a dead run wherever they are; their names. ``found``: the
    tables :func:`find_run_tables` listed already (one listing for several dead runs), else listed here."""
    tables = found.of_run(run_id) if found is not None else find_run_tables(store, run_id)
    tables.drop(store)
    return tables.names()
