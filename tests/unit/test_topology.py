"""Topology lines and cluster problems (core.topology): what ``check`` says, one line per problem.
The same checks against a real 2-shard cluster are in tests/integration/test_cluster.py."""

from __future__ import annotations

from core.topology import Node, Topology


def test_each_topology_is_one_line_and_each_cluster_problem_one_line() -> None:
    assert Topology("embedded").describe() == "embedded (single node)"
    assert Topology("server").describe() == "single server"
    assert Topology("replicated").describe().startswith("Replicated database (ClickHouse Cloud")
    assert Topology("server").problems() == []
    assert Topology("cluster", "c").problems() == [
        "cluster 'c' is not in system.clusters of the server CLICKHOUSE_HOST names: "
        "define it in the servers' <remote_servers> or fix CLICKHOUSE_CLUSTER"]
    nodes = (Node(1, 1, "a", 9000, True, "r1", 8123), Node(1, 2, "b", 9000, True, "r1", 8123),
             Node(2, 1, "c", 9000, False), Node(2, 2, "d", 9000, True, "", 8123))
    cluster = Topology("cluster", "c", nodes)
    assert cluster.describe() == "self-managed cluster 'c': 2 shards, 4 nodes"
    assert cluster.problems() == [
        "node c:9000 (shard 2, replica 1) of cluster 'c' does not answer",
        "node d:9000 (shard 2, replica 2) has no {replica} macro: set <macros><replica> in its config",
        "nodes a:9000 (shard 1, replica 1) and b:9000 (shard 1, replica 2) share the {replica} macro 'r1': "
        "give each node its own"]
