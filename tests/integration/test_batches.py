"""Batched runs of contiguous intervals (``batch_size``, issue 27), through the real CLI in new
processes, on the embedded engine and (server-mode run) on a real ClickHouse server.

A batch is one run (one run id, one run record spanning it); coverage, checks, the empty-result
rule and re-runs stay per interval."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from conftest import ROOT, SRC, cli_env, rows, run_cli, wait_for
from core.store import Store

MODULE = textwrap.dedent('''
    import os, time
    from datetime import timedelta
    import pyarrow as pa
    from audit import row_count
    from pipelines.interfaces import Extractor
    from pipelines.pipeline_factory import create_el_pipeline
    from pipelines.tools.extractors.file_extractor import create_file_extractor
    from pipelines.tools.extractors.sql_source import create_sql_pipeline
    from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader

    class Range(Extractor):
        """A user's extractor that reads any range: a row every 6 hours, values from the time."""
        interval_aware = True
        reads_range = True
        def extract(self, context):
            with open(os.environ["TEST_MARKER"], "a") as f:
                f.write(f"{context.start_date} {context.end_date}\\n")
            time.sleep(float(os.environ.get("SLOW_SECONDS", "0")))
            ts, t = [], context.start
            while t < context.end:
                ts.append(t)
                t += timedelta(hours=6)
            yield pa.table({"ts": pa.array(ts, pa.timestamp("ms", tz="UTC")),
                            "v": [int(x.timestamp()) // 3600 for x in ts]})

    def monthly(table):
        return create_clickhouse_loader(table, time_column="ts", partition_by="toYYYYMM(ts)")

    RANGE = "SELECT ts, v FROM src WHERE ts >= {start} AND ts < {end}"

    PIPELINE_REGISTRY = {
        "batched": {"pipeline": create_sql_pipeline(RANGE, monthly("batched_t"), name="batched"), "batch_size": 4,
                    "checks": [row_count(min=1)]},
        "ranged": {"pipeline": create_el_pipeline(Range("range"), monthly("ranged_t"), "ranged"), "batch_size": 3},
        "valued": {"pipeline": create_sql_pipeline(
            "SELECT {start} AS ts, count() AS v FROM src WHERE ts >= {start} AND ts < {end}", monthly("valued_t"),
            name="valued"), "batch_size": 7},
        "appended": {"pipeline": create_sql_pipeline(RANGE, create_clickhouse_loader("app_t"), name="appended"),
                     "batch_size": 7},
        "hourly": {"pipeline": create_el_pipeline(Range("hours"), monthly("hourly_t"), "hourly"),
                   "granularity": "hour"},
        "files": {"pipeline": create_el_pipeline(create_file_extractor(os.environ["FILES_DIR"] + "/{start_date}.csv"),
                                                 monthly("files_t"), "files"), "batch_size": 3},
        "globbed": {"pipeline": create_el_pipeline(create_file_extractor(os.environ["FILES_DIR"] + "/*-0[12].csv"),
                                                   create_clickhouse_loader("glob_t"), "globbed")},
        "catchup": {"pipeline": create_el_pipeline(Range("catchup"), monthly("catchup_t"), "catchup"),
                    "granularity": "hour", "schedule": "0 */6 * * *", "lookback": 2, "batch_size": 4},
    }
''')

FIRST = date(2025, 3, 1)


def day(n: int) -> str:
    return (FIRST + timedelta(days=n)).isoformat()


@pytest.fixture
def module(pipelines_dir: Path, db: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (pipelines_dir / "batch_pipeline.py").write_text(MODULE)
    monkeypatch.setenv("TEST_MARKER", str(tmp_path / "marker"))
    monkeypatch.setenv("FILES_DIR", str(tmp_path / "files"))
    db.create_database()
    src = db.table("src")
    db.command(f"CREATE TABLE {src} (ts DateTime64(3, 'UTC'), v Int64) ENGINE = MergeTree ORDER BY ts")
    # 24 rows a day (one an hour), March 1-10, 2025; v from the time
    db.command(f"INSERT INTO {src} SELECT toDateTime64('2025-03-01 00:00:00', 3, 'UTC') + INTERVAL number HOUR, "
               "number FROM numbers(240)")
    db.close()
    return pipelines_dir


def backfill(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli("backfill", *args, env=env)


def runs(pipeline: str) -> list[dict]:
    result = run_cli("runs", pipeline, "--json", "--limit", "1000")
    assert result.returncode == 0, result.stderr
    return sorted(json.loads(result.stdout), key=lambda r: (r["interval_start"], r["started_at"]))


def listed(first: int, last: int) -> dict:
    """``backfill_list`` of the batched pipeline over days ``first..last``."""
    result = run_cli("backfill_list", "--start", day(first), "--end", day(last), "--json")
    assert result.returncode == 0, result.stderr
    return next(p for p in json.loads(result.stdout)["pipelines"] if p["name"] == "batched")


def coverage(db: Store, pipeline: str) -> list[tuple]:
    return rows(db, "SELECT toString(toDate(interval_start)), interval_end - interval_start, run_id, rows_loaded "
                    f"FROM _dp_coverage FINAL WHERE pipeline = '{pipeline}' ORDER BY interval_start")


def test_a_batched_backfill_is_one_run_per_batch_and_covers_each_day(module: Path, db: Store) -> None:
    done = backfill("batched", "--start", day(0), "--end", day(9))
    assert done.returncode == 0, done.stderr
    assert "10 interval(s) to run in 3 run(s), 0 skipped" in done.stderr
    history = runs("batched")
    assert [(r["interval_start"][:10], r["interval_end"][:10], r["status"], r["rows_loaded"]) for r in history] == [
        (day(0), day(4), "success", 96), (day(4), day(8), "success", 96), (day(8), day(10), "success", 48)]
    covered = coverage(db, "batched")
    assert [c[0] for c in covered] == [day(n) for n in range(10)]
    assert {c[1] for c in covered} == {86400} and {c[3] for c in covered} == {24}
    assert [c[2] for c in covered] == [r["run_id"] for r in history for _ in range(4)][:10]
    for n in range(10):  # the listener reports each day, each pointing at its batch's run
        assert f"success batched {day(n)}: 24 rows loaded" in done.stdout
    assert rows(db, "SELECT count(), sum(v) FROM batched_t") == rows(db, "SELECT count(), sum(v) FROM src")
    # the data checks ran per day, inside the batches
    assert rows(db, "SELECT count(), uniqExact(interval_start), uniqExact(run_id) FROM _dp_checks "
                    "WHERE pipeline = 'batched'") == [(10, 10, 3)]
    entry = listed(0, 9)
    assert (entry["intervals"], entry["done"], entry["missing"]) == (10, 10, 0)

    # A re-run of one day of a batch runs just it, and replaces just it.
    before = rows(db, "SELECT * EXCEPT _dp_run_id FROM batched_t ORDER BY ts")
    again = backfill("batched", "--start", day(5), "--end", day(5), "--force")
    assert again.returncode == 0, again.stderr
    assert "1 interval(s) to run, 0 skipped" in again.stderr
    rerun = [r for r in runs("batched") if r["interval_start"][:10] == day(5)]
    assert rerun[0]["interval_end"][:10] == day(6) and rerun[0]["rows_loaded"] == 24
    after = coverage(db, "batched")
    assert [c[2] for c in after] == [c[2] for c in covered[:5]] + [rerun[0]["run_id"]] + [c[2] for c in covered[6:]]
    assert rows(db, "SELECT * EXCEPT _dp_run_id FROM batched_t ORDER BY ts") == before
    assert rows(db, f"SELECT DISTINCT _dp_run_id FROM batched_t WHERE toDate(ts) = '{day(5)}'") == [
        (rerun[0]["run_id"],)]


def test_an_empty_day_or_a_failing_check_inside_a_batch_fails_that_batch_as_alone(module: Path, db: Store) -> None:
    assert backfill("batched", "--start", day(0), "--end", day(3)).returncode == 0
    # Day 2's source is gone: alone, its run is refused; inside the batch, the batch is refused the same way.
    rows(db, f"ALTER TABLE src DELETE WHERE toDate(ts) = '{day(2)}' SETTINGS mutations_sync = 2")
    alone = run_cli("cron_run", "batched", "--date", day(2))
    assert alone.returncode == 1
    message = (f"source returned 0 rows for {day(2)}, which holds 24 rows; "
               "set allow_empty=True if an empty interval is real")
    assert message in alone.stderr + alone.stdout
    batched = backfill("batched", "--start", day(0), "--end", day(3), "--force")
    assert batched.returncode == 1
    assert message in batched.stdout
    for n in range(4):  # the batch's intervals fail, each pointing at the one run
        assert f"failed batched {day(n)} (error): LoadError: {message}" in batched.stdout
    assert rows(db, "SELECT count() FROM batched_t") == [(96,)]  # nothing of the batch was published
    # The days stay done (their rows are the earlier run's); the failure is open per day, one run.
    entry = listed(0, 5)
    assert (entry["done"], entry["failed"], entry["missing"]) == (4, 0, 2)
    [failed_run] = [r["run_id"] for r in runs("batched")
                    if r["status"] == "failed" and r["interval_end"][:10] == day(4)]
    health = run_cli("check", "--quiet")
    assert "4 open failure(s): " in health.stdout
    for n in range(4):  # day 2 failed alone before: its newest failure is the batch's too
        assert f"{day(n)} (error, run {failed_run}{', 2 failed runs' if n == 2 else ''}: LoadError: source returned " \
               f"0 rows for {day(2)}" in health.stdout
    assert f"./run.sh backfill batched --start {day(0)} --end {day(0)} --rerun failed" in health.stdout
    # A data check sees each day's rows: row_count(min=1) fails day 7 (never loaded: no rows to empty)
    # inside the batch of days 5-8, which holds 72 rows; the day-9 batch after it is loaded.
    rows(db, f"ALTER TABLE src DELETE WHERE toDate(ts) = '{day(7)}' SETTINGS mutations_sync = 2")
    checked = backfill("batched", "--start", day(5), "--end", day(9), "--continue-on-error")
    assert checked.returncode == 1
    assert "5 interval(s) to run in 2 run(s), 0 skipped" in checked.stderr
    assert "data check failed, nothing published; staged rows kept in" in checked.stdout
    assert f"row_count ({day(7)}): 0 rows, fewer than min 1" in checked.stdout
    results = rows(db, "SELECT toString(toDate(interval_start)), status FROM _dp_checks WHERE pipeline = 'batched' "
                       f"AND interval_start >= '{day(5)}' ORDER BY interval_start")
    assert results == [(day(5), "pass"), (day(6), "pass"), (day(7), "fail"), (day(8), "pass"), (day(9), "pass")]
    assert rows(db, f"SELECT toString(toDate(ts)), count() FROM batched_t WHERE ts >= '{day(5)}' GROUP BY 1") == [
        (day(9), 24)]
    entry = listed(0, 9)
    assert (entry["done"], entry["failed"], entry["missing"]) == (5, 4, 1)


@pytest.mark.slow
def test_kill_9_in_the_middle_of_a_batch_publishes_none_of_it_and_the_rerun_is_exact(module: Path, db: Store,
                                                                                     tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    victim = subprocess.Popen([sys.executable, str(SRC / "main.py"), "backfill", "ranged", "--start", day(0),
                               "--end", day(5)], env=cli_env({"SLOW_SECONDS": "2"}), cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    # The user's extractor (reads_range = True) got each batch's whole range; kill during the second.
    wait_for(lambda: marker.exists() and len(marker.read_text().splitlines()) >= 2, what="the second batch")
    os.killpg(victim.pid, signal.SIGKILL)
    victim.communicate(timeout=30)
    assert marker.read_text().splitlines() == [f"{day(0)} {day(3)}", f"{day(3)} {day(6)}"]
    assert rows(db, "SELECT toString(toDate(ts)), count() FROM ranged_t GROUP BY 1 ORDER BY 1") == [
        (day(n), 4) for n in range(3)]  # the first batch, none of the second
    assert [c[0] for c in coverage(db, "ranged")] == [day(n) for n in range(3)]

    resumed = backfill("ranged", "--start", day(0), "--end", day(5))
    assert resumed.returncode == 0, resumed.stderr
    assert "3 interval(s) to run in 1 run(s), 3 skipped" in resumed.stderr
    assert marker.read_text().splitlines()[2:] == [f"{day(3)} {day(6)}"]
    history = runs("ranged")
    assert [(r["interval_start"][:10], r["interval_end"][:10], r["status"]) for r in history] == [
        (day(0), day(3), "success"), (day(3), day(6), "crashed"), (day(3), day(6), "success")]
    assert history[1]["reason"] == "process gone"
    expected = [(datetime(2025, 3, 1, tzinfo=UTC) + timedelta(hours=6 * n)).replace(tzinfo=None) for n in range(24)]
    assert [r[0] for r in rows(db, "SELECT ts FROM ranged_t ORDER BY ts")] == expected
    assert rows(db, "SELECT sum(v) = sum(toUnixTimestamp(ts) DIV 3600) FROM ranged_t") == [(1,)]
    assert rows(db, "SELECT name FROM system.tables WHERE name LIKE '\\_dp\\_stage\\_%'") == []


@pytest.mark.same_in_both_runs("discovery only: no store is read")
def test_batch_size_is_refused_where_a_batch_would_not_give_each_interval_its_own_rows(
        pipelines_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (pipelines_dir / "batch_pipeline.py").write_text(MODULE)
    monkeypatch.setenv("FILES_DIR", "/nonexistent")
    listing = run_cli("list")
    assert "pipeline 'valued' in " in listing.stdout + listing.stderr
    result = backfill("valued")
    assert result.returncode != 0
    assert ("batch_size 7 refused: {start} is used outside a WHERE range bound ({start} AS ts), so one run of several "
            "intervals would not give each interval its own rows; remove batch_size") in result.stderr
    result = backfill("appended")
    assert result.returncode != 0
    assert ("batch_size 7 needs interval-scoped writes (the ClickHouse loader with time_column, mode 'interval'), "
            "but its loader writes in mode 'append'; remove batch_size") in result.stderr


def test_a_store_with_day_records_of_an_hourly_pipeline_is_read_hour_by_hour(module: Path, db: Store) -> None:
    """Before batches, ``backfill`` ran an hourly pipeline a day per run and recorded that day as one
    interval (commit cf6f863 and earlier). Such records are read as they are, never rewritten: a
    day record covers each of its hours, and a failed day fails each hour."""
    old = run_cli("cron_run", "hourly", "--start", day(0), "--end", day(1), "--trigger", "backfill")
    assert old.returncode == 0, old.stderr  # exactly the records the old backfill wrote for a day
    assert [c[1] for c in coverage(db, "hourly")] == [86400]
    now = backfill("hourly", "--start", day(0), "--end", day(1))
    assert now.returncode == 0, now.stderr
    assert "24 interval(s) to run in 1 run(s), 24 skipped" in now.stderr
    covered = coverage(db, "hourly")
    assert len(covered) == 25 and [c[1] for c in covered[1:]] == [3600] * 24
    assert rows(db, "SELECT count() FROM hourly_t") == [(8,)]
    entry = next(p for p in json.loads(run_cli("backfill_list", "--start", day(0), "--end", day(1), "--json").stdout)
                 ["pipelines"] if p["name"] == "hourly")
    assert (entry["intervals"], entry["done"], entry["missing"]) == (48, 48, 0)
    counted = json.loads(run_cli("backfill_counts", "hourly", "--start", day(0), "--end", day(1), "--json").stdout)
    assert [(d["rows"], d["reported"], d["status"]) for d in counted["pipelines"][0]["days"]] == [
        (4, 4, "ok"), (4, 4, "ok")]
    # One hour of the old day re-run: it replaces that hour; the rest of the day's count is unknown
    # (the day record's rows cannot be split by hour), never a false mismatch.
    assert run_cli("cron_run", "hourly", "--start", f"{day(0)}T06:00", "--end", f"{day(0)}T07:00").returncode == 0
    counted = json.loads(run_cli("backfill_counts", "hourly", "--start", day(0), "--end", day(1), "--json").stdout)
    assert [(d["rows"], d["reported"], d["status"]) for d in counted["pipelines"][0]["days"]] == [
        (4, None, "n/a"), (4, 4, "ok")]
    # A failed day record (an old failed day) is an open failure of each of its hours.
    failed = run_cli("cron_run", "hourly", "--start", day(2), "--end", day(3), env={"SLOW_SECONDS": "x"})
    assert failed.returncode == 1
    health = run_cli("check", "--quiet")
    assert "24 open failure(s): " in health.stdout and f"{day(2)}T23:00" not in health.stdout  # 10 listed
    assert f"{day(2)}T00:00 (error, run " in health.stdout


def test_a_scheduled_fire_that_owns_several_intervals_runs_them_in_batches(module: Path, db: Store) -> None:
    # A fire at 06:00 owns the 6 hours since the 00:00 fire, plus 2 hours of lookback: 8 contiguous
    # hours, batch_size 4: two runs, each hour covered.
    fired = run_cli("cron_run", "catchup", "--trigger", "scheduler", "--fired-at", f"{day(1)}T06:00Z")
    assert fired.returncode == 0, fired.stderr
    history = runs("catchup")
    assert [(r["interval_start"][:16], r["interval_end"][:16], r["status"]) for r in history] == [
        (f"{day(0)}T22:00", f"{day(1)}T02:00", "success"), (f"{day(1)}T02:00", f"{day(1)}T06:00", "success")]
    covered = rows(db, "SELECT interval_end - interval_start, run_id FROM _dp_coverage FINAL "
                       "WHERE pipeline = 'catchup' ORDER BY interval_start")
    assert [c[0] for c in covered] == [3600] * 8
    assert [c[1] for c in covered] == [history[0]["run_id"]] * 4 + [history[1]["run_id"]] * 4
    # each batch's extractor read its whole range: a row every 6 hours from its start
    assert rows(db, "SELECT toString(ts) FROM catchup_t ORDER BY ts") == [
        (f"{day(0)} 22:00:00.000",), (f"{day(1)} 02:00:00.000",)]


def test_a_batch_of_a_file_pipeline_reads_its_days_files_as_one(module: Path, db: Store, tmp_path: Path) -> None:
    files = tmp_path / "files"
    files.mkdir()
    for n in range(4):
        if n != 2:  # day 2 has no file
            lines = [f"{day(n)} {h:02}:00:00,{n * 100 + h}" for h in range(0, 24, 8)]
            (files / f"{day(n)}.csv").write_text("ts,v\n" + "\n".join(lines) + "\n")
    alone = run_cli("cron_run", "files", "--date", day(2))
    assert alone.returncode == 1 and f"no file matches {files / day(2)}.csv" in alone.stdout + alone.stderr
    batch = backfill("files", "--start", day(0), "--end", day(3), "--continue-on-error")
    assert batch.returncode == 1  # the batch of days 0-2 fails as day 2 does alone; day 3 is loaded
    assert "4 interval(s) to run in 2 run(s), 0 skipped" in batch.stderr
    assert (f"failed files {day(0)} (error): ExtractError: file:{{start_date}}.csv: no file matches "
            f"{files / day(2)}.csv") in batch.stdout
    (files / f"{day(2)}.csv").write_text(f"ts,v\n{day(2)} 12:00:00,212\n")
    again = backfill("files", "--start", day(0), "--end", day(3))
    assert again.returncode == 0, again.stderr
    assert "3 interval(s) to run in 1 run(s), 1 skipped" in again.stderr
    assert rows(db, "SELECT toString(toDate(ts)), count(), sum(v) FROM files_t GROUP BY 1 ORDER BY 1") == [
        (day(0), 3, 24), (day(1), 3, 324), (day(2), 1, 212), (day(3), 3, 924)]
    assert [c[3] for c in coverage(db, "files")] == [3, 3, 1, 3]
    log = (tmp_path / "logs" / "jobs" / "files.log").read_text()
    if not os.environ.get("DP_TEST_SERVER"):  # the embedded engine reads the batch's files itself
        assert "ClickHouse read 3 CSV files itself: 7 rows" in log
    # (a defect found on the way: a push-down of several local files read none of them, silently)
    assert run_cli("cron_run", "globbed").returncode == 0
    assert rows(db, "SELECT count(), sum(v) FROM glob_t") == [(6, 348)]
