"""The framework's own tables on the local 2-shard cluster (issue 28): one history or a refusal,
never one history per node; single-server tables refused on a cluster until ``db_to_cluster``;
the history copy of ``db_to_cluster``; run-private tables of a replicated table; the loader never
creating a target on a cluster. The replicated DDL itself (ON CLUSTER, which these nodes refuse)
is tested as generated SQL in tests/unit/test_framework_ddl.py."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest

from conftest import run_cli

pytestmark = pytest.mark.same_in_both_runs("a cluster of its own (ZooKeeper and two chdb nodes) in either run")

PIPELINE = '''
import pyarrow as pa
from datetime import timedelta
from pipelines.interfaces import Extractor
from pipelines.pipeline_factory import create_el_pipeline
from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader


class Ids(Extractor):
    interval_aware = True

    def extract(self, context):
        yield pa.table({"ts": pa.array([context.start + timedelta(minutes=i) for i in range(10)],
                                       pa.timestamp("ms", tz="UTC")),
                        "id": pa.array(range(10), pa.uint64())})


PIPELINE_REGISTRY = {"ids": {"pipeline": create_el_pipeline(Ids("ids"), create_clickhouse_loader(
    "ids", time_column="ts"), "ids")}}
'''


def _framework_tables(cluster, node: int, database: str) -> list[tuple]:
    return cluster.rows(node, f"SELECT name, engine FROM system.tables WHERE database = '{database}' "
                                "AND name LIKE '\\_dp\\_%' ORDER BY name")


@pytest.fixture
def env(local_cluster, project_env: dict[str, str], pipelines_dir,
        request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """A project with the ``ids`` pipeline on node 1 of the cluster (CLICKHOUSE_CLUSTER set), in a database
    of this test's own."""
    (pipelines_dir / "ids_pipeline.py").write_text(PIPELINE)
    database = "d_" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:12]
    yield {**project_env, **local_cluster.client_env(database), "PIPELINES_DIR": str(pipelines_dir)}
    local_cluster.on_every_node(f"DROP DATABASE IF EXISTS {database} SYNC")


def _on(env: dict[str, str], cluster, node: int) -> dict[str, str]:
    return {**env, **cluster.client_env(env["CLICKHOUSE_DATABASE"], node)}


def test_runner_hosts_on_a_cluster_never_keep_a_history_each(local_cluster, env) -> None:
    """The issue's "two hosts see two histories": the framework tables were made on the node a process
    talked to. Now they are made ON CLUSTER, replicated; these nodes refuse ON CLUSTER (Code 392), so
    the run is refused before anything is written, through either node."""
    database = env["CLICKHOUSE_DATABASE"]
    assert run_cli("setup_db", env=env).returncode == 0
    refusal = ("cluster 'dp_cluster': the server refuses ON CLUSTER DDL (Code 392, distributed DDL disabled), "
               "so the framework's tables (run history, coverage, state) cannot be made on every node")
    for node in (0, 1):
        # Reading the history made the tables on the node asked (old code: a history per node).
        runs = run_cli("runs", env=_on(env, local_cluster, node))
        assert _framework_tables(local_cluster, node, database) == []
        assert runs.returncode != 0 and refusal in runs.stdout + runs.stderr, runs.stdout + runs.stderr
    result = run_cli("cron_run", "ids", "--date", "2026-03-10", env=_on(env, local_cluster, 1))
    assert result.returncode == 1 and refusal in result.stdout + result.stderr, result.stdout + result.stderr
    for node in (0, 1):
        assert _framework_tables(local_cluster, node, database) == []
        assert local_cluster.rows(node, f"SELECT count() FROM system.tables WHERE database = '{database}'") == [
            (0,)]


