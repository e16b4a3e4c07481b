"""Schedules across time zones: the cron specs written for them and when they are due."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from runner.schedule import ScheduleError, _ranges, cron_fields, is_due, translate

UTC_ZONE = ZoneInfo("Etc/UTC")
BERLIN = ZoneInfo("Europe/Berlin")
KOLKATA = ZoneInfo("Asia/Kolkata")
TODAY = datetime(2026, 1, 10, tzinfo=UTC)


@pytest.mark.parametrize(("schedule", "zone", "system", "specs", "guarded"), [
    ("0 2 * * *", None, UTC_ZONE, ["0 2 * * *"], False),
    ("0 2 * * *", UTC_ZONE, UTC_ZONE, ["0 2 * * *"], False),
    ("0 3 * * *", ZoneInfo("Europe/Paris"), BERLIN, ["0 3 * * *"], False),     # same rules all year
    ("0 2 * * *", KOLKATA, UTC_ZONE, ["30 20 * * *"], False),                   # +5:30, no DST: exact
    ("*/15 * * * *", KOLKATA, UTC_ZONE, ["0,15,30,45 * * * *"], False),
    ("0 2 * * 1", KOLKATA, UTC_ZONE, ["30 20 * * 0"], False),                   # Monday 02:00 = Sunday 20:30
    ("0 9 * * 1-5", KOLKATA, UTC_ZONE, ["30 3 * * 1-5"], False),
    ("0 0 1 * *", KOLKATA, UTC_ZONE, ["30 18 * * *"], True),                    # last day of the month: not cron
    ("0 3 * * *", BERLIN, UTC_ZONE, ["0 1,2 * * *"], True),                     # DST: both candidate hours
    ("*/15 * * * *", BERLIN, UTC_ZONE, ["0,15,30,45 * * * *"], False),          # every hour anyway: exact
    ("0 * * * 1", BERLIN, UTC_ZONE, ["0 0-22 * * 1", "0 22,23 * * 0"], True),
    ("0 9 * * 1-5", ZoneInfo("America/New_York"), ZoneInfo("Europe/London"), ["0 13,14 * * 1-5"], True),
    ("30 1 * * *", UTC_ZONE, BERLIN, ["30 2,3 * * *"], True),                   # UTC pipeline on a DST host
])
def test_translate(schedule, zone, system, specs, guarded) -> None:
    plan = translate(schedule, zone, system, TODAY)
    assert sorted(plan.specs) == sorted(specs)
    assert plan.guarded is guarded


@pytest.mark.parametrize(("schedule", "zone", "system"), [
    ("0 3 * * *", BERLIN, UTC_ZONE),
    ("0 0 1 * *", KOLKATA, UTC_ZONE),
    ("0 * * * 1", BERLIN, UTC_ZONE),
    ("15 9 * * 1-5", ZoneInfo("America/New_York"), ZoneInfo("Europe/London")),
    ("0 2 * * 1", KOLKATA, UTC_ZONE),
    ("45 23 L * *", BERLIN, UTC_ZONE),
])
def test_entries_plus_due_check_fire_exactly_when_the_schedule_does(schedule, zone, system) -> None:
    """Over a whole year, minute by minute where cron would fire: the entries (plus --if-due when
    guarded) start the pipeline at exactly the times croniter gives in the pipeline's zone."""
    plan = translate(schedule, zone, system, TODAY)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    end = start + timedelta(days=365)
    expected = set()
    it = croniter(schedule, start.astimezone(zone))
    while (moment := it.get_next(datetime).astimezone(UTC)) < end:
        expected.add(moment)
    fired = set()
    for spec in plan.specs:
        it = croniter(spec, start.astimezone(system))
        while (moment := it.get_next(datetime).astimezone(UTC)) < end:
            if not plan.guarded or is_due(schedule, zone, moment):
                fired.add(moment)
    assert fired == expected
    assert len(expected) >= 12


def test_due_in_the_repeated_hour_only_once_for_fixed_times() -> None:
    # 2026-10-25: Berlin goes from 03:00 CEST back to 02:00 CET at 01:00 UTC; 02:30 happens twice.
    first, second = datetime(2026, 10, 25, 0, 30, tzinfo=UTC), datetime(2026, 10, 25, 1, 30, tzinfo=UTC)
    assert is_due("30 2 * * *", BERLIN, first)
    assert not is_due("30 2 * * *", BERLIN, second)
    assert is_due("30 * * * *", BERLIN, first) and is_due("30 * * * *", BERLIN, second)


def test_due_ignores_seconds_and_checks_the_zone() -> None:
    moment = datetime(2026, 1, 15, 2, 0, 42, tzinfo=UTC)
    assert is_due("0 2 * * *", UTC_ZONE, moment)
    assert not is_due("0 2 * * *", BERLIN, moment)
    assert is_due("0 3 * * *", BERLIN, moment)


def test_seconds_fields_are_refused_for_cron() -> None:
    with pytest.raises(ScheduleError, match=r"schedule '\* \* \* \* \* \*/5' has 6 fields; cron needs 5"):
        cron_fields("* * * * * */5")


def test_ranges_compress_runs() -> None:
    assert _ranges([0, 1, 2, 3, 7], 24) == "0-3,7"
    assert _ranges([1, 2], 24) == "1,2"
    assert _ranges(list(range(60)), 60) == "*"
