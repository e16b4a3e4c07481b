"""Downstream runs (``depends_on``) after upstream runs, in the process that holds the store.

When upstream runs succeed (a run, a scheduled fire, a backfill), :func:`run_downstream` runs
the downstream pipelines' ready intervals after the upstream released its locks, in dependency
order, one run per interval in this process on its open store (never a new process per
interval: process and engine start-up cost more than a small SQL run). Several upstream
intervals touching one downstream interval give one run of it (coalesced); a downstream that is
not interval-aware (it recomputes everything) runs once, for its newest interval. Which intervals
are candidates and which are ready is decided in :mod:`runner.dependencies`.

On the embedded store a long cascade hands the store to a waiting process between two runs
(:class:`runner.turns.StoreTurns`, as a backfill does). Each run publishes its interval as any
run does, so a cascade killed half-way leaves every finished interval done and the rest missing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from core.exceptions import DataProcessorError
from core.intervals import Interval
from core.models import EXIT_INTERRUPTED
from runner.dependencies import Succeeded, all_downstream, candidates, readiness
from runner.turns import StoreTurns

if TYPE_CHECKING:
    from core.config import Settings
    from core.models import RunRecord
    from core.store import Store
    from pipelines.pipeline_registry import PipelineSpec, Registry
    from runner.runner import RunFinished


@dataclass
class Outlet:
    """Where a series of runs reports: progress lines, problems, each finished run (printed,
    returning its exit code) and the runner's ``on_finish`` hook (alerts)."""

    say: Callable[[str], None]
    warn: Callable[[str], None]
    report: Callable[[RunRecord], int]
    on_finish: RunFinished | None = None


def result_lines(settings: Settings, result: RunRecord) -> list[str]:
    """How a finished run is told: one line on success; on failure, what and where to read more.
    Each line starts with the run's status."""
    label = Interval(result.interval_start, result.interval_end).label
    if result.status == "success":
        return [f"success {result.pipeline} {label}: {result.rows_loaded:,} rows loaded "
                f"({result.rows_extracted:,} extracted) in {result.duration_seconds:.2f} s, run {result.run_id}"]
    log_file = settings.log_dir / "jobs" / f"{result.pipeline}.log"
    return [f"{result.status} {result.pipeline} {label} ({result.reason}): {result.error}",
            f"details: {log_file} (run {result.run_id})"]


def run_one(spec: PipelineSpec, settings: Settings, store: Store, interval: Interval, trigger: str,
            out: Outlet) -> tuple[int, RunRecord | None]:
    """One run, reported; a run that could not start (its lock is held, ...) is one ``error:``
    line and its exit code. Returns the exit code and the run's record (None: it did not start)."""
    from runner.runner import run_pipeline

    try:
        result = run_pipeline(spec, settings, store, interval, trigger=trigger, on_finish=out.on_finish)
    except DataProcessorError as exc:
        out.warn(f"error: {exc}")
        return exc.exit_code, None
    return out.report(result), result


def _stopped(code: int, result: RunRecord | None) -> bool:
    """Was the run stopped by a signal (Ctrl-C, kill)? Then nothing else starts."""
    return code == EXIT_INTERRUPTED or (result is not None and result.reason == "killed")


def run_downstream(store: Store, registry: Registry, settings: Settings, succeeded: Sequence[Succeeded], out: Outlet,
                   already: Iterable[tuple[str, Interval]] = (), now: datetime | None = None) -> int:
    """Run the downstream pipelines of ``succeeded``, in dependency order; returns how many failed.

    Each ready interval runs once; an interval that is not ready is reported and skipped; a
    failure skips what depends on that interval. ``already`` lists (pipeline, interval) pairs that
    ran anyway (a backfill's own steps) and are not run again.
    """
    now = now or datetime.now(UTC)
    touched: dict[str, list[Interval]] = {}
    for run in succeeded:
        touched.setdefault(run.pipeline, []).append(run.interval)
    done = set(already)
    failed: dict[str, list[Interval]] = {}
    turns = StoreTurns(settings, store)
    for name in all_downstream(registry, touched):
        spec = registry.pipelines[name]
        if not spec.entry.enabled:
            continue
        todo = [i for i in candidates(registry, spec, touched, now) if (name, i) not in done]
        unready = readiness(store, registry, spec, todo)
        for interval in todo:
            broken_up = [u for u in spec.entry.depends_on
                         if any(i.start < interval.end and i.end > interval.start for i in failed.get(u, []))]
            reasons = [f"upstream '{u}' failed" for u in broken_up] or unready(interval)
            if reasons:
                out.say(f"downstream {name} {interval.label}: not ready, not run ({'; '.join(reasons)})")
                continue
            out.say(f"downstream {name} {interval.label}: running (trigger upstream)")
            code, result = run_one(spec, settings, store, interval, "upstream", out)
            done.add((name, interval))
            if code == 0:
                touched.setdefault(name, []).append(interval)
            else:
                failed.setdefault(name, []).append(interval)
                out.say(f"downstream {name} {interval.label}: failed (exit {code}); see ./run.sh runs {name}")
            if _stopped(code, result):
                return sum(len(v) for v in failed.values())
            turns.between_runs()
    return sum(len(v) for v in failed.values())
