"""Coverage kept for as long as the data (``_dp_coverage``), long ranges and ``start_date`` (issue 13).

Real CLI processes on the embedded engine; history older than the CLI can produce is written
with the framework's own record functions.
"""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from conftest import rows, run_cli
from core.store import Store

MODULE = textwrap.dedent('''
    from datetime import timedelta
    import pyarrow as pa
    from pipelines.interfaces import Extractor
    from pipelines.pipeline_factory import create_el_pipeline
    from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader

    class Days(Extractor):
        """4 rows per day (every 6 hours)."""
        interval_aware = True
        def extract(self, context):
            ts, t = [], context.start
            while t < context.end:
                ts.append(t)
                t += timedelta(hours=6)
            yield pa.table({"ts": pa.array(ts, pa.timestamp("ms", tz="UTC"))})

    def pipe(table):
        return create_el_pipeline(Days("days"), create_clickhouse_loader(table, time_column="ts"), table)

    PIPELINE_REGISTRY = {
        "days": {"pipeline": pipe("days_t")},
        "since": {"pipeline": pipe("since_t"), "start_date": "2013-01-03"},
    }
''')


@pytest.fixture
def module(pipelines_dir: Path) -> Path:
    (pipelines_dir / "test_pipeline.py").write_text(MODULE)
    return pipelines_dir


def coverage_rows(db: Store, pipeline: str) -> list[tuple]:
    return rows(db, "SELECT toDate(interval_start), toDate(interval_end), run_id, rows_loaded FROM _dp_coverage "
                    f"FINAL WHERE pipeline = '{pipeline}' ORDER BY interval_start")


def listing(*args: str) -> dict:
    result = run_cli("backfill_list", "--json", *args)
    assert result.returncode == 0, result.stderr
    return {p["name"]: p for p in json.loads(result.stdout)["pipelines"]}


def test_coverage_agrees_with_the_runs_and_survives_the_run_history(module: Path, db: Store) -> None:
    window = ("--start", "2013-01-01", "--end", "2013-01-05")
    assert run_cli("backfill", "days", *window).returncode == 0
    assert run_cli("backfill", "days", "--start", "2013-01-02", "--end", "2013-01-02", "--force").returncode == 0
    runs = json.loads(run_cli("runs", "days", "--json", "--limit", "100").stdout)
    newest = {}
    for run in sorted(runs, key=lambda r: r["started_at"]):
        newest[run["interval_start"][:10]] = (run["run_id"], run["rows_loaded"])
    assert [(str(d), r, n) for d, _, r, n in coverage_rows(db, "days")] == [
        (day, *newest[day]) for day in sorted(newest)]
    assert len(newest) == 5
    # The run history expires (RUN_HISTORY_TTL_DAYS); the coverage of the data does not.
    rows(db, "TRUNCATE TABLE _dp_runs")
    assert listing(*window)["days"]["done"] == 5
    plan = run_cli("backfill", "days", *window, "--dry-run")
    assert "0 interval(s) would run, 5 would be skipped" in plan.stdout
    counts = json.loads(run_cli("backfill_counts", "days", *window, "--json").stdout)
    assert [d["status"] for d in counts["pipelines"][0]["days"]] == ["ok"] * 5


def test_freshness_of_an_interval_pipeline_reads_the_coverage(pipelines_dir: Path, db: Store) -> None:
    (pipelines_dir / "test_pipeline.py").write_text(MODULE.replace(
        '"days": {"pipeline": pipe("days_t")}', '"days": {"pipeline": pipe("days_t"), "schedule": "0 3 * * *"}'))
    today = datetime.now(UTC).date()
    assert run_cli("cron_run", "days", "--date", f"{today - timedelta(days=1)}").returncode == 0
    rows(db, "TRUNCATE TABLE _dp_runs")  # the run history expired
    report = json.loads(run_cli("check", "--json").stdout)
    fresh = next(c for c in report["checks"] if c["name"] == "fresh:days")
    assert fresh == {"name": "fresh:days", "status": "ok", "detail": f"data loaded up to {today} 00:00 UTC"}


