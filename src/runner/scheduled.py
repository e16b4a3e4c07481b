"""The intervals a run is responsible for, and a scheduled fire run interval by interval.

- A **scheduled fire** (cron or the scheduler) at minute T owns every complete interval that
  ended in (previous fire, T], oldest first; the previous fire comes from croniter in the
  pipeline's zone. Intervals are UTC (partitions are ``toDate`` in UTC): the zone moves only T.
  ``lookback`` N adds the N intervals before the owned ones (late data heals itself);
  ``refresh_current`` adds the interval in progress (recorded, and shown, as incomplete).
  Each interval is a run of its own (own run id, lock and record), as in a backfill; with the
  pipeline's ``batch_size``, contiguous complete intervals run as one batch (one run, each
  interval covered).
- A **person's** ``cron_run NAME`` takes the last complete interval (yesterday, the previous hour).
- A pipeline that is **not interval-aware** runs "now" either way; its recorded interval
  (previous fire, this fire; for a person's run: previous fire, now, and it is told so) is for
  display and never counts as coverage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from core.config import Settings
from core.exceptions import AlreadyRunning, UsageError
from core.intervals import (
    STEP,
    Interval,
    contiguous,
    current_interval,
    ended_in,
    last_complete_interval,
    preceding,
)
from core.logging import CONSOLE, get_logger
from core.models import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_SUCCESS, RunRecord
from core.store import Store
from pipelines.pipeline_registry import PipelineSpec
from runner.runner import RunFinished, run_pipeline
from runner.schedule import fired_minute, pipeline_zone, previous_fire

log = get_logger("runner")

Role = Literal["owned", "lookback", "current", "now"]
EXIT_BUSY = 75
_SEVERITY = {EXIT_SUCCESS: 0, EXIT_BUSY: 1, EXIT_FAILED: 2, EXIT_INTERRUPTED: 3}


@dataclass(frozen=True)
class Task:
    """One interval of a fire and why the fire runs it."""

    interval: Interval
    role: Role


@dataclass
class FirePlan:
    previous: datetime
    fire: datetime
    tasks: list[Task]

    @property
    def window(self) -> str:
        return f"({self.previous:%Y-%m-%d %H:%M}, {self.fire:%Y-%m-%d %H:%M}] UTC"


def plan_fire(spec: PipelineSpec, fire: datetime) -> FirePlan:
    """The intervals a fire of ``spec``'s schedule at ``fire`` runs, oldest first."""
    entry = spec.entry
    if not entry.schedule:
        raise UsageError(f"Pipeline '{spec.name}' has no schedule, so it has no fire time: "
                         "run it with --date or --start/--end, or without --fired-at/--trigger cron")
    fire = fired_minute(fire)
    previous = previous_fire(entry.schedule, pipeline_zone(spec), fire)
    if not spec.pipeline.interval_aware:
        return FirePlan(previous, fire, [Task(Interval(previous, fire), "now")])
    owned = [i for i in ended_in(entry.granularity, previous, fire) if _on_or_after_start(spec, i)]
    tasks: list[Task] = []
    if owned and entry.lookback:
        tasks += [Task(i, "lookback") for i in preceding(owned[0], entry.lookback, entry.granularity)
                  if _on_or_after_start(spec, i)]
    tasks += [Task(i, "owned") for i in owned]
    if entry.refresh_current:
        tasks.append(Task(current_interval(entry.granularity, fire), "current"))
    return FirePlan(previous, fire, tasks)


def _on_or_after_start(spec: PipelineSpec, interval: Interval) -> bool:
    first = spec.entry.start_date
    return first is None or interval.start.date() >= first


def manual_interval(spec: PipelineSpec, now: datetime | None = None) -> tuple[Interval, str]:
    """What ``cron_run NAME`` runs when a person gives no interval, and a line saying so."""
    now = fired_minute(now or datetime.now(UTC))
    entry = spec.entry
    if spec.pipeline.interval_aware:
        interval = last_complete_interval(entry.granularity, now)
        return interval, (f"interval {interval.label} (the last complete {entry.granularity}); "
                          "use --date to choose")
    # It reads what its source holds now: its record says so ("the last complete hour" would not be true).
    if entry.schedule:
        interval, span = Interval(previous_fire(entry.schedule, pipeline_zone(spec), now), now), \
            "from the previous fire to now"
    else:
        interval, span = Interval(now - STEP[entry.granularity], now), f"the {entry.granularity} up to now"
    start, end = interval.start, interval.end
    shown = f"{start:%Y-%m-%d %H:%M} .. {end:%H:%M}" if start.date() == end.date() else \
        f"{start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M}"
    return interval, (f"interval {shown} UTC ({span}): {spec.name} is not interval-aware, it reads what its source "
                      f"holds now, so it has no last complete {entry.granularity}")


Say = Callable[[str], None]


def runs_of(spec: PipelineSpec, tasks: list[Task]) -> list[list[Task]]:
    """A fire's tasks as runs: with ``batch_size``, contiguous complete intervals (lookback and
    owned: a catch-up after missed fires) as one batch each; the interval in progress alone."""
    complete = [t for t in tasks if t.role != "current"]
    at = {t.interval: t for t in complete}
    runs = [[at[i] for i in run] for run in contiguous([t.interval for t in complete], spec.entry.batch_size)]
    return runs + [[t] for t in tasks if t.role == "current"]


def worst(code: int, other: int) -> int:
    """The more serious of two exit codes (interrupted > failed > busy > success; others: failed)."""
    return max(code, other, key=lambda c: _SEVERITY.get(c, _SEVERITY[EXIT_FAILED]))


def run_fire(spec: PipelineSpec, settings: Settings, store: Store, plan: FirePlan, trigger: str,
             say: Say, report: Callable[[RunRecord], None], on_finish: RunFinished | None = None) -> int:
    """Run the plan's intervals one by one; the worst exit code (0 when there was nothing to do).

    A failed interval does not stop the others (each owns its slice); an interrupted one does.
    A lookback or current interval whose lock is held (a backfill, a manual run) is skipped with a
    note; an owned one whose lock is held counts as busy (exit 75), as a single run would.
    ``on_finish`` gets each run's record (see :func:`runner.runner.run_pipeline`).
    """
    if not plan.tasks:
        message = f"{spec.name}: no complete interval ended in {plan.window}; nothing to do"
        log.info(message, extra={CONSOLE: False})  # said once: cron sends stdout and stderr to one file
        say(message)
        return EXIT_SUCCESS
    outcome = EXIT_SUCCESS
    for tasks in runs_of(spec, plan.tasks):
        task, label = tasks[-1], Interval(tasks[0].interval.start, tasks[-1].interval.end).label
        try:
            result = run_pipeline(spec, settings, store, task.interval, trigger=trigger, on_finish=on_finish,
                                  batch=[t.interval for t in tasks])
        except AlreadyRunning as exc:
            if task.role in ("lookback", "current"):
                say(f"{spec.name}: {task.role} {label} skipped: it is running elsewhere ({exc})")
                continue
            say(f"{spec.name}: {label}: {exc}")
            outcome = worst(outcome, EXIT_BUSY)
            continue
        report(result)
        outcome = worst(outcome, result.exit_code)
        if result.exit_code == EXIT_INTERRUPTED or result.reason == "killed":
            break
    return outcome
