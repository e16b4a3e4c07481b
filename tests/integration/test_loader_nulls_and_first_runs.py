"""No silent wrong data in the ClickHouse loader: NULLs, failed first runs, partition alignment.

These go through the normal Store and the real components only (no engine-specific calls), so
they run unchanged against a ClickHouse server when the test session is pointed at one.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.exceptions import LoadError
from core.store import Store
from pipelines.interfaces import Extractor
from pipelines.pipeline_factory import create_el_pipeline
from pipelines.tools.extractors.file_extractor import create_file_extractor
from pipelines.tools.loaders.clickhouse_layout import REBUILD_WARN_ROWS, read_layout
from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader

DAY = datetime(2026, 3, 10, tzinfo=UTC)


class Fixed(Extractor):
    interval_aware = True

    def __init__(self, *batches: pa.Table) -> None:
        super().__init__("fixed")
        self.batches = batches

    def extract(self, context):
        yield from self.batches


def run(make_context, loader, *batches: pa.Table, start: datetime = DAY, run_id: str = "run-1") -> None:
    context = make_context(start=start, end=start + timedelta(days=1), run_id=run_id)
    create_el_pipeline(Fixed(*batches), loader, "t").run(context)


def at(hours: list[int], **columns) -> pa.Table:
    ts = pa.array([DAY + timedelta(hours=h) for h in hours], pa.timestamp("us", tz="UTC"))
    return pa.table({"ts": ts, **columns})


def column_types(store: Store, table: str) -> dict[str, str]:
    return dict(store.query_rows(f"SELECT name, type FROM system.columns WHERE table = '{table}' "
                                 "AND database = currentDatabase()"))


def tables(store: Store) -> set[str]:
    return {n for (n,) in store.query_rows("SELECT name FROM system.tables WHERE database = currentDatabase()")}


# ---- 1. NULLs ----------------------------------------------------------------------------------

def test_a_null_after_a_first_batch_without_nulls_is_stored_as_null(store: Store, make_context) -> None:
    loader = create_clickhouse_loader("weather", time_column="ts")
    run(make_context, loader, at([0, 1], pressure=[1.5, 2.5], tailnum=["N1", "N2"]),
        at([2, 3], pressure=[None, 4.5], tailnum=[None, "N4"]))
    assert store.query_rows("SELECT pressure, tailnum FROM weather ORDER BY ts") == [
        (1.5, "N1"), (2.5, "N2"), (None, None), (4.5, "N4")]
    types = column_types(store, "weather")
    # Inferred non-key columns are Nullable; the time column (partition and sort key) is not.
    assert types == {"ts": "DateTime64(6, 'UTC')", "pressure": "Nullable(Float64)",
                     "tailnum": "Nullable(String)", "_dp_run_id": "String"}


def test_a_column_the_source_declares_non_null_stays_non_nullable(store: Store, make_context) -> None:
    schema = pa.schema([pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
                        pa.field("id", pa.int64(), nullable=False), pa.field("note", pa.string())])
    data = pa.table({"ts": [DAY], "id": [1], "note": ["x"]}, schema=schema)
    run(make_context, create_clickhouse_loader("declared", time_column="ts"), data)
    assert column_types(store, "declared")["id"] == "Int64"
    assert column_types(store, "declared")["note"] == "Nullable(String)"


def test_a_null_in_a_key_column_fails_naming_column_and_row(store: Store, make_context) -> None:
    loader = create_clickhouse_loader("keyed", time_column="ts", order_by=["carrier", "ts"])
    with pytest.raises(LoadError) as err:
        run(make_context, loader, at([0, 1], carrier=["AA", "UA"]), at([2, 3, 4], carrier=["DL", None, None]))
    assert str(err.value) == (
        "Loader for 'keyed': key column 'carrier' (ORDER BY/PARTITION BY) is NULL in row 4 of the run's data "
        "(2 NULL(s) in that batch); a key column cannot hold NULL: fill or filter it in a transformer")
    assert "keyed" not in tables(store)


def test_a_null_time_column_fails_naming_the_row(store: Store, make_context) -> None:
    data = pa.table({"ts": pa.array([DAY, None], pa.timestamp("us", tz="UTC")), "v": [1, 2]})
    with pytest.raises(LoadError, match=r"key column 'ts' \(ORDER BY/PARTITION BY\) is NULL in row 2 of"):
        run(make_context, create_clickhouse_loader("nullts", time_column="ts"), data)


def _existing_non_nullable(store: Store, table: str = "strict") -> None:
    store.command(f"CREATE TABLE {store.table(table)} (ts DateTime64(6, 'UTC'), pressure Float64, "
                  "_dp_run_id String) ENGINE = MergeTree PARTITION BY toDate(ts) ORDER BY ts")


def test_a_null_for_an_existing_non_nullable_column_fails_streaming(store: Store, make_context) -> None:
    _existing_non_nullable(store)
    loader = create_clickhouse_loader("strict", time_column="ts")
    with pytest.raises(LoadError) as err:
        run(make_context, loader, at([0, 1], pressure=[1.5, 2.5]), at([2, 3], pressure=[None, 4.5]))
    assert str(err.value) == (
        "Loader for 'strict': column 'pressure' is Float64 (not Nullable) but is NULL in row 3 of the run's data; "
        "a NULL is never stored as a default: make the column Nullable (a migration, or the loader's "
        "widen_to_nullable=True) or fill it in a transformer")
    assert store.query_rows("SELECT count() FROM strict") == [(0,)]


def test_a_null_for_an_existing_non_nullable_column_fails_the_push_down(store: Store, make_context,
                                                                        tmp_path) -> None:
    _existing_non_nullable(store)
    pq.write_table(at([0, 1, 2], pressure=[1.5, None, 2.5]), tmp_path / "day.parquet")
    pipeline = create_el_pipeline(create_file_extractor(tmp_path / "day.parquet"),
                                  create_clickhouse_loader("strict", time_column="ts"), "p")
    with pytest.raises(LoadError) as err:
        pipeline.run(make_context(start=DAY, run_id="push-1"))
    # The push-down runs on the embedded engine; a server reads the file through Python batches.
    where = f"{tmp_path / 'day.parquet'}" if store.settings.is_embedded else "the run's data"
    assert str(err.value).startswith(
        f"Loader for 'strict': column 'pressure' is Float64 (not Nullable) but is NULL in row 2 of {where}; "
        "a NULL is never stored as a default")
    assert store.query_rows("SELECT count() FROM strict") == [(0,)]


def test_push_down_tables_take_nullability_from_the_declared_schema(store: Store, make_context, tmp_path) -> None:
    # Day 1's file has no NULLs; day 2's has: the column must not be created non-Nullable from day 1.
    loader = create_clickhouse_loader("pushed", time_column="ts")
    pq.write_table(at([0, 1], pressure=[1.5, 2.5]), tmp_path / "d1.parquet")
    create_el_pipeline(create_file_extractor(tmp_path / "d1.parquet"), loader, "p").run(
        make_context(start=DAY, run_id="d1"))
    day2 = DAY + timedelta(days=1)
    pq.write_table(pa.table({"ts": pa.array([day2, day2 + timedelta(hours=1)], pa.timestamp("us", tz="UTC")),
                             "pressure": [None, 4.5]}), tmp_path / "d2.parquet")
    create_el_pipeline(create_file_extractor(tmp_path / "d2.parquet"), loader, "p").run(
        make_context(start=day2, run_id="d2"))
    assert store.query_rows("SELECT pressure FROM pushed ORDER BY ts") == [(1.5,), (2.5,), (None,), (4.5,)]


def test_widening_to_nullable_only_when_opted_in(store: Store, make_context, caplog) -> None:
    _existing_non_nullable(store)
    caplog.set_level("INFO", logger="dp")
    loader = create_clickhouse_loader("strict", time_column="ts", widen_to_nullable=True)
    run(make_context, loader, at([0, 1], pressure=[1.5, 2.5]), at([2, 3], pressure=[None, 4.5]))
    assert store.query_rows("SELECT pressure FROM strict ORDER BY ts") == [(1.5,), (2.5,), (None,), (4.5,)]
    assert column_types(store, "strict")["pressure"] == "Nullable(Float64)"
    assert "Schema evolution: column pressure of strict widened to Nullable(Float64) (row 3 of the run's data " \
           "is NULL; widen_to_nullable=True)" in caplog.text
    # A key column is never widened.
    with pytest.raises(LoadError, match=r"key column 'ts' \(ORDER BY/PARTITION BY\) is NULL"):
        run(make_context, loader, pa.table({"ts": pa.array([None], pa.timestamp("us", tz="UTC")),
                                            "pressure": [1.0]}), run_id="r2")


# ---- 2. A failed run does not change the destination ------------------------------------------

def test_a_failed_first_run_creates_no_table(store: Store, make_context) -> None:
    loader = create_clickhouse_loader("first", time_column="ts", partition_by="toYYYYMM(ts)")
    with pytest.raises(LoadError, match="outside the run's interval"):
        run(make_context, loader, at([0, 1], v=[1, 2]), at([30], v=[3]))
    assert not {t for t in tables(store) if "first" in t}
    # The corrected pipeline creates the table with its own partition key.
    fixed = create_clickhouse_loader("first", time_column="ts")
    run(make_context, fixed, at([0, 1], v=[1, 2]), run_id="run-2")
    ddl = store.command("SELECT partition_key FROM system.tables WHERE name = 'first' AND database = currentDatabase()")
    assert ddl == "toDate(ts)"


def test_two_first_runs_at_once_both_land(store: Store, make_context) -> None:
    """Run A stages while run B (another interval) creates the table and commits first; A then
    re-stages into B's table under the commit lock."""
    first = create_clickhouse_loader("race", time_column="ts")
    second = create_clickhouse_loader("race", time_column="ts")
    context_a = make_context(start=DAY, run_id="run-a")
    first.begin(context_a)
    first.write(at([0, 1], v=[1, 2]), context_a)
    day2 = DAY + timedelta(days=1)
    b_rows = pa.table({"ts": pa.array([day2], pa.timestamp("us", tz="UTC")), "v": [10], "extra": ["b"]})
    run(make_context, second, b_rows, start=day2, run_id="run-b")
    first.commit(context_a)
    assert store.query_rows("SELECT toDate(ts), count(), sum(v), any(_dp_run_id) FROM race GROUP BY 1 ORDER BY 1") == [
        (DAY.date(), 2, 3, "run-a"), (day2.date(), 1, 10, "run-b")]
    assert not [t for t in tables(store) if t.startswith("_dp_stage_")]


