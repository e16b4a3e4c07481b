"""The runner, end to end through the real CLI in new processes, on the embedded engine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from datetime import date
from pathlib import Path

import pytest

from conftest import ROOT, SRC, JsonHandler, cli_env, rows, run_cli, serve, wait_for
from core.store import Store

MODULE = textwrap.dedent('''
    import os, pathlib, time
    from datetime import timedelta
    import httpx
    import pyarrow as pa
    from pipelines.interfaces import Extractor, Transformer
    from pipelines.pipeline_factory import create_el_pipeline, create_etl_pipeline
    from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader

    MARKER = os.environ.get("TEST_MARKER", "")

    class Hours(Extractor):
        """24 rows, one per hour of the run's day; optionally slow (to be caught mid-run)."""
        interval_aware = True
        def __init__(self, sleep=0.0):
            super().__init__("hours")
            self.sleep = sleep
        def extract(self, context):
            if MARKER:
                pathlib.Path(MARKER).write_text(str(os.getpid()))
            deadline = time.monotonic() + float(os.environ.get("SLOW_SECONDS", self.sleep))
            while time.monotonic() < deadline:
                time.sleep(0.05)
            ts = [context.start + timedelta(hours=h) for h in range(24)]
            yield pa.table({"ts": pa.array(ts, pa.timestamp("ms", tz="UTC")), "v": list(range(24))})

    class Boom(Transformer):
        def transform(self, batch, context):
            raise ValueError("cannot parse amount 'abc' in row 3")

    class Flaky(Extractor):
        """Reads a local endpoint that answers 503 a few times before 200."""
        def extract(self, context):
            response = httpx.get(os.environ["TEST_URL"], timeout=5)
            response.raise_for_status()
            yield pa.table({"n": [int(x) for x in response.json()]})

    class Cursor(Extractor):
        """Moves an incremental cursor; fails after setting it when FAIL_CURSOR is set."""
        def extract(self, context):
            seen = context.state.get("cursor", 0)
            context.state.set("cursor", seen + 10)
            yield pa.table({"n": list(range(seen, seen + 10))})
            if os.environ.get("FAIL_CURSOR"):
                raise RuntimeError("source went away")

    def loader(table):
        return create_clickhouse_loader(table, time_column="ts")

    PIPELINE_REGISTRY = {
        "hours": {"pipeline": create_el_pipeline(Hours(), loader("hours_t"), "hours"),
                  "description": "one row per hour", "schedule": "0 2 * * *", "table_name": "hours_t"},
        "slow": {"pipeline": create_el_pipeline(Hours(sleep=30), loader("slow_t"), "slow"), "schedule": None},
        "boom": {"pipeline": create_etl_pipeline(Hours(), Boom(), loader("boom_t"), "boom")},
        "flaky": {"pipeline": create_el_pipeline(Flaky(), create_clickhouse_loader("flaky_t"), "flaky"),
                  "retries": 3, "retry_delay": 0.05},
        "flaky_no_retry": {"pipeline": create_el_pipeline(Flaky(), create_clickhouse_loader("flaky2_t"), "f2")},
        "cursor": {"pipeline": create_el_pipeline(Cursor(), create_clickhouse_loader("cursor_t"), "cursor")},
        "timeout": {"pipeline": create_el_pipeline(Hours(sleep=30), loader("timeout_t"), "timeout"), "timeout": 1},
    }
