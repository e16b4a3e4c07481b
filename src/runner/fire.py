"""What ``cron_run`` does, whoever asks: a scheduled fire or given intervals, then the cascade.

Shared by the ``cron_run`` command, the scheduler's child processes (:mod:`runner.child`) and any
future caller, so each runs exactly the same steps:

1. the intervals (a fire's from its schedule, :mod:`runner.scheduled`), only those whose upstreams
   (``depends_on``) are complete, unless ``force`` (a refused one: one line, exit 1, nothing
   recorded);
2. for a fire, the caller's ``after_fire`` step (cron re-syncs its block, :mod:`ops.cron`);
3. the downstream pipelines of the intervals that succeeded, in this process
   (:mod:`runner.cascade`); their outcomes are reported, never folded into the exit code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from core.intervals import Interval
from core.models import EXIT_FAILED, EXIT_SUCCESS
from runner.cascade import Outlet, run_downstream, run_one
from runner.dependencies import Succeeded, not_ready
from runner.scheduled import EXIT_BUSY, plan_fire, run_fire, worst

if TYPE_CHECKING:
    from core.config import Settings
    from core.models import RunRecord
    from core.store import Store
    from pipelines.pipeline_registry import PipelineSpec, Registry


def is_ready(store: Store, registry: Registry, spec: PipelineSpec, interval: Interval, force: bool,
             warn: Callable[[str], None]) -> bool:
    """May ``spec`` run for ``interval``? Not when an upstream is not complete for it (one line
    to ``warn``; nothing is recorded, so the interval is not covered), unless ``force``."""
    if not spec.entry.depends_on:
        return True
    checked, reasons = not_ready(store, registry, spec, interval)
    if not reasons:
        return True
    if force:
        warn(f"{spec.name} {checked.label}: upstream not ready, running anyway (--force): {'; '.join(reasons)}")
        return True
    warn(f"not ready: {spec.name} {checked.label} not run ({'; '.join(reasons)}); --force runs it anyway")
    return False


def _cascade(settings: Settings, store: Store, registry: Registry, results: Sequence[RunRecord], out: Outlet,
             already: Sequence[tuple[str, Interval]] = ()) -> None:
    """The downstream runs of the successful ``results`` (one call, so their intervals coalesce)."""
    succeeded = [Succeeded(r.pipeline, Interval(r.interval_start, r.interval_end))
                 for r in results if r.status == "success"]
    if succeeded:  # after the runs released their locks
        run_downstream(store, registry, settings, succeeded, out, already=already)


def run_scheduled_fire(spec: PipelineSpec, settings: Settings, store: Store, registry: Registry, fire: datetime,
                       trigger: str, out: Outlet, *, force: bool = False, downstream: bool = True,
                       after_fire: Callable[[], None] | None = None) -> int:
    """A scheduled fire of ``spec`` at ``fire`` (see the module doc); the fire's exit code."""
    results: list[RunRecord] = []

    def report(result: RunRecord) -> None:
        results.append(result)
        out.report(result)

    plan = plan_fire(spec, fire)
    tasks = plan.tasks
    plan.tasks = [t for t in tasks if is_ready(store, registry, spec, t.interval, force, out.warn)]
    code = EXIT_SUCCESS if tasks and not plan.tasks else run_fire(
        spec, settings, store, plan, trigger, out.say, report, on_finish=out.on_finish)
    if len(plan.tasks) < len(tasks) and code in (EXIT_SUCCESS, EXIT_BUSY):
        code = EXIT_FAILED
    if after_fire is not None:
        after_fire()
    if downstream:
        _cascade(settings, store, registry, results, out)
    return code


def run_intervals(settings: Settings, store: Store, registry: Registry, work: Sequence[tuple[str, Interval]],
                  trigger: str, out: Outlet, *, force: bool = False, downstream: bool = True) -> int:
    """Run each (pipeline, interval) of ``work`` in order, then their downstream pipelines; the
    worst exit code. An interval that is not ready is refused (exit 1) and the others still run."""
    code = EXIT_SUCCESS
    results: list[RunRecord] = []
    for name, interval in work:
        spec = registry.get(name)
        if not is_ready(store, registry, spec, interval, force, out.warn):
            code = worst(code, EXIT_FAILED)
            continue
        run_code, result = run_one(spec, settings, store, interval, trigger, out)
        code = worst(code, run_code)
        if result is not None:
            results.append(result)
    if downstream:
        _cascade(settings, store, registry, results, out, already=work)
    return code
