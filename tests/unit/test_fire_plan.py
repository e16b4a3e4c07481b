"""Which intervals a scheduled fire owns (runner.scheduled.plan_fire): pure computation, no store."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from core.models import PipelineEntry
from pipelines.interfaces import Extractor
from pipelines.pipeline_factory import create_el_pipeline
from pipelines.pipeline_registry import PipelineSpec
from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader
from pipelines.tools.loaders.console_loader import create_console_loader
from runner.scheduled import manual_interval, plan_fire


class Aware(Extractor):
    interval_aware = True

    def extract(self, context):  # pragma: no cover - never run here
        yield from ()


class Now(Extractor):
    def extract(self, context):  # pragma: no cover - never run here
        yield from ()


def spec(schedule: str, interval_aware: bool = True, **entry: object) -> PipelineSpec:
    loader = create_clickhouse_loader("t", time_column="ts") if interval_aware else create_console_loader("c")
    pipeline = create_el_pipeline(Aware("a") if interval_aware else Now("n"), loader)
    return PipelineSpec("p", PipelineEntry(pipeline=pipeline, schedule=schedule, **entry), "test")


def labels(plan) -> list[tuple[str, str]]:
    return [(t.role, t.interval.label) for t in plan.tasks]


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


@pytest.mark.parametrize("schedule, granularity, fire, expected", [
    ("0 3 * * *", "day", "2026-03-02T03:00+00:00", ["2026-03-01"]),
    ("0 * * * *", "day", "2026-03-02T00:00+00:00", ["2026-03-01"]),
    ("0 * * * *", "day", "2026-03-02T01:00+00:00", []),
    ("5 0 * * *", "hour", "2026-03-02T00:05+00:00", [f"2026-03-01T{h:02d}:00" for h in range(24)]),
    ("0 * * * *", "hour", "2026-03-02T05:00+00:00", ["2026-03-02T04:00"]),
    ("0 0 * * 1", "day", "2026-03-02T00:00+00:00", [f"2026-02-{d}" for d in range(23, 29)] + ["2026-03-01"]),
])
def test_a_fire_owns_the_intervals_that_ended_since_the_previous_fire(schedule, granularity, fire, expected) -> None:
    plan = plan_fire(spec(schedule, granularity=granularity, timezone="UTC"), utc(fire))
    assert labels(plan) == [("owned", label) for label in expected]


def test_the_zone_moves_the_fire_time_only() -> None:
    auckland = spec("0 1 * * *", timezone="Pacific/Auckland")
    assert labels(plan_fire(auckland, utc("2026-03-02T01:00+13:00"))) == [("owned", "2026-02-28")]
    winter = plan_fire(auckland, utc("2026-07-02T01:00+12:00"))  # NZST: 13:00 UTC on 1 July
    assert labels(winter) == [("owned", "2026-06-30")]


@pytest.mark.parametrize("fires, expected", [
    # 02:30 does not exist on 29 March 2026 in Berlin: no fire that day; the next one owns both days.
    (("2026-03-28T02:30+01:00", "2026-03-30T02:30+02:00"), ["2026-03-27", "2026-03-28", "2026-03-29"]),
    # 02:30 happens twice on 25 October 2026: the schedule fires on the first pass only.
    (("2026-10-24T02:30+02:00", "2026-10-25T02:30+02:00", "2026-10-26T02:30+01:00"),
     ["2026-10-23", "2026-10-24", "2026-10-25"]),
])
def test_across_a_dst_change_no_day_is_lost_or_loaded_twice(fires, expected) -> None:
    from runner.schedule import is_due

    berlin = spec("30 2 * * *", timezone="Europe/Berlin")
    days = []
    for fire in fires:
        assert is_due("30 2 * * *", berlin_zone(), utc(fire))
        days += [t.interval.label for t in plan_fire(berlin, utc(fire)).tasks]
    assert days == expected


def berlin_zone():
    from zoneinfo import ZoneInfo

    return ZoneInfo("Europe/Berlin")


def test_lookback_precedes_the_owned_intervals_and_respects_start_date() -> None:
    late = spec("0 3 * * *", timezone="UTC", lookback=2)
    assert labels(plan_fire(late, utc("2026-03-02T03:00+00:00"))) == [
        ("lookback", "2026-02-27"), ("lookback", "2026-02-28"), ("owned", "2026-03-01")]
    assert labels(plan_fire(spec("0 * * * *", timezone="UTC", lookback=2), utc("2026-03-02T05:00+00:00"))) == []
    started = spec("0 3 * * *", timezone="UTC", lookback=2, start_date=date(2026, 2, 28))
    assert labels(plan_fire(started, utc("2026-03-02T03:00+00:00"))) == [
        ("lookback", "2026-02-28"), ("owned", "2026-03-01")]


def test_refresh_current_adds_the_interval_in_progress() -> None:
    plan = plan_fire(spec("0 */6 * * *", timezone="UTC", refresh_current=True), utc("2026-03-02T12:00+00:00"))
    assert labels(plan) == [("current", "2026-03-02")]


def test_a_non_interval_pipeline_records_the_fire_period() -> None:
    plan = plan_fire(spec("0 3 * * *", interval_aware=False, timezone="UTC"), utc("2026-03-02T03:00:40+00:00"))
    [task] = plan.tasks
    assert task.role == "now" and (task.interval.start, task.interval.end) == (utc("2026-03-01T03:00+00:00"),
                                                                               utc("2026-03-02T03:00+00:00"))


def test_a_person_gets_the_last_complete_interval() -> None:
    interval, note = manual_interval(spec("0 3 * * *", timezone="UTC"), utc("2026-03-02T10:17+00:00"))
    assert interval.label == "2026-03-01"
    assert note == "interval 2026-03-01 (the last complete day); use --date to choose"
    hourly, note = manual_interval(spec("0 3 * * *", granularity="hour"), utc("2026-03-02T10:17+00:00"))
    assert hourly.label == "2026-03-02T09:00" and "(the last complete hour)" in note


def test_a_person_running_a_pipeline_that_reads_now_is_told_what_is_recorded() -> None:
    """Issue 29: a manual run of an hourly console pipeline recorded [16:00, 16:02) silently, while
    the README promised the last complete hour. It reads what its source holds now (it is not
    interval-aware), so "the last complete hour" would be a false record; it is told instead."""
    console, note = manual_interval(spec("0 * * * *", interval_aware=False, granularity="hour"),
                                    utc("2026-03-02T16:02:30+00:00"))
    assert (console.start, console.end) == (utc("2026-03-02T16:00+00:00"), utc("2026-03-02T16:02+00:00"))
    assert note == ("interval 2026-03-02 16:00 .. 16:02 UTC (from the previous fire to now): p is not "
                    "interval-aware, it reads what its source holds now, so it has no last complete hour")
    unscheduled, note = manual_interval(spec("", interval_aware=False), utc("2026-03-02T16:02:30+00:00"))
    assert (unscheduled.start, unscheduled.end) == (utc("2026-03-01T16:02+00:00"), utc("2026-03-02T16:02+00:00"))
    assert note.startswith("interval 2026-03-01 16:02 .. 2026-03-02 16:02 UTC (the day up to now): p is not")
