"""A whole-dataset file with a time column, loaded by a daily interval pipeline (issue 26, section 4):
with ``keep_interval_rows="ts"`` the file extractor keeps the run's day itself and logs how many rows
it dropped, on the CSV push-down path and on the Python path; without it rows outside the interval
still fail the run; a NULL time still fails. Through the real CLI."""

from __future__ import annotations

import textwrap
from datetime import datetime
from pathlib import Path

import pytest

from conftest import SERVER_MODE, rows, run_cli
from core.store import Store

MODULE = textwrap.dedent('''
    import os
    from pipelines.pipeline_factory import create_el_pipeline
    from pipelines.tools.extractors.file_extractor import create_file_extractor
    from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader

    DATA = os.environ.get("TEST_DATA", "/nonexistent")

    def pipeline(name, file, **options):
        extractor = create_file_extractor(DATA + "/" + file, **options)
        return {"pipeline": create_el_pipeline(extractor, create_clickhouse_loader(name, time_column="ts"), name)}

    PIPELINE_REGISTRY = {
        # plain CSV: ClickHouse reads it itself (push-down)
        "kept_sql": pipeline("kept_sql", "days.csv", keep_interval_rows="ts"),
        # a declared timestamp: read in Python
        "kept_py": pipeline("kept_py", "days.csv", keep_interval_rows="ts", types={"ts": "datetime"}),
        "strict_sql": pipeline("strict_sql", "days.csv"),
        "strict_py": pipeline("strict_py", "days.csv", types={"ts": "datetime"}),
        "null_sql": pipeline("null_sql", "nulls.csv", keep_interval_rows="ts"),
        "null_py": pipeline("null_py", "nulls.csv", keep_interval_rows="ts", types={"ts": "datetime"}),
    }
''')

DAYS = ("id,ts\n1,2026-10-31 08:00:00\n2,2026-10-31 23:59:59\n3,2026-11-01 00:00:00\n"
        "4,2026-11-01 12:30:00\n5,2026-11-01 23:59:59\n6,2026-11-02 00:00:00\n7,2026-11-02 09:00:00\n")
NULLS = "id,ts\n1,2026-10-31 08:00:00\n2,2026-11-01 10:00:00\n3,\n"


@pytest.fixture
def project(pipelines_dir: Path, tmp_path: Path, project_env, monkeypatch: pytest.MonkeyPatch, db: Store) -> Store:
    (pipelines_dir / "days_pipeline.py").write_text(MODULE)
    data = tmp_path / "input"
    data.mkdir()
    (data / "days.csv").write_text(DAYS)
    (data / "nulls.csv").write_text(NULLS)
    monkeypatch.setenv("TEST_DATA", str(data))
    assert run_cli("setup_db").returncode == 0
    return db


def job_log(project_env, name: str) -> str:
    return (Path(project_env["LOG_DIR"]) / "jobs" / f"{name}.log").read_text()


@pytest.mark.parametrize("name,path", [("kept_sql", "ClickHouse read"), ("kept_py", "from")])
def test_the_interval_rows_are_kept_and_the_dropped_ones_logged(project: Store, project_env, name: str,
                                                                 path: str) -> None:
    result = run_cli("cron_run", name, "--date", "2026-11-01")
    assert result.returncode == 0, result.stdout + result.stderr
    assert rows(project, f"SELECT id, ts FROM {name} ORDER BY id") == [
        (3, datetime(2026, 11, 1, 0, 0)), (4, datetime(2026, 11, 1, 12, 30)), (5, datetime(2026, 11, 1, 23, 59, 59))]
    log = job_log(project_env, name)
    assert "kept 3 of 7 rows of the interval (dropped 4 outside it)" in log
    if SERVER_MODE:  # a configured server cannot read this machine's files: the Python path runs
        assert "no Python in the data path" not in log
        return
    assert path in log  # the path the test means to take
    if name == "kept_sql":
        assert "no Python in the data path" in log


@pytest.mark.parametrize("name", ["strict_sql", "strict_py"])
def test_without_the_option_rows_outside_the_interval_fail_the_run(project: Store, name: str) -> None:
    result = run_cli("cron_run", name, "--date", "2026-11-01")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"Loader for '{name}': 4 row(s) have ts outside the run's interval" in " ".join(
        (result.stdout + result.stderr).split())


@pytest.mark.parametrize("name", ["null_sql", "null_py"])
def test_a_null_time_still_fails_with_the_option(project: Store, name: str) -> None:
    result = run_cli("cron_run", name, "--date", "2026-11-01")
    assert result.returncode == 1, result.stdout + result.stderr
    # The loader made the table on this first run, with ts as its key: a key column cannot hold NULL.
    assert (f"Loader for '{name}': key column 'ts' (ORDER BY/PARTITION BY) is NULL in"
            in " ".join((result.stdout + result.stderr).split()))
    assert not project.table_exists(name) or rows(project, f"SELECT count() FROM {name}") == [(0,)]
