"""The framework tables' DDL per topology (core.framework_layout, issue 28) as generated SQL, each
statement parsed by ClickHouse itself: ``EXPLAIN AST`` for the engine and the replication path,
``formatQuerySingleLine`` for the ``ON CLUSTER`` clause (the AST dump does not show it).

The local cluster's nodes cannot run ``ON CLUSTER`` nor write replicated tables, so the replicated
layout is tested here as SQL; what they can run is in tests/integration/test_cluster_ddl.py."""

from __future__ import annotations

import re

import pytest

from core.exceptions import MigrationError, StoreError
from core.framework_layout import FrameworkLayout, framework_layout
from core.migrations import placeholder_values, render_sql
from core.sql_literals import sql_literal
from core.store import Store

pytestmark = pytest.mark.same_in_both_runs("parses generated SQL: the same ClickHouse parser in either run")

TABLES = {"_dp_runs": "ReplacingMergeTree", "_dp_state": "ReplacingMergeTree", "_dp_quarantine": "MergeTree",
          "_dp_coverage": "ReplacingMergeTree", "_dp_waivers": "MergeTree", "_dp_run_totals": "ReplacingMergeTree",
          "_dp_checks": "MergeTree", "_dp_alerts": "ReplacingMergeTree", "_dp_alert_log": "MergeTree",
          "_dp_migrations": "ReplacingMergeTree", "_dp_locks": "ReplacingMergeTree", "_dp_attached": "MergeTree"}


def _statements(settings, **update) -> dict[str, str]:
    from ops.cluster_tables import framework_statements

    store = Store(settings.model_copy(update=update), linger=0)  # never connects: only renders
    try:
        return framework_statements(store)
    finally:
        store.close()


def _parse(store: Store, statement: str) -> tuple[str, str]:
    """ClickHouse's AST dump and its own single-line formatting of ``statement``."""
    ast = "\n".join(row[0] for row in store.query_rows(f"EXPLAIN AST {statement}"))
    formatted = store.query_rows(f"SELECT formatQuerySingleLine({sql_literal(statement)})")[0][0]
    return ast, formatted


def test_every_framework_table_per_topology_parsed_by_clickhouse(settings, store) -> None:
    topologies = {
        "embedded": _statements(settings, clickhouse_host=None, clickhouse_url=None, clickhouse_cluster=None),
        # embedded with CLICKHOUSE_CLUSTER set: there is no cluster to replicate to
        "embedded+cluster": _statements(settings, clickhouse_host=None, clickhouse_url=None,
                                        clickhouse_cluster="prod"),
        # a single server, and Cloud / a Replicated database (same settings: DDL replicates itself there)
        "server": _statements(settings, clickhouse_host="ch.example", clickhouse_cluster=None),
        "cluster": _statements(settings, clickhouse_host="ch.example", clickhouse_cluster="prod"),
    }
    for name, statements in topologies.items():
        assert set(statements) == set(TABLES), name
        for table, statement in statements.items():
            ast, formatted = _parse(store, statement)
            engine = TABLES[table]
            if name != "cluster":
                assert re.search(rf"Function {engine}\b", ast), (name, table, ast)
                assert "Replicated" not in ast and "ON CLUSTER" not in formatted, (name, table)
                continue
            assert f"Function Replicated{engine} (children 1)" in ast, (table, ast)
            assert f"Literal '/clickhouse/data_processor/{{database}}/{table}'" in ast, (table, ast)
            assert "Literal '{replica}'" in ast and "{shard}" not in statement, table
            assert f"CREATE TABLE IF NOT EXISTS `{settings.database}`.{table} ON CLUSTER prod (" in formatted \
                or f"CREATE TABLE IF NOT EXISTS {settings.database}.{table} ON CLUSTER prod (" in formatted, formatted
    # Only the cluster layout differs: a single server's DDL is today's.
    assert topologies["embedded"] == topologies["server"] == topologies["embedded+cluster"]


def test_layout_recognises_replicated_and_plain_tables_and_names_the_refusal(settings) -> None:
    plain, cluster = FrameworkLayout(), FrameworkLayout("prod")
    assert framework_layout(settings.model_copy(update={"clickhouse_host": "h", "clickhouse_cluster": "prod"})) \
        == cluster
    assert framework_layout(settings.model_copy(update={"clickhouse_host": "h", "clickhouse_cluster": None})) == plain
    made = ("CREATE TABLE db._dp_runs (`x` UInt8) ENGINE = ReplicatedReplacingMergeTree("
            "'/clickhouse/data_processor/{database}/_dp_runs', '{replica}', version) ORDER BY x")
    cloud = "CREATE TABLE db._dp_runs (`x` UInt8) ENGINE = SharedReplacingMergeTree('/x', '{replica}') ORDER BY x"
    single = "CREATE TABLE db._dp_runs (`x` UInt8) ENGINE = ReplacingMergeTree(version) ORDER BY x"
    assert cluster.fits(made) and cluster.fits(cloud) and not cluster.fits(single)
    assert plain.fits(single) and plain.fits(made)
    refused = cluster.refusal(StoreError("Code: 392. DB::Exception: Replicated DDL queries are disabled"))
    assert refused is not None and str(refused).startswith(
        "cluster 'prod': the server refuses ON CLUSTER DDL (Code 392, distributed DDL disabled)")
    assert cluster.refusal(StoreError("Code: 60. unknown table")) is None
    assert plain.refusal(StoreError("Code: 392.")) is None


def test_cluster_name_placeholder_is_a_string_literal_and_needs_a_cluster(store) -> None:
    text = ("CREATE TABLE IF NOT EXISTS {database}.events{cluster} AS {database}.events_local "
            "ENGINE = Distributed({cluster_name}, {database}, events_local, cityHash64(id))")
    [statement] = render_sql(text, placeholder_values("dw", "prod"), "m.sql")
    assert statement.sql == ("CREATE TABLE IF NOT EXISTS dw.events ON CLUSTER prod AS dw.events_local "
                             "ENGINE = Distributed('prod', dw, events_local, cityHash64(id))")
    assert "Function Distributed" in "\n".join(row[0] for row in store.query_rows(f"EXPLAIN AST {statement.sql}"))
    with pytest.raises(MigrationError) as err:
        render_sql("SELECT 1;\nSELECT * FROM clusterAllReplicas({cluster_name}, system.one)",
                   placeholder_values("dw", None), "migrations/sql/0003_d.sql")
    assert str(err.value) == ("migrations/sql/0003_d.sql line 2: {cluster_name} is the name of the cluster "
                              "CLICKHOUSE_CLUSTER names: set it (a single server has no cluster)")
