from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from core.config import load_settings
from core.exceptions import ConfigError
from core.logging import attach_job_log, detach, get_logger, run_context, setup_logging


@pytest.fixture(autouse=True)
def _reset_logging():
    yield
    for handler in list(logging.getLogger("dp").handlers):
        logging.getLogger("dp").removeHandler(handler)
        handler.close()


def test_json_records_carry_context_and_redact_secrets(project_env, monkeypatch) -> None:
    monkeypatch.setenv("LOG_FORMAT", "json")
    monkeypatch.setenv("CLICKHOUSE_PASSWORD", "topsecret-123")
    monkeypatch.setenv("PARTNER_API_KEY", "key-abcdef")
    settings = load_settings()
    setup_logging(settings, console=False)
    job_handler = attach_job_log(settings, "orders")
    log = get_logger("test")
    log.info("outside any run")
    with run_context("orders", "run-42"):
        log.info("connecting with topsecret-123 and key-abcdef")
        try:
            raise ValueError("bad key-abcdef")
        except ValueError:
            log.exception("failed")
    detach(job_handler)

    system = [json.loads(line) for line in (settings.log_dir / "system" / "application.log").read_text().splitlines()]
    assert [r["message"] for r in system] == ["outside any run", "connecting with *** and ***", "failed"]
    assert "job" not in system[0]
    assert system[1]["job"] == "orders" and system[1]["run_id"] == "run-42"
    assert system[1]["level"] == "INFO" and system[1]["logger"] == "dp.test"
    assert system[1]["timestamp"].endswith("+00:00")
    assert "ValueError: bad ***" in system[2]["exception"]

    job_lines = (settings.log_dir / "jobs" / "orders.log").read_text()
    assert "outside any run" not in job_lines
    assert "topsecret" not in job_lines and "key-abcdef" not in job_lines
    assert len(job_lines.splitlines()) == 2


def test_text_format_tags_job_and_run(project_env) -> None:
    settings = load_settings()
    setup_logging(settings, console=False)
    with run_context("daily", "r1"):
        get_logger("x").warning("hello")
    line = (settings.log_dir / "system" / "application.log").read_text().strip()
    assert line.endswith("WARNING [daily r1] hello")


def test_rotation_keeps_the_configured_number_of_files(project_env, monkeypatch) -> None:
    monkeypatch.setenv("LOG_MAX_BYTES", "2048")
    monkeypatch.setenv("LOG_BACKUP_COUNT", "2")
    settings = load_settings()
    setup_logging(settings, console=False)
    for i in range(200):
        get_logger("x").info("line %d %s", i, "x" * 50)
    files = sorted(p.name for p in (settings.log_dir / "system").iterdir())
    assert files == ["application.log", "application.log.1", "application.log.2"]
    assert all(p.stat().st_size <= 2048 for p in (settings.log_dir / "system").iterdir())


def test_unwritable_log_dir_is_a_clear_config_error(project_env, monkeypatch, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the log directory should be")
    monkeypatch.setenv("LOG_DIR", str(blocker / "logs"))
    settings = load_settings()
    with pytest.raises(ConfigError) as err:
        setup_logging(settings, console=False)
    assert str(err.value).startswith(f"LOG_DIR {blocker / 'logs'} is not writable: cannot open")