def _rebuild_lines(caplog) -> list[tuple[str, str]]:
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.getMessage().startswith("Rebuild cost")]
    caplog.clear()
    return lines


def test_a_layout_that_makes_every_run_copy_many_rows_is_warned_about_with_its_cost(
        store: Store, make_context, caplog) -> None:
    caplog.set_level("INFO", logger="dp")
    day2 = DAY + timedelta(days=1)
    many = REBUILD_WARN_ROWS
    monthly = create_clickhouse_loader("monthly", time_column="ts", partition_by="toYYYYMM(ts)")
    run(make_context, monthly, pa.table({
        "ts": pa.array([DAY + timedelta(microseconds=n) for n in range(many)], pa.timestamp("us", tz="UTC")),
        "v": list(range(many))}))
    assert _rebuild_lines(caplog) == []  # the first day copied nothing
    run(make_context, monthly, pa.table({"ts": pa.array([day2], pa.timestamp("us", tz="UTC")), "v": [1]}),
        start=day2, run_id="run-2")
    assert _rebuild_lines(caplog) == [(
        "WARNING", "Rebuild cost: partitions of monthly (toYYYYMM(ts)) are coarser than the run's interval "
        f"[{day2.isoformat()}, {(day2 + timedelta(days=1)).isoformat()}); to replace its interval, this run rebuilt "
        f"1 partition(s), copying {many:,} rows of other intervals besides its own 1 (every run pays this); "
        "partition by the interval (e.g. toDate(ts) for daily runs) to avoid it")]


