"""Backfill execution: each planned interval as its own run (trigger ``backfill``), or contiguous
intervals as one batch where the pipeline allows it (:mod:`runner.backfill.batches`).

Runs go through :func:`runner.runner.run_pipeline`: locks, retries, run history and job log
exactly as ``cron_run``. Sequentially they run in this process on one open store (the cheap way
on the embedded engine); with ``parallel > 1`` each interval runs in a worker process
(:mod:`runner.backfill.worker`).

A sequential backfill on the embedded store hands the store to a waiting process (a scheduled
``cron_run``, ``runs``, the status page) at most every ``STORE_SHARE_EVERY`` seconds. chdb keeps
the threads of every engine it opened in a process (5 a time, see :mod:`core.store_child`), so
this process opens the engine itself only until the store first changes hands: from the first
hand-over on (or the first reopen of its engine, e.g. a waiter took the store between a run's
batches), the remaining runs go to one worker process, which exits at each hand-over and is
replaced by a new (spawned) one. Its threads stay flat however many times the store changes
hands; a backfill nobody waits for never starts a worker.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from runner.backfill.batches import group, run_group
from runner.backfill.planning import Step
from runner.backfill.reports import Listener, Report
from runner.backfill.stopping import StopRequest
from runner.backfill.worker import run_parallel
from runner.turns import hand_over_now

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
    held_since = time.monotonic()
    opens = store.engine_opens + 1  # the first run may open the engine (closed since planning)
    groups = group(todo)
    for index, steps in enumerate(groups):
        if stop.reason:
            report.stopped = report.stopped or stop.reason
        if report.stopped:
            return [s for g in groups[index:] for s in g]
        listener.running(steps)
        for step, outcome in zip(steps, run_group(steps, settings, store), strict=True):
            report.add(step, outcome, continue_on_error)
            listener.finished(step, outcome)
        rest = [s for g in groups[index + 1:] for s in g]
        if settings.is_embedded and rest and not report.stopped and hand_over_now(
                held_since, store, store.engine_opens, opens):
            # From now on the store changes hands: the runs go to a worker process (module doc).
            return run_parallel(rest, settings, store, 1, continue_on_error, listener, report, stop)
    if stop.reason:
        report.stopped = report.stopped or stop.reason
    return []
