"""Where the store lives (issue 28): the embedded engine, one ClickHouse server, a self-managed
cluster (``CLICKHOUSE_CLUSTER``) or ClickHouse Cloud / a ``Replicated`` database.

What works on each is in docs/deployment.md ("Clusters and Cloud"). A self-managed cluster is
usable when the cluster is in the server's ``system.clusters``, every node answers, and the
``{replica}`` macro differs per node (replicated tables of two nodes with one replica name would
share one replica). Nodes are reached through the server (``clusterAllReplicas``), with the
credentials of its ``<remote_servers>``: the framework never needs each node's address itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from core.exceptions import StoreError
from core.sql_literals import sql_literal
from core.validators import quote_identifier

if TYPE_CHECKING:
    from core.store import Store

Kind = Literal["embedded", "server", "cluster", "replicated"]


@dataclass(frozen=True)
class Node:
    """One node of the cluster as its server lists it, and what it answered (``answered`` False: nothing)."""

    shard: int
    replica: int
    host: str
    port: int  # native protocol, as in system.clusters
    answered: bool = False
    replica_macro: str = ""
    http_port: int = 0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port} (shard {self.shard}, replica {self.replica})"


@dataclass(frozen=True)
class Topology:
    kind: Kind
    cluster: str | None = None
    nodes: tuple[Node, ...] = ()

    def describe(self) -> str:
        """One line for ``check``."""
        if self.kind == "embedded":
            return "embedded (single node)"
        if self.kind == "server":
            return "single server"
        if self.kind == "replicated":
            return "Replicated database (ClickHouse Cloud or a Replicated database engine): DDL replicates itself"
        shards = len({n.shard for n in self.nodes})
        return f"self-managed cluster '{self.cluster}': {shards} shards, {len(self.nodes)} nodes"

    def problems(self) -> list[str]:
        """What makes the cluster unusable, one line each (empty: usable or not a cluster)."""
        if self.kind != "cluster":
            return []
        if not self.nodes:
            return [f"cluster '{self.cluster}' is not in system.clusters of the server CLICKHOUSE_HOST names: "
                    "define it in the servers' <remote_servers> or fix CLICKHOUSE_CLUSTER"]
        lines = [f"node {n.address} of cluster '{self.cluster}' does not answer" for n in self.nodes if not n.answered]
        answered = [n for n in self.nodes if n.answered]
        lines += [f"node {n.address} has no {{replica}} macro: set <macros><replica> in its config"
                  for n in answered if not n.replica_macro]
        seen: dict[str, Node] = {}
        for node in answered:
            first = seen.setdefault(node.replica_macro, node) if node.replica_macro else node
            if first is not node:
                lines.append(f"nodes {first.address} and {node.address} share the {{replica}} macro "
                             f"'{node.replica_macro}': give each node its own")
        return lines


#: Database engines whose DDL replicates by itself (``Shared``: ClickHouse Cloud's).
REPLICATED_ENGINES = ("Replicated", "Shared")


def detect(store: Store) -> Topology:
    """The store's topology; on a cluster each node is asked for its macros (see :func:`cluster_nodes`)."""
    found = kind(store)
    if found == "cluster":
        cluster = store.settings.clickhouse_cluster
        return Topology("cluster", cluster, tuple(cluster_nodes(store, cluster)))
    return Topology(found)


def kind(store: Store) -> Kind:
    """The store's kind of topology without asking every node (one query at most): what the
    cross-host locks (core/shared_locks.py) choose by."""
    settings = store.settings
    if settings.is_embedded:
        return "embedded"
    if settings.clickhouse_cluster:
        return "cluster"
    engine = store.query_rows("SELECT engine FROM system.databases WHERE name = {db:String}", {"db": store.database})
    return "replicated" if engine and engine[0][0] in REPLICATED_ENGINES else "server"


def cluster_nodes(store: Store, cluster: str) -> list[Node]:
    """Every node of ``cluster`` (shard, then replica order) with its ``{replica}`` macro and HTTP port.

    ``clusterAllReplicas`` numbers the nodes in that order as ``_shard_num``; an unreachable node is
    skipped (``skip_unavailable_shards``), so it is missing from the answers.
    """
    listed = store.query_rows(
        "SELECT shard_num, replica_num, host_name, port FROM system.clusters WHERE cluster = {c:String} "
        "ORDER BY shard_num, replica_num", {"c": cluster})
    if not listed:
        return []
    function = f"clusterAllReplicas({sql_literal(cluster)}"
    skip = " SETTINGS skip_unavailable_shards = 1"
    try:
        ports = dict(store.query_rows(  # in a view: getServerPort() runs on each node, not folded here
            f"SELECT _shard_num, http_port FROM {function}, view(SELECT getServerPort('http_port') AS http_port))"
            + skip))
        macros = dict(store.query_rows(f"SELECT _shard_num, substitution FROM {function}, system.macros) "
                                       "WHERE macro = 'replica'" + skip))
    except StoreError:  # no node answers (or the server cannot reach any): said per node
        ports, macros = {}, {}
    answers = {int(index): (str(macros.get(index, "")), int(port)) for index, port in ports.items()}
    return [Node(int(shard), int(replica), str(host), int(port), index in answers,
                 *answers.get(index, ("", 0)))
            for index, (shard, replica, host, port) in enumerate(listed, start=1)]


def create_database_on_cluster(store: Store, cluster: str) -> bool:
    """Create the configured database on every node of ``cluster``; False when every node had it.

    ``ON CLUSTER`` first (a clickhouse-server cluster with distributed DDL); a server that refuses it
    (Code 392: distributed DDL disabled, as on nodes run from the chdb wheel) gets the database on
    each node over HTTP, at the node's host from ``system.clusters`` and the HTTP port it reports,
    with the same user and password.
    """
    create = f"CREATE DATABASE IF NOT EXISTS {quote_identifier(store.database)}"
    try:
        existed = store.database_exists()
        store.command(f"{create} ON CLUSTER {quote_identifier(cluster)}")
        return not existed
    except StoreError as exc:
        if "Code: 392" not in str(exc):
            raise
    topology = Topology("cluster", cluster, tuple(cluster_nodes(store, cluster)))
    problems = topology.problems()
    if problems:
        raise StoreError(f"Cannot create database '{store.database}' on every node: {problems[0]}")
    created = False
    for node in topology.nodes:
        created = _create_on_node(store, node, create) or created
    return created


def node_store(store: Store, node: Node) -> Store:
    """A store on ``node`` alone (its host and HTTP port, the same user and password); close it after use."""
    from core.store import Store

    settings = store.settings.model_copy(update={"clickhouse_host": node.host, "clickhouse_port": node.http_port,
                                                 "clickhouse_url": None})
    return Store(settings, linger=0)


def _create_on_node(store: Store, node: Node, create: str) -> bool:
    on_node = node_store(store, node)
    try:
        existed = on_node.database_exists()
        on_node.command(create)
    finally:
        on_node.close()
    return not existed
