"""Backfill guarantees, end to end through the real CLI in new processes, on the embedded engine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from conftest import ROOT, SRC, StoreTaker, cli_env, rows, run_cli, wait_for
from core.store import Store

MODULE = textwrap.dedent('''
    import os, pathlib, time
    from datetime import timedelta
    import pyarrow as pa
    from pipelines.interfaces import Extractor
    from pipelines.pipeline_factory import create_el_pipeline
    from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader

    class Days(Extractor):
        """6 rows per day (every 4 hours), values derived from the date: re-runs are reproducible."""
        interval_aware = True
        def __init__(self, sleep_var=None):
            super().__init__("days")
            self.sleep_var = sleep_var
        def extract(self, context):
            marker = os.environ.get("TEST_MARKER")
            if marker:
                with open(marker, "a") as f:
                    f.write(f"{context.start.isoformat()} {os.getpid()}\\n")
            if context.start_date == os.environ.get("FAIL_DAY"):
                raise ValueError(f"source has no file for {context.start_date}")
            if self.sleep_var:
                time.sleep(float(os.environ.get(self.sleep_var, "0")))
            step = timedelta(hours=4) if context.end - context.start >= timedelta(days=1) else timedelta(minutes=10)
            ts, t = [], context.start
            while t < context.end:
                ts.append(t)
                t += step
            seed = context.start.toordinal() * 100 + context.start.hour
            yield pa.table({"ts": pa.array(ts, pa.timestamp("ms", tz="UTC")),
                            "v": [seed + i for i in range(len(ts))],
                            "label": [f"{context.start_date}#{i}" for i in range(len(ts))]})

    class Everything(Extractor):
        """Reads the whole source whatever the interval: not backfillable."""
        def extract(self, context):
            yield pa.table({"n": [1, 2, 3]})

    def interval_loader(table):
        return create_clickhouse_loader(table, time_column="ts")

    PIPELINE_REGISTRY = {
        "days": {"pipeline": create_el_pipeline(Days(), interval_loader("days_t"), "days"), "schedule": "0 2 * * *"},
        "days_copy": {"pipeline": create_el_pipeline(Days(), interval_loader("copy_t"), "days_copy")},
        "slow": {"pipeline": create_el_pipeline(Days("SLOW_SECONDS"), interval_loader("slow_t"), "slow")},
        "hourly": {"pipeline": create_el_pipeline(Days(), interval_loader("hourly_t"), "hourly"),
                   "granularity": "hour"},
        "appender": {"pipeline": create_el_pipeline(Everything(), create_clickhouse_loader("append_t"), "appender")},
        "reads_all": {"pipeline": create_el_pipeline(Everything(), interval_loader("all_t"), "reads_all")},
    }
''')

FIRST = date(2025, 3, 1)
FIVE = ("--start", "2025-03-01", "--end", "2025-03-05")


@pytest.fixture
def module(pipelines_dir: Path) -> Path:
    (pipelines_dir / "test_pipeline.py").write_text(MODULE)
    return pipelines_dir


def runs(pipeline: str) -> list[dict]:
    result = run_cli("runs", pipeline, "--json", "--limit", "1000")
    assert result.returncode == 0, result.stderr
    return sorted(json.loads(result.stdout), key=lambda r: (r["interval_start"], r["started_at"]))


def content(store: Store, table: str) -> list[tuple]:
    return rows(store, f"SELECT * EXCEPT (_dp_run_id) FROM {table} ORDER BY ts")


def backfill(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli("backfill", *args, env=env)


def day(n: int) -> str:
    return (FIRST + timedelta(days=n)).isoformat()


def test_backfilling_the_same_days_twice_leaves_the_same_rows(module: Path, db: Store) -> None:
    first = backfill("days", *FIVE)
    assert first.returncode == 0, first.stderr
    assert "backfill 2025-03-01..2025-03-05 (days): 5 interval(s) to run, 0 skipped" in first.stderr
    for n in range(5):
        assert f"success days {day(n)}: 6 rows loaded" in first.stdout
    assert "days\t5\t5\t0\t0\t0\t30\t" in first.stdout.splitlines()  # piped: the summary is TSV
    loaded = content(db, "days_t")
    assert len(loaded) == 30 and len(set(loaded)) == 30
    run_ids = rows(db, "SELECT DISTINCT _dp_run_id FROM days_t")

    again = backfill("days", *FIVE)  # default policy: every day is done, nothing runs
    assert again.returncode == 0, again.stderr
    assert "0 interval(s) to run, 5 skipped" in again.stderr
    forced = backfill("days", *FIVE, "--force")  # every day re-loaded
    assert forced.returncode == 0, forced.stderr
    assert "5 interval(s) to run, 0 skipped" in forced.stderr
    assert content(db, "days_t") == loaded
    assert not set(rows(db, "SELECT DISTINCT _dp_run_id FROM days_t")) & set(run_ids)
    history = runs("days")
    assert len(history) == 10 and {r["status"] for r in history} == {"success"}
    assert {r["trigger"] for r in history} == {"backfill"}
    assert [r["interval_start"][:10] for r in history] == [day(n) for n in range(5) for _ in (1, 2)]


@pytest.mark.slow
def test_a_killed_backfill_resumes_with_the_missing_days_only(module: Path, db: Store, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    env = {"TEST_MARKER": str(marker), "SLOW_SECONDS": "1"}
    victim = subprocess.Popen([sys.executable, str(SRC / "main.py"), "backfill", "slow", *FIVE],
                              env=cli_env(env), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, start_new_session=True)
    # Kill it while the third day is being extracted (its staging table exists: the table does).
    wait_for(lambda: marker.exists() and len(marker.read_text().splitlines()) >= 3, what="the third interval")
    os.killpg(victim.pid, signal.SIGKILL)
    victim.communicate(timeout=30)
    started = [line.split()[0][:10] for line in marker.read_text().splitlines()]
    assert started == [day(0), day(1), day(2)]

    resumed = backfill("slow", *FIVE, env={"TEST_MARKER": str(marker), "SLOW_SECONDS": "0"})
    assert resumed.returncode == 0, resumed.stderr
    assert "3 interval(s) to run, 2 skipped" in resumed.stderr
    assert [line.split()[0][:10] for line in marker.read_text().splitlines()][3:] == [day(2), day(3), day(4)]
    history = runs("slow")
    assert [(r["interval_start"][:10], r["status"]) for r in history] == [
        (day(0), "success"), (day(1), "success"), (day(2), "crashed"), (day(2), "success"),
        (day(3), "success"), (day(4), "success")]
    crashed = history[2]
    assert crashed["reason"] == "process gone" and crashed["pid"] == victim.pid
    assert rows(db, "SELECT toDate(ts), count(), uniqExact(label) FROM slow_t GROUP BY 1 ORDER BY 1") == [
        (FIRST + timedelta(days=n), 6, 6) for n in range(5)]
    assert rows(db, "SELECT name FROM system.tables WHERE name LIKE '\\_dp\\_stage\\_%'") == []


def test_a_failing_day_stops_the_backfill_unless_told_to_go_on(module: Path, db: Store) -> None:
    fail = {"FAIL_DAY": day(2)}
    stopped = backfill("days", *FIVE, env=fail)
    assert stopped.returncode == 1
    assert f"failed days {day(2)} (error): ValueError: source has no file for {day(2)}" in stopped.stdout
    assert f"stopped at the first failure: days {day(2)} (error)" in stopped.stderr
    assert "--continue-on-error" in stopped.stderr
    assert f"{day(2)} (error)" in stopped.stdout  # the summary's failed intervals
    assert "\ndays\t5\t2\t0\t1\t2\t" in stopped.stdout
    assert rows(db, "SELECT count() FROM days_t") == [(12,)]

    goes_on = backfill("days", *FIVE, "--continue-on-error", env=fail)
    assert goes_on.returncode == 1
    assert "2 interval(s) to run, 3 skipped" not in goes_on.stderr
    assert "3 interval(s) to run, 2 skipped" in goes_on.stderr  # the failed day and the two never run
    assert f"success days {day(3)}" in goes_on.stdout and f"success days {day(4)}" in goes_on.stdout
    assert "days\t5\t2\t2\t1\t0\t12\t2025-03-03 (error)" in goes_on.stdout.splitlines()
    assert "1 interval(s) failed" in goes_on.stderr and "--rerun failed" in goes_on.stderr
    assert rows(db, "SELECT toDate(ts) FROM days_t GROUP BY 1 ORDER BY 1") == [
        (FIRST + timedelta(days=n),) for n in (0, 1, 3, 4)]

    # --rerun failed runs only that day (the source has it now); a never-run day is not touched.
    plan = backfill("days", "--start", day(0), "--end", day(6), "--rerun", "failed", "--dry-run")
    assert plan.returncode == 0
    assert f"\ndays\t{day(2)}\trun\tretry: run " in plan.stdout
    assert f"\ndays\t{day(6)}\tskip\tnever run; --rerun failed retries only failed or crashed" in plan.stdout
    assert "1 interval(s) would run, 6 would be skipped" in plan.stdout
    fixed = backfill("days", *FIVE, "--rerun", "failed")
    assert fixed.returncode == 0, fixed.stderr
    assert "1 interval(s) to run, 4 skipped" in fixed.stderr
    assert f"[1/1] success days {day(2)}: 6 rows loaded" in fixed.stdout
    assert rows(db, "SELECT count(), uniqExact(label) FROM days_t") == [(30, 30)]
    statuses = [(r["interval_start"][:10], r["status"]) for r in runs("days")]
    assert statuses.count((day(2), "failed")) == 2 and statuses.count((day(2), "success")) == 1
    assert len(statuses) == 7


def test_dry_run_changes_nothing(module: Path, db: Store) -> None:
    def snapshot() -> tuple:
        # (ReplacingMergeTree tables shrink when background merges collapse row versions)
        tables = rows(db, "SELECT name, if(engine LIKE 'Replacing%', NULL, total_rows) FROM system.tables "
                          "WHERE database = currentDatabase() ORDER BY name")
        return (tables, rows(db, "SELECT * FROM _dp_runs ORDER BY run_id, version"), content(db, "days_t"))

    # Before anything exists: no database, no tables created by a dry run.
    empty = backfill("days", *FIVE, "--dry-run")
    assert empty.returncode == 0, empty.stderr
    assert "5 interval(s) would run, 0 would be skipped" in empty.stdout
    assert rows(db, "SELECT count() FROM system.databases WHERE name = 'data_warehouse'") == [(0,)]

    assert backfill("days", "--start", day(0), "--end", day(2), env={"FAIL_DAY": day(1)}).returncode == 1
    before = snapshot()
    for policy in ([], ["--rerun", "failed"], ["--force"]):
        plan = backfill("days", *FIVE, "--dry-run", *policy)
        assert plan.returncode == 0, plan.stderr
        assert snapshot() == before
    default = backfill("days", *FIVE, "--dry-run")
    assert f"\ndays\t{day(0)}\tskip\tdone: run " in default.stdout
    assert f"\ndays\t{day(1)}\trun\tretry: run " in default.stdout
    assert f"failed (error): ValueError: source has no file for {day(1)}" in default.stdout
    assert f"\ndays\t{day(2)}\trun\tnever run" in default.stdout
    assert "4 interval(s) would run, 1 would be skipped" in default.stdout


@pytest.mark.embedded_only("a server runs --parallel workers for real")
def test_parallel_runs_sequentially_on_the_embedded_store(module: Path, db: Store) -> None:
    """Workers would only take turns on the embedded store's lock (measured 1.6-1.75x slower)."""
    sequential = backfill("days", *FIVE)
    parallel = backfill("days_copy", *FIVE, "--parallel", "2")
    assert sequential.returncode == 0, sequential.stderr
    assert parallel.returncode == 0, parallel.stderr
    assert parallel.stderr.count("note: --parallel 2 runs sequentially on the embedded store") == 1
    assert "at a time" not in parallel.stderr.replace("one process at a time", "")
    assert content(db, "copy_t") == content(db, "days_t")
    assert len(content(db, "copy_t")) == 30
    history = runs("days_copy")
    assert len(history) == 5 and {r["status"] for r in history} == {"success"}
    assert {r["trigger"] for r in history} == {"backfill"} and len({r["pid"] for r in history}) == 1
    again = backfill("days_copy", *FIVE, "--parallel", "2")
    assert again.returncode == 0 and "0 interval(s) to run, 5 skipped" in again.stderr


