"""The store's ClickHouse adapter (core.clickhouse_adapter): catalogue look-ups and publishing DDL,
on the real store of either run."""

from __future__ import annotations

from core.store import Store


def test_the_adapter_reads_the_catalogue_and_publishes_partitions(store: Store) -> None:
    adapter = store.adapter
    store.command("CREATE TABLE t (d Date, v Int32, w Nullable(String) DEFAULT 'x') ENGINE = MergeTree "
                  "PARTITION BY d ORDER BY d")
    store.command("INSERT INTO t (d, v) VALUES ('2026-01-01', 1), ('2026-01-02', 2), ('2026-01-03', 3)")
    adapter.stage_like("_dp_stage_t_r1", "t")
    store.command("INSERT INTO _dp_stage_t_r1 (d, v) VALUES ('2026-01-01', 10), ('2026-01-04', 40)")
    store.command("CREATE MATERIALIZED VIEW mv ENGINE = MergeTree ORDER BY d AS SELECT d FROM t")

    assert adapter.topology == "single"
    assert adapter.columns("t") == {"d": "Date", "v": "Int32", "w": "Nullable(String)"}
    assert adapter.columns("missing") == {}
    assert adapter.column_defaults("t")["w"] == ("Nullable(String)", "DEFAULT", "'x'")
    assert adapter.partition_key("t") == "d" and adapter.partition_key("missing") == ""
    assert adapter.engine("t") == "MergeTree" and adapter.engine("missing") is None
    assert {"_dp_stage_t_r1", "mv", "t"} <= set(adapter.tables())  # and the view's inner table
    assert adapter.tables("_dp_stage_", "_r1") == ["_dp_stage_t_r1"] and adapter.tables("_dp_stage_", "_r2") == []
    assert adapter.tables(engine="MaterializedView") == ["mv"]
    assert adapter.dependents(["t", "missing"]) == {"t": ["mv"]}
    assert set(adapter.create_statements(["t", "missing"])) == {"t"}
    assert adapter.partitions("_dp_stage_t_r1") == ["20260101", "20260104"]
    assert adapter.partitions("t", "v >= {n:Int32}", {"n": 2}) == ["20260102", "20260103"]
    assert adapter.partition_rows("t", "20260101") == 1

    # Replaced and dropped partitions in one ALTER; others untouched.
    adapter.replace_partitions("t", "_dp_stage_t_r1", ["20260101", "20260104"], emptied=["20260103"])
    assert store.query_rows("SELECT toString(d), v FROM t ORDER BY d") == [
        ("2026-01-01", 10), ("2026-01-02", 2), ("2026-01-04", 40)]
    adapter.replace_partitions("t", "_dp_stage_t_r1", [])  # nothing to do: no statement at all
    adapter.attach_partition("t", "_dp_stage_t_r1", "20260104")
    assert adapter.partition_rows("t", "20260104") == 2

    adapter.exchange("t", "_dp_stage_t_r1")
    assert store.query_rows("SELECT count() FROM t") == [(2,)]
    # replace without EXCHANGE (a replicated or Distributed target): every partition replaced or dropped.
    assert adapter.sharding("t") is None and adapter.distributed_over("t") == [] and adapter.swappable("t")
    store.settings.clickhouse_cluster = "c"  # on a cluster: never EXCHANGE
    try:
        assert not adapter.swappable("t")
    finally:
        store.settings.clickhouse_cluster = None
    adapter.stage_like("_dp_stage_t_r2", "t")
    store.command("INSERT INTO _dp_stage_t_r2 (d, v) VALUES ('2026-01-04', 41), ('2026-01-05', 50)")
    assert adapter.replace_all_sql("t", "_dp_stage_t_r2").count("DROP PARTITION") == 1
    adapter.replace_all("t", "_dp_stage_t_r2")
    assert store.query_rows("SELECT toString(d), v FROM t ORDER BY d") == [("2026-01-04", 41), ("2026-01-05", 50)]
    adapter.drop("_dp_stage_t_r2")
    adapter.rename("_dp_stage_t_r1", "_dp_stage_kept_t_r1")
    adapter.drop("_dp_stage_kept_t_r1")
    adapter.drop("_dp_stage_kept_t_r1")  # gone already: no error
    assert not adapter.table_exists("_dp_stage_kept_t_r1")
