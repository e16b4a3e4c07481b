"""The rough edges of a new user's first day, through the real CLI: a typo in a registry key,
migrate_status with a missing file, check after failed runs, a failed run's output, --verbose
and shell completion."""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from conftest import ROOT, run_cli

FLAKY = textwrap.dedent('''
    import os
    from pathlib import Path

    import pyarrow as pa
    from pipelines.interfaces import Extractor
    from pipelines.pipeline_factory import create_el_pipeline
    from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader

    class Source(Extractor):
        """Fails while the file SWITCH says 'fail'."""

        def extract(self, context):
            if Path(os.environ["SWITCH"]).read_text().strip() == "fail":
                raise ValueError("the source said no")
            yield pa.table({"n": [1, 2]})

    PIPELINE_REGISTRY = {
        "flaky": {"pipeline": create_el_pipeline(Source("source"), create_clickhouse_loader("flaky_t"), "flaky"),
                  "schedule": "0 3 * * *"},
    }
''')


def test_a_mistyped_registry_key_gets_did_you_mean(pipelines_dir: Path) -> None:
    (pipelines_dir / "typo_pipeline.py").write_text(
        FLAKY.replace('"schedule": "0 3 * * *"', '"shedule": "0 3 * * *"').replace('"flaky"', '"typo"'))
    listed = run_cli("list")
    assert "shedule: unknown key; did you mean 'schedule'?" in listed.stdout + listed.stderr
    run = run_cli("cron_run", "typo")
    assert run.returncode == 1
    assert run.stderr.strip().endswith("shedule: unknown key; did you mean 'schedule'?")
    check = run_cli("check")
    assert check.returncode == 1 and "did you mean 'schedule'?" in " ".join(check.stdout.split())
    (pipelines_dir / "typo_pipeline.py").write_text(FLAKY.replace('"schedule"', '"colour"'))
    other = run_cli("cron_run", "flaky")
    assert "colour: unknown key (valid keys: pipeline, description, schedule, table_name," in other.stderr
    (pipelines_dir / "typo_pipeline.py").write_text(FLAKY)
    unknown = run_cli("cron_run", "flakey")
    assert unknown.returncode == 2
    assert "No pipeline named 'flakey'; did you mean 'flaky'? (known: flaky)" in unknown.stderr