def test_single_server_tables_are_refused_on_a_cluster_until_db_to_cluster(local_cluster, env) -> None:
    database = env["CLICKHOUSE_DATABASE"]
    single = {k: v for k, v in env.items() if k != "CLICKHOUSE_CLUSTER"}
    made = run_cli("cron_run", "ids", "--date", "2026-03-10", env=single)
    assert made.returncode == 0, made.stdout + made.stderr
    tables = _framework_tables(local_cluster, 0, database)
    assert ("_dp_runs", "ReplacingMergeTree") in tables and _framework_tables(local_cluster, 1, database) == []
    line = (f"cluster 'dp_cluster': the framework's tables in '{database}' (_dp_coverage, _dp_locks, "
            "_dp_migrations, _dp_quarantine, "
            "_dp_run_totals, _dp_runs, _dp_state, _dp_waivers) were made for a single server, so each node would "
            "keep its own history: run ./run.sh db_to_cluster to move them, with their history, to the "
            "replicated layout")
    refused = run_cli("cron_run", "ids", "--date", "2026-03-11", env=env)
    assert refused.returncode == 1 and line in refused.stdout + refused.stderr, refused.stdout + refused.stderr
    check = run_cli("check", "--quiet", env=env)
    # check names every framework table (those of locks and migrations too)
    every = line.replace("(_dp_coverage, ", "(_dp_checks, _dp_coverage, ")
    assert check.returncode == 1 and f"FAIL framework tables: {every}" in check.stdout, check.stdout + check.stderr
    migrate = run_cli("migrate", env=env)
    assert migrate.returncode != 0, migrate.stdout + migrate.stderr
    assert (f"cluster 'dp_cluster': the framework's tables in '{database}' (_dp_locks, _dp_migrations) were made "
            "for a single server") in migrate.stdout + migrate.stderr, migrate.stdout + migrate.stderr
    # db_to_cluster on these nodes: the tables are renamed, the ON CLUSTER CREATE is refused (Code 392),
    # and everything is put back as it was.
    moved = run_cli("db_to_cluster", env=env)
    assert moved.returncode == 1, moved.stdout + moved.stderr
    assert "error: cluster 'dp_cluster': the server refuses ON CLUSTER DDL (Code 392" in moved.stderr, moved.stderr
    assert _framework_tables(local_cluster, 0, database) == tables
    assert local_cluster.rows(0, f"SELECT pipeline, status, rows_loaded FROM {database}._dp_runs FINAL") == [
        ("ids", "success", 10)]
    # A second node with framework tables of its own (a second history) is named, and nothing is touched.
    local_cluster.client(1).command(f"CREATE TABLE {database}._dp_runs (run_id String) ENGINE = MergeTree "
                                    "ORDER BY run_id")
    other = run_cli("db_to_cluster", env=env)
    port = local_cluster.tcp_ports[1]
    assert other.returncode == 1 and ("has framework tables of its own (_dp_runs: another history)") in other.stderr
    assert f":{port} of cluster 'dp_cluster'" in other.stderr, other.stderr
    assert _framework_tables(local_cluster, 0, database) == tables


def test_db_to_cluster_copies_every_row_of_the_history(local_cluster, env, monkeypatch) -> None:
    """The copy step of db_to_cluster for real, into new tables (in the single-server layout here: these
    nodes cannot write replicated ones): every row of every framework table, the old tables gone."""
    from core.config import load_settings
    from core.exceptions import StoreError
    from core.framework_layout import FrameworkLayout
    from core.store import Store
    from ops.cluster_tables import SINGLE_SUFFIX, framework_statements, move_tables, move_to_cluster

    single = {k: v for k, v in env.items() if k != "CLICKHOUSE_CLUSTER"}
    for day in ("2026-03-10", "2026-03-11"):
        assert run_cli("cron_run", "ids", "--date", day, env=single).returncode == 0
    for key, value in single.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("CLICKHOUSE_CLUSTER", raising=False)
    store = Store(load_settings(), linger=0)
    try:
        with pytest.raises(StoreError, match="set CLICKHOUSE_CLUSTER"):  # nothing to move to
            move_to_cluster(store)
        statements = framework_statements(store)
        present = sorted(name for name in statements if store.table_exists(name))
        snapshot = {name: sorted(store.query_rows(f"SELECT * FROM {store.table(name)}")) for name in present}
        assert len(snapshot["_dp_runs"]) >= 4 and len(snapshot["_dp_coverage"]) == 2
        moved = move_tables(store, FrameworkLayout(), {name: statements[name] for name in present})
        assert dict(moved) == {name: len(rows) for name, rows in snapshot.items()}
        for name, rows in snapshot.items():
            assert sorted(store.query_rows(f"SELECT * FROM {store.table(name)}")) == rows, name
        assert store.adapter.tables("_dp_", SINGLE_SUFFIX) == []
    finally:
        store.close()
    again = run_cli("runs", "ids", env=single)
    assert again.returncode == 0 and again.stdout.count("success") == 2, again.stdout