def test_a_cheap_rebuild_is_said_at_info_and_aligned_partitions_say_nothing(store: Store, make_context,
                                                                             caplog) -> None:
    caplog.set_level("INFO", logger="dp")
    day2 = DAY + timedelta(days=1)
    small = create_clickhouse_loader("small", time_column="ts", partition_by="toYYYYMM(ts)")
    other = create_clickhouse_loader("by_v", time_column="ts", partition_by="v")
    daily = create_clickhouse_loader("daily", time_column="ts")
    for loader in (small, other, daily):
        run(make_context, loader, at([0], v=[1]))
        run(make_context, loader, pa.table({"ts": pa.array([day2], pa.timestamp("us", tz="UTC")), "v": [1]}),
            start=day2, run_id="run-2")
    lines = _rebuild_lines(caplog)
    assert [level for level, _ in lines] == ["INFO", "INFO"]
    assert lines[0][1].startswith("Rebuild cost: partitions of small (toYYYYMM(ts)) are coarser than the run's "
                                  "interval")
    assert lines[0][1].endswith("copying 1 rows of other intervals besides its own 1 (cheap at this size: "
                                f"a warning comes from {REBUILD_WARN_ROWS:,} copied rows)")
    assert lines[1][1].startswith("Rebuild cost: partitions of by_v (v) are not derived from the time column ts;")


