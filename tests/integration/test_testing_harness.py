"""``pipelines.testing``: the harness users test their pipelines with, and tests/pipelines/."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from conftest import FIXTURE_MIGRATIONS, FIXTURE_PIPELINES, ROOT, project_copy
from pipelines.testing import TestProject

# TestProject is always its own embedded store (it ignores CLICKHOUSE_*), and the nested suites
# below drop the server variables: the server run would do exactly the same.
pytestmark = pytest.mark.same_in_both_runs("TestProject: its own embedded store in either run")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # A real server configured in the environment must not be used by a test.
    monkeypatch.setenv("CLICKHOUSE_HOST", "clickhouse.invalid")
    with TestProject(tmp_path / "project", FIXTURE_PIPELINES, FIXTURE_MIGRATIONS) as project:
        yield project


def test_a_run_gives_rows_record_and_checks(project: TestProject, tmp_path: Path) -> None:
    assert project.settings.is_embedded and project.settings.store_path == tmp_path / "project" / "data" / "clickhouse"
    result = project.run("fixture_pipeline", day=date(2026, 1, 15))
    assert result.ok and result.error == ""
    assert result.record.status == "success" and result.record.rows_loaded == 16 == len(result.rows)
    assert result.record.interval_start.replace(tzinfo=UTC) == datetime(2026, 1, 15, tzinfo=UTC)
    nulls = [r for r in result.rows if r["value"] is None]
    assert [(r["sensor"], r["reading_time"].hour) for r in nulls] == [("west", 12)]  # a NULL stays NULL
    assert result.checks == []
    again = project.run("fixture_pipeline", start="2026-01-16", end="2026-01-17")
    assert again.ok and len(again.rows) == 16
    assert len(project.table_rows("fixture_readings")) == 32
    assert (tmp_path / "project" / "logs" / "jobs" / "fixture_pipeline.log").is_file()


def test_failures_and_bad_input(project: TestProject) -> None:
    from core.exceptions import PipelineNotFound

    with pytest.raises(PipelineNotFound, match="No pipeline named 'fixture'; did you mean 'fixture_pipeline'"):
        project.run("fixture", day="2026-01-15")
    with pytest.raises(ValueError, match="give either day or start/end, not both"):
        project.run("fixture_pipeline", day="2026-01-15", start="2026-01-15", end="2026-01-16")
    with pytest.raises(ValueError, match="start and end go together"):
        project.run("fixture_pipeline", start="2026-01-15")


def test_projects_used_in_turn_keep_their_own_stores_and_free_them(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # A project's store stays open between its calls; chdb runs one engine (one path) per process,
    # so using another project hands the engine over, and a waiting process gets it too.
    monkeypatch.setenv("CLICKHOUSE_HOST", "clickhouse.invalid")
    with TestProject(tmp_path / "a", FIXTURE_PIPELINES, FIXTURE_MIGRATIONS) as a, \
            TestProject(tmp_path / "b", FIXTURE_PIPELINES, FIXTURE_MIGRATIONS) as b:
        assert a.run("fixture_pipeline", day="2026-01-15").ok
        assert b.run("fixture_pipeline", day="2026-01-17").ok
        again = a.run("fixture_pipeline", day="2026-01-16")
        assert again.ok and len(again.rows) == 16
        per_day = ("SELECT toString(toDate(reading_time)) AS day, count() AS n FROM fixture_readings "
                   "GROUP BY day ORDER BY day")
        assert b.query(per_day) == [{"day": "2026-01-17", "n": 16}]
        assert a.query(per_day) == [{"day": "2026-01-15", "n": 16}, {"day": "2026-01-16", "n": 16}]
        # a still holds its store: another process waits for it, a releases it, the process reads it.
        env = {k: v for k, v in os.environ.items() if k not in ("CLICKHOUSE_HOST", "CLICKHOUSE_URL", "DP_TEST_SERVER")}
        (tmp_path / "empty.env").write_text("")
        env.update(PYTHONPATH=str(ROOT / "src"), ENV_FILE=str(tmp_path / "empty.env"),
                   DATA_DIR=str(a.settings.data_dir), LOG_DIR=str(tmp_path / "cli-logs"),
                   RUN_DIR=str(tmp_path / "cli-run"), STORE_LOCK_TIMEOUT="60",
                   PIPELINES_DIR=str(FIXTURE_PIPELINES), MIGRATIONS_DIR=str(FIXTURE_MIGRATIONS))
        done = subprocess.run([sys.executable, "src/main.py", "sql", "--format", "tsv",
                               "SELECT count() AS n FROM fixture_readings"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert (done.returncode, done.stdout.splitlines()) == (0, ["n", "32"]), done.stderr
        assert len(a.table_rows("fixture_readings")) == 32  # and a opens it again


def _pipelines_tests(copy: Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], dict]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DP_TEST_SERVER")}  # as a user runs it
    env.update(PYTHONPATH=str(copy / "src"), TEST_RESULTS_DIR=str(tmp_path / "results"))
    done = subprocess.run([sys.executable, "src/main.py", "test", "pipelines", "-q", "-rs", "--no-cov",
                           "-p", "no:cacheprovider"], cwd=copy, env=env, capture_output=True, text=True,
                          timeout=600, stdin=subprocess.DEVNULL)
    return done, json.loads((tmp_path / "results" / "latest_test_results.json").read_text())


@pytest.mark.slow
def test_the_example_test_skips_with_its_reason_once_the_example_is_deleted(tmp_path: Path) -> None:
    copy = project_copy(tmp_path / "project", bare=True)  # no example pipeline, nor any of the user's
    shutil.copy2(ROOT / "tests" / "pipelines" / "test_example_pipeline.py", copy / "tests" / "pipelines")
    done, summary = _pipelines_tests(copy, tmp_path)
    assert done.returncode == 0, done.stdout[-3000:]
    assert summary["skipped"] == 2 and summary["passed"] == summary["failed"] == summary["errors"] == 0
    assert "the example pipeline (src/pipelines/example_pipeline.py) has been deleted" in done.stdout
