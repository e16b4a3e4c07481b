"""The rules of runner.status that need no store: what a schedule owes by now, failure kinds, the
command that heals an open failure."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import pytest

from core.models import PipelineEntry
from pipelines.pipeline_registry import PipelineSpec
from runner.status import OpenFailure, expectation, failure_kind


def spec(schedule: str | None, granularity: str = "day", interval_aware: bool = True, **entry) -> PipelineSpec:
    pipeline = SimpleNamespace(interval_aware=interval_aware)
    return PipelineSpec("p", PipelineEntry(pipeline=pipeline, schedule=schedule, granularity=granularity,
                                           timezone="UTC", **entry), "test")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_an_hourly_fired_pipeline_with_daily_intervals_owes_yesterday_from_two_fires_after_midnight() -> None:
    hourly_daily = spec("0 * * * *")
    # 01:30: the 01:00 fire may have failed; the day before yesterday is what it owes.
    assert expectation(hourly_daily, at("2026-03-11T01:30")) == (
        at("2026-03-10T00:00"), "two periods of '0 * * * *' = 2.0 h, daily intervals")
    # 02:30: two fires (01:00, 02:00) had the chance: yesterday is owed.
    assert expectation(hourly_daily, at("2026-03-11T02:30"))[0] == at("2026-03-11T00:00")
    # All day long it owes no more than yesterday (the old rule called it stale 22 hours a day).
    assert expectation(hourly_daily, at("2026-03-11T23:59"))[0] == at("2026-03-11T00:00")


def test_a_pipeline_fired_every_minute_with_hourly_intervals_owes_the_previous_hour_two_minutes_after() -> None:
    minutely = spec("* * * * *", granularity="hour")
    assert expectation(minutely, at("2026-03-11T10:01"))[0] == at("2026-03-11T09:00")
    assert expectation(minutely, at("2026-03-11T10:02"))[0] == at("2026-03-11T10:00")
    assert expectation(minutely, at("2026-03-11T10:59"))[0] == at("2026-03-11T10:00")


def test_freshness_hours_start_date_no_schedule_and_not_interval_aware() -> None:
    # An interval is owed `tolerance` after it ends: yesterday (ended 00:00) 5 h later, not before.
    assert expectation(spec("0 2 * * *", freshness_hours=5), at("2026-03-11T05:00")) == (
        at("2026-03-11T00:00"), "freshness_hours 5, daily intervals")
    assert expectation(spec("0 2 * * *", freshness_hours=5), at("2026-03-11T04:59"))[0] == at("2026-03-10T00:00")
    assert expectation(spec(None), at("2026-03-11T05:00")) == (None, "no schedule")
    assert expectation(spec("0 2 * * *", enabled=False), at("2026-03-11T05:00")) == (None, "no schedule")
    owed, rule = expectation(spec("0 2 * * *", start_date=date(2026, 3, 11)), at("2026-03-11T05:00"))
    assert owed is None and rule.endswith("nothing owed before start_date 2026-03-11")
    # Not interval-aware: a success since two periods ago, as before.
    assert expectation(spec("*/5 * * * *", interval_aware=False), at("2026-03-11T05:00")) == (
        at("2026-03-11T04:50"), "two periods of '*/5 * * * *' = 0.2 h")


@pytest.mark.parametrize(("status", "reason", "error", "kind"), [
    ("failed", "error", "RuntimeError: x", "error"),
    ("failed", "", "", "error"),
    ("failed", "check_failed", "CheckFailed: x", "check_failed"),
    ("failed", "error", "CheckFailed: recorded before the reason existed", "check_failed"),
    ("failed", "timeout", "", "timeout"),
    ("failed", "killed", "", "killed"),
    ("failed", "interrupted", "", "killed"),
    ("failed", "store_lock_timeout", "", "store_busy"),
    ("crashed", "process gone", "", "crash"),
])
def test_failure_kinds(status: str, reason: str, error: str, kind: str) -> None:
    assert failure_kind(status, reason, error) == kind


def test_the_command_that_heals_an_open_failure() -> None:
    day = OpenFailure("w", at("2026-03-10T00:00"), at("2026-03-11T00:00"), "error", "r1", at("2026-03-11T01:00"), "x")
    assert day.label == "2026-03-10"
    assert day.heal_command == "./run.sh backfill w --start 2026-03-10 --end 2026-03-10 --rerun failed"
    assert day.waive_command == "./run.sh waive w --date 2026-03-10 --reason '...'"
    hour = OpenFailure("h", at("2026-03-10T13:00"), at("2026-03-10T14:00"), "crash", "r2", at("2026-03-10T14:00"), "")
    assert hour.label == "2026-03-10T13:00"
    assert hour.heal_command == "./run.sh backfill h --start 2026-03-10 --end 2026-03-10 --rerun failed --hourly"
    runs = OpenFailure("s", at("2026-03-10T13:00"), at("2026-03-10T13:05"), "error", "r3", at("2026-03-10T13:05"),
                       "", runs=4, interval_aware=False)
    assert runs.heal_command == "./run.sh cron_run s" and runs.waive_command == "./run.sh waive s --reason '...'"
    assert runs.label == "failed runs up to 2026-03-10 13:05 UTC"
    assert timedelta(0) < day.end - day.start