def test_coverage_is_filled_once_from_existing_history(module: Path, db: Store) -> None:
    """A store from before the coverage table: its complete successes become coverage."""
    from core.models import RunRecord
    from record.history import record_run
    from record.tables import ensure_framework_tables

    ensure_framework_tables(db)
    db.command("DROP TABLE _dp_coverage")
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    for n, (status, late) in enumerate([("success", True), ("success", False), ("failed", True)]):
        start = today - timedelta(days=10 - n)
        started = start + (timedelta(days=1, minutes=5) if late else timedelta(hours=3))
        record_run(db, RunRecord(run_id=f"old-{n}", pipeline="days", interval_start=start,
                                 interval_end=start + timedelta(days=1), trigger="cron", status=status,
                                 started_at=started, finished_at=started + timedelta(seconds=1), rows_loaded=4))
    db.close()
    shown = listing("--days", "10")["days"]  # reads only: derived from the runs
    assert (shown["done"], shown["incomplete"], shown["failed"], shown["missing"]) == (1, 1, 1, 7)
    assert rows(db, "EXISTS TABLE _dp_coverage") == [(0,)]
    assert run_cli("runs", "days").returncode == 0  # any command that sets up the tables fills it
    assert [r[2] for r in coverage_rows(db, "days")] == ["old-0"]
    shown = listing("--days", "10")["days"]
    assert (shown["done"], shown["incomplete"], shown["failed"], shown["missing"]) == (1, 1, 1, 7)


def test_start_date_bounds_backfill_and_backfill_list(module: Path, db: Store) -> None:
    result = run_cli("backfill", "since", "--start", "2013-01-01", "--end", "2013-01-05")
    assert result.returncode == 0, result.stderr
    assert [str(r[0]) for r in coverage_rows(db, "since")] == ["2013-01-03", "2013-01-04", "2013-01-05"]
    assert rows(db, "SELECT min(ts) FROM since_t")[0][0].date() == date(2013, 1, 3)
    shown = listing()["since"]  # no window given: from its start_date
    assert shown["first_day"] == "2013-01-03" and shown["done"] == 3
    assert shown["intervals"] == (datetime.now(UTC).date() - date(2013, 1, 3)).days
    human = run_cli("backfill_list")
    assert "since (from 2013-01-03)" in human.stdout
    windowed = listing("--start", "2013-01-01", "--end", "2013-01-10")["since"]
    assert (windowed["first_day"], windowed["intervals"], windowed["done"]) == ("2013-01-03", 8, 3)


def test_long_ranges_are_summarised_per_month_and_whole_in_json(module: Path) -> None:
    window = ("--start", "2013-01-01", "--end", "2013-04-30")
    assert run_cli("backfill", "days", "--start", "2013-02-01", "--end", "2013-02-28").returncode == 0
    human = run_cli("backfill_counts", "days", *window)
    assert human.returncode == 0, human.stderr
    assert "\nmonth\t" in human.stdout  # piped: the per-month table as TSV (its title is dropped)
    lines = [line for line in human.stdout.splitlines() if line.startswith("2013-0") and "\t" in line]
    assert len(lines) == 4 and "28 ok" in lines[1] and "112" in lines[1] and "31 no data" in lines[0]
    assert "... and" in human.stdout and "more (--json lists every day)" in human.stdout
    data = json.loads(run_cli("backfill_counts", "days", *window, "--json").stdout)
    assert len(data["pipelines"][0]["days"]) == 120
    ten_years = run_cli("backfill_list", "--start", "2003-01-01", "--json")  # no cap on the range
    assert ten_years.returncode == 0, ten_years.stderr
    bad = run_cli("backfill_list", "--start", "2013-05-01", "--end", "2013-04-01")
    assert bad.returncode == 2 and "--end (2013-04-01) is before --start (2013-05-01)" in bad.stderr
