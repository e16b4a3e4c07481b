"""ps, kill and clean against real pipeline processes and the real embedded store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import ROOT, SRC, cli_env, run_cli, wait_for
from core.config import load_settings
from core.store import Store

MODULE = textwrap.dedent('''
    import os, pathlib, signal, time
    import pyarrow as pa
    from pipelines.interfaces import Extractor
    from pipelines.pipeline_factory import create_el_pipeline
    from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader

    class Slow(Extractor):
        """One batch (so the loader has a staging table), then waits; optionally ignores SIGTERM."""
        def __init__(self, name, stubborn=False):
            super().__init__(name)
            self.stubborn = stubborn
        def extract(self, context):
            yield pa.table({"n": [1, 2, 3]})
            if self.stubborn:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
            pathlib.Path(os.environ["MARKERS"], context.pipeline).write_text(str(os.getpid()))
            time.sleep(float(os.environ.get("SLOW_SECONDS", "60")))
            yield pa.table({"n": [4]})

    PIPELINE_REGISTRY = {
        "slow": {"pipeline": create_el_pipeline(Slow("slow"), create_clickhouse_loader("slow_t"), "slow")},
        "stubborn": {"pipeline": create_el_pipeline(Slow("stubborn", True), create_clickhouse_loader("stub_t"), "s")},
    }
''')


@pytest.fixture
def module(pipelines_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (pipelines_dir / "test_pipeline.py").write_text(MODULE)
    markers = tmp_path / "markers"
    markers.mkdir()
    monkeypatch.setenv("MARKERS", str(markers))
    return markers


def _query(sql: str) -> list[tuple]:
    store = Store(load_settings(), linger=0)
    try:
        return store.query_rows(sql)
    finally:
        store.close()


def _start(name: str, markers: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, str(SRC / "main.py"), "cron_run", name], env=cli_env(), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for((markers / name).exists, what=f"{name} to be running")
    return proc


def _runs() -> dict[str, dict]:
    result = run_cli("runs", "--json")
    assert result.returncode == 0, result.stderr
    return {r["pipeline"]: r for r in json.loads(result.stdout)}


def _fake_pid_file(run_dir: Path, name: str, pid: int, cmdline: list[str]) -> Path:
    path = run_dir / "pids" / f"{name}.json"
    path.write_text(json.dumps({"pid": pid, "run_id": name, "pipeline": "ghost", "cmdline": cmdline,
                                "started_at": "2026-01-01T00:00:00+00:00", "lock_file": ""}))
    return path


@pytest.mark.slow
def test_ps_kill_only_our_verified_processes(module: Path, project_env) -> None:
    slow, stubborn = _start("slow", module), _start("stubborn", module)
    run_dir = Path(project_env["RUN_DIR"])
    dead = subprocess.Popen(["true"])
    dead.wait()
    gone = _fake_pid_file(run_dir, "gone", dead.pid, [str(SRC / "main.py"), "cron_run", "ghost"])
    # A live process that is not ours, whatever its pid file claims (here: this test process).
    impostor = _fake_pid_file(run_dir, "impostor", os.getpid(), [str(SRC / "main.py"), "cron_run", "ghost"])
    try:
        listed = json.loads(run_cli("ps", "--json").stdout)
        alive = {r["pipeline"]: r for r in listed if r["alive"]}
        assert set(alive) == {"slow", "stubborn"}
        assert alive["slow"]["pid"] == slow.pid and alive["stubborn"]["pid"] == stubborn.pid
        assert alive["slow"]["interval"] and alive["slow"]["elapsed_seconds"] >= 0
        problems = {Path(r["pid_file"]).stem: r["problem"] for r in listed if not r["alive"]}
        assert problems["gone"] == f"process {dead.pid} is gone"
        assert problems["impostor"].startswith(f"pid {os.getpid()} is now another program (")
        human = run_cli("ps")
        header, *live = [line.split("\t") for line in human.stdout.splitlines()]  # piped: TSV
        assert header[:2] == ["pipeline", "pid"] and len(live) == 2 and str(slow.pid) in [r[1] for r in live]
        assert "stale gone.json: ghost run gone: process" in human.stderr

        started = time.monotonic()
        killed = run_cli("kill", "stubborn", "--grace", "1")
        assert killed.returncode == 0, killed.stderr
        assert f"SIGTERM stubborn (pid {stubborn.pid}" in killed.stdout
        assert f"SIGKILL stubborn (pid {stubborn.pid}" in killed.stdout
        assert "killed (SIGKILL after grace): stubborn run" in killed.stdout
        assert "impostor" not in killed.stderr  # another pipeline's (stale) file: not even mentioned
        stubborn.wait(timeout=30)
        assert stubborn.returncode == -9 and time.monotonic() - started < 30
        assert slow.poll() is None  # only the named pipeline was stopped
        assert os.getpid() > 0  # and the impostor (us) is obviously still here

        stopped = run_cli("kill")
        assert stopped.returncode == 0 and "stopped: slow run" in stopped.stdout
        assert "skipped stale pid file impostor.json" in stopped.stderr
        slow.wait(timeout=30)
        assert slow.returncode == 1
    finally:
        for proc in (slow, stubborn):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    runs = _runs()
    assert (runs["stubborn"]["status"], runs["stubborn"]["reason"]) == ("failed", "killed")
    assert runs["stubborn"]["error"] == "killed with SIGKILL by ./run.sh kill: still running 1 s after SIGTERM"
    assert (runs["slow"]["status"], runs["slow"]["reason"], runs["slow"]["error"]) == ("failed", "killed", "run killed")
    assert _query("SELECT name FROM system.tables WHERE name LIKE '\\_dp\\_stage\\_%'") == []
    assert sorted(p.name for p in (run_dir / "pids").glob("*.json")) == ["gone.json", "impostor.json"]
    assert run_cli("kill").stdout.strip() == "No pipeline is running"

    cleaned = run_cli("clean")
    assert cleaned.returncode == 0, cleaned.stderr
    assert "removed stale pid file: gone.json" in cleaned.stdout
    assert "removed stale pid file: impostor.json" in cleaned.stdout
    assert not gone.exists() and not impostor.exists()


def test_clean_removes_leftovers_but_never_data(project_env, store: Store, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from core.models import RunRecord
    from record.history import record_run
    from record.tables import ensure_framework_tables

    ensure_framework_tables(store)
    store.command(f"CREATE TABLE {store.table('orders')} (n UInt8) ENGINE = MergeTree ORDER BY n")
    store.command(f"INSERT INTO {store.table('orders')} VALUES (1), (2)")
    for name in ("_dp_stage_orders_20260101T000000_deadbeef", "_dp_stage_orders_20260101T000000_0ther0st"):
        store.command(f"CREATE TABLE {store.table(name)} AS {store.table('orders')}")
    # A run 'running' on another host: its staging table cannot be checked from here, so it stays.
    record_run(store, RunRecord(run_id="20260101T000000-0ther0st", pipeline="orders", trigger="cron",
                                status="running", interval_start=datetime(2026, 1, 1, tzinfo=UTC),
                                interval_end=datetime(2026, 1, 2, tzinfo=UTC), started_at=datetime.now(UTC),
                                host="another-host", pid=1))
    store.close()

    logs, run_dir = Path(project_env["LOG_DIR"]), Path(project_env["RUN_DIR"])
    (logs / "jobs").mkdir(parents=True)
    old, recent = logs / "jobs" / "orders.log.2", logs / "jobs" / "orders.log.1"
    for path in (old, recent, logs / "jobs" / "orders.log"):
        path.write_text("x\n")
    month_ago = time.time() - 40 * 86400
    os.utime(old, (month_ago, month_ago))
    (logs / "cron.log").write_text("y" * 5000)
    (run_dir / "pids").mkdir(parents=True)
    tmp = run_dir / "pids" / "20260101T000000-x.tmp"
    tmp.write_text("{")
    os.utime(tmp, (month_ago, month_ago))
    env_file = Path(project_env["ENV_FILE"])
    env_file.write_text("LOG_MAX_BYTES=1024\n")

    dry = run_cli("clean", "--dry-run")
    assert dry.returncode == 0 and "would remove staging table: _dp_stage_orders_20260101T000000_deadbeef" in dry.stdout
    assert old.exists()
    result = run_cli("clean")
    assert result.returncode == 0, result.stderr
    assert "removed staging table: _dp_stage_orders_20260101T000000_deadbeef" in result.stdout
    assert "0ther0st" not in result.stdout
    assert f"removed log older than 30 days: {old}" in result.stdout
    assert f"removed temporary file: {tmp}" in result.stdout
    assert f"rotated: {logs / 'cron.log'}" in result.stdout
    assert not old.exists() and recent.exists() and not tmp.exists() and env_file.exists()
    assert (logs / "cron.log.1").stat().st_size == 5000 and not (logs / "cron.log").exists()
    tables = {name for (name,) in _query("SELECT name FROM system.tables WHERE database = currentDatabase()")}
    assert "orders" in tables and "_dp_stage_orders_20260101T000000_0ther0st" in tables
    assert "_dp_stage_orders_20260101T000000_deadbeef" not in tables
    assert _query("SELECT count() FROM orders") == [(2,)]
    quiet = run_cli("clean", "--quiet")
    assert quiet.returncode == 0 and quiet.stdout == ""

    cleared = run_cli("clean", "--logs")
    assert cleared.returncode == 0
    assert f"cleared log: {recent}" in cleared.stdout
    assert not recent.exists() and not (logs / "cron.log.1").exists()
    assert (logs / "jobs" / "orders.log").read_text() == ""


def test_clean_logs_with_days_keeps_recent_logs(project_env) -> None:
    """``--days`` bounds ``--logs`` too: ``clean --logs --days 30`` never empties today's logs."""
    logs = Path(project_env["LOG_DIR"])
    (logs / "jobs").mkdir(parents=True)
    today, today_rotated = logs / "jobs" / "orders.log", logs / "jobs" / "orders.log.1"
    old, old_rotated = logs / "jobs" / "gone.log", logs / "jobs" / "orders.log.2"
    for path in (today, today_rotated, old, old_rotated, logs / "cron.log"):
        path.write_text("kept?\n")
    month_ago = time.time() - 40 * 86400
    for path in (old, old_rotated):
        os.utime(path, (month_ago, month_ago))

    result = run_cli("clean", "--logs", "--days", "30")
    assert result.returncode == 0, result.stderr
    assert not old.exists() and not old_rotated.exists()
    assert f"removed log older than 30 days: {old}" in result.stdout
    for path in (today, today_rotated, logs / "cron.log"):
        assert path.read_text() == "kept?\n", path
    assert "cleared log" not in result.stdout

    everything = run_cli("clean", "--logs")
    assert everything.returncode == 0, everything.stderr
    assert f"cleared log: {today}" in everything.stdout
    assert today.read_text() == "" and not today_rotated.exists()
