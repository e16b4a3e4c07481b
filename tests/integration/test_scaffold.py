"""``./run.sh new NAME --from http|db|file|sql`` and the README's first pipeline, through the real CLI.

``new`` writes into the project (src/pipelines, migrations/sql, tests/pipelines, data/samples),
so these tests run it in a copy of the project, never in this checkout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, project_copy, run_cli


def test_the_readmes_first_pipeline_runs_offline_as_written(pipelines_dir: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Your first pipeline", 1)[1]
    module = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert 'create_file_extractor("data/samples/my_data.json"' in module
    (pipelines_dir / "my_pipeline.py").write_text(module)
    # Any host but this machine's goes to a dead proxy: nothing outside is reachable (the store, in
    # server mode, is on 127.0.0.1).
    offline = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
               "no_proxy": "127.0.0.1,localhost"}
    result = run_cli("cron_run", "my_pipeline", env=offline)
    assert result.returncode == 0, result.stderr
    assert "My Console Loader schema: id int64, name string, score double, processed_at timestamp" in result.stdout \
        or "My Console Loader schema: id int64, name large_string, score double" in result.stdout
    assert all(name in result.stdout for name in ("alpha", "beta", "gamma"))
    assert "success my_pipeline" in result.stdout and "3 rows loaded (3 extracted)" in result.stdout


class Project:
    """A copy of the project and its CLI (``src/main.py`` in the copy, with its own runtime dirs)."""

    def __init__(self, root: Path, runtime: Path) -> None:
        self.root = root
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("PYTHONPATH", "PIPELINES_DIR", "MIGRATIONS_DIR", "ENV_FILE", "DP_TEST_SERVER")}
        self.env.update(PYTHONPATH=str(root / "src"), DATA_DIR=str(runtime / "data"), LOG_DIR=str(runtime / "logs"),
                        RUN_DIR=str(runtime / "run"), TEST_RESULTS_DIR=str(runtime / "results"), COLUMNS="300")

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "src/main.py", *args], cwd=self.root, env=self.env,
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def files(self) -> set[str]:
        return {str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file()
                and "__pycache__" not in p.parts}


# A copy of the project with its own runtime folders and no server variables: the same in both runs.
ONCE = pytest.mark.same_in_both_runs("a project copy on its own embedded store")


@pytest.fixture
def project(tmp_path: Path) -> Project:
    # Bare: the user's own pipelines, migrations and tests must not decide these tests.
    return Project(project_copy(tmp_path / "project", bare=True), tmp_path / "runtime")


@pytest.mark.slow
@ONCE
def test_new_writes_a_module_a_migration_and_a_test_that_pass(project: Project) -> None:
    before = project.files()
    versions = sorted(int(p.name[:4]) for p in (project.root / "migrations" / "sql").glob("[0-9]*.sql"))
    for name, source in (("orders_api", "http"), ("orders_db", "db"), ("orders_files", "file")):
        made = project.cli("new", name, "--from", source)
        assert made.returncode == 0, made.stderr
        assert f"wrote src/pipelines/{name}_pipeline.py" in made.stdout
        assert f"wrote tests/pipelines/test_{name}_pipeline.py" in made.stdout
    console = project.cli("new", "feed", "--from", "http", "--loader", "console")
    assert console.returncode == 0 and "migrations/sql" not in console.stdout  # no table, no migration
    top = versions[-1] if versions else 0
    added = project.files() - before
    assert added == {
        "src/pipelines/orders_api_pipeline.py", "src/pipelines/orders_db_pipeline.py",
        "src/pipelines/orders_files_pipeline.py", "src/pipelines/feed_pipeline.py",
        "tests/pipelines/test_orders_api_pipeline.py", "tests/pipelines/test_orders_db_pipeline.py",
        "tests/pipelines/test_orders_files_pipeline.py", "tests/pipelines/test_feed_pipeline.py",
        f"migrations/sql/{top + 1:04d}_create_orders_api.sql",
        f"migrations/sql/{top + 1:04d}_create_orders_api.down.sql",
        f"migrations/sql/{top + 2:04d}_create_orders_db.sql", f"migrations/sql/{top + 2:04d}_create_orders_db.down.sql",
        f"migrations/sql/{top + 3:04d}_create_orders_files.sql",
        f"migrations/sql/{top + 3:04d}_create_orders_files.down.sql",
        "data/samples/orders_files/2026-01-15.csv",
    }
    # The tests it wrote pass as written.
    tested = project.cli("test", "pipelines", "-q", "--no-cov", "-p", "no:cacheprovider", timeout=900)
    assert tested.returncode == 0, tested.stdout[-3000:]
    summary = json.loads((Path(project.env["TEST_RESULTS_DIR"]) / "latest_test_results.json").read_text())
    assert (summary["passed"], summary["failed"], summary["errors"], summary["skipped"]) == (9, 0, 0, 0)
    # And the project itself: discovered, migrated, the file pipeline runs on its sample day.
    listed = json.loads(project.cli("list", "--json").stdout)
    assert {"orders_api", "orders_db", "orders_files", "feed"} <= {p["name"] for p in listed["pipelines"]}
    assert listed.get("broken", []) == []
    run = project.cli("cron_run", "orders_files", "--date", "2026-01-15")
    assert run.returncode == 0 and "3 rows loaded" in run.stdout, run.stderr
    unset = project.cli("cron_run", "orders_api", "--date", "2026-01-15")
    assert unset.returncode == 1
    assert "orders_api: set ORDERS_API_URL (the API's URL) in .env or the environment" in unset.stderr


@ONCE
def test_new_refuses_bad_names_and_existing_files(project: Project) -> None:
    before = project.files()
    cases = [
        (("new", "example_pipeline", "--from", "file"), 1, "error: give the pipeline's name without '_pipeline'"),
        (("new", "Orders", "--from", "db"), 1, "error: 'Orders' is not a valid name: use lower-case letters"),
        (("new", "orders", "--from", "ftp"), 2,
         "Invalid value for '--from': 'ftp' is not one of 'http', 'db', 'file', 'sql'"),
        (("new", "orders"), 2, "Missing option '--from'"),
    ]
    for args, code, message in cases:
        result = project.cli(*args)
        assert (result.returncode, message in result.stderr) == (code, True), result.stderr
    (project.root / "tests" / "pipelines" / "test_orders_pipeline.py").write_text("# mine\n")
    taken = project.cli("new", "orders", "--from", "http")
    assert taken.returncode == 1
    assert "error: not overwriting" in taken.stderr and "tests/pipelines/test_orders_pipeline.py" in taken.stderr
    assert project.files() == before | {"tests/pipelines/test_orders_pipeline.py"}  # nothing half-written
    (project.root / "tests" / "pipelines" / "test_orders_pipeline.py").unlink()
    (project.root / "src" / "pipelines" / "shop_pipeline.py").write_text(
        (project.root / "tests" / "fixtures" / "pipelines" / "fixture_pipeline.py").read_text()
        .replace('"fixture_pipeline": {', '"daily": {'))
    clash = project.cli("new", "daily", "--from", "db")
    assert clash.returncode == 1
    assert "error: a pipeline named 'daily' already exists (./run.sh list shows where)" in clash.stderr
    module = project.cli("new", "shop", "--from", "file")
    assert (module.returncode == 1 and "not overwriting" in module.stderr
            and "src/pipelines/shop_pipeline.py" in module.stderr)


@ONCE
def test_new_from_sql_writes_a_sql_pipeline_its_table_and_a_test_that_pass(project: Project) -> None:
    before = project.files()
    versions = sorted(int(p.name[:4]) for p in (project.root / "migrations" / "sql").glob("[0-9]*.sql"))
    top = versions[-1] if versions else 0
    made = project.cli("new", "events_per_day", "--from", "sql")
    assert made.returncode == 0, made.stderr
    assert project.files() - before == {
        "src/pipelines/events_per_day_pipeline.py", "src/pipelines/events_per_day.sql",
        "tests/pipelines/test_events_per_day_pipeline.py",
        f"migrations/sql/{top + 1:04d}_create_events_per_day.sql",
        f"migrations/sql/{top + 1:04d}_create_events_per_day.down.sql",
    }
    assert "edit src/pipelines/events_per_day.sql (and depends_on)" in made.stdout
    # Its test passes as written (the harness, a throw-away store with a stand-in source table).
    tested = project.cli("test", "tests/pipelines/test_events_per_day_pipeline.py", "-q", "--no-cov",
                         "-p", "no:cacheprovider", timeout=600)
    assert tested.returncode == 0, tested.stdout[-3000:]
    summary = json.loads((Path(project.env["TEST_RESULTS_DIR"]) / "latest_test_results.json").read_text())
    assert (summary["passed"], summary["failed"], summary["errors"], summary["skipped"]) == (2, 0, 0, 0)
    # And through the project's own commands: migrated, then one day of the source summarized.
    listed = json.loads(project.cli("list", "--json").stdout)
    [entry] = [p for p in listed["pipelines"] if p["name"] == "events_per_day"]
    assert listed.get("broken", []) == [] and entry["table"] == "events_per_day"
    assert project.cli("migrate").returncode == 0
    for statement in ("CREATE TABLE source_events (event_time DateTime64(3, 'UTC')) ENGINE = MergeTree "
                      "ORDER BY event_time",
                      "INSERT INTO source_events VALUES ('2026-01-15 08:00:00'), ('2026-01-15 23:59:59'), "
                      "('2026-01-16 00:00:00')"):
        assert project.cli("sql", "--write", statement).returncode == 0
    run = project.cli("cron_run", "events_per_day", "--date", "2026-01-15")
    assert run.returncode == 0 and "1 rows loaded" in run.stdout, run.stderr
    summarized = project.cli("sql", "--format", "tsv", "SELECT day, events FROM events_per_day")
    assert summarized.stdout.splitlines() == ["day\tevents", "2026-01-15\t2"]
    console = project.cli("new", "feed", "--from", "sql", "--loader", "console")
    assert console.returncode == 1 and "a SQL pipeline runs inside ClickHouse" in console.stderr


@ONCE
def test_new_refuses_a_name_too_long_for_its_files_in_one_line(project: Project) -> None:
    before = project.files()
    result = project.cli("new", "a" * 300, "--from", "file")
    assert result.returncode == 1
    assert result.stderr.strip() == ("error: the name is 300 characters long; at most 64 (it names the module, "
                                     "the table, the migration and the test)")
    assert project.files() == before  # nothing half-written
    longest = project.cli("new", "b" * 64, "--from", "file")
    assert longest.returncode == 0, longest.stderr
    assert f"wrote src/pipelines/{'b' * 64}_pipeline.py" in longest.stdout


@ONCE
def test_new_names_the_url_setting_without_repeating_the_source(project: Project) -> None:
    cases = {("orders_db", "db"): "ORDERS_DB_URL", ("orders", "db"): "ORDERS_DB_URL",
             ("shop_api", "http"): "SHOP_API_URL", ("shop", "http"): "SHOP_API_URL",
             ("db_orders", "db"): "DB_ORDERS_DB_URL"}
    for (name, source), setting in cases.items():
        made = project.cli("new", name, "--from", source)
        assert made.returncode == 0, made.stderr
        assert f"set {setting} in .env, then ./run.sh cron_run {name}" in made.stdout
        module = (project.root / "src" / "pipelines" / f"{name}_pipeline.py").read_text()
        test = (project.root / "tests" / "pipelines" / f"test_{name}_pipeline.py").read_text()
        assert f'"{setting}"' in module and f'monkeypatch.setenv("{setting}"' in test
        assert f"{setting}_" not in module + test and "_DB_DB_" not in module and "_API_API_" not in module
    unset = project.cli("cron_run", "shop_api", "--date", "2026-01-15")
    assert unset.returncode == 1
    assert "shop_api: set SHOP_API_URL (the API's URL) in .env or the environment" in unset.stderr
