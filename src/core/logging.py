"""Logging: system log, one log per job, console output, JSON or text, rotation, redaction.

Files (under ``LOG_DIR``):

- ``system/application.log``: everything the framework logs;
- ``jobs/<job>.log``: the records of one pipeline's runs (also in the system log);
- ``cron.log``: what scheduled invocations print (written by the cron entry's redirection).

Records inside a run carry ``job`` and ``run_id`` (set with :func:`run_context`), in every thread
the run starts (:func:`in_run_context`). Every configured secret, every value a run registered as
secret (:func:`add_secrets`) and secret-looking URL parameters and headers are replaced by ``***``
in every record, whatever the handler (see ``core.redaction``).
"""

from __future__ import annotations

import contextvars
import json
import logging
import logging.handlers
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from core.exceptions import ConfigError
from core.redaction import Redactor

if TYPE_CHECKING:  # core.config imports pydantic (~0.2 s): not needed to log, nor for `help`
    from core.config import Settings

ROOT_LOGGER = "dp"

_job: contextvars.ContextVar[str | None] = contextvars.ContextVar("job", default=None)
_run_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("run_id", default=None)


def get_logger(name: str) -> logging.Logger:
    """A framework logger (``dp.<name>``)."""
    return logging.getLogger(f"{ROOT_LOGGER}.{name}")


@contextmanager
def run_context(job: str, run_id: str | None = None) -> Iterator[None]:
    """Tag every record logged inside the block with the job name and run id."""
    job_token = _job.set(job)
    run_token = _run_id.set(run_id)
    try:
        yield
    finally:
        _job.reset(job_token)
        _run_id.reset(run_token)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.job = getattr(record, "job", None) or _job.get()
        record.run_id = getattr(record, "run_id", None) or _run_id.get()
        return True


class _JobFilter(logging.Filter):
    """Lets through only the records of one job (for ``jobs/<job>.log``)."""

    def __init__(self, job: str) -> None:
        super().__init__()
        self.job = job

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "job", None) == self.job


CONSOLE = "console"  # ``extra={CONSOLE: False}``: a record for the log files only (unless DEBUG)


def _console_filter(record: logging.LogRecord) -> bool:
    """The console skips file-only records (unless DEBUG): a failed run's error reaches the
    terminal once, as the command's summary line."""
    return getattr(record, CONSOLE, True) or logging.getLogger(ROOT_LOGGER).isEnabledFor(logging.DEBUG)


class TextFormatter(logging.Formatter):
    """``2026-01-01 12:00:00 INFO  [job run_id] message`` with secrets masked."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(tag)s%(message)s", "%Y-%m-%d %H:%M:%S")
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        job, run_id = getattr(record, "job", None), getattr(record, "run_id", None)
        record.tag = f"[{job}{' ' + run_id if run_id else ''}] " if job else ""
        return self.redact(super().format(record))


class ConsoleFormatter(TextFormatter):
    """The text format without tracebacks unless the level is DEBUG (the log files keep them)."""

    def format(self, record: logging.LogRecord) -> str:
        if not record.exc_info or logging.getLogger(ROOT_LOGGER).isEnabledFor(logging.DEBUG):
            return super().format(record)
        saved = record.exc_info, record.exc_text  # other handlers still format the traceback
        record.exc_info = record.exc_text = None
        try:
            return super().format(record)
        finally:
            record.exc_info, record.exc_text = saved


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp (ISO-8601 UTC), level, logger, message, job, run_id,
    exception."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": self.redact(record.getMessage()),
        }
        for key in ("job", "run_id"):
            if getattr(record, key, None):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exception"] = self.redact("".join(traceback.format_exception(*record.exc_info)))
        return json.dumps(entry, default=str)


def _file_handler(path: Path, settings: Settings) -> logging.Handler:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=settings.log_max_bytes, backupCount=settings.log_backup_count, encoding="utf-8"
        )
    except OSError as exc:
        raise ConfigError(
            f"LOG_DIR {settings.log_dir} is not writable: cannot open {path} ({exc.strerror})"
        ) from None
    return handler


def _redactor(settings: Settings) -> Redactor:
    """The process's redactor, shared by every handler (kept on the ``dp`` logger, which the
    logging module makes process-wide anyway); a run adds what it learns with add_secrets()."""
    root = logging.getLogger(ROOT_LOGGER)
    redactor: Redactor | None = getattr(root, "dp_redactor", None)
    if redactor is None:
        redactor = Redactor()
        root.dp_redactor = redactor  # type: ignore[attr-defined]
    redactor.add(settings.secret_values())
    return redactor


def add_secrets(values: Iterable[str]) -> None:
    """Mask these values in every log record from now on (e.g. a header's token)."""
    redactor: Redactor | None = getattr(logging.getLogger(ROOT_LOGGER), "dp_redactor", None)
    if redactor is not None:
        redactor.add(values)


def redact(text: str, settings: Settings | None = None) -> str:
    """``text`` as the logs would show it (run history and errors use this too)."""
    redactor: Redactor | None = getattr(logging.getLogger(ROOT_LOGGER), "dp_redactor", None)
    if redactor is None:
        redactor = Redactor(settings.secret_values() if settings else ())
    elif settings is not None:
        redactor.add(settings.secret_values())
    return redactor(text)


def in_run_context(target: Callable[..., object]) -> Callable[..., object]:
    """``target`` wrapped to run in the caller's context (job, run id): for threads a run starts,
    so their records reach the run's job log."""
    context = contextvars.copy_context()
    return lambda *args, **kwargs: context.run(target, *args, **kwargs)


def _formatter(settings: Settings, json_format: bool) -> logging.Formatter:
    redact = _redactor(settings)
    return JsonFormatter(redact) if json_format else TextFormatter(redact)


def setup_logging(settings: Settings, console: bool = True) -> logging.Logger:
    """Configure the ``dp`` logger tree: system log file and (optionally) the console.

    Safe to call again (handlers are replaced, not added twice).
    """
    root = logging.getLogger(ROOT_LOGGER)
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(settings.log_level)
    root.propagate = False
    root.filters = [_ContextFilter()]

    system = _file_handler(settings.log_dir / "system" / "application.log", settings)
    system.setFormatter(_formatter(settings, settings.log_format == "json"))
    system.addFilter(_ContextFilter())
    root.addHandler(system)

    if console:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(ConsoleFormatter(_redactor(settings)))
        stream.addFilter(_ContextFilter())
        stream.addFilter(_console_filter)
        root.addHandler(stream)
    return root


def attach_job_log(settings: Settings, job: str) -> logging.Handler:
    """Start writing ``jobs/<job>.log``; returns the handler to pass to :func:`detach`."""
    handler = _file_handler(settings.log_dir / "jobs" / f"{job}.log", settings)
    handler.setFormatter(_formatter(settings, settings.log_format == "json"))
    handler.addFilter(_ContextFilter())
    handler.addFilter(_JobFilter(job))
    logging.getLogger(ROOT_LOGGER).addHandler(handler)
    return handler


def detach(handler: logging.Handler) -> None:
    """Stop and close a handler added by :func:`attach_job_log`."""
    logging.getLogger(ROOT_LOGGER).removeHandler(handler)
    handler.close()
