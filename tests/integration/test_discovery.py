from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from conftest import run_cli
from core.exceptions import DiscoveryError, PipelineNotFound
from pipelines.pipeline_registry import discover

HEADER = textwrap.dedent("""
    import pyarrow as pa
    from pipelines.interfaces import Extractor
    from pipelines.pipeline_factory import create_el_pipeline
    from pipelines.tools.loaders.console_loader import create_console_loader

    class One(Extractor):
        def extract(self, context):
            yield pa.table({"x": [1]})

    def make(name):
        return create_el_pipeline(One(), create_console_loader(), name)
""")


def write(directory: Path, filename: str, body: str) -> Path:
    path = directory / filename
    path.write_text(HEADER + textwrap.dedent(body))
    return path


def test_discovers_registry_dicts_and_getters(tmp_path: Path) -> None:
    write(tmp_path, "a_pipeline.py", """
        PIPELINE_REGISTRY = {"alpha": {"pipeline": make("alpha"), "description": "A", "schedule": "0 * * * *",
                                       "table_name": "alpha_t"}}
    """)
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub", "b_pipeline.py", """
        def get_pipeline_registry():
            return {"beta": {"pipeline": make("beta"), "schedule": None, "retries": 2, "granularity": "hour"}}
    """)
    write(tmp_path, "helpers.py", "raise RuntimeError('not a pipeline module: must not be imported')")
    registry = discover(tmp_path)
    assert sorted(registry.pipelines) == ["alpha", "beta"]
    assert registry.broken == []
    alpha = registry.get("alpha")
    assert alpha.entry.schedule == "0 * * * *" and alpha.table_name == "alpha_t" and alpha.entry.description == "A"
    assert registry.get("beta").entry.retries == 2 and registry.get("beta").entry.granularity == "hour"


def test_broken_modules_and_entries_are_reported_without_hiding_others(tmp_path: Path) -> None:
    write(tmp_path, "good_pipeline.py", 'PIPELINE_REGISTRY = {"good": {"pipeline": make("good")}}')
    (tmp_path / "crash_pipeline.py").write_text("x = 1\nimport does_not_exist_anywhere\n")
    write(tmp_path, "cron_pipeline.py",
          'PIPELINE_REGISTRY = {"badcron": {"pipeline": make("c"), "schedule": "61 * * * *"}}')
    write(tmp_path, "missing_pipeline.py", 'PIPELINE_REGISTRY = {"nopipe": {"description": "forgot it"}}')
    write(tmp_path, "typo_pipeline.py", 'PIPELINE_REGISTRY = {"typo": {"pipeline": make("t"), "shedule": "x"}}')
    write(tmp_path, "none_pipeline.py", "VALUE = 1")
    registry = discover(tmp_path)
    assert list(registry.pipelines) == ["good"]
    errors = {b.source.rsplit("/", 1)[-1]: b.error for b in registry.broken}
    assert errors["crash_pipeline.py"] == (
        f"{tmp_path / 'crash_pipeline.py'}:2: ModuleNotFoundError: No module named 'does_not_exist_anywhere'")
    assert errors["cron_pipeline.py"] == (
        f"pipeline 'badcron' in {tmp_path / 'cron_pipeline.py'}: schedule: invalid cron expression '61 * * * *'")
    assert errors["missing_pipeline.py"].endswith("missing 'pipeline' (the object create_etl_pipeline() returns)")
    assert errors["typo_pipeline.py"].endswith("shedule: unknown key; did you mean 'schedule'?")
    assert errors["none_pipeline.py"].endswith("defines neither get_pipeline_registry() nor PIPELINE_REGISTRY")
    with pytest.raises(DiscoveryError, match="Pipeline 'badcron' cannot run: pipeline 'badcron' in"):
        registry.get("badcron")
    with pytest.raises(PipelineNotFound, match=r"No pipeline named 'nope' \(known: good\)"):
        registry.get("nope")


def test_a_name_defined_twice_names_both_files_and_runs_neither(tmp_path: Path) -> None:
    write(tmp_path, "one_pipeline.py", 'PIPELINE_REGISTRY = {"dup": {"pipeline": make("dup")}}')
    write(tmp_path, "two_pipeline.py", 'PIPELINE_REGISTRY = {"dup": {"pipeline": make("dup")}}')
    registry = discover(tmp_path)
    assert registry.pipelines == {}
    [broken] = registry.broken
    assert broken.error == (f"pipeline name 'dup' is defined in both {tmp_path / 'one_pipeline.py'} "
                            f"and {tmp_path / 'two_pipeline.py'}")


def test_list_shows_pipelines_and_broken_modules(pipelines_dir: Path) -> None:
    write(pipelines_dir, "ok_pipeline.py", """
        PIPELINE_REGISTRY = {"hourly_thing": {"pipeline": make("h"), "description": "Hourly thing",
                                              "schedule": "15 * * * *", "table_name": "things"}}
    """)
    (pipelines_dir / "broken_pipeline.py").write_text("syntax error here\n")
    result = run_cli("list")
    assert result.returncode == 0, result.stderr
    assert "hourly_thing" in result.stdout and "Hourly thing" in result.stdout and "15 * * * *" in result.stdout
    assert "never" in result.stdout
    assert "broken_pipeline.py:1: SyntaxError" in result.stdout
    as_json = run_cli("list", "--json")
    import json

    data = json.loads(as_json.stdout)
    [entry] = data["pipelines"]
    assert entry["name"] == "hourly_thing" and entry["table"] == "things" and entry["next_run"].endswith(":15:00+00:00")
    assert data["broken"][0]["error"].startswith(str(pipelines_dir / "broken_pipeline.py") + ":1: SyntaxError")


def test_no_pipelines_is_a_friendly_message(pipelines_dir: Path) -> None:
    result = run_cli("list")
    assert result.returncode == 0
    assert f"No pipelines found: add a *_pipeline.py module to {pipelines_dir}" in result.stdout


# ---- issue 23 §4: one schedule grammar, checked at discovery; a bad schedule is its pipeline's error ----

def _crontab_table(script: Path) -> str:
    table = script.parent / "table"
    return table.read_text() if table.exists() else ""


def test_a_schedule_that_never_fires_is_its_pipelines_error_only(pipelines_dir: Path, _private_crontab: Path) -> None:
    import json

    write(pipelines_dir, "good_pipeline.py",
          'PIPELINE_REGISTRY = {"good": {"pipeline": make("g"), "schedule": "15 * * * *"}}')
    feb = write(pipelines_dir, "feb_pipeline.py",
                'PIPELINE_REGISTRY = {"feb31": {"pipeline": make("f"), "schedule": "0 0 31 2 *"}}')
    reason = (f"pipeline 'feb31' in {feb}: schedule: '0 0 31 2 *' never fires "
              "(no minute matches it in the next 10 years)")
    listed = run_cli("list")
    assert listed.returncode == 0, listed.stderr
    assert "Traceback" not in listed.stderr + listed.stdout
    assert "good" in listed.stdout and "15 * * * *" in listed.stdout
    assert "never fires" in listed.stdout
    data = json.loads(run_cli("list", "--json").stdout)
    assert [p["name"] for p in data["pipelines"]] == ["good"]
    assert data["broken"] == [{"source": str(feb), "name": "feb31", "error": reason}]

    checked = run_cli("check", "--json")
    assert checked.returncode == 1, checked.stderr
    checks = {c["name"]: c for c in json.loads(checked.stdout)["checks"]}
    assert checks["pipelines"] == {"name": "pipelines", "status": "fail", "detail": f"1 broken: {reason}"}

    setup = run_cli("setup_cron", "--all")
    assert setup.returncode == 1, setup.stderr
    assert f"error: broken pipeline module {feb}: {reason}" in setup.stderr
    table = _crontab_table(_private_crontab)
    assert "cron_run good --trigger cron" in table and "feb31" not in table
    refused = run_cli("setup_cron", "feb31")
    assert refused.returncode == 1 and refused.stderr.strip().endswith(f"Pipeline 'feb31' cannot run: {reason}")


@pytest.mark.parametrize("schedule, problem", [
    ("* * * * * */5", "'* * * * * */5' has 6 fields; cron needs 5 (minute hour day-of-month month day-of-week) "
                      "or one of @hourly, @daily, @midnight, @weekly, @monthly, @yearly, @annually"),
    ("@reboot", "'@reboot' is not a schedule cron fires on (use 5 fields or one of @hourly, @daily, @midnight, "
                "@weekly, @monthly, @yearly, @annually)"),
    ("0 0 L * *", "'0 0 L * *': day-of-month 'L' is not cron syntax (numbers, names, '*', ranges a-b, "
                  "steps /n and lists a,b)"),
    ("0 9 * * 1#2", "'0 9 * * 1#2': day-of-week '1#2' is not cron syntax (numbers, names, '*', ranges a-b, "
                    "steps /n and lists a,b)"),
    ("61 * * * *", "invalid cron expression '61 * * * *'"),
])
def test_schedules_cron_does_not_know_are_refused_at_discovery(tmp_path: Path, schedule: str, problem: str) -> None:
    path = write(tmp_path, "x_pipeline.py",
                 f'PIPELINE_REGISTRY = {{"x": {{"pipeline": make("x"), "schedule": "{schedule}"}}}}')
    registry = discover(tmp_path)
    assert registry.pipelines == {}
    [broken] = registry.broken
    assert broken.error == f"pipeline 'x' in {path}: schedule: {problem}"


def test_cron_names_are_one_grammar_for_list_and_setup_cron(pipelines_dir: Path, _private_crontab: Path) -> None:
    import json

    write(pipelines_dir, "named_pipeline.py", """
        PIPELINE_REGISTRY = {"nightly": {"pipeline": make("n"), "schedule": "@daily"},
                             "hourly": {"pipeline": make("h"), "schedule": "@hourly"},
                             "yearly": {"pipeline": make("y"), "schedule": "@annually"}}
    """)
    data = json.loads(run_cli("list", "--json").stdout)
    assert data["broken"] == []
    runs = {p["name"]: (p["schedule"], p["next_run"]) for p in data["pipelines"]}
    assert runs["nightly"][0] == "@daily" and runs["nightly"][1].endswith("T00:00:00+00:00")
    assert runs["yearly"][1].endswith("-01-01T00:00:00+00:00")
    setup = run_cli("setup_cron", "--all", env={"TZ": "UTC"})
    assert setup.returncode == 0, setup.stderr
    lines = {line.split(" cron_run ")[1].split()[0]: line.split(" cd ")[0]
             for line in _crontab_table(_private_crontab).splitlines() if " cron_run " in line}
    assert lines == {"nightly": "0 0 * * *", "hourly": "0 * * * *", "yearly": "0 0 1 1 *"}


# ---- issue 23 §5: a module that exits or sleeps at import takes down only itself ----------------

def test_a_module_that_exits_at_import_is_broken_and_the_others_run(pipelines_dir: Path) -> None:
    import json

    write(pipelines_dir, "good_pipeline.py", 'PIPELINE_REGISTRY = {"good": {"pipeline": make("g")}}')
    exits = pipelines_dir / "exits_pipeline.py"
    exits.write_text("import sys\nsys.exit(3)\n")
    parses = pipelines_dir / "parses_pipeline.py"
    parses.write_text("import argparse\nparser = argparse.ArgumentParser()\nparser.add_argument('--day')\n"
                      "ARGS = parser.parse_args()\n")
    listed = run_cli("list", "--json")
    assert listed.returncode == 0, listed.stderr
    data = json.loads(listed.stdout)
    assert [p["name"] for p in data["pipelines"]] == ["good"]
    hint = "a pipeline module must not exit or parse the command line when imported"
    assert {b["source"]: b["error"] for b in data["broken"]} == {
        str(exits): f"{exits}:2: SystemExit: 3 ({hint})",
        str(parses): f"{parses}:4: SystemExit: 2 ({hint})",
    }
    run = run_cli("cron_run", "good")
    assert run.returncode == 0, run.stderr
    assert "success good " in run.stdout and ": 1 rows loaded (1 extracted)" in run.stdout


def test_a_module_slow_to_import_is_named(pipelines_dir: Path) -> None:
    write(pipelines_dir, "good_pipeline.py", 'PIPELINE_REGISTRY = {"good": {"pipeline": make("g")}}')
    slow = write(pipelines_dir, "slow_pipeline.py", """
        import time
        time.sleep(2.5)
        PIPELINE_REGISTRY = {"slow": {"pipeline": make("s")}}
    """)
    listed = run_cli("list")
    assert listed.returncode == 0, listed.stderr
    assert "good" in listed.stdout and "slow" in listed.stdout
    [warning] = [line for line in listed.stderr.splitlines() if "slow_pipeline.py" in line]
    assert f"importing {slow} took 2." in warning
    assert warning.endswith("s (more than 2 s): every command that discovers pipelines waits for it; "
                            "do slow work inside extract(), not at import")
    assert "good_pipeline.py" not in listed.stderr


# ---- issue 23 §6: the framework's own tables are never a pipeline's target ---------------------

def test_a_framework_table_as_target_is_refused_at_discovery(pipelines_dir: Path) -> None:
    import json

    clash = write(pipelines_dir, "clash_pipeline.py", """
        from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader

        PIPELINE_REGISTRY = {
            "runs_clash": {"pipeline": create_el_pipeline(One(), create_clickhouse_loader("_dp_runs"), "r")},
            "coverage_clash": {"pipeline": make("c"), "table_name": "_dp_coverage"},
            "fine": {"pipeline": create_el_pipeline(One(), create_clickhouse_loader("dp_runs_copy"), "f")},
        }
    """)
    reserved = ("names starting with '_dp_' are the framework's own tables (run history, coverage, state); "
                "choose another")
    data = json.loads(run_cli("list", "--json").stdout)
    assert [p["name"] for p in data["pipelines"]] == ["fine"]
    assert {b["name"]: b["error"] for b in data["broken"]} == {
        "runs_clash": f"pipeline 'runs_clash' in {clash}: the loader's table '_dp_runs' is reserved: {reserved}",
        "coverage_clash": f"pipeline 'coverage_clash' in {clash}: table_name '_dp_coverage' is reserved: {reserved}",
    }
    run = run_cli("cron_run", "runs_clash")
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1].endswith(
        f"Pipeline 'runs_clash' cannot run: pipeline 'runs_clash' in {clash}: the loader's table '_dp_runs' "
        f"is reserved: {reserved}")


def test_every_framework_table_carries_the_reserved_prefix() -> None:
    from audit.results import CHECKS_TABLE
    from core.migrations.tables import LOCKS_TABLE, MIGRATIONS_TABLE
    from core.run_tables import FRAMEWORK_PREFIX, STAGING_PREFIX
    from ops.alerts.state import ALERT_LOG_TABLE, ALERTS_TABLE
    from pipelines.tools.loaders.clickhouse_attach import ATTACHED_TABLE
    from record.coverage import COVERAGE_TABLE
    from record.tables import QUARANTINE_TABLE, RUNS_TABLE, STATE_TABLE
    from record.totals import TOTALS_TABLE

    tables = [CHECKS_TABLE, LOCKS_TABLE, MIGRATIONS_TABLE, STAGING_PREFIX, ALERT_LOG_TABLE, ALERTS_TABLE,
              ATTACHED_TABLE, COVERAGE_TABLE, QUARANTINE_TABLE, RUNS_TABLE, STATE_TABLE, TOTALS_TABLE]
    assert FRAMEWORK_PREFIX == "_dp_" and all(t.startswith(FRAMEWORK_PREFIX) for t in tables)


# ---- issue 26 §3: the entry's table_name and the loader's table are one table --------------------

def test_a_table_name_other_than_the_loaders_table_is_refused_at_discovery(pipelines_dir: Path) -> None:
    import json

    path = write(pipelines_dir, "tables_pipeline.py", """
        from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader

        PIPELINE_REGISTRY = {
            "mismatch": {"pipeline": create_el_pipeline(One(), create_clickhouse_loader("events"), "m"),
                         "table_name": "events_v2"},
            "same": {"pipeline": create_el_pipeline(One(), create_clickhouse_loader("events"), "s"),
                     "table_name": "events"},
            "console": {"pipeline": make("c"), "table_name": "my_data"},
        }
    """)
    error = (f"pipeline 'mismatch' in {path}: table_name 'events_v2' is not the table its loader writes "
             "('events'): name the loader's table, or leave table_name out")
    data = json.loads(run_cli("list", "--json").stdout)
    assert {p["name"]: p["table"] for p in data["pipelines"]} == {"console": "my_data", "same": "events"}
    assert data["broken"] == [{"source": str(path), "name": "mismatch", "error": error}]
    listed = run_cli("list")
    assert listed.returncode == 0
    assert error in listed.stdout
    run = run_cli("cron_run", "mismatch")
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1].endswith(f"Pipeline 'mismatch' cannot run: {error}")


def test_the_shipped_pipelines_and_fixtures_pass_discovery() -> None:
    from core.config import PROJECT_ROOT
    from ops.discovery import ENTRY_CHECKS

    shipped = discover(PROJECT_ROOT / "src" / "pipelines", ENTRY_CHECKS)
    assert shipped.broken == []
    assert {n: s.table_name for n, s in shipped.pipelines.items()} == {
        "daily_sales": "daily_sales", "example_pipeline": "example_events", "monthly_sales": "monthly_sales"}
    fixtures = discover(PROJECT_ROOT / "tests" / "fixtures" / "pipelines", ENTRY_CHECKS)
    assert fixtures.broken == []
    assert {n: s.table_name for n, s in fixtures.pipelines.items()} == {"fixture_pipeline": "fixture_readings"}


def test_the_registry_cache_is_per_set_of_checks(tmp_path: Path) -> None:
    """A registry discovered without the upper layers' checks (as cleanup and the process list do)
    is not what the commands get afterwards: they get the checked one (issue 26 §3)."""
    from ops import discovery
    from pipelines import pipeline_registry

    write(tmp_path, "a_pipeline.py", """
        PIPELINE_REGISTRY = {"ok": {"pipeline": make("ok")},
                             "noisy": {"pipeline": make("noisy"), "alerts": {"no_such_setting": 1}}}
    """)
    unchecked = pipeline_registry.get_registry(tmp_path)
    assert sorted(unchecked.pipelines) == ["noisy", "ok"] and unchecked.broken == []
    checked = discovery.get_registry(tmp_path)
    assert sorted(checked.pipelines) == ["ok"]
    assert [b.name for b in checked.broken] == ["noisy"]
    assert checked.broken[0].error.startswith(
        f"pipeline 'noisy' in {tmp_path / 'a_pipeline.py'}: pipeline 'noisy': unknown alerts setting(s) "
        "no_such_setting (known: enabled, "), checked.broken[0].error
    # Each is cached under its own checks: asking again returns the same objects.
    assert discovery.get_registry(tmp_path) is checked
    assert pipeline_registry.get_registry(tmp_path) is unchecked
