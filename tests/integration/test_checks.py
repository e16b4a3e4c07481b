"""Data checks on the staged rows, in-process on the real engine: built-ins, modes, custom checks.

(End-to-end behaviour through the CLI, ``runs`` and ``checks`` is in test_checks_cli.py.)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from audit import Check, Outcome, accepted_values, data_check, freshness, in_range, not_null, row_count, sql, unique
from audit.results import read_results
from conftest import Rows
from core.exceptions import CheckDefinitionError, CheckFailed, DataProcessorError
from core.store import Store
from pipelines.pipeline_factory import create_el_pipeline
from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader

DAY = datetime(2026, 3, 10, tzinfo=UTC)


def orders(ids: list, *, day: datetime = DAY, status: list[str] | None = None, amount: list[float] | None = None,
           email: list[str] | None = None, version: list[int] | None = None) -> pa.Table:
    n = len(ids)
    columns = {
        "ts": pa.array([day + timedelta(hours=i % 24) for i in range(n)], pa.timestamp("ms", tz="UTC")),
        "id": pa.array(ids, pa.int64()),
        "status": status or ["ok"] * n,
        "amount": amount or [1.0] * n,
    }
    if email is not None:
        columns["email"] = email
    if version is not None:
        columns["version"] = pa.array(version, pa.int64())
    return pa.table(columns)


def run(make_context, loader, data: pa.Table, checks: list, *, day: datetime = DAY, run_id: str = "r1"):
    context = make_context(start=day, end=day + timedelta(days=1), run_id=run_id)
    context.checks = checks
    create_el_pipeline(Rows(data), loader, "t").run(context)
    return context


def table_rows(store: Store, table: str) -> list[tuple]:
    return store.query_rows(f"SELECT id, status, amount FROM {table} ORDER BY id, status")


def kept_tables(store: Store) -> list[str]:
    return [n for (n,) in store.query_rows("SELECT name FROM system.tables WHERE database = currentDatabase() "
                                           "AND startsWith(name, '_dp_stage_') ORDER BY name")]


def test_every_builtin_passes_on_good_rows_and_records_a_result(store: Store, make_context) -> None:
    loader = create_clickhouse_loader("good", time_column="ts")
    checks = [row_count(min=3, max=3), not_null("id", "status"), unique("id"), accepted_values("status", ["ok"]),
              in_range("amount", min=0, max=10), freshness("ts", "1d"),
              sql("SELECT * FROM {staging} WHERE ts < {start} OR ts >= {end}", name="in_interval"),
              sql("SELECT count() FROM {staging} WHERE toDate(ts) != {start_date}", name="day", returns="count")]
    run(make_context, loader, orders([1, 2, 3]), checks)
    assert table_rows(store, "good") == [(1, "ok", 1.0), (2, "ok", 1.0), (3, "ok", 1.0)]
    results = {r.check_name: r for r in read_results(store, "test_pipeline")}
    assert sorted(results) == sorted(c.name for c in checks)
    assert {r.status for r in results.values()} == {"pass"}
    assert results["row_count"].detail == "3 rows"
    assert all(r.interval_start == DAY.replace(tzinfo=None) for r in results.values())


@pytest.mark.parametrize(("check", "failing", "sample_key"), [
    (not_null("status"), 1, "status"),
    (accepted_values("status", ["ok", "late"]), 1, "status"),
    (in_range("amount", min=0), 2, "amount"),
    (unique("id"), 1, "copies"),
    (row_count(max=2), 1, "rows"),
    (sql("SELECT * FROM {staging} WHERE amount < 0", name="no_negative"), 2, "amount"),
])
def test_a_failing_error_check_publishes_nothing_and_keeps_the_staged_rows(store: Store, make_context, check: Check,
                                                                          failing: int, sample_key: str) -> None:
    loader = create_clickhouse_loader("t", time_column="ts")
    store.command("CREATE TABLE t (ts DateTime64(3, 'UTC'), id Int64, status Nullable(String), amount Float64, "
                  "_dp_run_id String) ENGINE = MergeTree PARTITION BY toDate(ts) ORDER BY ts")
    run(make_context, loader, orders([1, 2]), [check], run_id="good")
    before = store.query_rows("SELECT groupBitXor(cityHash64(*)), count() FROM t")
    bad = orders([1, 1, 3], status=["ok", "weird", None], amount=[-1.0, -2.0, 3.0])
    with pytest.raises(CheckFailed, match=r"nothing published; staged rows kept in _dp_stage_kept_t_bad"):
        run(make_context, loader, bad, [check], run_id="bad")
    assert store.query_rows("SELECT groupBitXor(cityHash64(*)), count() FROM t") == before
    assert kept_tables(store) == ["_dp_stage_kept_t_bad"]
    assert store.query_rows("SELECT count() FROM _dp_stage_kept_t_bad") == [(3,)]
    [result] = [r for r in read_results(store, "test_pipeline") if r.run_id == "bad"]
    assert (result.status, result.severity, result.failing) == ("fail", "error", failing)
    assert result.kept_table == "_dp_stage_kept_t_bad" and sample_key in result.sample[0]
    # The next run of the interval drops what the failed one kept.
    run(make_context, loader, orders([5]), [], run_id="next")
    assert kept_tables(store) == [] and table_rows(store, "t") == [(5, "ok", 1.0)]


def test_a_failing_warn_check_publishes_and_is_recorded(store: Store, make_context) -> None:
    loader = create_clickhouse_loader("w", time_column="ts")
    run(make_context, loader, orders([1, 1, 2]), [unique("id", severity="warn"), not_null("id")])
    assert table_rows(store, "w") == [(1, "ok", 1.0), (1, "ok", 1.0), (2, "ok", 1.0)]
    by_name = {r.check_name: r for r in read_results(store)}
    assert (by_name["unique(id)"].status, by_name["unique(id)"].severity, by_name["unique(id)"].failing) == \
        ("fail", "warn", 1)
    assert by_name["unique(id)"].sample == [{"id": 1, "copies": 2}] and by_name["unique(id)"].kept_table == ""
    assert kept_tables(store) == []


def test_unique_in_append_mode_looks_at_the_target_too(store: Store, make_context) -> None:
    loader = create_clickhouse_loader("a", mode="append")
    run(make_context, loader, orders([1, 2, 3]), [unique("id")], run_id="a1")
    with pytest.raises(CheckFailed, match="unique"):
        run(make_context, loader, orders([3, 4]), [unique("id")], run_id="a2")
    assert table_rows(store, "a") == [(1, "ok", 1.0), (2, "ok", 1.0), (3, "ok", 1.0)]
    run(make_context, loader, orders([4, 5]), [unique("id")], run_id="a3")
    assert store.query_rows("SELECT count() FROM a") == [(5,)]


def test_unique_in_interval_mode_ignores_the_slice_being_replaced(store: Store, make_context) -> None:
    loader = create_clickhouse_loader("iv", time_column="ts")
    run(make_context, loader, orders([1, 2]), [unique("id")], run_id="d1")
    run(make_context, loader, orders([1, 2]), [unique("id")], run_id="d1-again")  # replaces itself: fine
    with pytest.raises(CheckFailed):  # the next day reuses id 2, which stays in the table
        run(make_context, loader, orders([2, 3], day=DAY + timedelta(days=1)), [unique("id")],
            day=DAY + timedelta(days=1), run_id="d2")


def test_unique_in_merge_mode_means_what_final_shows(store: Store, make_context) -> None:
    loader = create_clickhouse_loader("m", mode="merge", primary_key="id", version_column="version",
                                      partition_by="tuple()")
    check = unique("email")
    run(make_context, loader, orders([1, 2], email=["a@x", "b@x"], version=[1, 1]), [check], run_id="m1")
    # A new version of id 1 keeping its email replaces the old row after FINAL: no duplicate.
    run(make_context, loader, orders([1], email=["a@x"], version=[2]), [check], run_id="m2")
    # Staged twice in one run, the newest version wins: still one row per key.
    run(make_context, loader, orders([2, 2], email=["b@x", "b@x"], version=[3, 4]), [check], run_id="m3")
    # A different key with an email already used is a real duplicate.
    with pytest.raises(CheckFailed, match="unique"):
        run(make_context, loader, orders([3], email=["a@x"], version=[1]), [check], run_id="m4")
    assert store.query_rows("SELECT id, email FROM m FINAL ORDER BY id") == [(1, "a@x"), (2, "b@x")]


def test_row_count_relative_to_the_median_of_recent_intervals(store: Store, make_context) -> None:
    from core.models import RunRecord
    from record.coverage import record_coverage
    from record.history import record_run

    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)  # within the TTL
    for i, rows in enumerate([100, 120, 80, 0, 5]):  # a failed day does not count, nor one after this one
        start = day + timedelta(days=i - 4 if i < 4 else 1)
        # complete runs (started once their day ended), recorded as the runner does: run, then coverage
        past = RunRecord(run_id=f"h{i}", pipeline="test_pipeline", interval_start=start,
                         interval_end=start + timedelta(days=1), trigger="cron", status="success" if rows else "failed",
                         started_at=start + timedelta(days=1), rows_loaded=rows)
        record_run(store, past)
        record_coverage(store, past)
    loader = create_clickhouse_loader("rc", time_column="ts")
    check = row_count(min_ratio=0.5, history=7)
    with pytest.raises(CheckFailed, match=r"40 rows, under 0.5 x the usual 100"):
        run(make_context, loader, orders(list(range(40)), day=day), [check], day=day, run_id="low")
    run(make_context, loader, orders(list(range(60)), day=day), [check], day=day, run_id="ok")
    assert [r.detail for r in read_results(store) if r.run_id == "ok"] == ["60 rows; usual 100 (median of 3)"]


def test_row_count_without_history_passes_and_says_so(store: Store, make_context) -> None:
    run(make_context, create_clickhouse_loader("nh"), orders([1]), [row_count(min_ratio=0.5)])
    assert [r.detail for r in read_results(store)] == ["1 rows; no history yet for the relative bounds"]


def test_freshness_is_relative_to_the_intervals_end(store: Store, make_context) -> None:
    loader = create_clickhouse_loader("f", time_column="ts")
    # An old day whose rows reach 23:00: within 2h of that day's end, although long ago.
    run(make_context, loader, orders(list(range(24))), [freshness("ts", "2h")], run_id="old-day")
    with pytest.raises(CheckFailed, match=r"newest ts 2026-03-10 03:00:00 is older than 2026-03-10 22:00:00"):
        run(make_context, loader, orders(list(range(4))), [freshness("ts", "2h")], run_id="stale-day")


@data_check
def positive(audit, column):
    """A user's function check: rows whose column is not > 0."""
    return f"SELECT * FROM {audit.staging} WHERE {audit.q(column)} <= 0"


