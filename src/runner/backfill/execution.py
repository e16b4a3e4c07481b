"""Backfill execution: each planned interval as its own run (trigger ``backfill``).

Runs go through :func:`runner.runner.run_pipeline`: locks, retries, run history and job log
exactly as ``cron_run``. Sequentially they run in this process on one open store (the cheap way
on the embedded engine); with ``parallel > 1`` each interval runs in a worker process
(:mod:`runner.backfill.worker`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from core.exceptions import AlreadyRunning
from runner.backfill.planning import Step
from runner.backfill.reports import Listener, Report, not_run
from runner.backfill.stopping import StopRequest
from runner.backfill.worker import run_parallel
from runner.turns import StoreTurns

if TYPE_CHECKING:
    from core.config import Settings
    from core.store import Store



def execute(steps: Sequence[Step], settings: Settings, store: Store, *, parallel: int = 1,
            continue_on_error: bool = False, listener: Listener | None = None) -> Report:
    """Run the plan's ``run`` steps in order; see the module doc. Never raises for a failed run."""
    listener = listener or Listener()
    report = Report()
    started = time.monotonic()
    for step in steps:
        tally = report.tally(step)
        tally.planned += 1
        if step.action == "skip":
            tally.skipped += 1
    todo = [s for s in steps if s.action == "run"]
    listener.started(len(todo))
    stop = StopRequest()
    with stop.installed():
        if parallel > 1 and len(todo) > 1:
            left = run_parallel(todo, settings, store, parallel, continue_on_error, listener, report, stop)
        else:
            left = _run_sequential(todo, settings, store, continue_on_error, listener, report, stop)
    for step in left:
        report.tally(step).not_run += 1
    report.seconds = time.monotonic() - started
    return report


def _run_sequential(todo: Sequence[Step], settings: Settings, store: Store, continue_on_error: bool,
                    listener: Listener, report: Report, stop: StopRequest) -> list[Step]:
    from runner.runner import run_pipeline

    turns = StoreTurns(settings, store)  # a long backfill hands the embedded store to waiting processes
    for index, step in enumerate(todo):
        if stop.reason:
            report.stopped = report.stopped or stop.reason
        if report.stopped:
            return list(todo[index:])
        listener.running([step])
        try:
            outcome = run_pipeline(step.spec, settings, store, step.interval, trigger="backfill")
        except AlreadyRunning as exc:
            outcome = not_run(step.pipeline, step.interval, "busy", "already running", str(exc))
        report.add(step, outcome, continue_on_error)
        listener.finished(step, outcome)
        turns.between_runs()
    if stop.reason:
        report.stopped = report.stopped or stop.reason
    return []
