"""Backfills: run pipelines over past intervals, oldest first, resumably and idempotently.

A backfill is a plan and its execution:

- **Planning** (:func:`plan`, :mod:`runner.backfill.planning`) lists, per pipeline, the intervals of
  the requested days and decides for each whether to run or skip it, and why, from the coverage
  (``_dp_coverage``) and the run history (``_dp_runs``) of those days (:mod:`runner.coverage`). An
  interval is *done* when complete successful runs cover it, so re-running the same command resumes
  where it stopped. Planning writes nothing (``--dry-run`` prints the plan and stops there).
- **Executing** (:func:`execute`, :mod:`runner.backfill.execution`) runs each planned interval as
  its own run, or contiguous ones as one batch where the pipeline allows it (``batch_size``, an
  hourly pipeline's day: :mod:`runner.backfill.batches`), with trigger ``backfill``, through
  :func:`runner.runner.run_pipeline`: locks, retries, run
  history and job log exactly as ``cron_run``. Sequentially they run in this process on one open
  store (the cheap way on the embedded engine); with ``parallel > 1`` each interval runs in a new
  process (never a fork: chdb hangs in forked children), at most ``parallel`` at a time (the CLI
  asks for that on a ClickHouse server only: on the embedded store workers would just take turns;
  the protocol: :mod:`runner.backfill.worker`).
- **Reporting** (:class:`Report`, :mod:`runner.backfill.reports`): each step's outcome is its run's
  record (:class:`core.models.RunRecord`), tallied per pipeline.

Only pipelines whose runs own their interval's slice (``Pipeline.interval_aware``: an
interval-aware extractor and the ClickHouse loader in ``interval`` mode) can be backfilled: for
them re-running an interval replaces exactly that interval, so a backfill can never duplicate.
"""

from core.intervals import Interval
from runner.backfill.batches import batch_limit, group
from runner.backfill.execution import execute
from runner.backfill.planning import (
    DEFAULT_DAYS,
    Policy,
    Step,
    day_window,
    decide,
    intervals_for,
    plan,
    select_pipelines,
    why_not_backfillable,
)
from runner.backfill.reports import Listener, Report
from runner.backfill.worker import serve_worker
from runner.coverage import History

__all__ = [
    "DEFAULT_DAYS", "History", "Interval", "Listener", "Policy", "Report", "Step", "batch_limit", "day_window",
    "decide", "execute", "group",
    "intervals_for", "plan", "select_pipelines", "serve_worker", "why_not_backfillable",
]
