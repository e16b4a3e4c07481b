"""Backfill planning without a database: windows, coverage from run history, re-run policies."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from core.exceptions import UsageError
from core.intervals import Interval, day_interval
from core.models import RunRecord
from runner.backfill import day_window, decide
from runner.coverage import History, reported_rows_by_day

DAY = date(2025, 3, 10)
TODAY = date(2025, 3, 20)


def run(start: datetime, end: datetime, status: str = "success", n: int = 0, rows: int = 6,
        reason: str = "", error: str = "") -> RunRecord:
    at = datetime(2025, 4, 1, tzinfo=UTC) + timedelta(minutes=n)
    return RunRecord(run_id=f"r{n}", pipeline="p", interval_start=start, interval_end=end, trigger="backfill",
                     status=status, reason=reason, error=error, started_at=at, finished_at=at + timedelta(seconds=1),
                     rows_loaded=rows if status == "success" else 0, host="elsewhere", pid=1)


def day_run(day: date, status: str = "success", n: int = 0, **kw) -> RunRecord:
    interval = day_interval(day)
    return run(interval.start, interval.end, status, n, **kw)


def test_days_are_the_complete_days_before_today() -> None:
    assert day_window(None, None, None, today=TODAY) == (date(2025, 3, 13), date(2025, 3, 19))
    assert day_window(1, None, None, today=TODAY) == (date(2025, 3, 19), date(2025, 3, 19))
    assert day_window(None, date(2025, 3, 1), date(2025, 3, 1), today=TODAY) == (date(2025, 3, 1), date(2025, 3, 1))
    assert day_window(None, date(2025, 3, 15), None, today=TODAY) == (date(2025, 3, 15), date(2025, 3, 19))
    for args, message in [((0, None, None), "DAYS must be between 1 and 3660"),
                          ((None, TODAY, None), "--start (2025-03-20) must be before today"),
                          ((None, DAY, TODAY), "--end (2025-03-20) must be before today"),
                          ((None, DAY, DAY - timedelta(days=1)), "is before --start"),
                          ((None, date(2010, 1, 1), None), "more than 3660"),
                          ((3, DAY, None), "not both")]:
        with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
            day_window(*args, today=TODAY)


def test_coverage_states_and_policies() -> None:
    failed_then_ok = day_run(DAY, "failed", 1, reason="error", error="ValueError: no file\ntraceback")
    history = History([
        day_run(DAY - timedelta(days=1), "success", 0), failed_then_ok, day_run(DAY, "success", 2),
        day_run(DAY + timedelta(days=1), "crashed", 3), day_run(DAY + timedelta(days=2), "failed", 4, reason="timeout"),
        day_run(DAY + timedelta(days=3), "running", 5),  # another host: assumed alive
    ])
    states = [history.coverage(day_interval(DAY + timedelta(days=n))) for n in range(-1, 5)]
    assert [c.state for c in states] == ["done", "done", "failed", "failed", "running", "missing"]
    assert states[1].why == "run r2 succeeded (backfill, 6 rows)"
    assert states[2].why == "run r3 crashed"
    assert states[3].why == "run r4 failed (timeout)"

    def actions(policy):
        return [decide(c, policy)[0] for c in states]

    assert actions("default") == ["skip", "skip", "run", "run", "skip", "run"]
    assert actions("failed") == ["skip", "skip", "run", "run", "skip", "skip"]
    assert actions("all") == ["run", "run", "run", "run", "skip", "run"]
    assert decide(states[4], "all")[1].endswith("not starting a second run")
    assert decide(states[5], "failed")[1] == "never run; --rerun failed retries only failed or crashed intervals"


def test_a_day_is_done_when_successful_runs_cover_it() -> None:
    start = datetime(2025, 3, 10, tzinfo=UTC)
    hours = [run(start + timedelta(hours=h), start + timedelta(hours=h + 1), n=h, rows=1) for h in range(24)]
    assert History(hours).coverage(day_interval(DAY)).state == "done"
    assert History(hours[:23]).coverage(day_interval(DAY)).state == "partial"
    assert History(hours[:23]).coverage(Interval(start, start + timedelta(hours=1))).state == "done"
    week = run(start, start + timedelta(days=7))
    assert History([week]).coverage(day_interval(DAY + timedelta(days=3))).why.startswith("covered by 1 successful")
    # A failed hour after a successful day run leaves the day done (the failure rolled back).
    failed_hour = run(start, start + timedelta(hours=1), "failed", n=99)
    assert History([day_run(DAY), failed_hour]).coverage(day_interval(DAY)).state == "done"


def test_reported_rows_replay_runs_like_the_loader() -> None:
    start = datetime(2025, 3, 10, tzinfo=UTC)
    runs = [
        *[run(start + timedelta(hours=h), start + timedelta(hours=h + 1), n=h, rows=2) for h in range(24)],
        run(start, start + timedelta(hours=1), n=30, rows=5),  # hour 0 re-run later
        day_run(DAY + timedelta(days=1), n=31, rows=7),
        day_run(DAY + timedelta(days=1), n=32, rows=9),  # the day re-run: replaces
        run(start + timedelta(days=2), start + timedelta(days=4), n=33, rows=10),  # spans two days
        day_run(DAY + timedelta(days=5), "failed", n=34),
    ]
    reported = reported_rows_by_day(History(runs), DAY, DAY + timedelta(days=6))
    assert reported == {DAY: 23 * 2 + 5, DAY + timedelta(days=1): 9, DAY + timedelta(days=2): None,
                        DAY + timedelta(days=3): None}