class EvenCount(Check):
    """A user's class check: the number of staged rows must be even."""

    kind = "even_count"

    def evaluate(self, audit):
        rows = audit.scalar(f"SELECT count() FROM {audit.staging}")
        return Outcome(rows % 2, [], f"{rows} rows")


def test_a_users_checks_work_like_builtins(store: Store, make_context) -> None:
    loader = create_clickhouse_loader("u", time_column="ts")
    checks = [positive("amount", severity="warn"), EvenCount()]
    run(make_context, loader, orders([1, 2], amount=[1.0, -1.0]), checks, run_id="u1")
    by_name = {r.check_name: r for r in read_results(store) if r.run_id == "u1"}
    assert (by_name["positive(amount)"].status, by_name["positive(amount)"].failing) == ("fail", 1)
    assert by_name["even_count"].status == "pass"
    with pytest.raises(CheckFailed, match="even_count: 3 rows"):
        run(make_context, loader, orders([1, 2, 3]), checks, run_id="u2")
    with pytest.raises(CheckDefinitionError, match="check 'positive.nope.': table 'u' has no column 'nope'"):
        run(make_context, loader, orders([1]), [positive("nope")], run_id="u3")


def test_bad_definitions_fail_at_run_start_naming_pipeline_check_and_column(store: Store, make_context) -> None:
    loader = create_clickhouse_loader("bad", time_column="ts")
    run(make_context, loader, orders([1]), [], run_id="b0")
    before = store.query_rows("SELECT count() FROM bad")
    with pytest.raises(CheckDefinitionError,
                       match=r"pipeline 'test_pipeline', check 'not_null\(idd\)': table 'bad' has no column 'idd'"):
        run(make_context, loader, orders([7, 8]), [not_null("idd")], run_id="b1")
    with pytest.raises(CheckDefinitionError, match=r"check 'broken': the query does not run on table 'bad'.*Syntax"):
        run(make_context, loader, orders([7]), [sql("SELECT * FRM {staging}", name="broken")], run_id="b2")
    with pytest.raises(CheckDefinitionError, match=r"check 'cols': the query does not run.*nocolumn"):
        run(make_context, loader, orders([7]), [sql("SELECT nocolumn FROM {staging}", name="cols")], run_id="b3")
    assert store.query_rows("SELECT count() FROM bad") == before and kept_tables(store) == []


