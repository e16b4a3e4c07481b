"""One exception hierarchy for the whole framework.

Every error a user can cause or meet carries a message written for that user: what went wrong,
naming the file, variable, pipeline or row involved. The CLI prints ``str(error)`` on one line and
exits with ``error.exit_code``; tracebacks are shown only with ``--debug`` or ``LOG_LEVEL=DEBUG``.

Whether a failure is worth retrying is a marker the error carries, not a list the runner keeps:
an error class mixes in :class:`Retryable` (or any exception gets a ``retryable`` attribute), and
:func:`is_retryable` reads it. The framework's extractors wrap HTTP 429/5xx, timeouts and lost
connections in :class:`TransientError`; the store wraps a broken server connection in
:class:`StoreConnectionLost`.
"""

from __future__ import annotations

import sys


class Retryable:
    """Mix-in marking an error as transient: the same work, tried again later, may succeed.

    ``class QuotaExceeded(ExtractError, Retryable)`` makes every ``QuotaExceeded`` retryable;
    setting ``error.retryable = True`` (or ``False``) on one instance decides for that error only.
    An error marked neither way is retryable only as :func:`is_retryable` says.
    """

    retryable: bool = True


class DataProcessorError(Exception):
    """Base of every error raised by the framework on purpose.

    Besides its one-line message an error may carry structured fields, for code that handles it
    (as dlt's and sqlglot's errors do): ``table`` (the destination table), ``partition`` (a
    partition id), ``check`` (a failed data check's name), ``row`` (a 1-based row or line number),
    ``path`` (a source file) and ``column``. Each is ``None`` when the raise site does not know it:
    ``LoadError(message, table="orders", column="ts")``. The message never depends on them.
    """

    exit_code: int = 1
    table: str | None = None
    partition: str | None = None
    check: str | None = None
    row: int | None = None
    path: str | None = None
    column: str | None = None

    def __init__(self, *args: object, table: str | None = None, partition: str | None = None,
                 check: str | None = None, row: int | None = None, path: str | None = None,
                 column: str | None = None) -> None:
        super().__init__(*args)
        fields = {"table": table, "partition": partition, "check": check, "row": row, "path": path,
                  "column": column}
        for name, value in fields.items():
            if value is not None:
                setattr(self, name, value)


class ConfigError(DataProcessorError):
    """A setting is missing or invalid (names the variable, the value and where it came from)."""


class StoreError(DataProcessorError):
    """The ClickHouse store cannot be opened or a statement failed."""


class StoreConnectionLost(Retryable, StoreError, ConnectionError):
    """The connection to a ClickHouse server broke mid-request (transient: a run retries it)."""


class StoreLockTimeout(StoreError):
    """Another process kept the embedded store longer than the configured wait."""


class PipelineError(DataProcessorError):
    """A pipeline definition is invalid or a run failed."""


class DiscoveryError(PipelineError):
    """A pipeline module cannot be imported or registers an invalid entry."""


class PipelineNotFound(PipelineError):
    """The requested pipeline name is not registered."""

    exit_code = 2


class AlreadyRunning(PipelineError):
    """Another process holds the pipeline's run lock (exit code 75, EX_TEMPFAIL)."""

    exit_code = 75


class RunTimeout(PipelineError):
    """A run exceeded its configured timeout."""


class ExtractError(PipelineError):
    """A source could not be read or returned data of an unexpected shape."""


class TransientError(Retryable, ExtractError):
    """A failure worth retrying: timeouts, connection errors, HTTP 429 and 5xx."""


class TransformError(PipelineError):
    """A transformer rejected or failed on a batch."""


class LoadError(PipelineError):
    """A batch could not be written to its destination."""


class ScheduleError(PipelineError):
    """A schedule cannot be used by cron or the scheduler."""


class MigrationError(DataProcessorError):
    """A migration file is invalid or a migration statement failed."""


class MigrationLocked(MigrationError):
    """Another ``migrate`` holds the migration lock (exit code 75, EX_TEMPFAIL)."""

    exit_code = 75


class UsageError(DataProcessorError):
    """The command line was wrong (exit code 2)."""

    exit_code = 2


class CheckDefinitionError(PipelineError):
    """A data check is declared wrongly (unknown column, SQL that does not parse, ...)."""


class CheckFailed(PipelineError):
    """A data check of severity ``error`` failed: the run's rows were not published."""


class CronError(DataProcessorError):
    """The crontab cannot be read or written, or an entry cannot be built."""


class AlertError(DataProcessorError):
    """A channel could not deliver an alert."""


class ScaffoldError(DataProcessorError):
    """The files cannot be written (bad or taken name, existing file)."""


# Errors of HTTP clients a user's own extractor may let through unwrapped: recognised by the
# client's own classes, looked up only when that client is already imported (an error of it
# cannot exist otherwise), so deciding never imports one.
_CLIENT_TRANSIENT = {"httpx": ("TransportError",)}


def is_retryable(error: BaseException) -> bool:
    """True when ``error`` is transient: marked so (:class:`Retryable`, a ``retryable``
    attribute), a ``ConnectionError`` or ``TimeoutError``, an HTTP client's error answering 429
    or 5xx (its ``response.status_code``), or an ``httpx`` connection error or timeout."""
    marked = getattr(error, "retryable", None)
    if isinstance(marked, bool):
        return marked
    if isinstance(error, ConnectionError | TimeoutError):
        return True
    status = getattr(getattr(error, "response", None), "status_code", None)
    if isinstance(status, int) and (status == 429 or status >= 500):
        return True
    for module, names in _CLIENT_TRANSIENT.items():
        client = sys.modules.get(module)
        if client is not None and isinstance(error, tuple(getattr(client, n) for n in names)):
            return True
    return False
