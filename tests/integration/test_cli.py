from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, SRC, cli_env, database, run_cli

SEED_COMMANDS = ["help", "check", "setup_db", "drop_db", "test"]


def test_help_lists_every_command_with_arguments() -> None:
    result = run_cli("help")
    assert result.returncode == 0
    for command in SEED_COMMANDS:
        assert f"\n  {command}" in result.stdout
    assert "drop_db [--yes]" in result.stdout


def test_unknown_command_prints_help_and_exits_2() -> None:
    result = run_cli("frobnicate")
    assert result.returncode == 2
    assert "Unknown command 'frobnicate'" in result.stderr
    assert "setup_db" in result.stderr


def test_check_reports_the_embedded_store_and_version(project_env) -> None:
    result = run_cli("check", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["healthy"] is True
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["store"]["status"] == "ok"
    assert checks["store"]["detail"].startswith("ClickHouse 26.")
    # The topology line (issue 28): a server in the --server run, where CLICKHOUSE_HOST is set.
    expected = "single server" if os.environ.get("DP_TEST_SERVER") == "1" else "embedded (single node)"
    assert (checks["topology"]["status"], checks["topology"]["detail"]) == ("ok", expected)
    assert checks["database"]["status"] == "warn"
    human = run_cli("check", env={"COLUMNS": "200"})
    assert human.returncode == 0
    # Piped: the tables as TSV on stdout, their titles and the verdict on stderr.
    assert human.stderr.strip().splitlines()[-1] == "healthy" and "CLICKHOUSE_PASSWORD" in human.stdout


def test_check_masks_secrets(project_env) -> None:
    Path(project_env["ENV_FILE"]).write_text("CLICKHOUSE_PASSWORD=hunter2hunter2\n")
    result = run_cli("check", env={"COLUMNS": "200"})
    assert "hunter2hunter2" not in result.stdout + result.stderr
    assert "***" in result.stdout


def test_check_fails_on_bad_config_naming_the_variable(project_env, monkeypatch) -> None:
    monkeypatch.delenv("CLICKHOUSE_PORT", raising=False)  # set in server mode; the .env value is the test
    Path(project_env["ENV_FILE"]).write_text("CLICKHOUSE_PORT=abc\n")
    result = run_cli("check", "--json")
    assert result.returncode == 1
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["config"]["status"] == "fail"
    assert checks["config"]["detail"] == "CLICKHOUSE_PORT must be an integer between 1 and 65535, got 'abc' (from .env)"


def test_other_commands_fail_on_bad_config_with_one_line(project_env) -> None:
    result = run_cli("setup_db", env={"BATCH_SIZE": "lots"})
    assert result.returncode == 1
    assert result.stderr.strip() == \
        "error: BATCH_SIZE must be an integer between 1 and 10000000, got 'lots' (from environment)"


@pytest.mark.parametrize(("variable", "value", "expected"), [
    ("TIMEOUT", "1e309", "a finite number of seconds greater than 0"),
    ("STORE_LOCK_TIMEOUT", "inf", "a finite number of seconds, 0 or more"),
    ("ALERT_REMIND_HOURS", "nan", "a finite number of hours, 0 (never) or more"),
])
def test_float_settings_must_be_finite(project_env, variable: str, value: str, expected: str) -> None:
    result = run_cli("setup_db", env={variable: value})
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {variable} must be {expected}, got '{value}' (from environment)"


def test_check_fails_on_unwritable_log_dir(project_env, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run_cli("check", "--json", env={"LOG_DIR": str(blocker / "logs")})
    assert result.returncode == 1
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["log_dir"]["status"] == "fail"
    assert checks["log_dir"]["detail"].startswith(f"LOG_DIR {blocker / 'logs'} is not writable")


def test_setup_db_is_idempotent_and_drop_db_needs_yes(project_env) -> None:
    first = run_cli("setup_db")
    assert first.returncode == 0, first.stderr
    assert f"Created '{database()}'" in first.stdout
    second = run_cli("setup_db")
    assert second.returncode == 0
    assert "already exists" in second.stdout

    refused = run_cli("drop_db")
    assert refused.returncode == 2
    assert "pass --yes to confirm" in refused.stdout + refused.stderr

    dropped = run_cli("drop_db", "--yes")
    assert dropped.returncode == 0, dropped.stderr
    assert f"Dropped and recreated '{database()}'" in dropped.stdout


def _run_on_terminal(args: list[str], answer: str, timeout: float = 60) -> tuple[int, str]:
    """Run the CLI with a pseudo-terminal as stdin/stdout and type ``answer`` at its prompt."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, str(SRC / "main.py"), *args], env=cli_env(), cwd=ROOT,
                            stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    output = b""
    deadline = time.monotonic() + timeout
    answered = False
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
            if not answered and b"[y/N]" in output:
                os.write(master, answer.encode() + b"\n")
                answered = True
        elif proc.poll() is not None:
            break
    proc.wait(timeout=10)
    os.close(master)
    return proc.returncode, output.decode(errors="replace")


def test_drop_db_asks_on_a_terminal(project_env) -> None:
    assert run_cli("setup_db").returncode == 0
    code, output = _run_on_terminal(["drop_db"], "n")
    assert f"Drop database '{database()}'" in output
    assert code == 1 and "Aborted" in output
    code, output = _run_on_terminal(["drop_db"], "y")
    assert code == 0, output
    assert "Dropped and recreated" in output


@pytest.mark.slow
def test_run_sh_stops_with_the_pip_error_when_install_fails(tmp_path: Path) -> None:
    (tmp_path / "run.sh").write_text((ROOT / "run.sh").read_text())
    (tmp_path / "requirements.txt").write_text("this-package-does-not-exist-dp==0.0.1\n")
    result = subprocess.run(["bash", str(tmp_path / "run.sh"), "help"], capture_output=True, text=True,
                            timeout=300, cwd=tmp_path)
    assert result.returncode == 1
    assert "Creating virtual environment .venv" in result.stderr
    assert "error: pip install -r requirements.txt failed" in result.stderr
    assert "this-package-does-not-exist-dp" in result.stderr
    assert "Traceback" not in result.stderr


def test_store_and_logs_are_private_to_the_user(project_env) -> None:
    """Whatever the caller's umask, the store, the logs and what is in them are not group/other readable."""
    old = os.umask(0o022)  # the CLI processes inherit this usual umask
    try:
        assert run_cli("setup_db").returncode == 0
        result = run_cli("cron_run", "fixture_pipeline", "--date", "2026-01-15")
    finally:
        os.umask(old)
    assert result.returncode == 0, result.stderr
    roots = [Path(project_env["LOG_DIR"]), Path(project_env["RUN_DIR"])]
    if "CLICKHOUSE_HOST" not in project_env:  # the embedded store (in server mode the server's is its own)
        roots.append(Path(project_env["DATA_DIR"]))
        assert (Path(project_env["DATA_DIR"]) / "clickhouse").is_dir()
    assert (Path(project_env["LOG_DIR"]) / "jobs" / "fixture_pipeline.log").is_file()
    shared = [f"{path} {path.stat().st_mode & 0o777:o}" for root in roots for path in [root, *root.rglob("*")]
              if not path.is_symlink() and path.stat().st_mode & 0o077]
    assert shared == []
