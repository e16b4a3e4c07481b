"""Backfills: run pipelines over past intervals, oldest first, resumably and idempotently.

A backfill is a plan and its execution:

- **Planning** (:func:`plan`) lists, per pipeline, the intervals of the requested days and decides
  for each whether to run or skip it, and why, from the coverage (``_dp_coverage``) and the run
  history (``_dp_runs``) of those days (:mod:`runner.coverage`). An interval is *done* when
  complete successful runs cover it, so re-running the same command resumes where it stopped.
  Planning writes nothing (``--dry-run`` prints the plan and stops there).
- **Executing** (:func:`execute`) runs each planned interval as its own run (trigger
  ``backfill``) through :func:`runner.runner.run_pipeline`: locks, retries, run history and job
  log exactly as ``cron_run``. Sequentially they run in this process on one open store (the
  cheap way on the embedded engine); with ``parallel > 1`` each interval runs in a new process
  (never a fork: chdb hangs in forked children), at most ``parallel`` at a time (the CLI asks for
  that on a ClickHouse server only: on the embedded store workers would just take turns).

Only pipelines whose runs own their interval's slice (``Pipeline.interval_aware``: an
interval-aware extractor and the ClickHouse loader in ``interval`` mode) can be backfilled: for
them re-running an interval replaces exactly that interval, so a backfill can never duplicate.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from types import FrameType
from typing import TYPE_CHECKING, Any, Literal

from core.exceptions import AlreadyRunning, UsageError
from core.logging import get_logger
from runner.coverage import Coverage, History, read_history  # noqa: F401  (History: part of the API)
from runner.intervals import Interval, split

if TYPE_CHECKING:  # pydantic-backed modules: imported where used, so `help` stays fast
    from core.config import Settings
    from core.models import RunRecord
    from core.store import Store
    from pipelines.pipeline_registry import PipelineSpec, Registry

log = get_logger("backfill")

Policy = Literal["default", "failed", "all"]
POLICIES: tuple[str, ...] = ("default", "failed", "all")
DEFAULT_DAYS = 7
MAX_DAYS = 3660
# A sequential backfill on the embedded store hands it to waiting processes (cron runs) this
# often, so a long backfill delays them by seconds instead of starving them for its whole length.
SHARE_STORE_EVERY = 5.0
_SHARE_PAUSE = 0.15  # > the 0.05 s poll of a waiting FileLock


# ---- which pipelines, which intervals --------------------------------------------------------

def why_not_backfillable(spec: PipelineSpec) -> str | None:
    """``None`` when ``spec`` can be backfilled, else the reason (written for the user)."""
    pipeline = spec.pipeline
    loader = pipeline.loader
    if not loader.interval_scoped:
        mode = loader.mode
        how = f"its loader writes in mode '{mode}'" if mode else f"its loader ({type(loader).__name__}) is not interval-scoped"
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


# ---- the plan -------------------------------------------------------------------------------

@dataclass
class Step:
    """One interval of one pipeline and what the backfill does about it."""

    spec: PipelineSpec
    interval: Interval
    action: Literal["run", "skip"]
    why: str
    state: str = "missing"

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

    Without ``dry_run`` runs left ``running`` by dead processes are first marked ``crashed`` (and
    their staging tables dropped), as any run does; with it nothing at all is written.
    """
    from runner.runner import reap_dead_runs

    steps = []
    for spec in specs:
        history = read_history(store, spec.name, create=not dry_run, first=first, last=last)
        if not dry_run and reap_dead_runs(store, spec.name):
            history = read_history(store, spec.name, create=False, first=first, last=last)
        for interval in intervals_for(spec, first, last, hourly, now):
            coverage = history.coverage(interval)
            action, why = decide(coverage, policy)
            steps.append(Step(spec, interval, action, why, coverage.state))
    return steps


# ---- execution ------------------------------------------------------------------------------

