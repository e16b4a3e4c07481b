"""The local 2-shard cluster (tests/cluster.py, issue 28): what its chdb nodes can do, topology
detection and ``check`` on a cluster, ``setup_db`` on every node, and the refusal to load into a
Distributed target until per-topology publish exists. One cluster per session, one database per test."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.same_in_both_runs("a cluster of its own (ZooKeeper and two chdb nodes) in either run")


def _query(cluster, node: int, sql: str) -> list[tuple]:
    client = cluster.client(node)
    try:
        return [tuple(row) for row in client.query(sql).result_rows]
    finally:
        client.close()


def test_local_cluster_nodes_shard_and_share_keeper(local_cluster) -> None:
    c = local_cluster
    assert c.zookeeper.seconds_to_start < 30 and c.seconds_to_start < 90
    c.on_every_node("CREATE DATABASE IF NOT EXISTS caps")
    c.on_every_node("CREATE TABLE caps.events_local (id UInt64) ENGINE = MergeTree ORDER BY id")
    for node in (0, 1):
        assert _query(c, node, "SELECT substitution FROM system.macros WHERE macro = 'shard'") == [(str(node + 1),)]
    c.on_every_node(f"CREATE TABLE caps.events AS caps.events_local "
                    f"ENGINE = Distributed('{c.name}', 'caps', 'events_local', id)")
    c.client(0).command("INSERT INTO caps.events SELECT number FROM numbers(1000) "
                        "SETTINGS insert_distributed_sync = 1")
    assert _query(c, 0, "SELECT count() FROM caps.events_local") == [(500,)]
    assert _query(c, 1, "SELECT count() FROM caps.events_local") == [(500,)]
    assert _query(c, 1, "SELECT count(), uniqExact(id) FROM caps.events") == [(1000, 1000)]
    # Replicated tables are created (the macros and ZooKeeper path resolve) but stay read-only:
    # clickhouse-local runs no replication.
    c.client(0).command("CREATE TABLE caps.r (id UInt64) ENGINE = ReplicatedMergeTree("
                        "'/clickhouse/caps/{shard}/r', '{replica}') ORDER BY id")
    assert _query(c, 0, "SELECT engine FROM system.tables WHERE database = 'caps' AND name = 'r'") == [
        ("ReplicatedMergeTree",)]
    # KeeperMap in strict mode through the shared ZooKeeper: one claim wins, on any node.
    c.on_every_node("CREATE TABLE caps.claims (k String, v UInt64) ENGINE = KeeperMap('/caps_claims') PRIMARY KEY k")
    c.client(0).command("INSERT INTO caps.claims SETTINGS keeper_map_strict_mode = 1 VALUES ('lock', 1)")
    with pytest.raises(Exception, match="Node exists"):
        c.client(1).command("INSERT INTO caps.claims SETTINGS keeper_map_strict_mode = 1 VALUES ('lock', 2)")
    assert _query(c, 1, "SELECT k, v FROM caps.claims") == [("lock", 1)]
    # What clickhouse-local cannot do (documented in docs/deployment.md):
    with pytest.raises(Exception, match="Code: 392"):
        c.client(0).command(f"CREATE DATABASE caps2 ON CLUSTER {c.name}")
    # (An INSERT into caps.r fails with Code 242, read-only, after about 140 s of retries: not run.)


DIST_MODULE = '''
import pyarrow as pa
from datetime import timedelta
from pipelines.interfaces import Extractor
from pipelines.pipeline_factory import create_el_pipeline
from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader


class Ids(Extractor):
    interval_aware = True

    def extract(self, context):
        yield pa.table({"ts": pa.array([context.start + timedelta(minutes=i) for i in range(100)],
                                       pa.timestamp("ms", tz="UTC")),
                        "id": pa.array(range(100), pa.uint64())})


PIPELINE_REGISTRY = {"ids": {"pipeline": create_el_pipeline(Ids("ids"), create_clickhouse_loader(
    "events", time_column="ts"), "ids")}}
'''


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
        assert _query(local_cluster, node, f"SELECT count() FROM system.databases WHERE name = '{database}'") == [(1,)]
    again = run_cli("setup_db", env=cluster_env)
    assert again.returncode == 0 and "already exists" in again.stdout, again.stdout + again.stderr
    check = run_cli("check", env=cluster_env)
    assert "self-managed cluster 'dp_cluster': 2 shards, 2 nodes, every node answers" in check.stdout, check.stdout
    wrong = run_cli("check", env={**cluster_env, "CLICKHOUSE_CLUSTER": "no_such_cluster"})
    assert wrong.returncode == 1
    assert "cluster 'no_such_cluster' is not in system.clusters" in wrong.stdout, wrong.stdout


def test_a_distributed_target_is_refused_before_any_row_is_written(local_cluster, cluster_env,
                                                                  pipelines_dir) -> None:
    from conftest import run_cli

    (pipelines_dir / "ids_pipeline.py").write_text(DIST_MODULE)
    # Without CLICKHOUSE_CLUSTER (the framework's own tables are then plain, on node 1): with it, they
    # are created ON CLUSTER, which these nodes refuse (Code 392) before any load starts.
    env = {k: v for k, v in cluster_env.items() if k != "CLICKHOUSE_CLUSTER"} | {"PIPELINES_DIR": str(pipelines_dir)}
    database = env["CLICKHOUSE_DATABASE"]
    local_cluster.on_every_node(f"CREATE DATABASE IF NOT EXISTS {database}")
    local_cluster.on_every_node(f"CREATE TABLE {database}.events_local (ts DateTime64(3, 'UTC'), id UInt64) "
                                "ENGINE = MergeTree PARTITION BY toDate(ts) ORDER BY id")
    local_cluster.on_every_node(f"CREATE TABLE {database}.events AS {database}.events_local "
                                f"ENGINE = Distributed('{local_cluster.name}', '{database}', 'events_local', id)")
    local_cluster.client(0).command(f"INSERT INTO {database}.events SELECT toDateTime64('2026-03-09 00:00:00', 3, "
                                    "'UTC') + number, number FROM numbers(10) SETTINGS insert_distributed_sync = 1")
    before = [_query(local_cluster, n, f"SELECT count() FROM {database}.events_local") for n in (0, 1)]
    assert before == [[(5,)], [(5,)]]
    for _ in range(2):
        result = run_cli("cron_run", "ids", "--date", "2026-03-10", env=env)
        assert result.returncode != 0, result.stdout + result.stderr
        assert (f"the target {database}.events is a Distributed table: loading into it is not supported yet, "
                "see docs/deployment.md") in result.stdout + result.stderr
    for node in (0, 1):
        assert _query(local_cluster, node, f"SELECT count() FROM {database}.events_local") == before[node]
        assert _query(local_cluster, node, f"SELECT name FROM system.tables WHERE database = '{database}' "
                                           "AND name LIKE '_dp_stage%'") == []
