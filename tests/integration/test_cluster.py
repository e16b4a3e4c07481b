"""The local 2-shard cluster (tests/cluster.py, issue 28): what its chdb nodes can do, topology
detection and ``check`` on a cluster, ``setup_db`` on every node (loading into sharded and replicated
targets: test_cluster_publish.py). One cluster per session, one database per test."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.same_in_both_runs("a cluster of its own (ZooKeeper and two chdb nodes) in either run")


def test_local_cluster_nodes_shard_and_share_keeper(local_cluster) -> None:
    c = local_cluster
    assert c.zookeeper.seconds_to_start < 30 and c.seconds_to_start < 90
    c.on_every_node("CREATE DATABASE IF NOT EXISTS caps")
    c.on_every_node("CREATE TABLE caps.events_local (id UInt64) ENGINE = MergeTree ORDER BY id")
    for node in (0, 1):
        assert c.rows(node, "SELECT substitution FROM system.macros WHERE macro = 'shard'") == [(str(node + 1),)]
    c.on_every_node(f"CREATE TABLE caps.events AS caps.events_local "
                    f"ENGINE = Distributed('{c.name}', 'caps', 'events_local', id)")
    c.client(0).command("INSERT INTO caps.events SELECT number FROM numbers(1000) "
                        "SETTINGS insert_distributed_sync = 1")
    assert c.rows(0, "SELECT count() FROM caps.events_local") == [(500,)]
    assert c.rows(1, "SELECT count() FROM caps.events_local") == [(500,)]
    assert c.rows(1, "SELECT count(), uniqExact(id) FROM caps.events") == [(1000, 1000)]
    # Replicated tables are created (the macros and ZooKeeper path resolve) but stay read-only:
    # clickhouse-local runs no replication.
    c.client(0).command("CREATE TABLE caps.r (id UInt64) ENGINE = ReplicatedMergeTree("
                        "'/clickhouse/caps/{shard}/r', '{replica}') ORDER BY id")
    assert c.rows(0, "SELECT engine FROM system.tables WHERE database = 'caps' AND name = 'r'") == [
        ("ReplicatedMergeTree",)]
    # KeeperMap in strict mode through the shared ZooKeeper: one claim wins, on any node.
    c.on_every_node("CREATE TABLE caps.claims (k String, v UInt64) ENGINE = KeeperMap('/caps_claims') PRIMARY KEY k")
    c.client(0).command("INSERT INTO caps.claims SETTINGS keeper_map_strict_mode = 1 VALUES ('lock', 1)")
    with pytest.raises(Exception, match="Node exists"):
        c.client(1).command("INSERT INTO caps.claims SETTINGS keeper_map_strict_mode = 1 VALUES ('lock', 2)")
    assert c.rows(1, "SELECT k, v FROM caps.claims") == [("lock", 1)]
    # What clickhouse-local cannot do (documented in docs/deployment.md):
    with pytest.raises(Exception, match="Code: 392"):
        c.client(0).command(f"CREATE DATABASE caps2 ON CLUSTER {c.name}")
    # (An INSERT into caps.r fails with Code 242, read-only, after about 140 s of retries: not run.)


@pytest.fixture
def cluster_env(local_cluster, project_env: dict[str, str], request: pytest.FixtureRequest) -> dict[str, str]:
    """``project_env`` pointing at node 1 of the local cluster, in a database of this test's own."""
    import hashlib

    database = "c_" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:12]
    env = {**project_env, **local_cluster.client_env(database)}
    yield env
    local_cluster.on_every_node(f"DROP DATABASE IF EXISTS {database} SYNC")


def test_setup_db_creates_the_database_on_every_node_and_check_states_the_cluster(local_cluster, cluster_env) -> None:
    from conftest import run_cli

    database = cluster_env["CLICKHOUSE_DATABASE"]
    result = run_cli("setup_db", env=cluster_env)
    assert result.returncode == 0, result.stderr + result.stdout
    for node in (0, 1):
        assert local_cluster.rows(node, f"SELECT count() FROM system.databases WHERE name = '{database}'") == [(1,)]
    again = run_cli("setup_db", env=cluster_env)
    assert again.returncode == 0 and "already exists" in again.stdout, again.stdout + again.stderr
    check = run_cli("check", env=cluster_env)
    assert "self-managed cluster 'dp_cluster': 2 shards, 2 nodes, every node answers" in check.stdout, check.stdout
    wrong = run_cli("check", env={**cluster_env, "CLICKHOUSE_CLUSTER": "no_such_cluster"})
    assert wrong.returncode == 1
    assert "cluster 'no_such_cluster' is not in system.clusters" in wrong.stdout, wrong.stdout