@dataclass
class Outcome:
    """How a step ended: ``success``, ``failed``, ``crashed`` or ``busy`` (another process runs it)."""

    status: str
    reason: str = ""
    error: str = ""
    run_id: str = ""
    rows_loaded: int = 0
    duration_seconds: float = 0.0

    @classmethod
    def from_result(cls, result: Any) -> Outcome:
        return cls(status=result.status, reason=result.reason, error=result.error, run_id=result.run_id,
                   rows_loaded=result.rows_loaded, duration_seconds=result.duration_seconds)


@dataclass
class PipelineTally:
    planned: int = 0
    done: int = 0
    skipped: int = 0
    failed: list[tuple[Step, Outcome]] = field(default_factory=list)
    busy: list[Step] = field(default_factory=list)
    not_run: int = 0
    rows: int = 0


@dataclass
class Report:
    """What a backfill did, per pipeline, and why it stopped early (if it did)."""

    tallies: dict[str, PipelineTally] = field(default_factory=dict)
    stopped: Literal["", "failure", "interrupted", "killed"] = ""
    seconds: float = 0.0

    def tally(self, step: Step) -> PipelineTally:
        return self.tallies.setdefault(step.pipeline, PipelineTally())

    @property
    def failed(self) -> int:
        return sum(len(t.failed) for t in self.tallies.values())

    @property
    def busy(self) -> int:
        return sum(len(t.busy) for t in self.tallies.values())

    @property
    def ran(self) -> int:
        return sum(t.done + len(t.failed) for t in self.tallies.values())

    @property
    def exit_code(self) -> int:
        if self.stopped == "interrupted":
            return 130
        if self.failed or self.stopped:
            return 1
        return 75 if self.busy else 0


class Listener:
    """Receives progress events (the CLI draws a progress bar or prints lines)."""

    def started(self, total: int) -> None: ...

    def running(self, steps: Sequence[Step]) -> None: ...

    def finished(self, step: Step, outcome: Outcome) -> None: ...


class _StopRequest:
    """SIGINT/SIGTERM between runs: finish cleanly instead of dying mid-report.

    During a run the runner's own handlers apply (the run is recorded as failed: interrupted or
    killed); here the first signal only asks the loop to stop, a second Ctrl-C aborts at once.
    """

    def __init__(self) -> None:
        self.reason: Literal["", "interrupted", "killed"] = ""

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and self.reason:
            raise KeyboardInterrupt
        self.reason = "interrupted" if signum == signal.SIGINT else "killed"

    @contextmanager
    def installed(self) -> Iterator[_StopRequest]:
        import threading

        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        for sig in previous:
            signal.signal(sig, self)
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


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
    stop = _StopRequest()
    with stop.installed():
        if parallel > 1 and len(todo) > 1:
            left = _run_parallel(todo, settings, store, parallel, continue_on_error, listener, report, stop)
        else:
            left = _run_sequential(todo, settings, store, continue_on_error, listener, report, stop)
    for step in left:
        report.tally(step).not_run += 1
    report.seconds = time.monotonic() - started
    return report


def _record(report: Report, step: Step, outcome: Outcome, continue_on_error: bool) -> None:
    tally = report.tally(step)
    if outcome.status == "success":
        tally.done += 1
        tally.rows += outcome.rows_loaded
    elif outcome.status == "busy":
        tally.busy.append(step)
    else:
        tally.failed.append((step, outcome))
        if outcome.reason in ("interrupted", "killed"):
            report.stopped = report.stopped or outcome.reason  # type: ignore[assignment]
        elif not continue_on_error:
            report.stopped = report.stopped or "failure"


def _run_sequential(todo: Sequence[Step], settings: Settings, store: Store, continue_on_error: bool,
                    listener: Listener, report: Report, stop: _StopRequest) -> list[Step]:
    from runner.runner import run_pipeline

    held_since = time.monotonic()
    for index, step in enumerate(todo):
        if stop.reason:
            report.stopped = report.stopped or stop.reason
        if report.stopped:
            return list(todo[index:])
        listener.running([step])
        try:
            outcome = Outcome.from_result(run_pipeline(step.spec, settings, store, step.interval, trigger="backfill"))
        except AlreadyRunning as exc:
            outcome = Outcome("busy", "already running", str(exc))
        _record(report, step, outcome, continue_on_error)
        listener.finished(step, outcome)
        if settings.is_embedded and time.monotonic() - held_since > SHARE_STORE_EVERY:
            # Let processes waiting for the embedded store (cron runs) have a turn.
            store.close()
            time.sleep(_SHARE_PAUSE)
            held_since = time.monotonic()
    if stop.reason:
        report.stopped = report.stopped or stop.reason
    return []


