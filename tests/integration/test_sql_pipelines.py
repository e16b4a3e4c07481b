"""SQL pipelines and depends_on, end to end through the real CLI in new processes.

On the embedded engine in the default run, and on a real ClickHouse server in the server-mode
run (``./run.sh test --server``, which CI runs too).
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from conftest import rows, run_cli
from core.store import Store

MODULE = textwrap.dedent('''
    import os
    from datetime import timedelta
    import pyarrow as pa
    from pipelines.interfaces import Extractor
    from pipelines.pipeline_factory import create_el_pipeline
    from pipelines.tools.extractors.sql_source import create_sql_pipeline
    from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader

    class Raw(Extractor):
        """6 events per interval; v = 1..6 plus OFFSET; cat a (odd v) / b (even v)."""
        interval_aware = True
        def extract(self, context):
            if context.start_date == os.environ.get("FAIL_DAY"):
                raise ValueError(f"no raw file for {context.start_date}")
            step = (context.end - context.start) / 6
            offset = int(os.environ.get("OFFSET", "0"))
            yield pa.table({"ts": pa.array([context.start + step * i for i in range(6)], pa.timestamp("ms", tz="UTC")),
                            "cat": ["a" if i % 2 == 0 else "b" for i in range(6)],
                            "v": [i + 1 + offset for i in range(6)]})

    class Appended(Extractor):
        """Reads whatever is there now (not interval-aware), appended."""
        def extract(self, context):
            yield pa.table({"n": [1, 2, 3]})

    DAILY = """
        SELECT toDate(ts) AS day, cat, count() AS n, sum(v) AS total
        FROM raw_t
        WHERE ts >= {start} AND ts < {end} AND cat != '{end}'   -- a literal brace in a string stays
        GROUP BY day, cat
    """
    MONTHLY = ("SELECT toStartOfMonth(day) AS month, cat, sum(n) AS n, sum(total) AS total FROM daily_t "
               "GROUP BY month, cat")

    def day_loader(table):
        return create_clickhouse_loader(table, mode="interval", time_column="day")

    PIPELINE_REGISTRY = {
        "raw": {"pipeline": create_el_pipeline(Raw(), create_clickhouse_loader("raw_t", time_column="ts"), "raw")},
        "daily": {"pipeline": create_sql_pipeline(DAILY, day_loader("daily_t"), name="daily"), "depends_on": ["raw"]},
        "monthly": {"pipeline": create_sql_pipeline(MONTHLY, create_clickhouse_loader("monthly_t", mode="replace"),
                                                    name="monthly"), "depends_on": "daily"},
        "hourly_raw": {"pipeline": create_el_pipeline(Raw(), create_clickhouse_loader("hraw_t", time_column="ts"),
                                                      "hourly_raw"), "granularity": "hour"},
        "hourly_daily": {"pipeline": create_sql_pipeline(DAILY.replace("raw_t", "hraw_t"), day_loader("hdaily_t"),
                                                         name="hourly_daily"), "depends_on": ["hourly_raw"]},
        "appended": {"pipeline": create_el_pipeline(Appended(), create_clickhouse_loader("app_t"), "appended")},
        "from_appended": {"pipeline": create_sql_pipeline(
            "SELECT {start_date} AS day, count() AS n FROM app_t", day_loader("fromapp_t"), name="from_appended"),
            "depends_on": ["appended"]},
    }
''')

DAY1, DAY2 = date(2025, 3, 1), date(2025, 3, 2)


@pytest.fixture
def module(pipelines_dir: Path) -> Path:
    (pipelines_dir / "chain_pipeline.py").write_text(MODULE)
    return pipelines_dir


def cron(name: str, day: date | None = None, *args: str, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    return run_cli("cron_run", name, *(("--date", day.isoformat()) if day else ()), *args, env=env)


def runs(pipeline: str) -> list[dict]:
    result = run_cli("runs", pipeline, "--json", "--limit", "1000")
    assert result.returncode == 0, result.stderr
    return sorted(json.loads(result.stdout), key=lambda r: r["started_at"])


def daily(db: Store, table: str = "daily_t") -> list[tuple]:
    return rows(db, f"SELECT day, cat, n, total FROM {table} ORDER BY day, cat")


def monthly(db: Store) -> list[tuple]:
    return rows(db, "SELECT month, cat, n, total FROM monthly_t ORDER BY month, cat")


def test_an_upstream_day_runs_both_summaries_with_exact_rows(module: Path, db: Store) -> None:
    for day in (DAY1, DAY2):
        result = cron("raw", day)
        assert result.returncode == 0, result.stderr
        assert f"success raw {day}: 6 rows loaded" in result.stdout
        assert f"downstream daily {day}: running (trigger upstream)" in result.stdout
        assert f"success daily {day}: 2 rows loaded" in result.stdout
        assert f"success monthly {day}: 2 rows loaded" in result.stdout
        # dependency order: raw, then daily, then monthly
        assert result.stdout.index("success raw") < result.stdout.index("success daily") \
            < result.stdout.index("success monthly")
    assert daily(db) == [(DAY1, "a", 3, 9), (DAY1, "b", 3, 12), (DAY2, "a", 3, 9), (DAY2, "b", 3, 12)]
    assert monthly(db) == [(date(2025, 3, 1), "a", 6, 18), (date(2025, 3, 1), "b", 6, 24)]
    assert [(r["trigger"], r["interval_start"][:10]) for r in runs("daily")] == [
        ("upstream", "2025-03-01"), ("upstream", "2025-03-02")]
    assert [r["trigger"] for r in runs("monthly")] == ["upstream", "upstream"]
    log = (Path(module.parent / "logs" / "jobs" / "daily.log")).read_text()
    assert "no Python in the data path" in log

    again = cron("raw", DAY1, env={"OFFSET": "10"})  # re-running a raw day updates both summaries
    assert again.returncode == 0, again.stderr
    assert daily(db) == [(DAY1, "a", 3, 39), (DAY1, "b", 3, 42), (DAY2, "a", 3, 9), (DAY2, "b", 3, 12)]
    assert monthly(db) == [(date(2025, 3, 1), "a", 6, 48), (date(2025, 3, 1), "b", 6, 54)]
    assert len(runs("daily")) == 3


def test_a_failed_upstream_day_leaves_the_summaries_as_they_were(module: Path, db: Store) -> None:
    assert cron("raw", DAY1).returncode == 0
    before = (daily(db), monthly(db))
    failed = cron("raw", DAY1, env={"FAIL_DAY": DAY1.isoformat(), "OFFSET": "10"})
    assert failed.returncode == 1
    assert "downstream" not in failed.stdout
    assert (daily(db), monthly(db)) == before
    assert len(runs("daily")) == 1 and len(runs("monthly")) == 1


def test_no_downstream_runs_only_the_upstream(module: Path, db: Store) -> None:
    result = cron("raw", DAY1, "--no-downstream")
    assert result.returncode == 0, result.stderr
    assert "downstream" not in result.stdout
    assert runs("daily") == []


def test_a_failing_downstream_does_not_change_the_upstream_exit_code(module: Path, db: Store) -> None:
    (module / "bad_pipeline.py").write_text(textwrap.dedent('''
        from pipelines.tools.extractors.sql_source import create_sql_pipeline
        from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader
        PIPELINE_REGISTRY = {"bad": {"pipeline": create_sql_pipeline(
            "SELECT toDate({start}) AS day, throwIf(count() > 0, 'bad data') AS x FROM raw_t",
            create_clickhouse_loader("bad_t", mode="interval", time_column="day"), name="bad"),
            "depends_on": ["raw"]}}
    '''))
    result = cron("raw", DAY1)
    assert result.returncode == 0, result.stderr
    assert f"downstream bad {DAY1}: failed (exit 1); see ./run.sh runs bad" in result.stdout
    assert f"success daily {DAY1}" in result.stdout  # the others still ran
    [bad] = runs("bad")
    assert bad["status"] == "failed" and "bad data" in bad["error"] and bad["trigger"] == "upstream"


def test_an_incomplete_upstream_never_makes_a_downstream_interval_ready(module: Path, db: Store) -> None:
    today = datetime.now(UTC).date()
    result = cron("raw", today)  # a success that started before the interval ended
    assert result.returncode == 0, result.stderr
    assert (f"downstream daily {today}: not ready, not run (upstream 'raw' has no complete successful run "
            f"covering {today})") in result.stdout
    assert runs("daily") == []
    refused = run_cli("backfill", "daily", "--start", DAY1.isoformat(), "--end", DAY2.isoformat())
    assert refused.returncode == 1
    assert (f"refused daily {DAY1}: upstream not ready: upstream 'raw' has no complete successful run "
            f"covering {DAY1}") in refused.stderr
    assert f"refused daily {DAY2}" in refused.stderr
    assert runs("daily") == []


def test_an_hourly_upstream_makes_its_day_ready_once_all_24_hours_are_complete(module: Path, db: Store) -> None:
    start = datetime(2025, 3, 1, tzinfo=UTC)
    for hour in range(23):
        h = start + timedelta(hours=hour)
        result = cron("hourly_raw", None, "--start", h.isoformat(), "--end", (h + timedelta(hours=1)).isoformat())
        assert result.returncode == 0, result.stderr
        assert "downstream hourly_daily 2025-03-01: not ready" in result.stdout
    assert runs("hourly_daily") == []
    last = cron("hourly_raw", None, "--start", (start + timedelta(hours=23)).isoformat(),
                "--end", (start + timedelta(days=1)).isoformat())
    assert "success hourly_daily 2025-03-01: 2 rows loaded" in last.stdout
    assert daily(db, "hdaily_t") == [(DAY1, "a", 72, 216), (DAY1, "b", 72, 288)]
    assert len(runs("hourly_daily")) == 1


def test_backfill_of_an_upstream_reruns_each_downstream_interval_once(module: Path, db: Store) -> None:
    result = run_cli("backfill", "hourly_raw", "--start", "2025-03-01", "--end", "2025-03-02", "--hourly")
    assert result.returncode == 0, result.stderr
    assert "48 interval(s) to run" in result.stderr
    # 48 hours re-loaded, two days: one downstream run per day (coalesced), in order
    assert result.stdout.count("downstream hourly_daily") == 2
    assert [r["interval_start"][:10] for r in runs("hourly_daily")] == ["2025-03-01", "2025-03-02"]
    assert daily(db, "hdaily_t") == [(DAY1, "a", 72, 216), (DAY1, "b", 72, 288),
                                     (DAY2, "a", 72, 216), (DAY2, "b", 72, 288)]
    skipped = run_cli("backfill", "raw", "--start", "2025-03-01", "--end", "2025-03-02", "--no-downstream")
    assert skipped.returncode == 0 and "downstream" not in skipped.stdout
    assert runs("daily") == []
    both = run_cli("backfill", "raw", "--start", "2025-03-01", "--end", "2025-03-02", "--force", env={"OFFSET": "10"})
    assert both.returncode == 0, both.stderr
    assert [r["interval_start"][:10] for r in runs("daily")] == ["2025-03-01", "2025-03-02"]
    assert len(runs("monthly")) == 1  # it recomputes everything: once, after the last day
    assert monthly(db) == [(date(2025, 3, 1), "a", 6, 78), (date(2025, 3, 1), "b", 6, 84)]


def test_backfill_of_a_downstream_runs_its_ready_days_and_refuses_the_others(module: Path, db: Store) -> None:
    assert run_cli("backfill", "raw", "--start", "2025-03-01", "--end", "2025-03-01", "--no-downstream").returncode == 0
    result = run_cli("backfill", "daily", "--start", "2025-03-01", "--end", "2025-03-02", "--no-downstream")
    assert result.returncode == 1
    assert "refused daily 2025-03-02: upstream not ready: upstream 'raw' has no complete successful run" \
        in result.stderr
    assert "success daily 2025-03-01: 2 rows loaded" in result.stdout
    assert daily(db) == [(DAY1, "a", 3, 9), (DAY1, "b", 3, 12)]
    forced = run_cli("backfill", "daily", "--start", "2025-03-02", "--end", "2025-03-02", "--no-downstream", "--force")
    assert forced.returncode == 0, forced.stderr
    assert ("forced daily 2025-03-02: upstream not ready, running anyway (--force): upstream 'raw' has no complete "
            "successful run covering 2025-03-02") in forced.stderr
    assert "success daily 2025-03-02: 0 rows loaded" in forced.stdout


def test_a_non_interval_upstream_is_ready_for_intervals_that_ended_before_its_success(module: Path, db: Store) -> None:
    result = cron("appended")
    assert result.returncode == 0, result.stderr
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    assert f"success from_appended {yesterday}: 1 rows loaded" in result.stdout
    assert rows(db, "SELECT day, n FROM fromapp_t") == [(yesterday, 3)]
    too_early = run_cli("backfill", "from_appended", "--start", yesterday.isoformat(), "--force", "--dry-run")
    assert "refused" not in too_early.stderr  # the success started after yesterday ended


def test_cycles_and_unknown_names_are_discovery_errors_naming_the_modules(pipelines_dir: Path) -> None:
    sql = "SELECT 1 AS x"
    for name, deps in (("a", ["b"]), ("b", ["a"]), ("c", ["nope"]), ("d", ["c"])):
        (pipelines_dir / f"{name}_pipeline.py").write_text(textwrap.dedent(f'''
            from pipelines.tools.extractors.sql_source import create_sql_pipeline
            from pipelines.tools.loaders.console_loader import create_console_loader
            PIPELINE_REGISTRY = {{"{name}": {{"pipeline": create_sql_pipeline("{sql}", create_console_loader()),
                                 "depends_on": {deps!r}}}}}
        '''))
    listed = run_cli("list", "--json")
    data = json.loads(listed.stdout)
    assert data["pipelines"] == []
    errors = {b["name"]: b["error"] for b in data["broken"]}
    directory = str(pipelines_dir)
    assert errors["a"] == (f"dependency cycle: a ({directory}/a_pipeline.py) -> b ({directory}/b_pipeline.py) "
                           f"-> a ({directory}/a_pipeline.py)")
    assert errors["b"] == errors["a"]
    assert errors["c"] == f"pipeline 'c' in {directory}/c_pipeline.py: depends_on names 'nope', which is not a " \
                          "pipeline (known: d)"
    assert errors["d"].startswith(f"pipeline 'd' in {directory}/d_pipeline.py depends on 'c' "
                                  f"({directory}/c_pipeline.py), which is broken")
    run = run_cli("cron_run", "a")
    assert run.returncode == 1 and "error: Pipeline 'a' cannot run: dependency cycle" in run.stderr


def test_list_and_graph_show_dependencies(module: Path) -> None:
    listed = json.loads(run_cli("list", "--json").stdout)
    assert {p["name"]: p["depends_on"] for p in listed["pipelines"]}["monthly"] == ["daily"]
    graph = run_cli("graph")
    assert graph.returncode == 0, graph.stderr
    source = f"{module}/chain_pipeline.py"
    assert (f"raw  (day, interval, {source})\n"
            f"└── daily  (day, interval, {source})\n"
            f"    └── monthly  (day, replace, {source})\n") in graph.stdout
    one = run_cli("graph", "daily").stdout
    assert one.splitlines()[:5] == [f"daily  (day, interval, {source})", "  reads from (depends_on):",
                                    f"  └── raw  (day, interval, {source})", "  runs after it:",
                                    f"  └── monthly  (day, replace, {source})"]


def test_a_backfill_of_upstream_and_downstream_runs_them_in_dependency_order(module: Path, db: Store) -> None:
    result = run_cli("backfill", "daily", "raw", "--start", "2025-03-01", "--end", "2025-03-02")
    assert result.returncode == 0, result.stderr
    assert "refused" not in result.stderr  # raw's re-loaded days make daily's days ready in this backfill
    order = [line.split()[2] for line in result.stdout.splitlines() if line.startswith("[")]
    assert order == ["raw", "raw", "daily", "daily"]
    assert "downstream daily" not in result.stdout  # ran in the backfill itself, not again
    assert result.stdout.count("downstream monthly") == 1
    assert daily(db) == [(DAY1, "a", 3, 9), (DAY1, "b", 3, 12), (DAY2, "a", 3, 9), (DAY2, "b", 3, 12)]
    assert monthly(db) == [(date(2025, 3, 1), "a", 6, 18), (date(2025, 3, 1), "b", 6, 24)]


FIRED = textwrap.dedent('''
    from pipelines.tools.extractors.sql_source import create_sql_pipeline
    from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader
    DAILY = ("SELECT toDate(ts) AS day, cat, count() AS n FROM raw_t WHERE ts >= {start} AND ts < {end} "
             "GROUP BY day, cat")
    PIPELINE_REGISTRY = {"fired": {
        "pipeline": create_sql_pipeline(DAILY, create_clickhouse_loader("fired_t", mode="interval", time_column="day"),
                                        name="fired"),
        "schedule": "0 3 * * *", "depends_on": ["raw"]}}
''')


def test_a_downstream_runs_only_on_ready_intervals_whatever_the_trigger(module: Path, db: Store) -> None:
    """A manual run of a day raw has no data for is refused (not recorded, so a backfill still runs
    it once raw has the day); --force runs it anyway."""
    manual = cron("daily", DAY1, "--no-downstream")
    assert manual.returncode == 1, manual.stdout
    assert manual.stderr.strip().splitlines() == [
        f"not ready: daily {DAY1} not run (upstream 'raw' has no complete successful run covering {DAY1}); "
        "--force runs it anyway"]
    assert runs("daily") == []
    assert cron("raw", DAY1, "--no-downstream").returncode == 0
    backfilled = run_cli("backfill", "daily", "--start", DAY1.isoformat(), "--end", DAY1.isoformat(), "--no-downstream")
    assert backfilled.returncode == 0, backfilled.stderr
    assert "1 interval(s) to run" in backfilled.stderr
    assert daily(db) == [(DAY1, "a", 3, 9), (DAY1, "b", 3, 12)]

    forced = cron("daily", DAY2, "--no-downstream", "--force")  # the user says so: it runs, on no data
    assert forced.returncode == 0, forced.stderr
    assert f"success daily {DAY2}: 0 rows loaded" in forced.stdout
    assert f"daily {DAY2}: upstream not ready, running anyway (--force)" in forced.stderr
    assert [r["status"] for r in runs("daily")] == ["success", "success"]


def test_a_scheduled_fire_of_a_downstream_skips_intervals_that_are_not_ready(module: Path, db: Store) -> None:
    (module / "fired_pipeline.py").write_text(FIRED)
    fire = ("--trigger", "cron", "--fired-at", "2025-03-02T03:00Z")  # owns 2025-03-01
    refused = cron("fired", None, *fire)
    assert refused.returncode == 1
    assert (f"not ready: fired {DAY1} not run (upstream 'raw' has no complete successful run covering {DAY1}); "
            "--force runs it anyway") in refused.stderr
    assert runs("fired") == []
    assert cron("raw", DAY1, "--no-downstream").returncode == 0
    ready = cron("fired", None, *fire)
    assert ready.returncode == 0, ready.stderr
    assert f"success fired {DAY1}: 2 rows loaded" in ready.stdout
    assert [(r["status"], r["trigger"]) for r in runs("fired")] == [("success", "cron")]


def test_a_downstream_that_recomputes_everything_is_ready_when_its_last_complete_interval_is(
        module: Path, db: Store) -> None:
    refused = cron("monthly")
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    assert refused.returncode == 1
    assert (f"not ready: monthly {yesterday} not run (upstream 'daily' has no complete successful run covering "
            f"{yesterday}); --force runs it anyway") in refused.stderr
    assert runs("monthly") == []


def test_dependency_order_puts_upstreams_first_and_keeps_the_given_order_otherwise(tmp_path: Path) -> None:
    from pipelines.pipeline_registry import discover
    from runner.dependencies import all_downstream, in_dependency_order

    # d reads c, c reads b, b reads a; x stands alone; e reads a and d.
    chain = {"a": [], "b": ["a"], "c": ["b"], "d": ["c"], "e": ["d", "a"], "x": []}
    (tmp_path / "chain_pipeline.py").write_text(textwrap.dedent(f'''
        from pipelines.tools.extractors.sql_source import create_sql_pipeline
        from pipelines.tools.loaders.console_loader import create_console_loader
        PIPELINE_REGISTRY = {{name: {{"pipeline": create_sql_pipeline("SELECT 1 AS x", create_console_loader()),
                                     "depends_on": deps}} for name, deps in {chain!r}.items()}}
    '''))
    registry = discover(tmp_path)
    assert registry.broken == []
    assert in_dependency_order(registry, ["e", "d", "x", "b"]) == ["x", "b", "d", "e"]
    assert in_dependency_order(registry, ["x", "e", "a", "x"]) == ["x", "a", "e"]
    assert in_dependency_order(registry, []) == []
    assert all_downstream(registry, ["b"]) == ["c", "d", "e"]
