"""The foreground scheduler: real subprocesses, real runs, real signals."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import ROOT, SRC, cli_env, run_cli, wait_for

MODULE = textwrap.dedent('''
    import os, pathlib, time
    import pyarrow as pa
    from pipelines.interfaces import Extractor
    from pipelines.pipeline_factory import create_el_pipeline
    from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader

    class Rows(Extractor):
        def __init__(self, name, sleep=0.0):
            super().__init__(name)
            self.sleep = sleep
        def extract(self, context):
            yield pa.table({"n": [1, 2, 3]})
            if os.environ.get("HOLD_DIR"):  # the loop test: say where this run is (inside the run, signals handled)
                self.hold(pathlib.Path(os.environ["HOLD_DIR"]), context.pipeline)
            time.sleep(self.sleep)
        def hold(self, directory, name):
            count = directory / f"{name}.count"  # a pipeline's runs never overlap: a plain counter
            n = int(count.read_text()) + 1 if count.exists() else 1
            count.write_text(str(n))
            if name == "quick" and n < 3:
                return
            (directory / f"{name}.holding").write_text(str(os.getpid()))
            deadline = time.monotonic() + 120
            while name == "quick" and time.monotonic() < deadline:  # the third quick run waits to be stopped
                time.sleep(0.05)

    def pipe(table, sleep=0.0):
        return create_el_pipeline(Rows(table, sleep), create_clickhouse_loader(table), table)

    PIPELINE_REGISTRY = {
        "utc2": {"pipeline": pipe("utc2_t"), "schedule": "0 2 * * *", "timezone": "UTC"},
        "berlin3": {"pipeline": pipe("berlin3_t"), "schedule": "0 3 * * *", "timezone": "Europe/Berlin"},
        "berlin2": {"pipeline": pipe("berlin2_t"), "schedule": "0 2 * * *", "timezone": "Europe/Berlin"},
        "quick": {"pipeline": pipe("quick_t"), "schedule": "* * * * *" if os.environ.get("LOOP") else None},
        "slow": {"pipeline": pipe("slow_t", 60), "schedule": "* * * * *" if os.environ.get("LOOP") else None},
        "paused": {"pipeline": pipe("paused_t"), "schedule": "* * * * *", "enabled": False},
        "manual": {"pipeline": pipe("manual_t")},
    }
    if os.environ.get("LOOP"):  # the loop test runs a fast clock from now: keep only its pipelines
        for name in ("utc2", "berlin3", "berlin2"):
            del PIPELINE_REGISTRY[name]
''')


@pytest.fixture
def module(pipelines_dir: Path) -> Path:
    (pipelines_dir / "test_pipeline.py").write_text(MODULE)
    return pipelines_dir


def _runs() -> list[dict]:
    result = run_cli("runs", "--json", "--limit", "1000")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.slow
def test_once_fires_what_is_due_in_each_pipelines_zone(module: Path) -> None:
    winter = run_cli("scheduler", "--once", "--now", "2026-01-15T02:00:30Z")
    assert winter.returncode == 0, winter.stderr
    assert winter.stdout.count(": exit 0") == 2 and "utc2: exit 0" in winter.stdout
    assert "berlin3: exit 0" in winter.stdout  # 03:00 CET is 02:00 UTC
    summer = run_cli("scheduler", "--once", "--now", "2026-07-15T03:00+02:00")
    assert summer.returncode == 0  # 03:00 CEST is 01:00 UTC
    assert [line for line in summer.stdout.splitlines() if ": exit " in line] == ["berlin3: exit 0"]
    assert "success berlin3 " in summer.stdout  # the child's own output comes through
    runs = _runs()
    assert sorted((r["pipeline"], r["trigger"], r["status"]) for r in runs) == [
        ("berlin3", "scheduler", "success"), ("berlin3", "scheduler", "success"), ("utc2", "scheduler", "success")]
    nothing = run_cli("scheduler", "--once", "--now", "2026-01-15T02:01")
    assert nothing.returncode == 0 and nothing.stdout.strip() == "Nothing due at 2026-01-15 02:01 UTC"
    bad = run_cli("scheduler", "--once", "--now", "tomorrow")
    assert bad.returncode == 2 and "--now must be a date-time like 2026-01-15T02:00, got 'tomorrow'" in bad.stderr
    assert run_cli("scheduler", "--now", "2026-01-15T02:00").returncode == 2


@pytest.mark.slow
def test_loop_starts_new_processes_skips_overlaps_and_stops_on_sigterm(module: Path, tmp_path: Path,
                                                                        project_env) -> None:
    """``--tick 1``: a scheduler minute lasts one real second; everything else is real.

    Synchronised on what the runs say, never on time: two quick runs succeed; the third stays in
    its extract (it would otherwise race SIGTERM: done in time, or stopped) and is stopped with
    slow, both recorded as failed (killed)."""
    log, hold = tmp_path / "scheduler.out", tmp_path / "hold"
    hold.mkdir()
    with log.open("w") as out:
        scheduler = subprocess.Popen(
            [sys.executable, str(SRC / "main.py"), "scheduler", "--tick", "1", "--grace", "1"],
            env=cli_env({"LOOP": "1", "HOLD_DIR": str(hold)}), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        try:
            def under_way() -> bool:
                text = log.read_text()
                return ((hold / "quick.holding").exists() and (hold / "slow.holding").exists()
                        and "Not starting slow for " in text and "Not starting quick for " in text)

            wait_for(under_way, timeout=120, what="two quick runs done, a third and slow inside their runs")
            assert scheduler.poll() is None
            started = time.monotonic()
            scheduler.send_signal(signal.SIGTERM)
            assert scheduler.wait(timeout=60) == 0
            stop_seconds = time.monotonic() - started
        finally:
            if scheduler.poll() is None:
                scheduler.kill()
    text = log.read_text()
    assert "Scheduler started (pid" in text and "2 scheduled pipeline(s): quick (* * * * *), slow (* * * * *)" in text
    assert "Not starting slow for " in text and "its previous run (pid" in text
    assert "Stopping: no new runs; waiting up to 1 s for 2 running pipeline(s)" in text
    third, slow_pid = (int((hold / f"{name}.holding").read_text()) for name in ("quick", "slow"))
    for name, pid in (("quick", third), ("slow", slow_pid)):
        assert f"Stopping {name} (pid {pid}) with SIGTERM: it is recorded as failed (killed)" in text
    assert stop_seconds < 15
    runs = sorted(_runs(), key=lambda r: r["started_at"])
    slow = [r for r in runs if r["pipeline"] == "slow"]
    assert [(r["status"], r["reason"], r["trigger"], r["pid"]) for r in slow] == [
        ("failed", "killed", "scheduler", slow_pid)]
    quick = [r for r in runs if r["pipeline"] == "quick"]
    succeeded = [int(pid) for pid in re.findall(r"quick \(pid (\d+)\) succeeded", text)]
    assert len(succeeded) == 2
    assert [(r["status"], r["reason"], r["trigger"], r["pid"]) for r in quick] == [
        ("success", "", "scheduler", succeeded[0]), ("success", "", "scheduler", succeeded[1]),
        ("failed", "killed", "scheduler", third)]
    assert {r["pipeline"] for r in runs} == {"quick", "slow"}  # paused, manual and the others never fired
    assert list((Path(project_env["RUN_DIR"]) / "pids").glob("*.json")) == []