RESULT_KEY = "dp_backfill_result"


def worker_command() -> list[str]:
    """A new process (never a fork) that runs the intervals it reads on stdin: ``backfill_worker``."""
    from core.config import PROJECT_ROOT

    return [sys.executable, str(PROJECT_ROOT / "src" / "main.py"), "backfill_worker"]


class _Worker:
    """One worker process of a parallel backfill: one interval at a time, over a line protocol.

    The parent writes ``{"pipeline", "start", "end"}`` lines to its stdin; it answers each with a
    ``{"dp_backfill_result": {...}}`` line. EOF on stdin ends it. A worker keeps its Python and
    ClickHouse start-up (~1.5 s) across intervals, which per-interval processes would pay each time.
    """

    def __init__(self, env: dict[str, str]) -> None:
        from core.config import PROJECT_ROOT

        self.stderr = tempfile.TemporaryFile("w+", encoding="utf-8")
        self.process = subprocess.Popen(worker_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self.stderr, text=True, bufsize=1, env=env, cwd=PROJECT_ROOT)
        self.step: Step | None = None
        self.started = 0.0
        self.signalled = False

    def send(self, step: Step) -> None:
        assert self.process.stdin is not None
        self.step, self.started, self.signalled = step, time.monotonic(), False
        self.process.stdin.write(json.dumps({"pipeline": step.pipeline, "start": step.interval.start.isoformat(),
                                             "end": step.interval.end.isoformat()}) + "\n")
        self.process.stdin.flush()

    def read(self) -> Outcome | None:
        """The outcome of the current step once its line arrived (call when stdout is readable)."""
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:  # the process is gone
            self.process.wait()
            return self._died()
        try:
            data = json.loads(line)[RESULT_KEY]
        except (ValueError, KeyError, TypeError):
            return None  # not ours (the worker sends user code's stdout to stderr; be safe anyway)
        return Outcome(**{k: data[k] for k in Outcome.__dataclass_fields__ if k in data})

    def _died(self) -> Outcome:
        self.stderr.seek(0)
        lines = self.stderr.read().strip().splitlines()
        message = next((x.removeprefix("error: ") for x in reversed(lines) if x.startswith("error: ")), "")
        tail = message or " | ".join(lines[-3:])
        return Outcome("crashed", "process gone",
                       f"the backfill worker (pid {self.process.pid}) exited with code {self.process.returncode}"
                       + (f": {tail}" if tail else "")[:2000], duration_seconds=time.monotonic() - self.started)

    def close(self) -> None:
        if self.process.stdin and not self.process.stdin.closed:
            try:
                self.process.stdin.close()
            except OSError:
                pass
        self.process.wait()
        self.stderr.close()


def _run_parallel(todo: Sequence[Step], settings: Settings, store: Store, parallel: int, continue_on_error: bool,
                  listener: Listener, report: Report, stop: _StopRequest) -> list[Step]:
    import selectors

    from core.config import PROJECT_ROOT

    # Release our hold on the embedded store: the workers need it.
    store.close()
    pending = list(todo)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT / "src"), env.get("PYTHONPATH")]))
    workers = [_Worker(env) for _ in range(min(parallel, len(todo)))]
    selector = selectors.DefaultSelector()
    for worker in workers:
        selector.register(worker.process.stdout, selectors.EVENT_READ, worker)  # type: ignore[arg-type]
    stop_at: float | None = None
    try:
        while True:
            if stop.reason:
                report.stopped = report.stopped or stop.reason
            for worker in workers:
                if worker.step is None and pending and not report.stopped and worker.process.poll() is None:
                    worker.send(pending.pop(0))
            busy = [w for w in workers if w.step is not None]
            if not busy:
                break
            listener.running([w.step for w in busy if w.step])
            if report.stopped:
                stop_at = stop_at or time.monotonic()
                _stop_workers(busy, report.stopped, time.monotonic() - stop_at)
            for key, _ in selector.select(timeout=0.2):
                worker = key.data
                outcome = worker.read()
                if outcome is None or worker.step is None:
                    continue
                step, worker.step = worker.step, None
                _record(report, step, outcome, continue_on_error)
                listener.finished(step, outcome)
                if outcome.reason == "process gone":
                    selector.unregister(key.fileobj)
                    worker.close()
                    workers.remove(worker)
                    if pending and not report.stopped:  # replace it
                        workers.append(replacement := _Worker(env))
                        selector.register(replacement.process.stdout, selectors.EVENT_READ, replacement)  # type: ignore[arg-type]
    except BaseException:
        _stop_workers([w for w in workers if w.step], "interrupted", waited=float("inf"))
        raise
    finally:
        for worker in workers:
            worker.close()
        selector.close()
    return pending


