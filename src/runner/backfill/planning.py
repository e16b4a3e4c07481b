"""Backfill planning: which pipelines, which intervals, and for each whether to run it and why.

Decided from the coverage (``_dp_coverage``) and the run history (``_dp_runs``) of the requested
days (:mod:`runner.coverage`). An interval is *done* when complete successful runs cover it, so
re-running the same command resumes where it stopped. Planning writes nothing but the crashed
marks any run writes (``--dry-run``: nothing at all).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Literal

from core.exceptions import UsageError
from core.intervals import Interval, split
from runner.coverage import Coverage, read_history

if TYPE_CHECKING:  # pydantic-backed modules: imported where used, so `help` stays fast
    from core.store import Store
    from pipelines.pipeline_registry import PipelineSpec, Registry

Policy = Literal["default", "failed", "all"]
DEFAULT_DAYS = 7
MAX_DAYS = 3660


def why_not_backfillable(spec: PipelineSpec) -> str | None:
    """``None`` when ``spec`` can be backfilled, else the reason (written for the user)."""
    pipeline = spec.pipeline
    loader = pipeline.loader
    if not loader.interval_scoped:
        mode = loader.mode
        how = (f"its loader writes in mode '{mode}'" if mode
               else f"its loader ({type(loader).__name__}) is not interval-scoped")
        return (f"{how}, so a run does not own its interval's slice of the table and re-running a day "
                "could load its rows twice (backfill needs the ClickHouse loader with time_column, mode 'interval')")
    if not pipeline.extractor.interval_aware:
        return (f"its extractor ({type(pipeline.extractor).__name__}) does not declare interval_aware = True, "
                "so a run would not read only its interval (each backfilled day would replace its slice with "
                "whatever the source returns now)")
    return None


def select_pipelines(registry: Registry, names: Sequence[str]) -> list[PipelineSpec]:
    """The named pipelines (each must be backfillable), or every enabled backfillable pipeline."""
    if not names:
        return [s for s in registry.pipelines.values() if s.entry.enabled and why_not_backfillable(s) is None]
    specs = []
    for name in dict.fromkeys(names):
        spec = registry.get(name)
        reason = why_not_backfillable(spec)
        if reason:
            raise UsageError(f"Pipeline '{name}' cannot be backfilled: {reason}. "
                             f"To load a single interval anyway: ./run.sh cron_run {name} --date YYYY-MM-DD")
        specs.append(spec)
    return specs


def today_utc() -> date:
    return datetime.now(UTC).date()


def day_window(days: int | None, start: date | None, end: date | None,
               today: date | None = None, max_days: int | None = MAX_DAYS) -> tuple[date, date]:
    """First and last day (both inclusive) to backfill.

    ``days`` N means the N complete days before today (UTC): today is still being written and
    belongs to ``cron_run``. ``start``/``end`` are inclusive; a missing ``end`` means yesterday.
    """
    today = today or today_utc()
    if days is not None and (start or end):
        raise UsageError("give either DAYS or --start/--end, not both")
    if end and not start:
        raise UsageError("--end needs --start (or give DAYS: the last DAYS days before today)")
    if start:
        for option, value in (("--start", start), ("--end", end)):
            if value and value >= today:
                raise UsageError(f"{option} ({value}) must be before today ({today}, UTC): backfills load complete "
                                 "days; today's data is cron_run's")
        last = end or today - timedelta(days=1)
        if last < start:
            raise UsageError(f"--end ({last}) is before --start ({start})")
        if max_days and (last - start).days + 1 > max_days:
            raise UsageError(f"{(last - start).days + 1} days is more than {max_days}; backfill in smaller ranges")
        return start, last
    days = DEFAULT_DAYS if days is None else days
    if days < 1 or (max_days and days > max_days):
        raise UsageError(f"DAYS must be between 1 and {max_days}, got {days}" if max_days
                         else f"DAYS must be at least 1, got {days}")
    return today - timedelta(days=days), today - timedelta(days=1)


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def granularity_of(spec: PipelineSpec, hourly: bool) -> str:
    """Hours for an hourly pipeline when ``--hourly`` is given; days otherwise."""
    return "hour" if hourly and spec.entry.granularity == "hour" else "day"


def intervals_for(spec: PipelineSpec, first: date, last: date, hourly: bool = False,
                  now: datetime | None = None) -> list[Interval]:
    """The pipeline's intervals of days ``first..last`` that have ended, oldest first (none before
    its ``start_date``)."""
    now = now or datetime.now(UTC)
    if spec.entry.start_date and first < spec.entry.start_date:
        first = spec.entry.start_date
    every = split(_midnight(first), _midnight(last + timedelta(days=1)), granularity_of(spec, hourly))
    return [i for i in every if i.end <= now]


#: The hours of one day: the batch of an hourly pipeline's backfill without ``--hourly``.
DAY_OF_HOURS = 24


def batch_limit(spec: PipelineSpec, hourly: bool) -> int:
    """The most intervals one backfill run of ``spec`` takes: its ``batch_size``; for an hourly
    pipeline without ``--hourly`` at least its hours of a day (unless its extractor cannot read a
    range, e.g. a query that selects ``{start}``: then hour by hour)."""
    size = spec.entry.batch_size
    if size == 1 and spec.entry.granularity == "hour" and not hourly \
            and spec.pipeline.extractor.range_refusal is None:
        return DAY_OF_HOURS
    return size


@dataclass
class Step:
    """One interval of one pipeline and what the backfill does about it."""

    spec: PipelineSpec
    interval: Interval
    action: Literal["run", "skip"]
    why: str
    state: str = "missing"
    #: The most intervals one run of this step's pipeline takes (``runner.backfill.batches``).
    batch: int = 1

    @property
    def pipeline(self) -> str:
        return self.spec.name


def decide(coverage: Coverage, policy: Policy) -> tuple[Literal["run", "skip"], str]:
    """Apply a re-run policy to an interval's coverage: the action and why."""
    if coverage.state == "running":
        return "skip", coverage.why + "; not starting a second run"
    if policy == "all":
        return "run", ("re-run (--rerun all): " + coverage.why) if coverage.state != "missing" else "never run"
    if coverage.state == "done":
        return "skip", "done: " + coverage.why
    if policy == "failed":
        if coverage.state == "failed":
            return "run", "retry: " + coverage.why
        return "skip", f"{coverage.why}; --rerun failed retries only failed or crashed intervals"
    if coverage.state == "failed":
        return "run", "retry: " + coverage.why
    if coverage.state == "incomplete":
        return "run", "incomplete: " + coverage.why
    return "run", coverage.why


