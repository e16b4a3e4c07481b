"""Retryability is a marker an error carries; ``is_retryable`` reads it (the runner retries by it)."""

from __future__ import annotations

import httpx
import pytest

from core import exceptions
from core.exceptions import (
    AlertError,
    CronError,
    DataProcessorError,
    ExtractError,
    Retryable,
    ScaffoldError,
    ScheduleError,
    StoreConnectionLost,
    StoreError,
    TransientError,
    is_retryable,
)


class QuotaExceeded(ExtractError, Retryable):
    """A user's own transient error: the mix-in is all it takes."""


def test_marked_errors_are_retryable_and_the_rest_are_not() -> None:
    assert is_retryable(TransientError("the source hiccuped"))
    assert is_retryable(StoreConnectionLost("Lost the connection to ClickHouse"))
    assert is_retryable(QuotaExceeded("429 from the API"))
    assert not is_retryable(ExtractError("bad row"))
    assert not is_retryable(StoreError("syntax error"))
    assert not is_retryable(ValueError("cannot parse amount"))


def test_one_error_can_be_marked_either_way() -> None:
    error = ExtractError("the source said: try later")
    error.retryable = True  # type: ignore[attr-defined]
    assert is_retryable(error)
    lost = StoreConnectionLost("lost while committing")
    lost.retryable = False
    assert not is_retryable(lost)
    plain = RuntimeError("flaky")
    plain.retryable = True  # type: ignore[attr-defined]
    assert is_retryable(plain)


def test_builtin_and_http_client_errors() -> None:
    assert is_retryable(ConnectionResetError("reset by peer")) and is_retryable(TimeoutError("slow"))
    assert is_retryable(httpx.ConnectError("connection refused"))
    assert is_retryable(httpx.ReadTimeout("read timed out"))
    request = httpx.Request("GET", "http://127.0.0.1/api")
    for status, expected in ((503, True), (500, True), (429, True), (404, False), (400, False)):
        response = httpx.Response(status, request=request)
        error = httpx.HTTPStatusError(f"HTTP {status}", request=request, response=response)
        assert is_retryable(error) is expected, status


@pytest.mark.parametrize("error", [CronError, ScheduleError, AlertError, ScaffoldError])
def test_one_hierarchy(error: type[Exception]) -> None:
    assert issubclass(error, DataProcessorError) and getattr(exceptions, error.__name__) is error


def test_the_old_import_places_still_work() -> None:
    from ops.alerts.channels import AlertError as alert
    from ops.cron import CronError as cron
    from ops.scaffold import ScaffoldError as scaffold
    from runner.schedule import ScheduleError as schedule

    assert (cron, schedule, alert, scaffold) == (CronError, ScheduleError, AlertError, ScaffoldError)