def test_migrate_status_exits_1_when_an_applied_file_is_missing(project_env, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import FIXTURE_MIGRATIONS

    migrations = tmp_path / "migrations"
    shutil.copytree(FIXTURE_MIGRATIONS, migrations)
    env = {"MIGRATIONS_DIR": str(migrations)}
    assert run_cli("setup_db").returncode == 0
    assert run_cli("migrate", env=env).returncode == 0
    ok = run_cli("migrate_status", env=env)
    assert ok.returncode == 0 and "up to date" in ok.stdout
    for path in migrations.glob("0001_*"):  # the migration and its down file
        path.unlink()
    missing = run_cli("migrate_status", env=env)
    assert missing.returncode == 1, missing.stdout
    assert "missing" in missing.stdout and "up to date" not in missing.stdout.replace("not up to date", "")
    assert ("not up to date: applied but missing from MIGRATIONS_DIR: 0001_create_fixture_readings.sql "
            "(restore the file from version control)") in " ".join(missing.stdout.split())
    as_json = run_cli("migrate_status", "--json", env=env)
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["up_to_date"] is False


def _runs_check() -> tuple[int, dict]:
    result = run_cli("check", "--json")
    return result.returncode, next(c for c in json.loads(result.stdout)["checks"] if c["name"] == "runs")


def test_check_reports_pipelines_whose_last_runs_failed(pipelines_dir: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    (pipelines_dir / "flaky_pipeline.py").write_text(FLAKY)
    switch = tmp_path / "switch"
    monkeypatch.setenv("SWITCH", str(switch))
    switch.write_text("ok")
    assert run_cli("cron_run", "flaky").returncode == 0
    assert _runs_check()[1] == {"name": "runs", "status": "ok", "detail": "no pipeline's last run failed"}
    switch.write_text("fail")
    assert run_cli("cron_run", "flaky").returncode == 1
    _, one = _runs_check()
    assert one["status"] == "warn" and one["detail"].startswith("flaky: last run failed (newest ")
    assert one["detail"].endswith(": ValueError: the source said no) -- see ./run.sh runs flaky")
    for _ in range(3):
        assert run_cli("cron_run", "flaky").returncode == 1
    code, four = _runs_check()
    assert code == 3 and four["status"] == "fail" and four["detail"].startswith("flaky: last 4 runs failed (newest ")
    human = run_cli("check")
    assert human.returncode == 3 and "flaky: last 4 runs failed" in " ".join(human.stdout.split())
    switch.write_text("ok")
    assert run_cli("cron_run", "flaky").returncode == 0
    assert _runs_check() == (0, {"name": "runs", "status": "ok", "detail": "no pipeline's last run failed"})


def test_a_failed_run_prints_its_error_once(pipelines_dir: Path, tmp_path: Path, project_env,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    (pipelines_dir / "flaky_pipeline.py").write_text(FLAKY)
    (tmp_path / "switch").write_text("fail")
    monkeypatch.setenv("SWITCH", str(tmp_path / "switch"))
    failed = run_cli("cron_run", "flaky")
    assert failed.returncode == 1
    output = failed.stdout + failed.stderr
    assert output.count("the source said no") == 1 and "Traceback" not in output
    assert "failed flaky " in failed.stderr and "(error): ValueError: the source said no" in failed.stderr
    job_log = (Path(project_env["LOG_DIR"]) / "jobs" / "flaky.log").read_text()
    assert job_log.count("ValueError: the source said no") == 2  # the error line, and its traceback's last line
    assert job_log.count("Traceback (most recent call last)") == 1
    verbose = run_cli("--verbose", "cron_run", "flaky")
    assert verbose.returncode == 1 and "Traceback (most recent call last)" in verbose.stderr


def test_shell_completion_scripts(tmp_path: Path) -> None:
    for shell in ("bash", "zsh"):
        script = run_cli("completion", shell)
        assert script.returncode == 0, script.stderr
        assert "_RUN_SH_COMPLETE" in script.stdout
    assert "complete -o nosort -F _runsh_completion run.sh" in run_cli("completion", "bash").stdout
    assert "#compdef run.sh" in run_cli("completion", "zsh").stdout
    assert run_cli("completion", "tcsh").returncode == 2
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    (tmp_path / "bash.sh").write_text(run_cli("completion", "bash").stdout)
    probe = textwrap.dedent(f"""\
        source {tmp_path / 'bash.sh'}
        COMP_WORDS=(./run.sh cron_r); COMP_CWORD=1; COMPREPLY=(); _runsh_completion ./run.sh; echo "${{COMPREPLY[@]}}"
        COMP_WORDS=(./run.sh migrate_status --j); COMP_CWORD=2; COMPREPLY=(); _runsh_completion ./run.sh
        echo "${{COMPREPLY[@]}}"
    """)
    done = subprocess.run([bash, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.stdout.splitlines() == ["cron_run", "--json"], done.stderr


def test_a_host_name_that_does_not_resolve_fails_at_once(pipelines_dir: Path, project_env) -> None:
    (pipelines_dir / "nowhere_pipeline.py").write_text(textwrap.dedent('''
        from pipelines.pipeline_factory import create_el_pipeline
        from pipelines.tools.extractors.http_extractor import create_http_extractor
        from pipelines.tools.loaders.console_loader import create_console_loader

        PIPELINE_REGISTRY = {"nowhere": {
            "pipeline": create_el_pipeline(create_http_extractor("https://no-such-host.invalid/data", retries=5),
                                           create_console_loader(), "nowhere"),
            "retries": 2, "retry_delay": 30,
        }}
    '''))
    result = run_cli("cron_run", "nowhere", timeout=60)
    assert result.returncode == 1
    assert ("(error): ExtractError: http: GET https://no-such-host.invalid/data: "
            "the host name 'no-such-host.invalid' does not resolve (") in result.stderr
    assert "check the URL, or this machine's DNS and network" in result.stderr
    [run] = json.loads(run_cli("runs", "nowhere", "--json").stdout)
    assert (run["status"], run["attempt"]) == ("failed", 1)  # neither the extractor nor the runner retried
    log = (Path(project_env["LOG_DIR"]) / "jobs" / "nowhere.log").read_text()
    assert "; retry " not in log and "retrying in" not in log  # no retry was logged by either
