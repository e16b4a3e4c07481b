"""Loading into a sharded target on the local 2-shard cluster (issue 28, "Publish per topology").

A ``Distributed`` target is staged per shard (a local MergeTree staging table on every node behind a
Distributed staging table with the target's sharding key) and published with ``REPLACE PARTITION``
(``ATTACH PARTITION`` for append/merge) on every shard's local table. Each test starts from tables
of its own in a database of its own; the cluster is the session's (``local_cluster``). The sharding
key is ``id``: even ids land on shard 1 (node 1), odd ids on shard 2 (node 2).

What the local nodes cannot do (write a replicated table) is tested as generated SQL, each statement
parsed by a node (``EXPLAIN AST``).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys

import pytest

from cluster import REPLICAS

pytestmark = pytest.mark.same_in_both_runs("a cluster of its own (ZooKeeper and two chdb nodes) in either run")

DAY, BEFORE = "2026-03-10", "2026-03-09"

MODULE = '''
import json, os, time
from pathlib import Path
import pyarrow as pa
from datetime import timedelta
from audit.builtins import row_count, unique
from pipelines.interfaces import Extractor
from pipelines.pipeline_factory import create_el_pipeline
from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader


class Ids(Extractor):
    """The ids of $DP_IDS (a JSON list), one a minute from the interval's start (with a column
    ``note`` when $DP_NOTE is set); with $DP_HANG, the run writes that file once its first batch is
    staged, then hangs."""

    interval_aware = True

    def extract(self, context):
        ids = json.loads(os.environ.get("DP_IDS", "[]"))
        data = pa.table({"ts": pa.array([context.start + timedelta(minutes=i) for i in range(len(ids))],
                                        pa.timestamp("ms", tz="UTC")),
                         "id": pa.array(ids, pa.uint64()), "v": pa.array([1] * len(ids), pa.uint32())})
        if os.environ.get("DP_NOTE"):  # a column the target does not have
            data = data.append_column("note", pa.array(["x"] * len(ids)))
        yield data
        if os.environ.get("DP_HANG"):
            Path(os.environ["DP_HANG"]).write_text(context.run_id)
            time.sleep(600)


def loader(table, mode):
    return create_clickhouse_loader(table, mode, time_column="ts", primary_key="id", version_column="v")


PIPELINE_REGISTRY = {
    "ids": {"pipeline": create_el_pipeline(Ids("ids"), loader("events", "interval"), "ids"),
            "checks": [unique("id")]},
    "ids_capped": {"pipeline": create_el_pipeline(Ids("ids"), loader("events", "interval"), "ids_capped"),
                   "checks": [unique("id"), row_count(max=50)]},
    "ids_local": {"pipeline": create_el_pipeline(Ids("ids"), loader("events_local", "interval"), "ids_local")},
    "ids_replicas": {"pipeline": create_el_pipeline(Ids("ids"), loader("events_r", "interval"), "ids_replicas")},
    "ids_other": {"pipeline": create_el_pipeline(Ids("ids"), loader("events_o", "interval"), "ids_other")},
    **{f"{mode}_{table}": {"pipeline": create_el_pipeline(Ids("ids"), loader(table, mode), f"{mode}_{table}")}
       for mode, table in [("append", "app"), ("append", "app_untagged"), ("merge", "mrg"),
                           ("merge", "mrg_rand"), ("replace", "rep")]},
}
'''

COLUMNS = "(ts DateTime64(3, 'UTC'), id UInt64, v UInt32, _dp_run_id String DEFAULT '')"


@pytest.fixture
def project(local_cluster, project_env: dict[str, str], pipelines_dir, request: pytest.FixtureRequest):
    """(env, database): the CLI pointed at node 1 in a database of this test's own, on both nodes.
    ``CLICKHOUSE_CLUSTER`` stays unset: the framework's own tables are then plain, on node 1 (the
    local nodes refuse ``ON CLUSTER``); the Distributed target names its cluster itself."""
    database = "p_" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:12]
    (pipelines_dir / "ids_pipeline.py").write_text(MODULE)
    env = {k: v for k, v in {**project_env, **local_cluster.client_env(database)}.items()
           if k != "CLICKHOUSE_CLUSTER"} | {"PIPELINES_DIR": str(pipelines_dir)}
    local_cluster.on_every_node(f"CREATE DATABASE IF NOT EXISTS {database}")
    yield env, database
    local_cluster.on_every_node(f"DROP DATABASE IF EXISTS {database} SYNC")


def _sharded(cluster, database: str, table: str, engine: str = "MergeTree", key: str = "id",
             order: str = "id", columns: str = COLUMNS) -> None:
    """``table_local`` on every node and ``table`` (Distributed, sharded by ``key``) on every node."""
    cluster.on_every_node(f"CREATE TABLE {database}.{table}_local {columns} ENGINE = {engine} "
                          f"PARTITION BY toDate(ts) ORDER BY {order}")
    cluster.on_every_node(f"CREATE TABLE {database}.{table} AS {database}.{table}_local ENGINE = "
                          f"Distributed('{cluster.name}', '{database}', '{table}_local', {key})")


def _per_shard(cluster, database: str, table: str, where: str = "1", final: bool = False) -> list[int]:
    """Rows of ``table_local`` on node 1 and on node 2 matching ``where``."""
    return [cluster.rows(n, f"SELECT count() FROM {database}.{table}_local{' FINAL' if final else ''} "
                               f"WHERE {where}")[0][0] for n in (0, 1)]


def _staging_left(cluster, database: str) -> list[list[tuple]]:
    return [cluster.rows(n, f"SELECT name FROM system.tables WHERE database = '{database}' AND "
                               "startsWith(name, '_dp_stage_') AND NOT startsWith(name, '_dp_stage_kept') "
                               "ORDER BY name") for n in (0, 1)]


def _run(env: dict[str, str], pipeline: str, ids: list[int], day: str = DAY, *extra: str):
    from conftest import run_cli

    return run_cli("cron_run", pipeline, "--date", day, "--force", *extra, env={**env, "DP_IDS": str(ids)})


def _ok(result) -> None:
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_interval_on_a_distributed_target_is_published_exactly_once_on_every_shard(local_cluster, project) -> None:
    env, db = project
    c = local_cluster
    _sharded(c, db, "events")
    c.client(0).command(f"INSERT INTO {db}.events (ts, id, v) SELECT toDateTime64('{BEFORE} 00:00:00', 3, 'UTC') "
                        "+ number, 1000 + number, 1 FROM numbers(10) SETTINGS insert_distributed_sync = 1")
    day = f"toDate(ts) = '{DAY}'"
    # The measurement: the old code published nothing (Code 48 on the Distributed staging)
    # while the rows went straight into the shards, and a re-run doubled them.
    for _ in range(2):
        _ok(_run(env, "ids", list(range(100))))
        assert _per_shard(c, db, "events", day) == [50, 50]
        assert _per_shard(c, db, "events", f"toDate(ts) = '{BEFORE}'") == [5, 5]
        assert c.rows(0, f"SELECT count(), uniqExact(id) FROM {db}.events WHERE {day}") == [(100, 100)]
    assert _staging_left(c, db) == [[], []]
    # A re-run whose rows all land on shard 1: shard 2's partition of the interval is emptied.
    _ok(_run(env, "ids", list(range(0, 20, 2))))
    assert _per_shard(c, db, "events", day) == [10, 0]
    assert _per_shard(c, db, "events", f"toDate(ts) = '{BEFORE}'") == [5, 5]
    # Failing checks publish nothing on either shard. row_count counts the staged rows only (the issue
    # saw the whole target counted); unique finds id 1001, staged on shard 2 and kept outside the
    # interval there, without Code 288 (IN over two Distributed tables).
    failed = _run(env, "ids_capped", [*range(100), 1001])
    assert failed.returncode != 0
    out = failed.stdout + failed.stderr
    assert "101 rows, more than max 50" in out and "nothing published" in out, out
    assert "unique(id): 1 failing row(s)" in out and "Code: 288" not in out, out
    assert _per_shard(c, db, "events", day) == [10, 0]
    assert _staging_left(c, db) == [[], []]
    # A column the Distributed target lacks: the loader changes no structure on a cluster (a migration does).
    extra = _run({**env, "DP_NOTE": "1"}, "ids", list(range(4)))
    assert extra.returncode != 0
    assert ("the data has column 'note', which the Distributed table cannot take; on a cluster the loader "
            "does not change a target's structure: do it with a migration") in extra.stdout + extra.stderr
    assert _per_shard(c, db, "events", day) == [10, 0]
    assert _staging_left(c, db) == [[], []]


def test_append_merge_and_replace_on_distributed_targets(local_cluster, project) -> None:
    env, db = project
    c = local_cluster
    # append: a run adds its rows once; the run id column tells each shard what a retry attached.
    _sharded(c, db, "app")
    for times in (1, 2):
        _ok(_run(env, "append_app", list(range(10))))
        assert _per_shard(c, db, "app") == [5 * times, 5 * times]
    # append without a run id column in the target: refused before any row, on no shard.
    _sharded(c, db, "app_untagged", columns="(ts DateTime64(3, 'UTC'), id UInt64, v UInt32)")
    refused = _run(env, "append_app_untagged", list(range(10)))
    assert refused.returncode != 0
    assert (f"mode 'append' into the Distributed table {db}.app_untagged needs the run id column _dp_run_id "
            "in it") in refused.stdout + refused.stderr
    assert _per_shard(c, db, "app_untagged") == [0, 0]
    # merge: keys shard by the primary key, so FINAL on each shard keeps one version of each key.
    _sharded(c, db, "mrg", engine="ReplacingMergeTree(v)")
    for _ in range(2):
        _ok(_run(env, "merge_mrg", list(range(10))))
    assert _per_shard(c, db, "mrg", final=True) == [5, 5]
    assert c.rows(0, f"SELECT count() FROM {db}.mrg FINAL") == [(10,)]
    # merge sharded by rand(): a key's versions could land on two shards, never collapsed: refused.
    _sharded(c, db, "mrg_rand", engine="ReplacingMergeTree(v)", key="rand()")
    refused = _run(env, "merge_mrg_rand", list(range(10)))
    assert refused.returncode != 0
    assert (f"mode 'merge' into the Distributed table {db}.mrg_rand needs a sharding key made of the "
            "primary key (id), not rand()") in refused.stdout + refused.stderr
    assert _per_shard(c, db, "mrg_rand") == [0, 0]
    # replace: every partition of every shard replaced (never EXCHANGE); a shard given no rows is emptied.
    _sharded(c, db, "rep")
    c.client(0).command(f"INSERT INTO {db}.rep (ts, id, v) SELECT toDateTime64('{BEFORE} 00:00:00', 3, 'UTC') "
                        "+ number * 3600 * 12, number, 1 FROM numbers(8) SETTINGS insert_distributed_sync = 1")
    assert _per_shard(c, db, "rep") == [4, 4]
    _ok(_run(env, "replace_rep", list(range(0, 12, 2))))
    assert _per_shard(c, db, "rep") == [6, 0]
    assert c.rows(0, f"SELECT count() FROM {db}.rep WHERE toDate(ts) = '{DAY}'") == [(6,)]
    assert [c.rows(n, f"SELECT engine FROM system.tables WHERE database = '{db}' AND name = 'rep_local'")
            for n in (0, 1)] == [[("MergeTree",)], [("MergeTree",)]]
    assert _staging_left(c, db) == [[], []]


def test_a_shard_local_target_and_a_cluster_with_replicas_are_refused(local_cluster, project) -> None:
    """The issue: writing the shard-local table through each node succeeded on each (2,000 rows for
    1,000 ids over the Distributed table). Refused, naming the Distributed table to load into."""
    env, db = project
    c = local_cluster
    _sharded(c, db, "events")
    for node in (0, 1):
        node_env = {**env, **{k: v for k, v in c.client_env(db, node).items() if k != "CLICKHOUSE_CLUSTER"}}
        result = _run(node_env, "ids_local", list(range(1000)))
        assert result.returncode != 0
        assert (f"the target {db}.events_local is the shard-local table of the Distributed table {db}.events "
                f"(cluster {c.name}): a write through one node would be exactly-once on that node only; "
                f"load into {db}.events") in result.stdout + result.stderr
    assert _per_shard(c, db, "events") == [0, 0]
    # A Distributed table over a shard with two replicas: its staging could not be per replica.
    c.client(0).command(f"CREATE TABLE {db}.events_r AS {db}.events_local ENGINE = "
                        f"Distributed('{REPLICAS}', '{db}', 'events_local', id)")
    result = _run(env, "ids_replicas", list(range(10)))
    assert result.returncode != 0
    assert (f"the Distributed table {db}.events_r is on cluster {REPLICAS}, whose shard 1 has 2 replicas: loading "
            "is supported with one replica per shard only") in result.stdout + result.stderr
    # A Distributed table over another database's local tables.
    c.client(0).command(f"CREATE TABLE {db}.events_o AS {db}.events_local ENGINE = "
                        f"Distributed('{c.name}', 'elsewhere', 'events_local', id)")
    result = _run(env, "ids_other", list(range(10)))
    assert result.returncode != 0
    assert (f"the Distributed table {db}.events_o reads elsewhere.events_local: loading is supported when its "
            f"local table is in the same database ({db})") in result.stdout + result.stderr
    assert _per_shard(c, db, "events") == [0, 0] and _staging_left(c, db) == [[], []]


def _hang(env: dict[str, str], pipeline: str, day: str, marker, ids: int = 10) -> subprocess.Popen[str]:
    """``pipeline`` run for ``day`` through node 1, hanging once its rows are staged (its run id in ``marker``)."""
    from conftest import ROOT, SRC, cli_env

    return subprocess.Popen([sys.executable, str(SRC / "main.py"), "cron_run", pipeline, "--date", day],
                            env=cli_env({**env, "DP_IDS": str(list(range(ids))), "DP_HANG": str(marker)}),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _kill_9(process: subprocess.Popen[str]) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)


def test_a_kill_9_mid_load_leaves_no_staging_on_any_node(local_cluster, project, tmp_path) -> None:
    from conftest import run_cli, wait_for

    env, db = project
    c = local_cluster
    _sharded(c, db, "events")
    marker = tmp_path / "hang"
    victim = _hang(env, "ids", DAY, marker, 100)
    wait_for(marker.exists, what="the run to hang mid-load")
    left = _staging_left(c, db)
    assert [len(tables) for tables in left] == [2, 1], left  # the Distributed staging and each shard's
    assert _per_shard(c, db, "events", "1") == [0, 0]
    _kill_9(victim)
    cleaned = run_cli("clean", env=env)
    _ok(cleaned)
    assert _staging_left(c, db) == [[], []]
    _ok(_run(env, "ids", list(range(100))))
    assert _per_shard(c, db, "events") == [50, 50]
    assert _staging_left(c, db) == [[], []]


def test_dead_runs_staging_is_swept_from_every_node_through_another_node(local_cluster, project, tmp_path) -> None:
    """With ``CLICKHOUSE_CLUSTER`` set, the reaper (and ``kill``) and ``clean`` find a dead run's staging
    on every node through whichever node they talk to. The local nodes refuse the framework's
    ``ON CLUSTER`` DDL (Code 392), so the runs talk to node 1 without it and the sweep functions are
    called here through node 2 with it set."""
    from conftest import wait_for
    from core.config import Settings
    from core.run_tables import run_suffix
    from core.shards import drop_run_tables, find_run_tables
    from core.store import Store

    env, db = project
    c = local_cluster
    _sharded(c, db, "events")
    runs = {name: _hang(env, pipeline, day, tmp_path / name)
            for name, pipeline, day in (("dead", "ids", DAY), ("live", "ids_capped", BEFORE))}
    store = Store(Settings(_env_file=None, **{k.lower(): v for k, v in c.client_env(db, node=1).items()  # type: ignore[arg-type]
                                              if k.startswith("CLICKHOUSE_")}), linger=0)
    try:
        ids = {name: wait_for(lambda n=name: (tmp_path / n).exists() and (tmp_path / n).read_text(),
                              what=f"run {name} to hang mid-load") for name in runs}
        _kill_9(runs["dead"])
        left = _staging_left(c, db)
        assert [len(tables) for tables in left] == [4, 2], left  # per run: the Distributed staging and each shard's
        assert store.settings.clickhouse_cluster == c.name and store.settings.clickhouse_port == c.nodes[1].port

        # the reaper: a dead run's staging, from one listing of both nodes; the live run's kept
        dead, live = (run_suffix(ids[name]) for name in ("dead", "live"))
        assert drop_run_tables(store, ids["dead"], find_run_tables(store)) == [
            f"_dp_stage_events{dead}", f"_dp_stage_events_shard{dead}"]
        kept = [[(name,) for (name,) in tables if name.endswith(live)] for tables in left]
        assert _staging_left(c, db) == kept and [len(tables) for tables in kept] == [2, 1]

        # clean: every run's staging but the running ones', found on both nodes in one listing
        assert find_run_tables(store).except_runs({ids["live"]}).names() == []
        _kill_9(runs["live"])
        found = find_run_tables(store)
        assert found.names() == [f"_dp_stage_events{live}", f"_dp_stage_events_shard{live}"]
        found.drop(store)
        assert _staging_left(c, db) == [[], []]
        # nothing left for either listing (kill lists one run's on its own)
        assert find_run_tables(store).names() == [] and drop_run_tables(store, ids["dead"]) == []
    finally:
        store.close()
        for process in runs.values():
            if process.poll() is None:
                _kill_9(process)


def test_a_replicated_target_gets_a_plain_mergetree_staging_and_a_swap_that_replicates(local_cluster, project) -> None:
    """The local nodes create replicated tables but cannot write them (Code 242): the staging table
    is created for real, the publishing statements are checked as SQL ClickHouse parses."""
    from core.clickhouse_adapter import replace_partitions_sql
    from core.config import Settings
    from core.store import Store

    env, db = project
    c = local_cluster
    c.client(0).command(f"CREATE TABLE {db}.r {COLUMNS} ENGINE = ReplicatedReplacingMergeTree("
                        f"'/clickhouse/{db}/{{shard}}/r', '{{replica}}', v) PARTITION BY toDate(ts) "
                        "ORDER BY (id, ts) PRIMARY KEY id SETTINGS index_granularity = 4096")
    # What the old code sent: CREATE TABLE stage AS target registers a second replica at the same path.
    with pytest.raises(Exception, match="Code: 253"):
        c.client(0).command(f"CREATE TABLE {db}._dp_stage_r_old AS {db}.r")
    store = Store(Settings(_env_file=None, **{k.lower(): v for k, v in env.items()  # type: ignore[arg-type]
                                              if k.startswith("CLICKHOUSE_")}), linger=0)
    try:
        store.adapter.stage_like("_dp_stage_r_run1", "r")
        store.command(f"INSERT INTO {store.table('_dp_stage_r_run1')} (ts, id, v) VALUES ('{DAY} 01:00:00', 1, 1)")
        swap = replace_partitions_sql(store.table("r"), store.table("_dp_stage_r_run1"), ["20260310"],
                                      emptied=["20260309"])
        whole = store.adapter.replace_all_sql("r", "_dp_stage_r_run1")
    finally:
        store.close()
    assert c.rows(0, f"SELECT engine, partition_key, sorting_key, primary_key FROM system.tables "
                        f"WHERE database = '{db}' AND name = '_dp_stage_r_run1'") == [
        ("ReplacingMergeTree", "toDate(ts)", "id, ts", "id")]
    assert swap == (f"ALTER TABLE `{db}`.`r` REPLACE PARTITION ID '20260310' FROM `{db}`.`_dp_stage_r_run1`, "
                    "DROP PARTITION ID '20260309'")
    client = c.client(0)
    try:
        for statement in (swap, whole):
            assert str(client.command(f"EXPLAIN AST {statement}")).startswith("AlterQuery"), statement
    finally:
        client.close()
