"""Smaller defects found while trying the framework as a new user, each through the real CLI."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
from datetime import date
from pathlib import Path

import pytest

from conftest import ROOT, SRC, JsonHandler, cli_env, rows, run_cli, serve, wait_for
from core.store import Store

MODULE = textwrap.dedent('''
    import os, pathlib
    from datetime import timedelta
    import pyarrow as pa
    from core.exceptions import TransientError
    from pipelines.interfaces import Extractor, Transformer
    from pipelines.pipeline_factory import create_el_pipeline, create_etl_pipeline
    from pipelines.tools.extractors.file_extractor import create_file_extractor
    from pipelines.tools.extractors.http_extractor import create_http_extractor
    from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader

    DATA = os.environ.get("TEST_DATA", "/nonexistent")

    class FailOnce(Transformer):
        """A transient failure on the first attempt only (a marker file remembers it)."""
        def transform(self, batch, context):
            marker = pathlib.Path(DATA) / "failed-once"
            if not marker.exists():
                marker.write_text("x")
                raise TransientError("the source hiccuped")
            return batch

    class Year(Extractor):
        interval_aware = True
        def extract(self, context):
            days = (context.end - context.start).days
            ts = [context.start + timedelta(days=d, hours=12) for d in range(days)]
            yield pa.table({"ts": pa.array(ts, pa.timestamp("us", tz="UTC")), "v": list(range(days))})

    def csv(malformed="skip"):
        extractor = create_file_extractor(DATA + "/orders.csv", malformed=malformed, types={"amount": "float"})
        extractor.interval_aware = True  # each day reads "its" file: the pipeline owns its interval
        return extractor

    def http(retries, prefetch=True):
        return create_http_extractor(os.environ.get("TEST_URL", "http://127.0.0.1:9") + "/items", retries=retries,
                                     backoff=0.01, max_backoff=60, prefetch=prefetch)

    PIPELINE_REGISTRY = {
        "orders": {"pipeline": create_el_pipeline(csv(), create_clickhouse_loader("orders_t"), "orders")},
        "orders_retry": {"pipeline": create_etl_pipeline(csv(), FailOnce(), create_clickhouse_loader("orders_r"),
                                                         "orders_retry"), "retries": 2, "retry_delay": 0.01},
        "orders_strict": {"pipeline": create_el_pipeline(csv("error"), create_clickhouse_loader("orders_s"), "s")},
        "api": {"pipeline": create_el_pipeline(http(2), create_clickhouse_loader("api_t"), "api")},
        "api_down": {"pipeline": create_el_pipeline(http(3), create_clickhouse_loader("api_d"), "api_down")},
        "year": {"pipeline": create_el_pipeline(Year(), create_clickhouse_loader("year_t", time_column="ts"), "year")},
    }
''')


@pytest.fixture
def module(pipelines_dir: Path, tmp_path: Path, project_env, monkeypatch: pytest.MonkeyPatch) -> Path:
    (pipelines_dir / "defects_pipeline.py").write_text(MODULE)
    data = tmp_path / "input"
    data.mkdir()
    (data / "orders.csv").write_text("id,amount\n1,9.5\n2,oops,extra\n3,7.25\n")
    monkeypatch.setenv("TEST_DATA", str(data))
    return data


def job_log(project_env, name: str) -> str:
    return (Path(project_env["LOG_DIR"]) / "jobs" / f"{name}.log").read_text()


def runs_json(name: str) -> list[dict]:
    result = run_cli("runs", name, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


class FlakyApi(JsonHandler):
    calls = 0
    lock = threading.Lock()

    def do_GET(self) -> None:
        with FlakyApi.lock:
            FlakyApi.calls += 1
            first = FlakyApi.calls == 1
        if first:
            self.send_json({"error": "busy"}, 503)
        else:
            self.send_json([{"id": 1}, {"id": 2}])


class DownApi(JsonHandler):
    def do_GET(self) -> None:
        self.send_response(503)
        self.send_header("Retry-After", "60")
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_the_prefetch_threads_lines_reach_the_runs_job_log(module: Path, project_env) -> None:
    FlakyApi.calls = 0
    with serve(FlakyApi) as base:
        result = run_cli("cron_run", "api", env={"TEST_URL": base})
    assert result.returncode == 0, result.stderr
    [run] = runs_json("api")
    log = job_log(project_env, "api")
    assert f"[api {run['run_id']}] http: GET {base}/items: HTTP 503; retry 1/2 in" in log


def test_quarantine_is_replaced_per_interval_and_staged_with_retries(module: Path, db: Store, project_env) -> None:
    for _ in range(2):
        assert run_cli("cron_run", "orders", "--date", "2026-01-15").returncode == 0
    assert run_cli("cron_run", "orders", "--date", "2026-01-16").returncode == 0
    assert rows(db, "SELECT toDate(interval_start), line, raw FROM _dp_quarantine ORDER BY 1") == [
        (date(2026, 1, 15), 3, "2,oops,extra"), (date(2026, 1, 16), 3, "2,oops,extra")]
    # A retried attempt does not store its bad rows twice.
    result = run_cli("cron_run", "orders_retry", "--date", "2026-01-15")
    assert result.returncode == 0, result.stderr
    [run] = runs_json("orders_retry")
    assert run["attempt"] == 2 and run["rows_quarantined"] == 1
    assert rows(db, "SELECT count() FROM _dp_quarantine WHERE pipeline = 'orders_retry'") == [(1,)]


@pytest.mark.slow
def test_sigterm_during_a_retry_backoff_ends_the_run_promptly(module: Path, project_env) -> None:
    with serve(DownApi) as base:
        proc = subprocess.Popen([sys.executable, str(SRC / "main.py"), "cron_run", "api_down"],
                                env=cli_env({"TEST_URL": base}), cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: "retry 1/3 in" in (Path(project_env["LOG_DIR"]) / "system" / "application.log")
                     .read_text(errors="replace") if (Path(project_env["LOG_DIR"]) / "system" /
                                                       "application.log").exists() else False,
                     what="the first retry backoff")
            proc.send_signal(signal.SIGTERM)
            # The backoff is 60 s and the old code waited up to 31 s for the thread: well under that.
            proc.wait(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 1, proc.stderr.read() if proc.stderr else ""
    [run] = runs_json("api_down")
    assert run["status"] == "failed" and run["reason"] == "killed"


def test_a_directory_that_cannot_be_written_is_one_line(module: Path, project_env, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for variable in ("DATA_DIR", "RUN_DIR"):
        bad = blocker / variable.lower()
        env = {variable: str(bad)}
        for command in (["cron_run", "orders"], ["runs"], ["list"]):
            result = run_cli(*command, env=env)
            assert "Traceback" not in result.stderr, (variable, command, result.stderr)
            if command[0] == "cron_run" or result.returncode:  # a command that needs no RUN_DIR may work
                assert result.returncode == 1, (variable, command, result.stdout, result.stderr)
                assert result.stderr.strip().splitlines()[-1].startswith(
                    f"error: {variable} {bad} is not writable"), (variable, command, result.stderr)
        check = run_cli("check", "--json", env=env)
        assert check.returncode == 1 and "Traceback" not in check.stderr, check.stderr
        details = [c["detail"] for c in json.loads(check.stdout)["checks"] if c["status"] == "fail"]
        assert any(d.startswith(f"{variable} {bad} is not writable") for d in details), details


@pytest.mark.slow
def test_a_year_of_daily_partitions_loads_in_one_run(module: Path, db: Store) -> None:
    result = run_cli("cron_run", "year", "--start", "2025-01-01", "--end", "2026-01-01", timeout=600)
    assert result.returncode == 0, result.stderr
    assert rows(db, "SELECT count(), uniqExact(toDate(ts)), sum(v) FROM year_t") == [(365, 365, sum(range(365)))]


def test_an_expected_input_error_is_one_line_without_traceback(module: Path, project_env) -> None:
    (module / "orders.csv").write_text("id,amount\n1,9.5\n2,abc\n")
    result = run_cli("cron_run", "orders_strict", "--date", "2026-01-15")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    error_lines = [line for line in result.stderr.splitlines() if " ERROR " in line or line.startswith("failed")]
    assert any("line 3: column 'amount' cannot be read as double: invalid value 'abc'" in line for line in error_lines)
    assert "Traceback" not in job_log(project_env, "orders_strict")
    debug = run_cli("--debug", "cron_run", "orders_strict", "--date", "2026-01-15")
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr


HOLDER = textwrap.dedent('''
    import pathlib, sys, time
    sys.path.insert(0, sys.argv[1])
    from core.config import load_settings
    from core.store import Store
    store = Store(load_settings())
    release = pathlib.Path(sys.argv[2])
    with store.session():
        pathlib.Path(sys.argv[3]).write_text("holding")
        deadline = time.monotonic() + 60
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    store.close()
''')


@pytest.mark.slow
def test_a_run_that_gives_up_waiting_for_the_store_is_recorded(module: Path, project_env, tmp_path: Path) -> None:
    from core.config import load_settings

    if not load_settings().is_embedded:
        pytest.skip("STORE_LOCK_TIMEOUT is the embedded store's lock")
    assert run_cli("setup_db").returncode == 0
    release, holding = tmp_path / "release", tmp_path / "holding"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(SRC), str(release), str(holding)],
                              env=cli_env(), cwd=ROOT)
    try:
        wait_for(holding.exists, what="the holder to take the store")
        run = subprocess.Popen([sys.executable, str(SRC / "main.py"), "cron_run", "orders", "--date", "2026-01-15"],
                               env=cli_env({"STORE_LOCK_TIMEOUT": "3"}), cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        log = Path(project_env["LOG_DIR"]) / "jobs" / "orders.log"
        wait_for(lambda: log.exists() and "gave up waiting for the embedded store" in log.read_text(),
                 what="the run to give up")
        release.write_text("go")  # the store is free again: the failed run can now be recorded
        _, stderr = run.communicate(timeout=60)
    finally:
        release.write_text("go")
        holder.wait(timeout=60)
    assert run.returncode == 1, stderr
    assert "Traceback" not in stderr
    [record] = runs_json("orders")
    assert record["status"] == "failed" and record["reason"] == "store_lock_timeout"
    assert "STORE_LOCK_TIMEOUT" in record["error"]
