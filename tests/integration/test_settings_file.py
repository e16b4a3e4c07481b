"""The settings file: a named file that is missing or unparsable is an error, never a silent switch."""

from __future__ import annotations

from pathlib import Path

from conftest import run_cli


def test_a_missing_env_file_is_a_config_error(project_env, tmp_path: Path) -> None:
    missing = tmp_path / "moved" / ".env"
    message = (f"ENV_FILE names {missing}, which does not exist; restore the settings file or point ENV_FILE "
               "at the right one (unset ENV_FILE to use the project's .env)")
    for command in ("list", "runs", "cron_run"):
        result = run_cli(command, *(["example_pipeline"] if command == "cron_run" else []),
                         env={"ENV_FILE": str(missing)})
        assert result.returncode == 1, (command, result.stdout, result.stderr)
        assert result.stderr.strip().splitlines() == [f"error: {message}"], command
    check = run_cli("check", "--json", env={"ENV_FILE": str(missing)})
    assert check.returncode == 1
    assert {"name": "config", "status": "fail", "detail": message}.items() <= \
        next(c for c in __import__("json").loads(check.stdout)["checks"] if c["name"] == "config").items()
    # Nothing was created for the embedded store the missing file would have switched to.
    assert not (Path(project_env["DATA_DIR"]) / "clickhouse").exists()


def test_an_unparsable_line_names_file_and_line(project_env) -> None:
    env_file = Path(project_env["ENV_FILE"])
    env_file.write_text('CLICKHOUSE_DATABASE=ok\n# a comment\nCLICKHOUSE_HOST "db.internal"\nB="unterminated\n')
    result = run_cli("list")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {env_file} line 3 cannot be parsed (expected NAME=value): 'CLICKHOUSE_HOST \"db.internal\"'; "
        f"line 4 cannot be parsed (expected NAME=value): 'B=\"unterminated'"]


def test_cron_entries_name_the_projects_env_file(project_env, monkeypatch, tmp_path: Path) -> None:
    """Without ENV_FILE, an entry still names the project's .env when there is one: deleting or
    moving it later is then an error, not a switch to a fresh embedded store."""
    from core.config import load_settings
    from ops.cron import command_line

    settings = load_settings()
    monkeypatch.delenv("ENV_FILE")
    root = tmp_path / "project"
    root.mkdir()
    line = command_line(settings, ["cron_run", "x"], root=root)
    assert "ENV_FILE=" not in line
    (root / ".env").write_text("")
    line = command_line(settings, ["cron_run", "x"], root=root)
    assert line.startswith(f"cd {root} && ENV_FILE={root / '.env'} {root}/run.sh cron_run x >> ")
