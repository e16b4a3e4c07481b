"""Batches: contiguous planned intervals of one pipeline run as one run.

A pipeline opts in with ``batch_size`` (the most intervals one run may take; docs/backfill.md says
why it is opt-in). An hourly pipeline is backfilled a day per run unless ``--hourly``: a batch of
its (up to 24) hours of one day, by the same mechanism. A batch is one run (one run id, one run
record whose interval spans the batch); its outcome is reported per interval, each pointing at
the batch's run, with the rows its coverage recorded for that interval. A failure fails the
batch's intervals only; a re-run of one of them runs just it (re-planned, it is alone).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from core.exceptions import AlreadyRunning
from core.intervals import Interval, contiguous
from runner.backfill.planning import Step, batch_limit
from runner.backfill.reports import not_run

__all__ = ["batch_limit", "group", "per_interval", "run_group"]

if TYPE_CHECKING:
    from core.config import Settings
    from core.models import RunRecord
    from core.store import Store

def group(todo: Sequence[Step]) -> list[list[Step]]:
    """The steps in runs, in order: contiguous intervals of one pipeline, at most ``step.batch``
    each (``core.intervals.contiguous``); an hourly pipeline's day batches (no ``batch_size`` of
    its own) stay within a day."""
    groups: list[list[Step]] = []
    for same in _by_pipeline(todo):
        spec = same[0].spec
        at = {s.interval: s for s in same}
        groups += [[at[i] for i in run] for run in contiguous([s.interval for s in same], same[0].batch,
                                                                within_day=spec.entry.batch_size == 1)]
    return groups


def _by_pipeline(todo: Sequence[Step]) -> list[list[Step]]:
    """Consecutive steps of one pipeline together (the plan's order kept)."""
    parts: list[list[Step]] = []
    for step in todo:
        if parts and parts[-1][0].spec is step.spec:
            parts[-1].append(step)
        else:
            parts.append([step])
    return parts


def run_group(steps: Sequence[Step], settings: Settings, store: Store) -> list[RunRecord]:
    """Run a group of steps as one run (a single step: as itself); one outcome per step."""
    from runner.runner import run_pipeline

    first = steps[0]
    try:
        record = run_pipeline(first.spec, settings, store, first.interval, trigger="backfill",
                              batch=[s.interval for s in steps])
    except AlreadyRunning as exc:
        return [not_run(s.pipeline, s.interval, "busy", "already running", str(exc)) for s in steps]
    return per_interval(record, steps, store)


def per_interval(record: RunRecord, steps: Sequence[Step], store: Store) -> list[RunRecord]:
    """A batch's record as each interval's outcome: the same run, the interval's own bounds and the
    rows its coverage recorded (a failed batch loaded nothing)."""
    if len(steps) == 1:
        return [record]
    rows: dict[Interval, int] = {}
    if record.status == "success" and record.run_id:
        from record.coverage import read_coverage

        span = Interval(steps[0].interval.start, steps[-1].interval.end)
        rows = {Interval(c.start, c.end): c.rows_loaded for c in read_coverage(store, record.pipeline, span.start,
                                                                              span.end) if c.run_id == record.run_id}
    return [record.model_copy(update={"interval_start": s.interval.start, "interval_end": s.interval.end,
                                      "rows_loaded": rows.get(s.interval, 0)}) for s in steps]
