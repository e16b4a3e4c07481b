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
from core.logging import get_logger
from runner.backfill.planning import Step
from runner.backfill.reports import Listener, Report, not_run
from runner.backfill.stopping import StopRequest
from runner.backfill.worker import run_parallel

if TYPE_CHECKING:
    from core.config import Settings
    from core.store import Store

# A sequential backfill on the embedded store hands it to waiting processes (cron runs) at most
# this often, so a long backfill delays them by seconds instead of starving them for its whole
# length. Only when one waits: every reopen of the engine costs the process threads chdb never
# gives back (5 a time, see core/store_child.py), so a backfill nobody waits for keeps its store.
SHARE_STORE_EVERY = 5.0
_SHARE_PAUSE = 0.15  # > the 0.05 s poll of a waiting FileLock

log = get_logger("backfill")


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

    held_since = time.monotonic()
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
        if settings.is_embedded and time.monotonic() - held_since > SHARE_STORE_EVERY and store.someone_waits():
            log.info("Handing the embedded store to a waiting process")
            store.close()
            time.sleep(_SHARE_PAUSE)
            held_since = time.monotonic()
    if stop.reason:
        report.stopped = report.stopped or stop.reason
    return []
