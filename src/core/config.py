"""Configuration: one validated settings object read from the environment and ``.env``.

The environment wins over ``.env``; ``.env`` wins over the defaults. Every invalid value fails
with one line naming the variable, the bad value and where it came from, e.g.
``CLICKHOUSE_PORT must be an integer between 1 and 65535, got 'abc' (from .env)``.
"""

from __future__ import annotations

import os
import re
from functools import cached_property
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from dotenv import dotenv_values
from pydantic import Field, PrivateAttr, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.exceptions import ConfigError
from core.redaction import MASK, is_secret_variable, mask_url, mask_webhook

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ENV_FILE = PROJECT_ROOT / ".env"

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# What a valid value looks like, used in error messages ("X must be <this>, got ...").
_EXPECTED: dict[str, str] = {
    "clickhouse_port": "an integer between 1 and 65535",
    "clickhouse_secure": "true or false",
    "clickhouse_database": "a plain identifier (letters, digits, underscore)",
    "clickhouse_cluster": "a plain identifier (letters, digits, underscore)",
    "clickhouse_url": "a URL like http://user:password@host:8123/database or chdb:///path",
    "log_level": "one of DEBUG, INFO, WARNING, ERROR, CRITICAL",
    "log_format": "'text' or 'json'",
    "log_max_bytes": "an integer of at least 1024 (bytes)",
    "log_backup_count": "an integer between 0 and 1000",
    "timeout": "a finite number of seconds greater than 0",
    "clickhouse_connect_timeout": "a finite number of seconds greater than 0",
    "batch_size": "an integer between 1 and 10000000",
    "store_lock_timeout": "a finite number of seconds, 0 or more",
    "store_share_every": "a finite number of seconds, 0 or more",
    "run_history_ttl_days": "an integer number of days between 1 and 36500",
    "alert_webhook_url": "an http(s) URL",
    "alert_webhook_format": "one of slack, teams, json",
    "alert_smtp_port": "an integer between 1 and 65535",
    "alert_smtp_security": "one of starttls, ssl, none",
    "alert_timeout": "a finite number of seconds between 0 and 60 (exclusive of 0)",
    "alert_remind_hours": "a finite number of hours, 0 (never) or more",
    "alert_on_warn": "true or false",
    "check_cron_schedule": "a cron expression like '*/15 * * * *'",
}


