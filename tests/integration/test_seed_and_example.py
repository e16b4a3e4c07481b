"""The seed's Quick Start module, verbatim, and a fresh store's bootstrap (the shipped example
pipeline is a user's pipeline: tests/pipelines/test_example_pipeline.py tests it)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from conftest import JsonHandler, run_cli, serve
from core.config import load_settings
from core.store import Store

SEED_MODULE = (Path(__file__).parents[1] / "fixtures" / "seed_quick_start_pipeline.py.txt").read_text()


class _Api(JsonHandler):
    requests: list[str] = []

    def do_GET(self) -> None:  # noqa: N802
        type(self).requests.append(self.path)
        self.send_json([{"id": 1, "name": "alpha", "score": 9.5}, {"id": 2, "name": "beta", "score": 7.0}])


@pytest.fixture
def api():
    _Api.requests = []
    with serve(_Api) as base:
        yield base, _Api


def test_the_seed_quick_start_module_runs_as_written(pipelines_dir: Path, api) -> None:
    base, handler = api
    assert "https://api.example.com/data" in SEED_MODULE
    (pipelines_dir / "my_pipeline.py").write_text(SEED_MODULE.replace("https://api.example.com", base))
    listed = run_cli("list")
    assert listed.returncode == 0, listed.stderr
    assert "my_pipeline" in listed.stdout and "My custom data pipeline" in listed.stdout
    assert "0 * * * *" in listed.stdout and "my_data" in listed.stdout
    assert handler.requests == []  # discovering (importing) the module touched no network
    result = run_cli("cron_run", "my_pipeline")
    assert result.returncode == 0, result.stderr
    assert handler.requests == ["/data"]
    assert ("My Console Loader schema: id int64, name large_string, score double, processed_at timestamp"
            in result.stdout)
    assert "alpha" in result.stdout and "beta" in result.stdout
    assert "My Console Loader: 2 rows" in result.stdout
    assert "success my_pipeline" in result.stdout and "2 rows loaded (2 extracted)" in result.stdout


def test_a_fresh_store_bootstraps_from_the_fixture_migrations(project_env) -> None:
    """A first cron_run on a new store creates the database and applies MIGRATIONS_DIR (here the
    tests' own fixtures: the user's migrations/sql and src/pipelines are never used by these tests)."""
    for _ in range(2):  # the second run replaces the day: same rows, no duplicates
        result = run_cli("cron_run", "fixture_pipeline", "--date", "2026-01-15")
        assert result.returncode == 0, result.stderr
        assert "success fixture_pipeline 2026-01-15: 16 rows loaded (16 extracted)" in result.stdout
    assert run_cli("cron_run", "fixture_pipeline", "--date", "2026-01-16").returncode == 0
    store = Store(load_settings())
    try:
        assert store.query_rows("SELECT reading_date, count(), countIf(value IS NULL), uniqExact(_dp_run_id) "
                                "FROM fixture_readings GROUP BY 1 ORDER BY 1") == [
            (date(2026, 1, 15), 16, 1, 1), (date(2026, 1, 16), 16, 1, 1)]
        ddl = store.command("SELECT create_table_query FROM system.tables WHERE name = 'fixture_readings' "
                            "AND database = currentDatabase()")
        assert "PARTITION BY reading_date" in ddl  # defined by the fixture migration, not guessed
    finally:
        store.close()
    runs = json.loads(run_cli("runs", "fixture_pipeline", "--json").stdout)
    assert [r["status"] for r in runs] == ["success"] * 3
    log = (Path(project_env["LOG_DIR"]) / "jobs" / "fixture_pipeline.log").read_text()
    assert "New store: applied 1 migration(s): 0001_create_fixture_readings.sql" in log
    assert log.count("succeeded in") == 3
    status = run_cli("migrate_status")
    assert status.returncode == 0, status.stdout
    assert "tests/fixtures/migrations" in status.stderr  # piped: the table's title, on stderr
