from __future__ import annotations

from pathlib import Path

import pytest

from core.config import PROJECT_ROOT, load_settings
from core.exceptions import ConfigError

# Settings are parsed from each test's own .env file: the server run's CLICKHOUSE_* variables would
# only override what the tests write there.
pytestmark = pytest.mark.same_in_both_runs("parses settings from the test's own env file; no database")


def write_env(project_env: dict[str, str], text: str) -> None:
    Path(project_env["ENV_FILE"]).write_text(text)


def test_defaults_use_the_embedded_engine(project_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATA_DIR", "PIPELINES_DIR", "MIGRATIONS_DIR"):
        monkeypatch.delenv(name)
    s = load_settings()
    assert s.is_embedded
    assert s.database == "data_warehouse"
    assert s.clickhouse_port == 8123
    assert s.data_dir == PROJECT_ROOT / "data"
    assert s.store_path == PROJECT_ROOT / "data" / "clickhouse"
    assert s.pipelines_dir == PROJECT_ROOT / "src" / "pipelines"
    assert s.store_description == f"embedded chdb://{PROJECT_ROOT / 'data' / 'clickhouse'}"


def test_environment_wins_over_env_file(project_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    write_env(project_env, "BATCH_SIZE=500\nTIMEOUT=7\n")
    monkeypatch.setenv("BATCH_SIZE", "900")
    s = load_settings()
    assert s.batch_size == 900
    assert s.timeout == 7.0


def test_bad_port_in_env_file_names_variable_value_and_source(project_env: dict[str, str]) -> None:
    write_env(project_env, "CLICKHOUSE_PORT=abc\n")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert str(err.value) == "CLICKHOUSE_PORT must be an integer between 1 and 65535, got 'abc' (from .env)"


def test_bad_port_in_environment(project_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLICKHOUSE_PORT", "70000")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert str(err.value) == "CLICKHOUSE_PORT must be an integer between 1 and 65535, got '70000' (from environment)"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("LOG_FORMAT=xml", "LOG_FORMAT must be 'text' or 'json', got 'xml' (from .env)"),
        ("LOG_LEVEL=loud", "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'loud' (from .env)"),
        ("BATCH_SIZE=0", "BATCH_SIZE must be an integer between 1 and 10000000, got '0' (from .env)"),
        ("TIMEOUT=-1", "TIMEOUT must be a finite number of seconds greater than 0, got '-1' (from .env)"),
        ("STORE_SHARE_EVERY=-1",
         "STORE_SHARE_EVERY must be a finite number of seconds, 0 or more, got '-1' (from .env)"),
        ("STORE_SHARE_EVERY=inf",
         "STORE_SHARE_EVERY must be a finite number of seconds, 0 or more, got 'inf' (from .env)"),
        ("CLICKHOUSE_SECURE=maybe", "CLICKHOUSE_SECURE must be true or false, got 'maybe' (from .env)"),
        ("CLICKHOUSE_DATABASE=my-db",
         "CLICKHOUSE_DATABASE must be a plain identifier (letters, digits, underscore), got 'my-db' (from .env)"),
        ("CLICKHOUSE_URL=ftp://u:hunter22@h/db",
         "CLICKHOUSE_URL must be a URL like http://user:password@host:8123/database or chdb:///path, "
         "got '***' (from .env)"),
    ],
)
def test_each_bad_value_gives_one_clear_line(project_env: dict[str, str], line: str, expected: str) -> None:
    write_env(project_env, line + "\n")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert str(err.value) == expected
    assert "hunter22" not in str(err.value)


def test_several_bad_values_are_reported_on_one_line(project_env: dict[str, str]) -> None:
    write_env(project_env, "CLICKHOUSE_PORT=x\nBATCH_SIZE=y\n")
    with pytest.raises(ConfigError) as err:
        load_settings()
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("CLICKHOUSE_PORT must be")
    assert "; BATCH_SIZE must be an integer between 1 and 10000000, got 'y' (from .env)" in message


def test_server_settings_and_url(project_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLICKHOUSE_HOST", "ch.internal")
    monkeypatch.setenv("CLICKHOUSE_PASSWORD", "s3cret-pw")
    s = load_settings()
    assert not s.is_embedded
    assert s.store_description == "http://default@ch.internal:8123"
    assert s.display()["CLICKHOUSE_PASSWORD"] == "***"
    assert "s3cret-pw" in s.secret_values()

    monkeypatch.setenv("CLICKHOUSE_URL", "https://bob:pa55word@ch2:8443/analytics")
    s = load_settings()
    assert not s.is_embedded
    assert s.database == "analytics"
    assert s.store_description == "https://bob:***@ch2:8443/analytics"
    assert s.display()["CLICKHOUSE_URL"] == "https://bob:***@ch2:8443/analytics"
    assert "pa55word" in s.secret_values()


def test_chdb_url_selects_embedded_path(project_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                        tmp_path: Path) -> None:
    monkeypatch.setenv("CLICKHOUSE_URL", f"chdb://{tmp_path}/store")
    s = load_settings()
    assert s.is_embedded
    assert s.store_path == tmp_path / "store"


def test_pipeline_variables_stay_readable(project_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    write_env(project_env, "API_KEY=from-file-key\nAPI_BASE_URL=https://api.example.com\n")
    s = load_settings()
    assert s.extra("API_KEY") == "from-file-key"
    assert s.extra("API_BASE_URL") == "https://api.example.com"
    assert s.extra("MISSING", "fallback") == "fallback"
    assert "from-file-key" in s.secret_values()
    assert "https://api.example.com" not in s.secret_values()
    monkeypatch.setenv("API_KEY", "from-env-key")
    assert load_settings().extra("API_KEY") == "from-env-key"
