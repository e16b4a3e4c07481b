"""A user's loader written from the docs (into a real SQLite file) gets what the built-in gets:
backfilled idempotently (it declares ``interval_scoped``), and cleaned up after a run killed with
SIGKILL mid-load (its ``clean_up_run`` / ``clean_up_leftovers`` hooks) by the crashed-run reaper,
``kill`` and ``clean``. Real CLI processes, the real embedded store."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from datetime import date, timedelta
from pathlib import Path

import pytest

from conftest import ROOT, SRC, cli_env, run_cli, wait_for

MODULE = textwrap.dedent('''
    import os, pathlib, re, signal, sqlite3, time
    from datetime import timedelta
    import pyarrow as pa
    from pipelines.interfaces import Extractor, Loader, to_arrow
    from pipelines.pipeline_factory import create_el_pipeline

    class Hours(Extractor):
        """One row per hour of the run's interval, values derived from the hour."""
        interval_aware = True
        def extract(self, context):
            t, ts = context.start, []
            while t < context.end:
                ts.append(t.isoformat())
                t += timedelta(hours=1)
            yield pa.table({"ts": ts, "v": [context.start.toordinal() * 100 + i for i in range(len(ts))]})

    class SqliteLoader(Loader):
        """Stages a run's rows in stage_<run id>; the commit replaces the interval in one transaction."""
        interval_scoped = True
        time_column = "ts"

        def __init__(self, path, table, stubborn=False):
            super().__init__(f"SQLite {table}")
            self.path, self.target, self.stubborn = path, table, stubborn

        def _db(self):
            return sqlite3.connect(os.path.expandvars(self.path), timeout=30, isolation_level=None)

        @staticmethod
        def _stage(run_id):
            return "stage_" + re.sub(r"[^A-Za-z0-9_]", "_", run_id)

        def begin(self, context):
            with self._db() as db:
                db.execute(f"CREATE TABLE IF NOT EXISTS {self.target} (ts TEXT, v INTEGER)")
                db.execute(f"CREATE TABLE {self._stage(context.run_id)} (ts TEXT, v INTEGER)")

        def write(self, batch, context):
            rows = [(r["ts"], r["v"]) for r in to_arrow(batch).to_pylist()]
            with self._db() as db:
                db.executemany(f"INSERT INTO {self._stage(context.run_id)} VALUES (?, ?)", rows)
            hang = os.environ.get("HANG_DAY") == context.start_date
            if hang:  # the test kills the run here, its rows staged
                if self.stubborn:
                    signal.signal(signal.SIGTERM, signal.SIG_IGN)
                pathlib.Path(os.environ["MARKER"]).write_text(context.run_id)
                time.sleep(60)
            return len(rows)

        def commit(self, context):
            stage = self._stage(context.run_id)
            db = self._db()
            try:
                db.execute("BEGIN")
                db.execute(f"DELETE FROM {self.target} WHERE ts >= ? AND ts < ?",
                           (context.start.isoformat(), context.end.isoformat()))
                db.execute(f"INSERT INTO {self.target} SELECT * FROM {stage}")
                db.execute(f"DROP TABLE {stage}")
                db.execute("COMMIT")
            finally:
                db.close()

        def rollback(self, context):
            self.clean_up_run(context.store, context.run_id)

        def clean_up_run(self, store, run_id):
            return self._drop([self._stage(run_id)])

        def clean_up_leftovers(self, store, live_run_ids):
            live = {self._stage(r) for r in live_run_ids}
            with self._db() as db:
                names = [n for (n,) in db.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'stage_%'")]
            return self._drop([n for n in names if n not in live])

        def _drop(self, names):
            dropped = []
            with self._db() as db:
                for name in names:
                    if db.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchone():
                        db.execute(f"DROP TABLE {name}")
                        dropped.append(f"SQLite table {name}")
            return dropped

    PIPELINE_REGISTRY = {
        "hours": {"pipeline": create_el_pipeline(Hours("hours"), SqliteLoader("$SQLITE_FILE", "hours"), "hours")},
        "stubborn": {"pipeline": create_el_pipeline(Hours("s"), SqliteLoader("$SQLITE_FILE", "stub", True), "s")},
    }
''')

FIRST = date(2025, 3, 1)
THREE = ("--start", "2025-03-01", "--end", "2025-03-03")


@pytest.fixture
def sqlite_file(pipelines_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (pipelines_dir / "sqlite_pipeline.py").write_text(MODULE)
    path = tmp_path / "user.sqlite"
    monkeypatch.setenv("SQLITE_FILE", str(path))
    monkeypatch.setenv("MARKER", str(tmp_path / "marker"))
    return path


def sqlite_rows(path: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(path) as db:
        return db.execute(sql).fetchall()


def stage_tables(path: Path) -> list[str]:
    return [n for (n,) in sqlite_rows(path, "SELECT name FROM sqlite_master WHERE name LIKE 'stage_%' ORDER BY 1")]


def per_day(path: Path, table: str = "hours") -> list[tuple]:
    return sqlite_rows(path,
                       f"SELECT substr(ts, 1, 10), count(*), count(DISTINCT ts) FROM {table} GROUP BY 1 ORDER BY 1")


def start_hanging(args: list[str], day: str, marker: Path) -> subprocess.Popen[str]:
    """Start a CLI process whose run of ``day`` hangs in the loader with its rows staged."""
    proc = subprocess.Popen([sys.executable, str(SRC / "main.py"), *args], env=cli_env({"HANG_DAY": day}),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    wait_for(marker.exists, what="the run to hang mid-load")
    return proc


def runs_of(pipeline: str) -> list[dict]:
    result = run_cli("runs", pipeline, "--json", "--limit", "100")
    assert result.returncode == 0, result.stderr
    return sorted(json.loads(result.stdout), key=lambda r: (r["interval_start"], r["started_at"]))


def test_a_user_loader_declaring_interval_scoped_is_backfilled_idempotently(sqlite_file: Path) -> None:
    first = run_cli("backfill", "hours", *THREE)
    assert first.returncode == 0, first.stderr
    assert "3 interval(s) to run, 0 skipped" in first.stderr
    expected = [((FIRST + timedelta(days=n)).isoformat(), 24, 24) for n in range(3)]
    assert per_day(sqlite_file) == expected
    loaded = sqlite_rows(sqlite_file, "SELECT * FROM hours ORDER BY ts")
    assert len(loaded) == 72

    again = run_cli("backfill", "hours", *THREE, "--force")
    assert again.returncode == 0, again.stderr
    assert "3 interval(s) to run, 0 skipped" in again.stderr
    assert sqlite_rows(sqlite_file, "SELECT * FROM hours ORDER BY ts") == loaded
    assert stage_tables(sqlite_file) == []
    assert [r["status"] for r in runs_of("hours")] == ["success"] * 6


@pytest.mark.slow
def test_the_reaper_cleans_up_after_a_user_loader_whose_run_was_killed(sqlite_file: Path, tmp_path: Path) -> None:
    victim = start_hanging(["backfill", "hours", *THREE], "2025-03-02", tmp_path / "marker")
    run_id = (tmp_path / "marker").read_text()
    assert stage_tables(sqlite_file) == ["stage_" + run_id.replace("-", "_")]
    os.killpg(victim.pid, signal.SIGKILL)
    victim.communicate(timeout=30)

    listed = run_cli("runs", "hours", "--json")  # the reaper: marks it crashed, asks the loader to clean up
    assert listed.returncode == 0, listed.stderr
    assert stage_tables(sqlite_file) == []
    assert "removed SQLite table stage_" in listed.stderr
    crashed = [r for r in runs_of("hours") if r["run_id"] == run_id]
    assert [(r["status"], r["reason"]) for r in crashed] == [("crashed", "process gone")]

    resumed = run_cli("backfill", "hours", *THREE)
    assert resumed.returncode == 0, resumed.stderr
    assert "2 interval(s) to run, 1 skipped" in resumed.stderr
    assert per_day(sqlite_file) == [((FIRST + timedelta(days=n)).isoformat(), 24, 24) for n in range(3)]


@pytest.mark.slow
def test_kill_and_clean_ask_the_user_loader_to_clean_up(sqlite_file: Path, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    victim = start_hanging(["backfill", "stubborn", *THREE], "2025-03-01", marker)  # ignores SIGTERM
    killed = run_cli("kill", "stubborn", "--grace", "1")
    assert killed.returncode == 0, killed.stderr
    assert "SIGKILL stubborn" in killed.stdout
    victim.communicate(timeout=30)
    assert stage_tables(sqlite_file) == []
    [run] = runs_of("stubborn")
    assert (run["status"], run["reason"]) == ("failed", "killed")

    # A leftover no run record points to any more (a run that died long ago): clean sweeps it.
    with sqlite3.connect(sqlite_file) as db:
        db.execute("CREATE TABLE stage_20240101T000000_0badc0de (ts TEXT, v INTEGER)")
    dry = run_cli("clean", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert stage_tables(sqlite_file) == ["stage_20240101T000000_0badc0de"]
    cleaned = run_cli("clean")
    assert cleaned.returncode == 0, cleaned.stderr
    assert "removed loader leftover: hours: SQLite table stage_20240101T000000_0badc0de" in cleaned.stdout
    assert stage_tables(sqlite_file) == []
    assert "leftover" not in run_cli("clean").stdout  # nothing left the second time