def plan(store: Store, specs: Sequence[PipelineSpec], first: date, last: date, *, policy: Policy = "default",
         hourly: bool = False, dry_run: bool = False, now: datetime | None = None) -> list[Step]:
    """Every interval of every pipeline with its action, pipeline by pipeline, oldest first.

    Hourly pipelines are planned hour by hour; without ``hourly`` their hours of a day run as one
    batch (``runner.backfill.batches``). Without ``dry_run`` runs left ``running`` by dead
    processes are first marked ``crashed`` (and their staging tables dropped), as any run does;
    with it nothing at all is written.
    """
    from runner.cleanup import reap_dead_runs

    steps = []
    for spec in specs:
        history = read_history(store, spec.name, create=not dry_run, first=first, last=last)
        if not dry_run and reap_dead_runs(store, spec.name, {spec.name: spec.pipeline.loader}):
            history = read_history(store, spec.name, create=False, first=first, last=last)
        # Intervals of the pipeline's own granularity; several of them may run as one batch.
        limit = batch_limit(spec, hourly)
        for interval in intervals_for(spec, first, last, hourly=True, now=now):
            coverage = history.coverage(interval)
            action, why = decide(coverage, policy)
            steps.append(Step(spec, interval, action, why, coverage.state, limit))
    return steps