class Settings(BaseSettings):
    """Every setting the framework reads. Field ``x_y`` is the environment variable ``X_Y``."""

    model_config = SettingsConfigDict(
        env_file=DEFAULT_ENV_FILE,
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        extra="ignore",
        case_sensitive=False,
        validate_default=True,
        # Every float setting is finite: TIMEOUT=1e309 or STORE_LOCK_TIMEOUT=inf would mean "forever".
        allow_inf_nan=False,
    )

    clickhouse_host: str | None = None
    clickhouse_port: int = Field(8123, ge=1, le=65535)
    clickhouse_user: str = "default"
    clickhouse_password: SecretStr = SecretStr("")
    clickhouse_bi_password: SecretStr = SecretStr("")  # clickhouse_server's read-only BI user
    clickhouse_database: str = "data_warehouse"
    clickhouse_secure: bool = False
    clickhouse_url: SecretStr | None = None
    clickhouse_cluster: str | None = None
    # Seconds to wait for a TCP connection to a server: short, so an unreachable host fails fast
    # (TIMEOUT, for queries, is much longer).
    clickhouse_connect_timeout: float = Field(5.0, gt=0)

    data_dir: Path = Path("data")
    log_dir: Path = Path("logs")
    run_dir: Path = Path("run")
    pipelines_dir: Path = Path("src/pipelines")
    migrations_dir: Path = Path("migrations/sql")

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    log_max_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    log_backup_count: int = Field(5, ge=0, le=1000)

    timeout: float = Field(30.0, gt=0)
    batch_size: int = Field(100_000, ge=1, le=10_000_000)
    store_lock_timeout: float = Field(120.0, ge=0)
    # Seconds a series of runs (a backfill, a cascade) keeps the embedded store before it hands it
    # to a waiting process (runner/turns.py).
    store_share_every: float = Field(5.0, ge=0)
    run_history_ttl_days: int = Field(180, ge=1, le=36500)
    # Password of the status page (./run.sh ui) when it listens on another address than 127.0.0.1.
    ui_password: SecretStr = SecretStr("")

    # Alerts (ops.alerts): channels, and how often a condition that stays bad is repeated.
    alert_webhook_url: SecretStr | None = None
    alert_webhook_format: Literal["slack", "teams", "json"] = "json"
    alert_smtp_host: str | None = None
    alert_smtp_port: int = Field(587, ge=1, le=65535)
    alert_smtp_security: Literal["starttls", "ssl", "none"] = "starttls"
    alert_smtp_user: str | None = None
    alert_smtp_password: SecretStr = SecretStr("")
    alert_smtp_ca_file: Path | None = None
    alert_email_from: str | None = None
    alert_email_to: str | None = None
    alert_command: str | None = None
    alert_timeout: float = Field(5.0, gt=0, le=60)
    alert_remind_hours: float = Field(24.0, ge=0)
    alert_on_warn: bool = False
    check_cron_schedule: str | None = None

    _env_path: Path | None = PrivateAttr(default=None)

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _normalise_case(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        return value.strip().upper() if value.strip().upper() in _LEVELS else value.strip().lower()

    @field_validator("clickhouse_database", "clickhouse_cluster")
    @classmethod
    def _identifier(cls, value: str | None) -> str | None:
        if value is not None and not _IDENTIFIER.match(value):
            raise ValueError("not an identifier")
        return value

    @field_validator("alert_webhook_url")
    @classmethod
    def _webhook(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and urlsplit(value.get_secret_value()).scheme not in {"http", "https"}:
            raise ValueError("not an http(s) URL")
        return value

    @field_validator("check_cron_schedule")
    @classmethod
    def _check_schedule(cls, value: str | None) -> str | None:
        from core.validators import cron_schedule

        return cron_schedule(value) if value and value.strip() else None

    @field_validator("clickhouse_url")
    @classmethod
    def _url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        parts = urlsplit(value.get_secret_value())
        if parts.scheme not in {"http", "https", "clickhouse", "chdb"}:
            raise ValueError("unsupported scheme")
        if parts.scheme != "chdb" and not parts.hostname:
            raise ValueError("no host")
        return value

    @field_validator("data_dir", "log_dir", "run_dir", "pipelines_dir", "migrations_dir")
    @classmethod
    def _under_project(cls, value: Path) -> Path:
        # Relative paths are relative to the project, not to the caller's working directory:
        # cron and deploy scripts start from elsewhere.
        value = value.expanduser()
        return value if value.is_absolute() else PROJECT_ROOT / value

    # ---- derived -----------------------------------------------------------------------

    @property
    def url(self) -> str | None:
        return self.clickhouse_url.get_secret_value() if self.clickhouse_url else None

    @property
    def is_embedded(self) -> bool:
        """True when the store is the in-process chdb engine (no server configured)."""
        if self.url:
            return urlsplit(self.url).scheme == "chdb"
        return not self.clickhouse_host

    @property
    def store_path(self) -> Path:
        """Directory of the embedded store."""
        if self.url and urlsplit(self.url).scheme == "chdb":
            return Path(urlsplit(self.url).path)
        return self.data_dir / "clickhouse"

    @property
    def database(self) -> str:
        """The database the framework works in (from the URL path when it names one)."""
        if self.url and not self.is_embedded:
            name = urlsplit(self.url).path.strip("/")
            if name:
                return name
        return self.clickhouse_database

    @property
    def store_description(self) -> str:
        """Where the store is, safe to print (no password)."""
        if self.is_embedded:
            return f"embedded chdb://{self.store_path}"
        if self.url:
            return mask_url(self.url)
        scheme = "https" if self.clickhouse_secure else "http"
        return f"{scheme}://{self.clickhouse_user}@{self.clickhouse_host}:{self.clickhouse_port}"

    @cached_property
    def _dotenv(self) -> dict[str, str]:
        env_file = self._env_path
        if env_file is None or not env_file.is_file():
            return {}
        return {k: v for k, v in dotenv_values(env_file).items() if v is not None}

    def extra(self, name: str, default: str | None = None) -> str | None:
        """A pipeline-specific variable (e.g. ``API_KEY``): environment first, then ``.env``."""
        if name in os.environ:
            return os.environ[name]
        return self._dotenv.get(name, default)

    def secret_values(self) -> set[str]:
        """Every configured value that must never be printed or logged."""
        secrets = {self.clickhouse_password.get_secret_value(), self.clickhouse_bi_password.get_secret_value(),
                   self.alert_smtp_password.get_secret_value()}
        if self.alert_webhook_url:
            secrets.add(self.alert_webhook_url.get_secret_value())
        if self.url:
            secrets.add(urlsplit(self.url).password or "")
        for source in (self._dotenv, os.environ):
            secrets.update(v for k, v in source.items() if is_secret_variable(k))
        return {s for s in secrets if s and len(s) >= 3}

    def display(self) -> dict[str, str]:
        """The framework's settings by variable name, secrets masked, for ``check``."""
        shown: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                raw = value.get_secret_value()
                text = mask_url(raw) if name == "clickhouse_url" else mask_webhook(raw) if name == "alert_webhook_url" \
                    else (MASK if raw else "")
            else:
                text = "" if value is None else str(value)
            shown[name.upper()] = text
        return shown


_LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}


def unwritable_directory(exc: OSError, settings: Settings) -> ConfigError | None:
    """The error naming the setting when ``exc`` is about a path under DATA_DIR, RUN_DIR or
    LOG_DIR (a directory that cannot be created or written); ``None`` for any other error."""
    filename = str(exc.filename or "")
    for var, directory in (("DATA_DIR", settings.data_dir), ("RUN_DIR", settings.run_dir),
                           ("LOG_DIR", settings.log_dir)):
        if filename == str(directory) or filename.startswith(str(directory) + os.sep) \
                or str(directory).startswith(filename + os.sep):
            return ConfigError(f"{var} {directory} is not writable ({exc.strerror or type(exc).__name__}: "
                               f"{filename}); fix its permissions or point {var} elsewhere")
    return None


def env_file_path() -> Path:
    """The ``.env`` file in use: ``$ENV_FILE`` when set, else ``.env`` in the project."""
    return Path(os.environ["ENV_FILE"]) if os.environ.get("ENV_FILE") else DEFAULT_ENV_FILE


def check_env_file(env_path: Path, named: bool) -> None:
    """A settings file named explicitly must exist (a missing one would silently switch the
    destination to a fresh embedded store), and every line must parse."""
    if not env_path.is_file():
        if named:
            raise ConfigError(f"ENV_FILE names {env_path}, which does not exist; restore the settings file or point "
                              "ENV_FILE at the right one (unset ENV_FILE to use the project's .env)")
        return
    from dotenv.parser import parse_stream

    try:
        with env_path.open(encoding="utf-8") as stream:
            bad = [binding.original for binding in parse_stream(stream) if binding.error]
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{env_path} cannot be read: {exc}") from None
    if bad:
        # python-dotenv only warns and skips such a line: a setting would silently fall back.
        raise ConfigError(f"{env_path} " + "; ".join(
            f"line {o.line} cannot be parsed (expected NAME=value): {o.string.strip()[:120]!r}" for o in bad))


def load_settings(env_file: Path | str | None = None) -> Settings:
    """Read and validate the settings, raising :class:`ConfigError` with one line per problem."""
    env_path = Path(env_file) if env_file else env_file_path()
    check_env_file(env_path, named=bool(env_file or os.environ.get("ENV_FILE")))
    try:
        settings = Settings(_env_file=env_path)  # type: ignore[call-arg]
    except ValidationError as exc:
        raise ConfigError(_describe(exc, env_path)) from None
    settings._env_path = env_path
    return settings


def _describe(exc: ValidationError, env_path: Path | None) -> str:
    file_values = dotenv_values(env_path) if env_path and env_path.is_file() else {}
    problems = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else "?"
        var = field.upper()
        if var in os.environ:
            source = "environment"
        elif var in file_values or var.lower() in file_values:
            source = env_path.name if env_path else ".env"
        else:
            source = "default"
        value = error.get("input")
        shown = MASK if is_secret_variable(var) or var in ("CLICKHOUSE_URL", "ALERT_WEBHOOK_URL") else value
        expected = _EXPECTED.get(field, error["msg"].lower())
        problems.append(f"{var} must be {expected}, got {shown!r} (from {source})")
    return "; ".join(problems)