@pytest.mark.parametrize(("make", "message"), [
    (lambda: not_null(), "'columns' must name one or more columns"),
    (lambda: accepted_values("s", "ok"), "values must be a non-empty list"),
    (lambda: in_range("x"), "give min, max or both"),
    (lambda: row_count(), "give min, max, min_ratio or max_ratio"),
    (lambda: row_count(min=5, max=1), "min 5 is greater than max 1"),
    (lambda: freshness("ts", "soon"), "expected a duration like '2h'"),
    (lambda: sql("SELECT 1"), "must read {staging}"),
    (lambda: sql("SELECT * FROM {staging} WHERE d = {day}"), "unknown placeholder.s. day"),
    (lambda: not_null("id", severity="fatal"), "severity must be 'error' or 'warn'"),
])
def test_invalid_declarations_are_refused_when_written(make, message: str) -> None:
    with pytest.raises(CheckDefinitionError, match=message):
        make()


def test_sql_that_does_not_parse_fails_at_run_start_even_before_the_table_exists(store: Store, make_context) -> None:
    loader = create_clickhouse_loader("fresh_table", time_column="ts")
    with pytest.raises(CheckDefinitionError, match=r"check 'broken': the query does not run.*Syntax error"):
        run(make_context, loader, orders([1]), [sql("SELECT * FRM {staging}", name="broken")])
    assert store.query_rows("EXISTS TABLE fresh_table") == [(0,)]  # failed before any data moved