''')


@pytest.fixture
def module(pipelines_dir: Path) -> Path:
    (pipelines_dir / "test_pipeline.py").write_text(MODULE)
    return pipelines_dir


def runs_json(*args: str) -> list[dict]:
    result = run_cli("runs", "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_run_lands_its_rows_exactly_once(module: Path, db: Store, project_env) -> None:
    for _ in range(2):
        result = run_cli("cron_run", "hours", "--date", "2026-01-15")
        assert result.returncode == 0, result.stderr
        assert "success hours 2026-01-15: 24 rows loaded (24 extracted)" in result.stdout
    assert run_cli("cron_run", "hours", "--date", "2026-01-16").returncode == 0
    assert rows(db, "SELECT toDate(ts), count(), sum(v) FROM hours_t GROUP BY 1 ORDER BY 1") == [
        (__import__("datetime").date(2026, 1, 15), 24, 276), (__import__("datetime").date(2026, 1, 16), 24, 276)]
    history = runs_json("hours")
    assert [r["status"] for r in history] == ["success"] * 3
    assert history[0]["rows_loaded"] == 24 and history[0]["trigger"] == "manual"
    assert history[0]["interval_start"].startswith("2026-01-16T00:00:00")
    log = (Path(project_env["LOG_DIR"]) / "jobs" / "hours.log").read_text()
    assert log.count("started: pipeline hours") == 3
    assert f"Run {history[0]['run_id']} succeeded in" in log
    assert "24 rows extracted, 24 transformed, 24 loaded in 1 batches" in log
    listing = run_cli("list")
    assert "success" in listing.stdout and "0 2 * * *" in listing.stdout


def test_a_failing_transformer_fails_the_run_with_a_traceback(module: Path, db: Store, project_env) -> None:
    result = run_cli("cron_run", "boom", "--date", "2026-01-15")
    assert result.returncode == 1
    assert "failed boom 2026-01-15 (error): ValueError: cannot parse amount 'abc' in row 3" in result.stderr
    assert f"details: {project_env['LOG_DIR']}/jobs/boom.log" in result.stderr
    [run] = runs_json("boom")
    assert run["status"] == "failed" and run["reason"] == "error" and run["rows_loaded"] == 0
    assert run["error"] == "ValueError: cannot parse amount 'abc' in row 3"
    log = (Path(project_env["LOG_DIR"]) / "jobs" / "boom.log").read_text()
    assert "Traceback (most recent call last)" in log and 'raise ValueError("cannot parse amount' in log
    # Nothing half-written: no target table and no staging table after a first run that failed ...
    ours = ("SELECT name FROM system.tables WHERE database = currentDatabase() AND (name LIKE '%boom%' "
            "OR name LIKE '%hours%') ORDER BY name")
    assert rows(db, ours) == []
    # ... and a table's rows are exactly those of the last good load after a later one.
    assert run_cli("cron_run", "hours", "--date", "2026-01-15").returncode == 0
    db.command("CREATE TABLE boom_t AS hours_t")
    db.command("INSERT INTO boom_t SELECT * FROM hours_t")
    assert run_cli("cron_run", "boom", "--date", "2026-01-15").returncode == 1
    assert rows(db, "SELECT toDate(ts), count(), sum(v) FROM boom_t GROUP BY 1") == [(date(2026, 1, 15), 24, 276)]
    assert rows(db, ours) == [("boom_t",), ("hours_t",)]


def _start(name: str, marker: Path, *extra: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, str(SRC / "main.py"), "cron_run", name, "--date", "2026-01-15", *extra],
                            env=cli_env({"TEST_MARKER": str(marker)}), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_for(marker.exists, what=f"{name} to start extracting")
    return proc


@pytest.mark.slow
def test_a_second_run_of_a_running_pipeline_exits_75(module: Path, tmp_path: Path, project_env) -> None:
    first = _start("slow", tmp_path / "marker")
    try:
        second = run_cli("cron_run", "slow", "--date", "2026-01-15")
        assert second.returncode == 75
        assert "Pipeline 'slow' is already running for 2026-01-15 (pid " + str(first.pid) in second.stderr
        ps_files = list((Path(project_env["RUN_DIR"]) / "pids").glob("*.json"))
        assert [json.loads(p.read_text())["pid"] for p in ps_files] == [first.pid]
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
    assert first.returncode == 1
    [run] = runs_json("slow")
    assert run["status"] == "failed" and run["reason"] == "killed"
    assert list((Path(project_env["RUN_DIR"]) / "pids").glob("*.json")) == []


@pytest.mark.slow
def test_kill_9_leaves_a_crashed_run_and_the_next_run_succeeds(module: Path, db: Store, tmp_path: Path) -> None:
    assert run_cli("cron_run", "slow", "--date", "2026-01-15", env={"SLOW_SECONDS": "0"}).returncode == 0
    victim = _start("slow", tmp_path / "marker")  # the table exists now: the run has a staging table
    wait_for(lambda: rows(db, "SELECT name FROM system.tables WHERE name LIKE '\\_dp\\_stage\\_slow%'"),
             what="the staging table")
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate(timeout=30)
    crashed = runs_json("slow")[0]
    assert crashed["status"] == "crashed" and crashed["reason"] == "process gone"
    assert f"process {victim.pid} ended without recording an outcome" in crashed["error"]
    # The lock died with the process: the same pipeline and interval run again at once.
    result = run_cli("cron_run", "slow", "--date", "2026-01-15", env={"SLOW_SECONDS": "0"})
    assert result.returncode == 0, result.stderr
    assert [r["status"] for r in runs_json("slow")] == ["success", "crashed", "success"]
    assert rows(db, "SELECT count() FROM slow_t") == [(24,)]
    assert rows(db, "SELECT name FROM system.tables WHERE name LIKE '\\_dp\\_stage\\_%'") == []


def test_timeout_fails_the_run_with_reason_timeout(module: Path) -> None:
    result = run_cli("cron_run", "timeout", "--date", "2026-01-15")
    assert result.returncode == 1
    assert "failed timeout 2026-01-15 (timeout): the run exceeded its timeout of 1 s" in result.stderr
    [run] = runs_json("timeout")
    assert run["status"] == "failed" and run["reason"] == "timeout"


class _Flaky(JsonHandler):
    failures = 2
    calls = 0

    def do_GET(self) -> None:  # noqa: N802
        type(self).calls += 1
        if type(self).calls <= type(self).failures:
            self.send_response(503)
            self.end_headers()
            self.wfile.write(b"busy")
            return
        self.send_json([1, 2, 3])


@pytest.fixture
def flaky_server():
    _Flaky.calls = 0
    with serve(_Flaky) as base:
        yield f"{base}/data", _Flaky


def test_transient_errors_are_retried_then_succeed(module: Path, db: Store, flaky_server, project_env) -> None:
    url, handler = flaky_server
    result = run_cli("cron_run", "flaky", env={"TEST_URL": url})
    assert result.returncode == 0, result.stderr
    assert handler.calls == 3
    [run] = runs_json("flaky")
    assert run["status"] == "success" and run["attempt"] == 3 and run["rows_loaded"] == 3
    assert rows(db, "SELECT n FROM flaky_t ORDER BY n") == [(1,), (2,), (3,)]
    log = (Path(project_env["LOG_DIR"]) / "jobs" / "flaky.log").read_text()
    assert log.count("failed with a transient error (HTTPStatusError: Server error '503 Service Unavailable'") == 2


def test_without_retries_a_transient_error_fails_at_once(module: Path, flaky_server) -> None:
    url, handler = flaky_server
    result = run_cli("cron_run", "flaky_no_retry", env={"TEST_URL": url})
    assert result.returncode == 1
    assert handler.calls == 1
    assert runs_json("flaky_no_retry")[0]["attempt"] == 1


def test_state_is_committed_only_after_a_successful_load(module: Path, db: Store) -> None:
    assert run_cli("cron_run", "cursor").returncode == 0
    assert run_cli("cron_run", "cursor", env={"FAIL_CURSOR": "1"}).returncode == 1
    shown = run_cli("state", "cursor")
    assert shown.returncode == 0 and shown.stdout.splitlines()[1].startswith("cursor\t10\t")  # piped: TSV
    assert run_cli("cron_run", "cursor").returncode == 0
    assert rows(db, "SELECT min(n), max(n), count() FROM cursor_t") == [(0, 19, 20)]
    refused = run_cli("state", "cursor", "--reset")
    assert refused.returncode == 2
    reset = run_cli("state", "cursor", "--reset", "--yes")
    assert reset.returncode == 0 and "Reset 1 state value(s) of 'cursor'" in reset.stdout
    assert "'cursor' has no state" in run_cli("state", "cursor").stdout


def test_runs_filters_and_usage_errors(module: Path) -> None:
    assert run_cli("cron_run", "hours", "--date", "2026-01-15").returncode == 0
    assert run_cli("cron_run", "boom", "--date", "2026-01-15").returncode == 1
    assert [r["pipeline"] for r in runs_json("--status", "failed")] == ["boom"]
    assert len(runs_json("--limit", "1")) == 1
    human = run_cli("runs")
    assert "hours" in human.stdout and "boom" in human.stdout and "2026-01-15" in human.stdout

    bad_date = run_cli("cron_run", "hours", "--date", "15/01/2026")
    assert bad_date.returncode == 2
    assert "error: --date must be a date like 2026-01-31, got '15/01/2026'" in bad_date.stderr
    backwards = run_cli("cron_run", "hours", "--start", "2026-01-02", "--end", "2026-01-01")
    assert backwards.returncode == 2 and "--end (2026-01-01) must be after --start (2026-01-02)" in backwards.stderr
    unknown = run_cli("cron_run", "nope")
    assert unknown.returncode == 2 and "No pipeline named 'nope' (known: boom, cursor, flaky" in unknown.stderr


def test_make_context_is_built_by_the_runners_own_function(make_context) -> None:
    from datetime import UTC, datetime

    from audit.run import AUDITOR
    from record.quarantine import RunQuarantine
    from record.state import RunState

    context = make_context("wired", start=datetime(2026, 3, 1, tzinfo=UTC), run_id="run-w-1", table_name="w_t")
    assert (context.pipeline, context.run_id, context.table_name, context.trigger, context.attempt) == (
        "wired", "run-w-1", "w_t", "manual", 1)
    assert (context.start, context.end) == (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC))
    assert context.auditor is AUDITOR and context.settings is context.store.settings
    assert type(context.state) is RunState and type(context.quarantined) is RunQuarantine
    assert (context.checks, context.allow_empty) == ([], False)
