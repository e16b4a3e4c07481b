"""Schedules in time: is a pipeline due at a minute, and how its schedule looks in the system zone.

A pipeline's ``schedule`` is read in its ``timezone`` (default: the system zone). Cron evaluates
every entry in the system zone, so a schedule in another zone is translated here:

- When the offset between the two zones is the same all year (no DST in either, or the same
  DST rules) the translation is exact: ``0 2 * * *`` in Asia/Kolkata is ``30 20 * * *`` in UTC.
- When the offset changes during the year (a DST zone on a UTC server, or two zones switching
  on different dates), or when a shift crosses midnight on a schedule that names days of the
  month (``0 0 1 * *``: the last day of the previous month is not expressible in cron), the
  entries cover every candidate time (e.g. both 01:00 and 02:00 UTC for 03:00 Europe/Berlin)
  and the run itself checks with croniter that the schedule is due in the pipeline's zone at
  the minute cron started it (``cron_run --if-due``). Such entries stay correct across DST
  changes without rewriting the crontab; the price is one short no-op start per extra
  candidate time.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.exceptions import ScheduleError
from core.validators import cron_expression

if TYPE_CHECKING:
    from pipelines.pipeline_registry import PipelineSpec



LOOKAHEAD_DAYS = 400  # offsets are compared over this horizon (every DST change of the next year)


def _zone_from_localtime(path: Path = Path("/etc/localtime")) -> tzinfo:
    try:
        target = os.path.realpath(path)
        if "zoneinfo/" in target:
            return ZoneInfo(target.split("zoneinfo/", 1)[1])
        with open(path, "rb") as handle:
            return ZoneInfo.from_file(handle, key="localtime")
    except (OSError, ValueError, ZoneInfoNotFoundError):
        pass
    try:
        return ZoneInfo(Path("/etc/timezone").read_text().strip())
    except (OSError, ValueError, ZoneInfoNotFoundError):
        return UTC  # glibc's default without /etc/localtime


def cron_zone() -> tzinfo:
    """The zone the cron daemon evaluates entries in: the system's ``/etc/localtime``.

    The caller's ``TZ`` is deliberately ignored: the daemon does not see it.
    """
    return _zone_from_localtime()


def zone_name(zone: tzinfo) -> str:
    return getattr(zone, "key", None) or str(zone)


def cron_fields(schedule: str) -> list[str]:
    """The five fields of a cron schedule (``@daily`` -> ``0 0 * * *``); a seconds field is refused.

    Discovery already checked the schedule against the one grammar (``core.validators.cron_schedule``)."""
    fields = cron_expression(schedule).split()
    if len(fields) != 5:
        raise ScheduleError(f"schedule '{schedule}' has {len(fields)} fields; cron needs 5 "
                            "(minute hour day-of-month month day-of-week)")
    return fields


def is_due(schedule: str, zone: tzinfo | None, moment: datetime) -> bool:
    """True when ``schedule`` (read in ``zone``) fires at the minute of ``moment``.

    In the hour that repeats when clocks go back, a schedule with a fixed hour fires on the
    first pass only (what cron does for fixed-time jobs); hourly schedules fire in both.
    """
    from croniter import croniter

    fields = cron_fields(schedule)
    schedule = " ".join(fields)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    local = moment.astimezone(zone or cron_zone())
    wall = local.replace(second=0, microsecond=0, tzinfo=None)
    if not croniter.match(schedule, wall):
        return False
    if local.fold == 1 and fields[1] != "*":
        first = local.replace(fold=0)
        if first.utcoffset() != local.utcoffset():
            return False  # second pass through a repeated wall-clock time
    return True


def fired_minute(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


@dataclass(frozen=True)
class CronPlan:
    """How one schedule is written in the system zone."""

    specs: tuple[str, ...]   # five-field cron specs, in the system zone
    guarded: bool            # the entry fires at candidate times: cron_run --if-due must confirm
    note: str = ""           # why, for the comment line and cron_status


@lru_cache(maxsize=256)
def _offset_deltas(zone: tzinfo, system: tzinfo, day: str) -> tuple[int, ...]:
    """Distinct (zone offset - system offset) in minutes over the next LOOKAHEAD_DAYS days."""
    start = datetime.fromisoformat(day).replace(tzinfo=UTC)
    deltas: set[int] = set()
    for hour in range(LOOKAHEAD_DAYS * 24):
        moment = start + timedelta(hours=hour)
        a = moment.astimezone(zone).utcoffset() or timedelta()
        b = moment.astimezone(system).utcoffset() or timedelta()
        deltas.add(round((a - b).total_seconds() / 60))
    return tuple(sorted(deltas))


def _ranges(values: list[int] | tuple[int, ...], size: int) -> str:
    """``0,1,2,3,7`` -> ``0-3,7``; every value -> ``*``."""
    values = sorted(set(values))
    if len(values) == size:
        return "*"
    parts, i = [], 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        if j - i >= 2:
            parts.append(f"{values[i]}-{values[j]}")
        else:
            parts.extend(str(v) for v in values[i:j + 1])
        i = j + 1
    return ",".join(parts)


def _group_times(times: set[int], days: str) -> list[str]:
    """Minutes of the day -> as few ``minute hour <days>`` specs as hours with equal minutes allow."""
    by_hour: dict[int, set[int]] = defaultdict(set)
    for tod in times:
        by_hour[tod // 60].add(tod % 60)
    by_minutes: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for hour in sorted(by_hour):
        by_minutes[tuple(sorted(by_hour[hour]))].append(hour)
    return [f"{_ranges(minutes, 60)} {_ranges(hours, 24)} {days}" for minutes, hours in sorted(by_minutes.items())]


def translate(schedule: str, zone: tzinfo | None, system: tzinfo, today: datetime | None = None) -> CronPlan:
    """Write ``schedule`` (read in ``zone``) as cron specs for a daemon running in ``system``."""
    from croniter import croniter

    fields = cron_fields(schedule)
    schedule = " ".join(fields)
    if zone is None or zone_name(zone) == zone_name(system):
        return CronPlan((schedule,), False)
    day = (today or datetime.now(UTC)).astimezone(UTC).date().isoformat()
    deltas = _offset_deltas(zone, system, day)
    if deltas == (0,):
        return CronPlan((schedule,), False, f"{zone_name(zone)} is {zone_name(system)}'s time all year")
    expanded, nth = croniter.expand(schedule)
    minutes = list(range(60)) if expanded[0] == ["*"] else [int(v) for v in expanded[0]]
    hours = list(range(24)) if expanded[1] == ["*"] else [int(v) for v in expanded[1]]
    dom, month, dow = expanded[2], expanded[3], expanded[4]
    all_days = dom == ["*"] and month == ["*"] and dow == ["*"]
    weekdays_only = (dom == ["*"] and month == ["*"] and not nth and all(isinstance(v, int) for v in dow))

    per_delta: list[frozenset[tuple[int, int]]] = []  # (weekday or -1, minute of day) in the system zone
    crosses_midnight = False
    for delta in deltas:
        shifted: set[tuple[int, int]] = set()
        for hour in hours:
            for minute in minutes:
                day_shift, tod = divmod(hour * 60 + minute - delta, 1440)
                crosses_midnight |= day_shift != 0
                if weekdays_only:
                    shifted.update(((d + day_shift) % 7, tod) for d in dow)
                else:
                    shifted.add((-1, tod))
        per_delta.append(frozenset(shifted))
    union = frozenset().union(*per_delta)
    guarded = len(set(per_delta)) > 1
    reasons = []
    offsets = "/".join(f"{'+' if d >= 0 else '-'}{abs(d) // 60}:{abs(d) % 60:02d}" for d in deltas)
    if guarded:
        reasons.append("the offset changes during the year")
    if weekdays_only:
        by_weekday: dict[int, set[int]] = defaultdict(set)
        for weekday, tod in union:
            by_weekday[weekday].add(tod)
        by_lines: dict[tuple[str, ...], list[int]] = defaultdict(list)
        for weekday in sorted(by_weekday):
            by_lines[tuple(_group_times(by_weekday[weekday], ""))].append(weekday)
        specs = sorted(f"{line}* * {_ranges(days, 7)}" for lines, days in by_lines.items() for line in lines)
    else:
        times = {tod for _, tod in union}
        if all_days or not crosses_midnight:
            days = " ".join(fields[2:])  # unchanged: no entry moves to another day
        else:
            days = "* * *"  # the day moves across a month/weekday boundary: fire daily, confirm in the run
            guarded = True
            reasons.append("the shift crosses midnight on a schedule that names days")
        specs = _group_times(times, days)
    note = f"{zone_name(zone)} is {offsets} from {zone_name(system)}"
    if guarded:
        note += f"; entries at every candidate time, the run starts only when due ({'; '.join(reasons)})"
    return CronPlan(tuple(specs), guarded, note)


def pipeline_zone(spec: PipelineSpec) -> tzinfo:
    """The pipeline's zone: its ``timezone``, else the system zone cron evaluates entries in.

    The one notion used everywhere a schedule is read in time: cron entries, ``--if-due``, the
    scheduler, the intervals a scheduled run owns, ``list``'s next run and freshness in ``check``.
    """
    return ZoneInfo(spec.entry.timezone) if spec.entry.timezone else cron_zone()


def previous_fire(schedule: str, zone: tzinfo, fire: datetime) -> datetime:
    """The schedule's last fire before ``fire`` (read in ``zone``), in UTC.

    Only times that really fire count (:func:`is_due`): a wall-clock time skipped by a DST change,
    or the second pass through a repeated hour, is stepped over, so the fire after it owns the
    intervals that fire would have owned and no interval is lost.
    """
    from croniter import croniter

    times = croniter(cron_expression(schedule), fired_minute(fire).astimezone(zone))
    for _ in range(8):
        candidate = times.get_prev(datetime).astimezone(UTC)
        if is_due(schedule, zone, candidate):
            return candidate
    return candidate


def next_fire(schedule: str, zone: tzinfo, now: datetime) -> datetime:
    """The schedule's next fire time after ``now`` (read in ``zone``), in UTC."""
    from croniter import croniter

    return croniter(cron_expression(schedule), now.astimezone(zone)).get_next(datetime).astimezone(UTC)


def process_fire_minute() -> datetime:
    """The minute cron started this process: the fire time of a cron entry.

    The process start time (``run.sh`` execs Python in the same process) is the minute cron fired,
    even when starting Python or waiting for the store took longer.
    """
    import psutil

    return fired_minute(datetime.fromtimestamp(psutil.Process().create_time(), UTC))


def started_minute_due(spec: PipelineSpec) -> tuple[bool, str]:
    """For ``cron_run --if-due``: is the pipeline due at the minute cron started this process?"""
    entry = spec.entry
    if not entry.schedule:
        return False, f"{spec.name}: no schedule; --if-due never runs it"
    zone = pipeline_zone(spec)
    started = process_fire_minute()
    if is_due(entry.schedule, zone, started):
        return True, ""
    return False, (f"{spec.name}: not due at {started.astimezone(zone):%Y-%m-%d %H:%M} {zone_name(zone)} "
                   f"(schedule '{entry.schedule}'); nothing to do")