@pytest.mark.slow
def test_ctrl_c_records_an_interrupted_run_and_the_same_command_resumes(module: Path, db: Store,
                                                                         tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    env = {"TEST_MARKER": str(marker), "SLOW_SECONDS": "30"}
    assert backfill("slow", "--start", day(0), "--end", day(0)).returncode == 0  # the table exists now
    proc = subprocess.Popen([sys.executable, str(SRC / "main.py"), "backfill", "slow", *FIVE],
                            env=cli_env(env), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(marker.exists, what="the first interval to start")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert f"failed slow {day(1)} (interrupted)" in out
    assert "interrupted: the interrupted run was recorded as failed (interrupted)" in err
    assert "\nslow\t5\t0\t1\t1\t3\t" in out
    assert len(marker.read_text().splitlines()) == 1  # no interval started after Ctrl-C
    history = runs("slow")
    assert [(r["interval_start"][:10], r["status"], r["reason"]) for r in history] == [
        (day(0), "success", ""), (day(1), "failed", "interrupted")]
    assert rows(db, "SELECT name FROM system.tables WHERE name LIKE '\\_dp\\_stage\\_%'") == []
    resumed = backfill("slow", *FIVE, env={"SLOW_SECONDS": "0"})
    assert resumed.returncode == 0, resumed.stderr
    assert "4 interval(s) to run, 1 skipped" in resumed.stderr
    assert rows(db, "SELECT count() FROM slow_t") == [(30,)]


def test_hourly_pipelines_run_hour_by_hour_with_hourly(module: Path, db: Store) -> None:
    plan = backfill("hourly", "days", "--start", day(0), "--end", day(1), "--hourly", "--dry-run")
    assert plan.returncode == 0, plan.stderr
    assert "50 interval(s) would run, 0 would be skipped" in plan.stdout  # 48 hours + 2 days
    planned = [(r[0], r[1]) for r in plan_rows(plan.stdout)]
    assert planned[:2] == [("hourly", f"{day(0)}T00:00"), ("hourly", f"{day(0)}T01:00")]
    assert planned[-2:] == [("days", day(0)), ("days", day(1))]
    # Hours loaded one by one cover the day: a daily backfill then skips it.
    assert backfill("hourly", "--start", day(0), "--end", day(0), "--hourly").returncode == 0
    assert rows(db, "SELECT count() FROM hourly_t") == [(144,)]
    # Without --hourly the hours of a day run as one batch: one run, each hour covered (issue 27).
    daily = backfill("hourly", "--start", day(0), "--end", day(1), "--dry-run")
    planned = plan_rows(daily.stdout)
    assert len(planned) == 48 and "24 interval(s) would run in 1 run(s), 24 would be skipped" in daily.stdout
    assert planned[0][:3] == ("hourly", f"{day(0)}T00:00", "skip") and planned[0][3].startswith("done: run ")
    assert planned[24] == ("hourly", f"{day(1)}T00:00", "run", "never run")
    ran = backfill("hourly", "--start", day(0), "--end", day(1))
    assert ran.returncode == 0, ran.stderr
    assert "24 interval(s) to run in 1 run(s), 24 skipped" in ran.stderr
    [batch] = [r for r in runs("hourly") if r["interval_start"][:10] == day(1)]
    assert (batch["interval_start"][11:16], batch["interval_end"][:10]) == ("00:00", day(2))
    covered = rows(db, "SELECT interval_start, interval_end, run_id, rows_loaded FROM _dp_coverage FINAL "
                       f"WHERE pipeline = 'hourly' AND toDate(interval_start) = '{day(1)}' ORDER BY interval_start")
    assert len(covered) == 24 and {c[2] for c in covered} == {batch["run_id"]}
    assert all(c[1] - c[0] == timedelta(hours=1) for c in covered)
    # The batch's extractor saw the whole day: a row every 4 hours, each counted in its own hour.
    assert [c[3] for c in covered] == [1, 0, 0, 0] * 6


def test_bad_input_is_refused_with_a_clear_message(module: Path) -> None:
    cases = [
        (["appender"], "Pipeline 'appender' cannot be backfilled: its loader writes in mode 'append'"),
        (["reads_all"], "Pipeline 'reads_all' cannot be backfilled: its extractor (Everything) does not declare "
                        "interval_aware = True"),
        (["nope"], "No pipeline named 'nope'"),
        (["0", "days"], "DAYS must be between 1 and 3660, got 0"),
        (["3", "days", "--start", "2025-03-01"], "give either DAYS or --start/--end, not both"),
        (["days", "--start", "2025-03-05", "--end", "2025-03-01"], "--end (2025-03-01) is before --start (2025-03-05)"),
        (["days", "--start", "01/03/2025"], "--start must be a date like 2026-01-31, got '01/03/2025'"),
        (["days", "--end", "2025-03-01"], "--end needs --start"),
        (["days", "--start", (datetime.now(UTC).date() + timedelta(days=1)).isoformat()], "must be before today"),
        (["days", "--start", "2025-03-01", "--end", datetime.now(UTC).date().isoformat()],
         f"--end ({datetime.now(UTC).date()}) must be before today"),
        (["days", "--rerun", "failed", "--force"], "--force means --rerun all; it contradicts --rerun failed"),
    ]
    for args, message in cases:
        result = backfill(*args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert message in result.stderr, (args, result.stderr)
    assert "cron_run appender --date YYYY-MM-DD" in backfill("appender").stderr
    assert backfill("days", "--parallel", "0").returncode == 2


def plan_rows(stdout: str) -> list[tuple[str, ...]]:
    """The rows of a printed plan (TSV when piped: the header and the summary line left out)."""
    return [tuple(line.split("\t")) for line in stdout.splitlines()
            if "\t" in line and not line.startswith("pipeline\t")]


def test_default_set_is_every_backfillable_pipeline_and_days_end_yesterday(module: Path) -> None:
    plan = backfill("2", "--dry-run")
    assert plan.returncode == 0, plan.stderr
    today = datetime.now(UTC).date()
    expected = [(name, (today - timedelta(days=n)).isoformat(), "run", "never run")
                for name in ("days", "days_copy", "slow") for n in (2, 1)]
    expected += [("hourly", f"{today - timedelta(days=n)}T{h:02}:00", "run", "never run") for n in (2, 1)
                 for h in range(24)]
    assert sorted(plan_rows(plan.stdout)) == sorted(expected)
    assert "54 interval(s) would run in 8 run(s), 0 would be skipped" in plan.stdout


def test_backfill_list_shows_coverage(module: Path) -> None:
    today = datetime.now(UTC).date()
    assert backfill("3", "days").returncode == 0
    assert run_cli("cron_run", "days", "--date", (today - timedelta(days=5)).isoformat(),
                   env={"FAIL_DAY": (today - timedelta(days=5)).isoformat()}).returncode == 1
    listing = run_cli("backfill_list", "--days", "10", "--json")
    assert listing.returncode == 0, listing.stderr
    data = json.loads(listing.stdout)
    by_name = {p["name"]: p for p in data["pipelines"]}
    assert set(by_name) == {"days", "days_copy", "slow", "hourly"}
    assert by_name["days"] | {} == {
        "name": "days", "granularity": "day", "table": "days_t", "enabled": True,
        "first_day": (today - timedelta(days=10)).isoformat(), "intervals": 10, "done": 3,
        "failed": 1, "running": 0, "incomplete": 0, "missing": 6, "last_done": (today - timedelta(days=1)).isoformat()}
    assert by_name["hourly"]["intervals"] == 240 and by_name["hourly"]["last_done"] is None
    assert {p["name"] for p in data["not_backfillable"]} == {"appender", "reads_all"}
    human = run_cli("backfill_list", "--days", "10")
    assert f"days\tday\tdays_t\t10\t3\t1\t0\t6\t{(today - timedelta(days=1)).isoformat()}" \
        in human.stdout.splitlines()  # piped: TSV, the tables' titles on stderr
    assert "not backfillable" in human.stderr and "mode 'append'" in human.stdout


def test_backfill_counts_compares_table_rows_with_what_runs_loaded(module: Path, db: Store) -> None:
    today = datetime.now(UTC).date()
    days = [(today - timedelta(days=n)) for n in (4, 3, 2, 1)]
    assert backfill("3", "days").returncode == 0  # days[1..3]
    # Rows that no run loaded (someone inserted by hand) make a mismatch.
    db.command(f"INSERT INTO days_t (ts, v, label, _dp_run_id) VALUES ('{days[2]} 05:00:00', 0, 'x', 'hand')")
    db.close()
    result = run_cli("backfill_counts", "4", "days", "--json")
    assert result.returncode == 0, result.stderr
    [item] = json.loads(result.stdout)["pipelines"]
    assert item["table"] == "days_t" and item["time_column"] == "ts" and item["total_rows"] == 19
    assert item["days"] == [
        {"date": days[0].isoformat(), "rows": 0, "reported": None, "status": "no data"},
        {"date": days[1].isoformat(), "rows": 6, "reported": 6, "status": "ok"},
        {"date": days[2].isoformat(), "rows": 7, "reported": 6, "status": "mismatch"},
        {"date": days[3].isoformat(), "rows": 6, "reported": 6, "status": "ok"},
    ]
    human = run_cli("backfill_counts", "4")
    assert human.returncode == 0, human.stderr
    assert "days -> days_t: 19 rows in total" in human.stdout
    assert f"2 day(s) need a look: {days[0]} (no data), {days[2]} (mismatch)" in human.stdout
    assert "appender -> append_t: table does not exist yet" in human.stdout
    # Re-running the mismatched day restores what the run reports.
    assert backfill("days", "--start", days[2].isoformat(), "--end", days[2].isoformat(), "--force").returncode == 0
    fixed = json.loads(run_cli("backfill_counts", "4", "days", "--json").stdout)["pipelines"][0]
    assert fixed["days"][2]["status"] == "ok" and fixed["total_rows"] == 18


def threads(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))


@pytest.mark.embedded_only("hand-overs of the embedded store between processes")
def test_a_backfill_hands_the_store_over_when_someone_waits_and_stays_flat(module: Path, project_env, db) -> None:
    # issue 23 §3: every reopen of the embedded engine in a process keeps 5 threads chdb never frees.
    # A backfill keeps its store while nobody waits; from its first hand-over on its runs happen in
    # a worker process that exits at each hand-over, so the backfill process does not grow.
    job_log = Path(project_env["LOG_DIR"]) / "jobs" / "slow.log"
    system_log = Path(project_env["LOG_DIR"]) / "system" / "application.log"

    def done() -> int:
        return job_log.read_text().count(" succeeded in ") if job_log.exists() else 0

    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, str(SRC / "main.py"), "backfill", "slow", "--start", "2025-03-01",
                             "--end", "2025-03-22"], env=cli_env({"SLOW_SECONDS": "0.4"}), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    taker = StoreTaker()
    seen: list[int] = []
    try:
        # Past STORE_SHARE_EVERY (5 s) with nobody waiting: no hand-over, no worker.
        wait_for(lambda: done() >= 3 and time.monotonic() - started > 5.5, timeout=120, what="3 days and 5.5 s")
        assert "Handing the embedded store" not in system_log.read_text()
        for _ in range(3):  # the second process really takes the store in between
            taker.take()
            then = done()  # one more run: the backfill has its store (and its engine) again
            wait_for(lambda: done() > then or proc.poll() is not None, timeout=60, what="one more day")  # noqa: B023
            assert proc.poll() is None, "the backfill ended before the store changed hands 3 times"
            seen.append(threads(proc.pid))
    finally:
        taker.close()
        out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert done() == 22
    assert system_log.read_text().count("Handing the embedded store to a waiting process") >= 1
    # Flat: less than one engine's threads (5) over 2 more hand-overs (the old code: +30 each).
    assert max(seen) - seen[0] < 5, seen
    assert rows(db, "SELECT count(), uniqExact(ts), min(toDate(ts)), max(toDate(ts)) FROM slow_t") == [
        (132, 132, date(2025, 3, 1), date(2025, 3, 22))]
    assert rows(db, "SELECT countDistinct(interval_start) FROM _dp_runs FINAL "
                    "WHERE pipeline = 'slow' AND status = 'success'") == [(22,)]
