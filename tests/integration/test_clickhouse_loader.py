"""ClickHouse loader modes on the embedded engine: idempotency, atomicity, schema handling."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from core.exceptions import LoadError
from core.store import Store
from pipelines.interfaces import Extractor
from pipelines.pipeline_factory import create_el_pipeline, create_etl_pipeline
from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader

DAY = datetime(2026, 3, 10, tzinfo=UTC)


def hourly(start: datetime, hours: int, value: int = 1, step: timedelta = timedelta(hours=1)) -> pa.Table:
    ts = [start + step * i for i in range(hours)]
    return pa.table({"ts": pa.array(ts, pa.timestamp("ms", tz="UTC")), "v": [value] * hours,
                     "name": [f"r{i}" for i in range(hours)]})


class Fixed(Extractor):
    """Yields the given batches, then optionally fails (to test that nothing is half-written)."""

    interval_aware = True

    def __init__(self, *batches: pa.Table, fail: bool = False) -> None:
        super().__init__("fixed")
        self.batches, self.fail = batches, fail

    def extract(self, context):
        yield from self.batches
        if self.fail:
            raise RuntimeError("source died after the first batch")


def run(make_context, loader, *batches: pa.Table, start: datetime = DAY, end: datetime | None = None,
        fail: bool = False, run_id: str = "run-1", allow_empty: bool = False) -> None:
    context = make_context(start=start, end=end or start + timedelta(days=1), run_id=run_id)
    context.allow_empty = allow_empty
    create_el_pipeline(Fixed(*batches, fail=fail), loader, "t").run(context)


def staging_tables(store: Store) -> list[str]:
    return [n for (n,) in store.query_rows("SELECT name FROM system.tables WHERE database = currentDatabase() "
                                           "AND startsWith(name, '_dp_stage_')")]


def test_interval_mode_replaces_exactly_the_runs_slice(store: Store, make_context) -> None:
    loader = create_clickhouse_loader("events", time_column="ts")
    run(make_context, loader, hourly(DAY, 24, value=1), run_id="a")
    run(make_context, loader, hourly(DAY + timedelta(days=1), 24, value=1), start=DAY + timedelta(days=1), run_id="b")
    # Re-running day 1 with different data replaces day 1 only, whatever ran before.
    run(make_context, loader, hourly(DAY, 12, value=5), hourly(DAY + timedelta(hours=12), 6, value=5), run_id="c")
    run(make_context, loader, hourly(DAY, 12, value=5), hourly(DAY + timedelta(hours=12), 6, value=5), run_id="d")
    assert store.query_rows("SELECT toDate(ts), count(), sum(v), uniqExact(_dp_run_id), any(_dp_run_id) "
                            "FROM events GROUP BY 1 ORDER BY 1") == [
        (DAY.date(), 18, 90, 1, "d"), ((DAY + timedelta(days=1)).date(), 24, 24, 1, "b")]
    assert staging_tables(store) == []


def test_an_empty_interval_empties_its_slice_on_purpose(store: Store, make_context) -> None:
    loader = create_clickhouse_loader("events", time_column="ts")
    run(make_context, loader, hourly(DAY, 24))
    run(make_context, loader, hourly(DAY + timedelta(days=1), 24), start=DAY + timedelta(days=1))
    with pytest.raises(LoadError, match="source returned 0 rows for 2026-03-10, which holds 24 rows"):
        run(make_context, loader)  # a source outage looks like this: refused unless allowed
    run(make_context, loader, allow_empty=True)  # the source really has nothing for day 1 now
    assert store.query_rows("SELECT toDate(ts), count() FROM events GROUP BY 1") == [
        ((DAY + timedelta(days=1)).date(), 24)]


def test_hourly_runs_in_daily_partitions_keep_the_other_hours(store: Store, make_context) -> None:
    loader = create_clickhouse_loader("events", time_column="ts")
    minute = timedelta(minutes=1)
    for hour in range(3):
        start = DAY + timedelta(hours=hour)
        run(make_context, loader, hourly(start, 60, value=hour, step=minute), start=start,
            end=start + timedelta(hours=1))
    start = DAY + timedelta(hours=1)
    run(make_context, loader, hourly(start, 30, value=7, step=minute), start=start, end=start + timedelta(hours=1))
    assert store.query_rows("SELECT toHour(ts), count(), sum(v) FROM events GROUP BY 1 ORDER BY 1") == [
        (0, 60, 0), (1, 30, 210), (2, 60, 120)]


def test_rows_outside_the_interval_fail_and_change_nothing(store: Store, make_context) -> None:
    loader = create_clickhouse_loader("events", time_column="ts")
    run(make_context, loader, hourly(DAY, 24))
    with pytest.raises(LoadError) as err:
        run(make_context, loader, hourly(DAY, 2), hourly(DAY + timedelta(hours=23), 2))
    assert str(err.value) == (
        "Loader for 'events': 1 row(s) have ts outside the run's interval [2026-03-10T00:00:00+00:00, "
        "2026-03-11T00:00:00+00:00) (first: 2026-03-11 00:00:00+00:00); an interval run may only write its "
        "own slice: filter the source by {start}/{end}")
    assert store.query_rows("SELECT count() FROM events") == [(24,)]
    assert staging_tables(store) == []


def test_a_failed_run_leaves_the_target_untouched_in_every_mode(store: Store, make_context) -> None:
    for mode, extra in (("interval", {"time_column": "ts"}), ("append", {}), ("replace", {}),
                        ("merge", {"primary_key": "name"})):
        table = f"t_{mode}"
        loader = create_clickhouse_loader(table, mode, **extra)
        run(make_context, loader, hourly(DAY, 10))
        with pytest.raises(RuntimeError, match="source died"):
            run(make_context, loader, hourly(DAY, 5, value=9), fail=True, run_id="bad")
        assert store.query_rows(f"SELECT count(), sum(v) FROM {table}") == [(10, 10)], mode
    assert staging_tables(store) == []


def test_append_adds_and_replace_swaps(store: Store, make_context) -> None:
    append = create_clickhouse_loader("log_lines")  # no time column: append is the default
    assert append.mode == "append"
    run(make_context, append, hourly(DAY, 3), hourly(DAY, 3), run_id="r1")  # identical batches both land
    run(make_context, append, hourly(DAY, 4), run_id="r2")
    assert store.query_rows("SELECT _dp_run_id, count() FROM log_lines GROUP BY 1 ORDER BY 1") == [("r1", 6), ("r2", 4)]

    replace = create_clickhouse_loader("snapshot", "replace")
    run(make_context, replace, hourly(DAY, 5), run_id="s1")
    run(make_context, replace, hourly(DAY, 2, value=3), run_id="s2")
    assert store.query_rows("SELECT count(), sum(v), any(_dp_run_id) FROM snapshot") == [(2, 6, "s2")]


def test_merge_keeps_the_newest_version_per_key(store: Store, make_context) -> None:
    loader = create_clickhouse_loader("customers", "merge", primary_key="id", version_column="updated")
    first = pa.table({"id": [1, 2], "email": ["a@x", "b@x"], "updated": [1, 1]})
    second = pa.table({"id": [2, 3], "email": ["b@new", "c@x"], "updated": [2, 1]})
    run(make_context, loader, first, run_id="m1")
    run(make_context, loader, second, run_id="m2")
    assert store.query_rows("SELECT id, email FROM customers FINAL ORDER BY id") == [
        (1, "a@x"), (2, "b@new"), (3, "c@x")]
    assert "ReplacingMergeTree(updated)" in store.command(
        "SELECT engine_full FROM system.tables WHERE name = 'customers' AND database = currentDatabase()")


def test_schema_evolution_adds_columns_and_refuses_type_conflicts(store: Store, make_context, caplog) -> None:
    loader = create_clickhouse_loader("events", time_column="ts")
    run(make_context, loader, hourly(DAY, 2))
    wider = hourly(DAY, 2).append_column("country", pa.array(["DE", None]))
    run(make_context, loader, wider, run_id="r2")
    assert store.query_rows("SELECT country FROM events ORDER BY ts") == [("DE",), (None,)]
    assert "Schema evolution: added column country Nullable(String) to events" in caplog.text
    conflicting = hourly(DAY, 1).set_column(1, "v", pa.array(["not a number"]))
    with pytest.raises(LoadError) as err:
        run(make_context, loader, conflicting, run_id="r3")
    assert str(err.value) == ("Column 'v' of events is Nullable(Int64) but the data has string (String); "
                              "cast it in a transformer or migrate the column")
    assert store.query_rows("SELECT count() FROM events") == [(2,)]


def test_created_tables_have_partitions_order_and_nullability(store: Store, make_context) -> None:
    data = pa.table({
        "ts": pa.array([DAY], pa.timestamp("us", tz="UTC")), "d": pa.array([DAY.date()], pa.date32()),
        "i": pa.array([1], pa.uint16()), "f": [1.5], "b": [True], "s": pa.array([None], pa.string()),
        "tags": pa.array([["a", "b"]]),
    })
    run(make_context, create_clickhouse_loader("typed", time_column="ts"), data)
    columns = dict(store.query_rows("SELECT name, type FROM system.columns WHERE table = 'typed' "
                                    "AND database = currentDatabase()"))
    # Inferred columns are Nullable (arrays cannot be); the time column is a key, so it is not.
    assert columns == {"ts": "DateTime64(6, 'UTC')", "d": "Nullable(Date32)", "i": "Nullable(UInt16)",
                       "f": "Nullable(Float64)", "b": "Nullable(Bool)", "s": "Nullable(String)",
                       "tags": "Array(String)", "_dp_run_id": "String"}
    ddl = store.command(
        "SELECT create_table_query FROM system.tables WHERE name = 'typed' AND database = currentDatabase()")
    assert ("PARTITION BY toDate(ts)" in ddl and "ORDER BY (ts)" in ddl
            and "non_replicated_deduplication_window = 1000" in ddl)


def test_bad_loader_configuration_is_refused_at_construction() -> None:
    with pytest.raises(LoadError, match="mode 'interval' needs time_column"):
        create_clickhouse_loader("t", "interval")
    with pytest.raises(LoadError, match="mode must be one of interval, append, replace, merge, got 'upsert'"):
        create_clickhouse_loader("t", "upsert")  # type: ignore[arg-type]
    with pytest.raises(LoadError, match="mode 'merge' needs primary_key"):
        create_clickhouse_loader("t", "merge")
    with pytest.raises(LoadError, match="table name must be a plain identifier"):
        create_clickhouse_loader("bad name; DROP")


def test_interval_check_edges_and_a_run_id_column_in_the_data(store: Store, make_context) -> None:
    loader = create_clickhouse_loader("events", time_column="ts")
    last = DAY + timedelta(days=1) - timedelta(microseconds=1)
    edges = pa.table({"ts": pa.array([DAY, last], pa.timestamp("us", tz="UTC")), "v": [1, 2], "name": ["a", "b"],
                      "_dp_run_id": ["not", "mine"]})
    run(make_context, loader, edges, run_id="edge")
    # The run id is the run's, whatever the data had in that column.
    assert store.query_rows("SELECT v, _dp_run_id FROM events ORDER BY v") == [(1, "edge"), (2, "edge")]
    batch = pa.table({"ts": pa.array([DAY, DAY + timedelta(days=1)], pa.timestamp("us", tz="UTC")), "v": [3, 4],
                      "name": ["c", "d"]})
    with pytest.raises(LoadError, match=r"1 row\(s\) have ts outside the run's interval") as err:
        run(make_context, loader, batch, run_id="bad")
    assert "(first: 2026-03-11 00:00:00+00:00)" in str(err.value)
    batch = pa.table({"ts": pa.array([DAY, None], pa.timestamp("us", tz="UTC")), "v": [3, 4], "name": ["c", "d"]})
    with pytest.raises(LoadError, match=r"key column 'ts' \(ORDER BY/PARTITION BY\) is NULL in row 2"):
        run(make_context, loader, batch, run_id="bad")
    assert store.query_rows("SELECT count() FROM events") == [(2,)]


@pytest.mark.embedded_only("push-down of local files needs the engine on this machine (off for a server)")
def test_parquet_files_are_read_by_clickhouse_itself(store: Store, make_context, tmp_path, caplog) -> None:
    import pyarrow.parquet as pq

    from pipelines.tools.extractors.file_extractor import create_file_extractor
    from pipelines.tools.transformers.transformers import create_lambda_transformer

    caplog.set_level("INFO", logger="dp")
    day_rows = hourly(DAY, 24, value=2).append_column("note", pa.array([None] * 23 + ["x"]))
    pq.write_table(day_rows, tmp_path / "day.parquet")
    loader = create_clickhouse_loader("pushed", time_column="ts")
    context = make_context(start=DAY, run_id="push-1")
    stats = create_el_pipeline(create_file_extractor(tmp_path / "day.parquet"), loader, "p").run(context)
    assert (stats.batches, stats.rows_extracted, stats.rows_loaded) == (1, 24, 24)
    assert "ClickHouse read day.parquet itself: 24 rows" in caplog.text
    assert store.query_rows("SELECT count(), sum(v), countIf(note IS NULL), any(_dp_run_id) FROM pushed") == \
        [(24, 48, 23, "push-1")]
    columns = dict(store.query_rows("SELECT name, type FROM system.columns WHERE table = 'pushed' "
                                    "AND database = currentDatabase()"))
    assert columns["note"] == "Nullable(String)" and columns["v"] == "Nullable(Int64)"

    # Rows outside the interval fail exactly as on the streaming path; the table is unchanged.
    pq.write_table(hourly(DAY + timedelta(hours=23), 3), tmp_path / "late.parquet")
    with pytest.raises(LoadError, match=r"2 row\(s\) have ts outside the run's interval"):
        create_el_pipeline(create_file_extractor(tmp_path / "late.parquet"), loader, "p").run(
            make_context(start=DAY, run_id="push-2"))
    assert store.query_rows("SELECT count() FROM pushed") == [(24,)]
    assert staging_tables(store) == []

    # With a transformer the rows go through Python, batch by batch.
    caplog.clear()
    double = create_lambda_transformer(lambda df: df.assign(v=df["v"] * 2), "double")
    create_etl_pipeline(create_file_extractor(tmp_path / "day.parquet"), double, loader, "p").run(
        make_context(start=DAY, run_id="push-3"))
    assert "itself" not in caplog.text
    assert store.query_rows("SELECT count(), sum(v) FROM pushed") == [(24, 96)]