@pytest.mark.parametrize("kind", ["DEFAULT", "MATERIALIZED"])
def test_a_partition_column_computed_from_the_time_column_is_derived_from_it(store: Store, make_context,
                                                                            kind: str) -> None:
    store.command(f"CREATE TABLE {store.table('computed')} (ts DateTime64(3, 'UTC'), d Date {kind} toDate(ts), "
                  "v Int64, _dp_run_id String) ENGINE = MergeTree PARTITION BY d ORDER BY (d, ts)")
    context = make_context(start=DAY)
    for supplied, derived in ((set(), True), ({"d"}, kind == "MATERIALIZED")):
        layout = read_layout(store, "computed", "ts", supplied)
        # A DEFAULT the data supplies holds whatever the data says: not derived then.
        assert (layout.derived is not None) is derived
        assert layout.follows(store, context.start, context.end) is derived
    assert read_layout(store, "computed", "ts", set()).derived == {"d": "toDate(ts)"}
    monthly = read_layout(store, "computed", "ts", set())
    assert monthly.partitions_at(store, [DAY, DAY + timedelta(days=1)]) == ["2026-03-10", "2026-03-11"]


def test_widening_on_the_push_down(store: Store, make_context, tmp_path) -> None:
    _existing_non_nullable(store)
    pq.write_table(at([0, 1, 2], pressure=[1.5, None, 2.5]), tmp_path / "day.parquet")
    loader = create_clickhouse_loader("strict", time_column="ts", widen_to_nullable=True)
    create_el_pipeline(create_file_extractor(tmp_path / "day.parquet"), loader, "p").run(
        make_context(start=DAY, run_id="push-1"))
    assert store.query_rows("SELECT pressure FROM strict ORDER BY ts") == [(1.5,), (None,), (2.5,)]
    assert column_types(store, "strict")["pressure"] == "Nullable(Float64)"


def test_re_staging_into_a_table_that_cannot_take_the_nulls_fails(store: Store, make_context) -> None:
    """Run A stages a NULL (its own new table would be Nullable); run B creates the table with a
    column its source declares non-null. A's commit must fail, not store a default."""
    first = create_clickhouse_loader("race", time_column="ts")
    context_a = make_context(start=DAY, run_id="run-a")
    first.begin(context_a)
    first.write(at([0, 1], v=[1, None]), context_a)
    day2 = DAY + timedelta(days=1)
    schema = pa.schema([pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
                        pa.field("v", pa.int64(), nullable=False)])
    run(make_context, create_clickhouse_loader("race", time_column="ts"),
        pa.table({"ts": [day2], "v": [10]}, schema=schema), start=day2, run_id="run-b")
    with pytest.raises(LoadError, match=r"column 'v' is Int64 \(not Nullable\) but is NULL in the run's data "
                                        r"\(re-staged into race"):
        first.commit(context_a)
    assert store.query_rows("SELECT toDate(ts), v FROM race") == [(day2.date(), 10)]
    assert not [t for t in tables(store) if t.startswith("_dp_stage_")]
