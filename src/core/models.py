"""Pydantic models for what users write (registry entries) and what runs record (run records)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, Literal, TypedDict
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

Granularity = Literal["day", "hour"]
# "busy" is never stored: it is the outcome of an interval that was not run because another
# process holds its lock (a backfill step's or a worker's answer).
RunStatus = Literal["running", "success", "failed", "crashed", "busy"]
EXIT_SUCCESS, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130


class PipelineEntry(BaseModel):
    """One entry of a module's ``PIPELINE_REGISTRY``, as in the Quick Start::

        {'pipeline': ..., 'description': ..., 'schedule': '0 * * * *', 'table_name': 'my_data'}

    plus optional keys: ``retries``, ``retry_delay``, ``timeout``, ``granularity``,
    ``timezone``, ``freshness_hours``, ``enabled``, ``depends_on`` (the pipelines whose tables this
    one reads: it runs after them, see docs/sql-pipelines.md), ``checks`` (data checks run on each
    run's staged rows before they are published, see ``audit``), ``alerts`` (per-pipeline alert
    settings overriding ``.env``, see ``ops.alerts``), and for interval-aware pipelines
    ``lookback``, ``refresh_current``, ``allow_empty``, ``start_date``, ``batch_size`` (see
    docs/backfill.md).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    pipeline: Any
    description: str = ""
    schedule: str | None = None
    table_name: str | None = None
    retries: int = Field(0, ge=0, le=20)
    retry_delay: float = Field(10.0, ge=0, le=3600)
    timeout: float | None = Field(None, gt=0)
    granularity: Granularity = "day"
    timezone: str | None = None
    freshness_hours: float | None = Field(None, gt=0)
    enabled: bool = True
    # Interval rules (docs/backfill.md): re-load N complete intervals before the owned ones on
    # every scheduled run; also load the interval in progress; let 0 rows replace existing rows;
    # never plan intervals before this day.
    lookback: int = Field(0, ge=0, le=1000)
    refresh_current: bool = False
    allow_empty: bool = False
    start_date: date | None = None
    # Contiguous missing intervals one run may take (backfill, scheduled catch-up); 1: one each.
    batch_size: int = Field(1, ge=1, le=10000)
    depends_on: list[str] = Field(default_factory=list)
    checks: Any = None
    alerts: dict[str, Any] | None = None

    @field_validator("depends_on", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        from core.validators import cron_schedule

        return cron_schedule(value)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone '{value}'") from None
        return value


class PipelineEntryDict(TypedDict, total=False):
    """``PipelineEntry`` as a ``TypedDict``, for editors: annotate a registry entry with it
    (``PIPELINE_REGISTRY: dict[str, PipelineEntryDict]``) and they complete and check the keys.
    Same keys and types as the model (tests/unit/test_typed_entry.py holds them equal), widened
    only where the model also accepts another form; the model still validates the values (ranges,
    cron, time zone) at discovery."""

    pipeline: Any
    description: str
    schedule: str | None
    table_name: str | None
    retries: int
    retry_delay: float
    timeout: float | None
    granularity: Granularity
    timezone: str | None
    freshness_hours: float | None
    enabled: bool
    lookback: int
    refresh_current: bool
    allow_empty: bool
    start_date: date | str | None  # also "2013-01-01", which the model parses
    batch_size: int
    depends_on: list[str] | str  # also one name
    checks: Any
    alerts: dict[str, Any] | None


class RunRecord(BaseModel):
    """One run as stored in ``_dp_runs`` (the newest version of its row), and the one type a run's
    outcome has: ``run_pipeline`` returns the final record, backfills report it per interval (an
    interval that could not run gets a record with an empty ``run_id``), alerts read it."""

    run_id: str
    pipeline: str
    interval_start: datetime
    interval_end: datetime
    trigger: str
    status: RunStatus
    reason: str = ""
    attempt: int = 1
    started_at: datetime
    finished_at: datetime | None = None
    duration_seconds: float = 0.0
    rows_extracted: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    error: str = ""
    host: str = ""
    pid: int = 0
    lock_file: str = ""

    @property
    def incomplete(self) -> bool:
        """A success that started before its interval ended: it loaded part of the interval at most,
        so it never counts as done (derived from the record, no status of its own)."""
        return self.status == "success" and as_utc(self.started_at) < as_utc(self.interval_end)

    @property
    def exit_code(self) -> int:
        """The command's exit code for this outcome: 0 success, 130 interrupted (Ctrl-C), else 1."""
        if self.status == "success":
            return EXIT_SUCCESS
        return EXIT_INTERRUPTED if self.reason == "interrupted" else EXIT_FAILED


def as_utc(moment: datetime) -> datetime:
    """An aware UTC datetime (ClickHouse returns naive UTC values for ``DateTime64(3, 'UTC')``)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
