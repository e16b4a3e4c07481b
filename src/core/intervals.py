"""Data intervals: the slice of time a run is responsible for (start inclusive, end exclusive, UTC)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from core.exceptions import UsageError

if TYPE_CHECKING:  # core.models imports pydantic: `help` and `list` need not
    from core.models import Granularity

#: The length of an interval of each granularity (the one table of them).
STEP: dict[str, timedelta] = {"day": timedelta(days=1), "hour": timedelta(hours=1)}


@dataclass(frozen=True, order=True)
class Interval:
    start: datetime
    end: datetime

    @property
    def label(self) -> str:
        """``2026-01-15`` for a whole day, ``2026-01-15T13:00`` for an hour, else ``start/end``."""
        if self.end - self.start == STEP["day"] and self.start.hour == self.start.minute == 0:
            return self.start.strftime("%Y-%m-%d")
        if self.end - self.start == STEP["hour"] and self.start.minute == 0:
            return self.start.strftime("%Y-%m-%dT%H:%M")
        return f"{self.start.isoformat()}/{self.end.isoformat()}"

    def __str__(self) -> str:
        return f"[{self.start.isoformat()}, {self.end.isoformat()})"


def _floor(moment: datetime, granularity: Granularity) -> datetime:
    moment = moment.astimezone(UTC)
    if granularity == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def current_interval(granularity: Granularity, now: datetime | None = None) -> Interval:
    """The interval of the given granularity that contains ``now`` (today, or this hour)."""
    start = _floor(now or datetime.now(UTC), granularity)
    return Interval(start, start + STEP[granularity])


def last_complete_interval(granularity: Granularity, now: datetime | None = None) -> Interval:
    """The newest interval that has ended by ``now``: yesterday, or the previous hour."""
    end = _floor(now or datetime.now(UTC), granularity)
    return Interval(end - STEP[granularity], end)


def ended_in(granularity: Granularity, after: datetime, until: datetime) -> list[Interval]:
    """Every interval whose end lies in ``(after, until]``, oldest first (UTC boundaries)."""
    step = STEP[granularity]
    end = _floor(until, granularity)
    found = []
    while end > after.astimezone(UTC):
        found.append(Interval(end - step, end))
        end -= step
    return found[::-1]


def preceding(first: Interval, count: int, granularity: Granularity) -> list[Interval]:
    """The ``count`` intervals just before ``first``, oldest first."""
    step = STEP[granularity]
    return [Interval(first.start - step * n, first.start - step * (n - 1)) for n in range(count, 0, -1)]


def day_interval(day: date) -> Interval:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return Interval(start, start + STEP["day"])


def parse_date(text: str, option: str = "--date") -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{option} must be a date like 2026-01-31, got '{text}'") from None


def parse_moment(text: str, option: str) -> datetime:
    """An ISO date or date-time; naive values are UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{option} must be an ISO date or date-time like 2026-01-31T00:00, got '{text}'") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parse_interval(start: str, end: str) -> Interval:
    interval = Interval(parse_moment(start, "--start"), parse_moment(end, "--end"))
    if interval.end <= interval.start:
        raise UsageError(f"--end ({end}) must be after --start ({start})")
    return interval


def split(first: datetime, last: datetime, granularity: Granularity) -> list[Interval]:
    """Consecutive intervals of ``granularity`` covering ``[first, last)``, oldest first."""
    step = STEP[granularity]
    cursor = _floor(first, granularity)
    intervals = []
    while cursor < last:
        intervals.append(Interval(cursor, cursor + step))
        cursor += step
    return intervals


def contiguous(intervals: Sequence[Interval], size: int, within_day: bool = False) -> list[list[Interval]]:
    """``intervals`` (oldest first) in runs of contiguous ones, at most ``size`` each (a batch,
    the registry's ``batch_size``); ``within_day``: a run never crosses midnight (UTC)."""
    runs: list[list[Interval]] = []
    for interval in intervals:
        last = runs[-1] if runs else None
        if last and len(last) < size and last[-1].end == interval.start \
                and (not within_day or last[0].start.date() == interval.start.date()):
            last.append(interval)
        else:
            runs.append([interval])
    return runs


# ---- the slice of a table a run owns, in SQL ------------------------------------------------------
# Defined once, for every filter by a run's interval (the loader's rebuild and its checks of the
# staged rows, the data checks): a row whose time column is NULL belongs to no interval. Both
# conditions are two-valued (never NULL), and each is the exact complement of the other, so a
# ``WHERE NOT (in_slice)`` can never drop a NULL row by three-valued logic.

#: The run's interval bounds as typed query parameters (values: :func:`slice_parameters`).
SLICE_START = "{start:DateTime64(6, 'UTC')}"
SLICE_END = "{end:DateTime64(6, 'UTC')}"


def in_slice_sql(column: str) -> str:
    """SQL condition: the row's ``column`` (quoted SQL) lies in ``[start, end)``; false when NULL."""
    return f"({column} IS NOT NULL AND {column} >= {SLICE_START} AND {column} < {SLICE_END})"


def outside_slice_sql(column: str) -> str:
    """SQL condition: the row is not in the run's slice (true when ``column`` is NULL)."""
    return f"NOT {in_slice_sql(column)}"


def slice_parameters(start: datetime, end: datetime) -> dict[str, str]:
    """The values of ``{start}`` / ``{end}`` in :func:`in_slice_sql`, as ClickHouse parses them (UTC)."""
    def text(moment: datetime) -> str:  # naive values are UTC already
        return (moment.astimezone(UTC) if moment.tzinfo else moment).strftime("%Y-%m-%d %H:%M:%S.%f")

    return {"start": text(start), "end": text(end)}