def test_braces_inside_a_sql_checks_string_literals_are_sql_not_placeholders(store: Store, make_context) -> None:
    """A regex quantifier (``{2}``) in a string is the query's own; placeholders are read outside
    strings and comments only, as in migrations and SQL pipelines."""
    loader = create_clickhouse_loader("braces", time_column="ts")
    check = sql("SELECT * FROM {staging} WHERE NOT match(status, '^[a-z]{2}$') -- not {a placeholder}",
                name="two_letters", severity="warn")
    run(make_context, loader, orders([1, 2, 3], status=["ok", "bad", "no"]), [check])
    [result] = read_results(store, "test_pipeline")
    assert (result.status, result.severity, result.failing) == ("fail", "warn", 1)
    assert [row["id"] for row in result.sample] == [2]


def test_a_context_built_without_an_auditor_loads_without_checks_and_refuses_checks(store: Store,
                                                                                    make_context) -> None:
    loader = create_clickhouse_loader("no_auditor", time_column="ts")
    context = make_context(start=DAY, end=DAY + timedelta(days=1), run_id="r1")
    context.auditor = None
    create_el_pipeline(Rows(orders([1, 2])), loader, "t").run(context)
    assert table_rows(store, "no_auditor") == [(1, "ok", 1.0), (2, "ok", 1.0)]
    context = make_context(start=DAY, end=DAY + timedelta(days=1), run_id="r2")
    context.auditor, context.checks = None, [not_null("id")]
    with pytest.raises(DataProcessorError, match="this run context cannot run data checks"):
        create_el_pipeline(Rows(orders([3])), loader, "t").run(context)
    assert table_rows(store, "no_auditor") == [(1, "ok", 1.0), (2, "ok", 1.0)]


@pytest.mark.same_in_both_runs("a RENAME by the audit, nothing the engine modes do differently")
def test_a_users_staging_loader_without_keep_gets_its_rows_kept_by_a_rename(store: Store, make_context) -> None:
    """A loader of the user's own that stages in ClickHouse and hands over ``Staged`` without
    ``keep``: a failing check renames its staging table (documented), so its rollback finds nothing."""
    from pipelines.interfaces import Loader, Staged, to_arrow

    class Staging(Loader):
        supports_checks, table, mode = True, "u", "append"

        def begin(self, context) -> None:
            context.store.command("CREATE TABLE _dp_stage_u_mine (id Int64, status Nullable(String)) "
                                  "ENGINE = MergeTree ORDER BY id")

        def write(self, batch, context) -> int:
            return context.store.insert_arrow("_dp_stage_u_mine", to_arrow(batch).select(["id", "status"]))

        def commit(self, context) -> None:
            context.check_staged(Staged("u", "_dp_stage_u_mine", "append"))

        def rollback(self, context) -> None:
            context.store.command("DROP TABLE IF EXISTS _dp_stage_u_mine")

    with pytest.raises(CheckFailed, match=r"staged rows kept in _dp_stage_kept_u_mine"):
        run(make_context, Staging(), orders([1, 2], status=["ok", None]), [not_null("status")], run_id="mine")
    assert kept_tables(store) == ["_dp_stage_kept_u_mine"]
    assert store.query_rows("SELECT id FROM _dp_stage_kept_u_mine ORDER BY id") == [(1,), (2,)]
