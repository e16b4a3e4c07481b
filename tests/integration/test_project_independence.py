"""The framework's tests do not depend on the user's project, and ``./run.sh test PATH...``.

A team fills src/pipelines and migrations/sql with its own work; none of it may fail (or be
touched by) the framework's tests, which use tests/fixtures and a private crontab.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import FIXTURE_MIGRATIONS, FIXTURE_PIPELINES, ROOT, project_copy, run_cli

# A user's migration the framework's fixtures know nothing about (a materialized view over a
# table that does not exist), and a user's module that does not even import.
USER_MIGRATION = textwrap.dedent("""\
    CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.daily_totals_mv{cluster}
    ENGINE = SummingMergeTree ORDER BY day
    AS SELECT toDate(ts) AS day, sum(amount) AS total FROM {database}.not_a_table_of_the_framework GROUP BY day;
""")
USER_MODULE = "import module_only_on_the_users_laptop\n"


def test_tests_run_on_fixtures_and_a_private_crontab(project_env, _private_crontab: Path) -> None:
    assert (project_env["PIPELINES_DIR"], project_env["MIGRATIONS_DIR"]) == (str(FIXTURE_PIPELINES),
                                                                              str(FIXTURE_MIGRATIONS))
    listed = json.loads(run_cli("list", "--json").stdout)
    assert [p["name"] for p in listed["pipelines"]] == ["fixture_pipeline"]
    assert run_cli("setup_cron", "--all").returncode == 0
    table = (_private_crontab.parent / "table").read_text()
    assert f"# BEGIN data-processor {ROOT}" in table and "cron_run fixture_pipeline" in table


@pytest.mark.slow
@pytest.mark.same_in_both_runs("runs the framework's tests nested as a user runs them, on the embedded engine")
def test_a_users_migration_and_broken_module_do_not_fail_framework_tests(tmp_path: Path) -> None:
    """The regression: one user migration (a materialized view) failed 25 framework tests."""
    copy = project_copy(tmp_path / "project")
    (copy / "migrations" / "sql" / "0099_daily_totals_mv.sql").write_text(USER_MIGRATION)
    (copy / "src" / "pipelines" / "laptop_pipeline.py").write_text(USER_MODULE)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DP_TEST_SERVER")}  # as a user runs it
    env.update(PYTHONPATH=str(copy / "src"), TEST_RESULTS_DIR=str(tmp_path / "results"))
    done = subprocess.run(
        [sys.executable, "scripts/run_tests.py", "tests/integration/test_seed_and_example.py",
         "tests/integration/test_runner.py", "-q", "--no-cov", "-p", "no:cacheprovider", "-x"],
        cwd=copy, env=env, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    summary = json.loads((tmp_path / "results" / "latest_test_results.json").read_text())
    assert summary["failed"] == summary["errors"] == 0 and summary["passed"] > 10
    # ... while the user's project itself is broken, as its own check says.
    check = subprocess.run([sys.executable, "src/main.py", "check", "--json"], cwd=copy, env={
        **env, "DATA_DIR": str(tmp_path / "data"), "LOG_DIR": str(tmp_path / "logs"), "RUN_DIR": str(tmp_path / "run")},
        capture_output=True, text=True, timeout=120)
    assert check.returncode == 1 and "laptop_pipeline.py" in check.stdout


def _collected(result: subprocess.CompletedProcess[str]) -> set[str]:
    """Test files pytest collected (from --collect-only -q output)."""
    return {line.split("::", 1)[0] for line in result.stdout.splitlines() if "::" in line}


def test_run_sh_test_runs_only_the_given_paths(tmp_path: Path) -> None:
    results = {"TEST_RESULTS_DIR": str(tmp_path / "results"), "DP_TEST_SERVER": "0"}  # as a user runs it
    only = ["--collect-only", "-q", "--no-cov", "-p", "no:cacheprovider"]
    one = run_cli("test", "tests/unit/test_schedule.py", *only, env=results)
    assert one.returncode == 0, one.stdout + one.stderr
    assert _collected(one) == {"tests/unit/test_schedule.py"}
    short = run_cli("test", "unit/test_schedule.py", "unit/test_config.py", *only, env=results)
    assert _collected(short) == {"tests/unit/test_schedule.py", "tests/unit/test_config.py"}
    node = run_cli("test", "tests/unit/test_schedule.py::test_due_in_the_repeated_hour_only_once_for_fixed_times",
                   *only, env=results)
    assert node.returncode == 0 and node.stdout.count("::") == 1
    suite = run_cli("test", "unit", "--fast", *only, env=results)
    assert suite.returncode == 0 and _collected(suite) and all(f.startswith("tests/unit/") for f in _collected(suite))
    mine = run_cli("test", "mine", *only, env=results)
    assert mine.returncode == 2
    assert mine.stderr.strip() == ("error: no test suite or path 'mine' (suites: unit, integration, performance; "
                                   "or a path such as tests/pipelines or tests/unit/test_config.py)")
    summary = json.loads((tmp_path / "results" / "latest_test_results.json").read_text())
    assert summary["command"][2] == "tests/unit"