def test_run_private_tables_of_a_replicated_table_are_plain_and_no_target_is_made(local_cluster, env,
                                                                                 monkeypatch) -> None:
    """Staging made ``AS`` a replicated table would take its replication path: Code 253
    REPLICA_ALREADY_EXISTS (the quarantine's staging); and on a cluster the loader never creates a
    target table, a migration must."""
    from datetime import UTC, datetime

    import pyarrow as pa

    from core.config import load_settings
    from core.exceptions import LoadError
    from core.logging import get_logger
    from core.store import Store
    from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader
    from record.quarantine import RunQuarantine
    from record.tables import QUARANTINE_TABLE, history_ddl
    from runner.runner import new_context

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    database = env["CLICKHOUSE_DATABASE"]
    store = Store(load_settings(), linger=0)
    try:
        local_cluster.on_every_node(f"CREATE DATABASE IF NOT EXISTS {database}")
        # _dp_quarantine as the cluster layout makes it, on this node only (these nodes refuse ON CLUSTER).
        create = next(s for s in history_ddl(store, 30) if QUARANTINE_TABLE in s)
        store.command(create.replace(" ON CLUSTER `dp_cluster`", ""))
        start = datetime(2026, 3, 10, tzinfo=UTC)
        quarantine = RunQuarantine(store, "ids", "run-1", start, start)
        quarantine.add([{"source": "s", "raw": "x", "error": "bad"}])
        assert local_cluster.rows(0, f"SELECT engine, total_rows FROM system.tables WHERE database = "
                                       f"'{database}' AND name = '{quarantine.staging}'") == [("MergeTree", 1)]
        quarantine.discard()
        loader = create_clickhouse_loader("events", time_column="ts")
        context = new_context(store, "run-2", "ids", start, start, logger=get_logger("job.ids"))
        loader.begin(context)
        batch = pa.table({"ts": pa.array([start], pa.timestamp("ms", tz="UTC")), "id": pa.array([1], pa.uint64())})
        with pytest.raises(LoadError) as err:
            loader.write(batch, context)
        assert str(err.value).startswith(
            f"the target table {database}.events does not exist: on a cluster (CLICKHOUSE_CLUSTER=dp_cluster) the "
            f"loader does not create it; create it in a migration in ")
        assert "_dp_stage" not in str(_framework_tables(local_cluster, 0, database))
    finally:
        store.close()


def test_check_fails_for_a_node_that_does_not_answer(local_cluster, env) -> None:
    """Node 2 stopped: check names it and exits 1 (the healthy check is in test_cluster.py). Last in this
    module: it restarts the node of the session's cluster on the same ports."""
    from server_process import start_server

    node = local_cluster.nodes[1]
    http_port, tcp_port = node.port, local_cluster.tcp_ports[1]
    node.stop()
    try:
        down = run_cli("check", "--quiet", env=env)
        assert down.returncode == 1, down.stdout + down.stderr
        assert (f"FAIL topology: node 127.0.0.1:{tcp_port} (shard 2, replica 1) of cluster 'dp_cluster' "
                "does not answer") in down.stdout, down.stdout
    finally:
        local_cluster.nodes[1] = start_server(node.data_dir, port=http_port, tcp_port=tcp_port,
                                              extra_env={"CLICKHOUSE_PASSWORD": local_cluster.password})
    assert local_cluster.rows(0, f"SELECT count() FROM clusterAllReplicas('{local_cluster.name}', system.one)") == [
        (2,)]
