"""One exception hierarchy for the whole framework.

Every error a user can cause or meet carries a message written for that user: what went wrong,
naming the file, variable, pipeline or row involved. The CLI prints ``str(error)`` on one line and
exits with ``error.exit_code``; tracebacks are shown only with ``--debug`` or ``LOG_LEVEL=DEBUG``.
"""

from __future__ import annotations


class DataProcessorError(Exception):
    """Base of every error raised by the framework on purpose."""

    exit_code: int = 1


class ConfigError(DataProcessorError):
    """A setting is missing or invalid (names the variable, the value and where it came from)."""


class StoreError(DataProcessorError):
    """The ClickHouse store cannot be opened or a statement failed."""


class StoreConnectionLost(StoreError, ConnectionError):
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


class TransientError(ExtractError):
    """A failure worth retrying: timeouts, connection errors, HTTP 429 and 5xx."""


class TransformError(PipelineError):
    """A transformer rejected or failed on a batch."""


class LoadError(PipelineError):
    """A batch could not be written to its destination."""


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