def _stop_workers(busy: Sequence[_Worker], reason: str, waited: float, grace: float = 2.0) -> None:
    """Ask busy workers to stop their run (recorded as interrupted or killed).

    Ctrl-C on a terminal reaches the workers directly (same process group), so after an
    interrupt the parent signals only workers still busy ``grace`` seconds later; after a
    failure running intervals finish and no new ones start; on SIGTERM (``kill`` of the parent
    reaches only the parent) SIGTERM is passed on at once.
    """
    if reason not in ("interrupted", "killed"):
        return
    if reason == "interrupted" and waited < grace:
        return
    for worker in busy:
        if worker.signalled or worker.process.poll() is not None:
            continue
        worker.process.send_signal(signal.SIGINT if reason == "interrupted" else signal.SIGTERM)
        worker.signalled = True


def serve_worker(settings: Settings, registry: Registry, store: Store) -> int:
    """The ``backfill_worker`` loop: run each interval read from stdin, answer on stdout."""
    from runner.runner import run_pipeline

    # Our answers go to the real stdout; anything user code prints goes to stderr instead.
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1, encoding="utf-8")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    # Idle, a Ctrl-C meant for the parent must not kill us (during a run the runner handles it).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            task = json.loads(line)
            interval = Interval(datetime.fromisoformat(task["start"]), datetime.fromisoformat(task["end"]))
            try:
                result = Outcome.from_result(run_pipeline(registry.get(task["pipeline"]), settings, store, interval,
                                                          trigger="backfill"))
            except AlreadyRunning as exc:
                result = Outcome("busy", "already running", str(exc))
            except Exception as exc:  # the run could not even start: report it, stay available
                result = Outcome("failed", "error", f"{type(exc).__name__}: {exc}")
            answers.write(json.dumps({RESULT_KEY: result.__dict__}) + "\n")
    finally:
        store.close()
        answers.close()
    return 0


# ---- counts (backfill_counts) -------------------------------------------------------------

def table_counts(store: Store, table: str, time_column: str | None, first: date,
                 last: date) -> tuple[int | None, dict[date, int]]:
    """Total rows of ``table`` (None when it does not exist) and rows per UTC day of ``time_column``."""
    from core.validators import quote_identifier

    if not store.database_exists() or not store.table_exists(table):
        return None, {}
    total = int(store.command(f"SELECT count() FROM {store.table(table)}"))
    if not time_column:
        return total, {}
    kind = store.command("SELECT type FROM system.columns WHERE database = {db:String} AND table = {t:String} "
                         "AND name = {c:String}", {"db": store.database, "t": table, "c": time_column})
    column = quote_identifier(time_column)
    day = column if str(kind).removeprefix("Nullable(").startswith("Date") and "DateTime" not in str(kind) \
        else f"toDate({column}, 'UTC')"
    rows = store.query_rows(
        f"SELECT {day} AS d, count() FROM {store.table(table)} WHERE d >= {{first:Date}} AND d <= {{last:Date}} "
        "GROUP BY d ORDER BY d", {"first": first, "last": last})
    return total, {d: int(n) for d, n in rows}


def days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]

