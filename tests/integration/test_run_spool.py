"""A run that could not be recorded (the embedded store stayed busy) still reaches the history and
its alert: it is kept in a local spool (DATA_DIR/spool/runs) and written on the next store turn,
once, even when the process replaying it is killed (kill -9) between writing it and clearing it."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest
from test_alerts import MODULE
from test_store import _hold_store

from conftest import rows, run_cli
from core.store import Store

pytestmark = pytest.mark.embedded_only("STORE_LOCK_TIMEOUT is the embedded store's lock")

# The alert command: appends the event to a file; while the file KILL exists, removes it and
# kills the process that runs it (the replaying command) with SIGKILL: a kill -9 after the run
# was written to _dp_runs and its alert sent, before its spool file was cleared.
NOTIFY = """\
import os, pathlib, signal, sys
out = pathlib.Path({out!r})
with out.open("a") as f:
    f.write(sys.stdin.read().replace("\\n", " ") + "\\n")
kill = pathlib.Path({kill!r})
if kill.exists():
    kill.unlink()
    os.kill(os.getppid(), signal.SIGKILL)
"""


@pytest.fixture
def project(pipelines_dir: Path, project_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    (pipelines_dir / "feed_pipeline.py").write_text(MODULE)
    events, kill = tmp_path / "events.jsonl", tmp_path / "KILL"
    script = tmp_path / "notify.py"
    script.write_text(NOTIFY.format(out=str(events), kill=str(kill)))
    return {**project_env, "ALERT_COMMAND": f"{sys.executable} {script}", "events": str(events), "kill": str(kill)}


def _events(project: dict[str, str]) -> list[dict]:
    path = Path(project["events"])
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _spool(project: dict[str, str]) -> list[Path]:
    return sorted((Path(project["DATA_DIR"]) / "spool" / "runs").glob("*.json"))


def test_a_run_that_could_not_be_recorded_reaches_the_history_and_alerts_once(project: dict[str, str]) -> None:
    env = {"ALERT_COMMAND": project["ALERT_COMMAND"]}
    assert run_cli("setup_db").returncode == 0
    holder = _hold_store()
    try:
        run = run_cli("cron_run", "feed", "--date", "2026-03-10", env={**env, "STORE_LOCK_TIMEOUT": "1"})
    finally:
        holder.kill()
        holder.wait()
    assert run.returncode == 1, run.stderr
    assert "failed feed 2026-03-10 (store_lock_timeout)" in run.stderr
    [spooled] = _spool(project)
    run_id = json.loads(spooled.read_text())["record"]["run_id"]
    assert stat.S_IMODE(spooled.stat().st_mode) == 0o600
    assert stat.S_IMODE(spooled.parent.stat().st_mode) == 0o700
    assert _events(project) == []  # decided (de-duplicated) in the store: sent when the run is written

    Path(project["kill"]).write_text("x")
    killed = run_cli("runs", "--json", env=env)  # replays: writes the run, alerts, is killed before clearing
    assert killed.returncode == -9, killed.stderr
    assert _spool(project) == [spooled]
    [event] = _events(project)
    assert (event["kind"], event["pipeline"], event["run_id"], event["interval"]) == \
        ("run_failed", "feed", run_id, "2026-03-10")
    assert "failed (store_busy)" in event["summary"]  # the alert names the failure's kind (runner.status)

    listed = run_cli("runs", "--json", env=env)  # replays again: already written, already alerted
    assert listed.returncode == 0, listed.stderr
    assert [(r["run_id"], r["status"], r["reason"], r["trigger"]) for r in json.loads(listed.stdout)] == \
        [(run_id, "failed", "store_lock_timeout", "manual")]
    assert _spool(project) == []
    assert len(_events(project)) == 1
    again = run_cli("runs", "--json", env=env)
    assert [r["run_id"] for r in json.loads(again.stdout)] == [run_id]


def test_the_replayed_run_is_written_once(project: dict[str, str], db: Store) -> None:
    assert run_cli("setup_db").returncode == 0
    holder = _hold_store()
    try:
        run = run_cli("cron_run", "feed", "--date", "2026-03-10", env={"STORE_LOCK_TIMEOUT": "1"})
    finally:
        holder.kill()
        holder.wait()
    assert run.returncode == 1, run.stderr
    [spooled] = _spool(project)
    kept = spooled.read_bytes()
    assert run_cli("runs").returncode == 0
    assert _spool(project) == []
    spooled.write_bytes(kept)  # as left by a kill -9 after the row was written, before the file was removed
    assert run_cli("runs").returncode == 0
    assert _spool(project) == []
    # Every row version, not FINAL's merge of them: one.
    assert rows(db, "SELECT status, reason FROM _dp_runs WHERE pipeline = 'feed'") == [("failed", "store_lock_timeout")]


HELD = '''
import os, pathlib, time
from datetime import timedelta
import pyarrow as pa
from pipelines.interfaces import Extractor
from pipelines.pipeline_factory import create_el_pipeline
from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader

class Held(Extractor):
    """Says it is extracting (the run is recorded as running), then waits for GO before its rows."""
    interval_aware = True
    def extract(self, context):
        marks = pathlib.Path(os.environ["MARKS"])
        (marks / "extracting").write_text("x")
        while not (marks / "go").exists():
            time.sleep(0.05)
        yield pa.table({"ts": pa.array([context.start], pa.timestamp("ms", tz="UTC")), "id": [1]})

PIPELINE_REGISTRY = {"held": {"pipeline": create_el_pipeline(
    Held("held"), create_clickhouse_loader("held_t", time_column="ts"), "held")}}
'''


def test_a_run_that_loses_the_store_midway_is_recorded_failed_not_left_running(
        project: dict[str, str], tmp_path: Path) -> None:
    """Its ``running`` version is in _dp_runs already: the spooled outcome still replaces it."""
    import subprocess

    from conftest import ROOT, SRC, cli_env, wait_for

    (Path(os.environ["PIPELINES_DIR"]) / "held_pipeline.py").write_text(HELD)
    marks = tmp_path / "marks"
    marks.mkdir()
    assert run_cli("setup_db").returncode == 0
    run = subprocess.Popen([sys.executable, str(SRC / "main.py"), "cron_run", "held", "--date", "2026-03-10"],
                           env=cli_env({"MARKS": str(marks), "STORE_LOCK_TIMEOUT": "1"}), cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for((marks / "extracting").exists, what="the run to record itself running and extract")
        holder = _hold_store()  # the run's idle store is handed over to the holder
        try:
            (marks / "go").write_text("x")
            _, stderr = run.communicate(timeout=120)
        finally:
            holder.kill()
            holder.wait()
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 1, stderr
    assert len(_spool(project)) == 1
    listed = run_cli("runs", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [(r["pipeline"], r["status"], r["reason"]) for r in json.loads(listed.stdout)] == \
        [("held", "failed", "store_lock_timeout")]
    assert _spool(project) == []
