"""Downstream runs (``depends_on``) after upstream runs, in the process that holds the store.

When upstream runs succeed (a run, a scheduled fire, a backfill), :func:`run_downstream` runs
the downstream pipelines' ready intervals after the upstream released its locks, in dependency
order, one run per interval in this process on its open store (never a new process per
interval: process and engine start-up cost more than a small SQL run). Several upstream
intervals touching one downstream interval give one run of it (coalesced); a downstream that is
not interval-aware (it recomputes everything) runs once, for its newest interval. Which intervals
are candidates and which are ready is decided in :mod:`runner.dependencies`.

On the embedded store a long cascade hands the store to a waiting process between two runs, as
a backfill does (:mod:`runner.turns`): it runs here only until the store first changes hands; the
rest runs in a worker process (``python -m runner.child``, kind ``cascade``, given where the
cascade stands: :class:`runner.child_protocol.Cascade`) that exits at the next hand-over and
hands what is left to a new worker. One worker at a time runs the cascade, never a process per
interval; this process relays their lines and holds no engine meanwhile, so it stays flat however
often the store changes hands. Each run publishes its interval as any run does, so a cascade
killed half-way leaves every finished interval done and the rest missing (a worker whose parent
is gone stops after its running interval: its next line to the parent fails).
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from core.exceptions import DataProcessorError
from core.intervals import Interval
from core.logging import get_logger
from core.models import EXIT_INTERRUPTED
from runner.child_protocol import Cascade
from runner.dependencies import Succeeded, all_downstream, candidates, readiness
from runner.turns import hand_over_now

if TYPE_CHECKING:
    from core.config import Settings
    from core.models import RunRecord
    from core.store import Store
    from pipelines.pipeline_registry import PipelineSpec, Registry
    from runner.runner import RunFinished

log = get_logger("cascade")


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
    ran anyway (a backfill's own steps) and are not run again. From the first hand-over of the
    embedded store on, the rest runs in worker processes (see the module doc).
    """
    touched: dict[str, list[Interval]] = {}
    for run in succeeded:
        touched.setdefault(run.pipeline, []).append(run.interval)
    state = Cascade(tuple(all_downstream(registry, touched)), now or datetime.now(UTC), touched, set(already))
    if not settings.is_embedded:
        run_cascade(state, settings, store, registry, out, lambda: False)
        return state.failures()
    since, opens = time.monotonic(), store.engine_opens + 1  # (its first run may open the engine)
    if not run_cascade(state, settings, store, registry, out,
                       lambda: hand_over_now(since, store, store.engine_opens, opens)):
        store.close()  # this process holds no engine from now on: the workers take turns with the waiters
        state = _continue_in_workers(state, out)
    return state.failures()


def run_cascade(state: Cascade, settings: Settings, store: Store, registry: Registry, out: Outlet,
                hand_over: Callable[[], bool]) -> bool:
    """Run what is left of the cascade ``state`` (updated as it goes). Before each run but this
    process's first, ``hand_over()`` may stop it: returns False then (the rest is still to run),
    True when the cascade is over (or was stopped by a signal: ``state.stopped``)."""
    ran = False
    for name in state.order:
        spec = registry.pipelines.get(name)
        if spec is None or not spec.entry.enabled:
            continue
        todo = [i for i in candidates(registry, spec, state.touched, state.now) if (name, i) not in state.decided]
        unready = readiness(store, registry, spec, todo)
        for interval in todo:
            broken_up = [u for u in spec.entry.depends_on
                         if any(i.start < interval.end and i.end > interval.start for i in state.failed.get(u, []))]
            reasons = [f"upstream '{u}' failed" for u in broken_up] or unready(interval)
            if reasons:
                out.say(f"downstream {name} {interval.label}: not ready, not run ({'; '.join(reasons)})")
                state.decided.add((name, interval))
                continue
            if ran and hand_over():
                return False
            ran = True
            state.decided.add((name, interval))
            out.say(f"downstream {name} {interval.label}: running (trigger upstream)")
            code, result = run_one(spec, settings, store, interval, "upstream", out)
            if code == 0:
                state.touched.setdefault(name, []).append(interval)
            else:
                state.failed.setdefault(name, []).append(interval)
                out.say(f"downstream {name} {interval.label}: failed (exit {code}); see ./run.sh runs {name}")
            if _stopped(code, result):
                state.stopped = True
                return True
    return True


def _continue_in_workers(state: Cascade, out: Outlet) -> Cascade:
    """The rest of the cascade in worker processes, one after the other, each until it hands the
    store over; their lines reach ``out`` as if the runs were ours. Returns where it ended."""
    from runner.child_protocol import ChildRequest, start_child

    while True:
        worker = start_child(ChildRequest("cascade", "upstream", cascade=state), stdout=subprocess.PIPE)
        try:
            left = _relay(worker, out)
        except BaseException as exc:
            _stop(worker, interrupted=isinstance(exc, KeyboardInterrupt))
            raise
        if left is None:
            out.warn(f"error: the cascade's worker process (pid {worker.pid}) exited with code {worker.returncode} "
                     "before it finished; the rest of the cascade did not run")
            return state
        state, finished = left
        if finished:
            return state


def _relay(worker: subprocess.Popen[str], out: Outlet) -> tuple[Cascade, bool] | None:
    """Pass a worker's lines on to ``out`` until it exits; where the cascade stands then (None:
    the worker died without saying)."""
    from core.models import RunRecord

    assert worker.stdout is not None
    left = None
    for line in worker.stdout:
        message = json.loads(line)
        if "say" in message:
            out.say(message["say"])
        elif "warn" in message:
            out.warn(message["warn"])
        elif "report" in message:
            out.report(RunRecord.model_validate(message["report"]))
        elif "cascade" in message:
            left = Cascade.from_dict(message["cascade"]), message.get("finished") is True
    worker.wait()
    return left


def _stop(worker: subprocess.Popen[str], interrupted: bool, grace: float = 2.0) -> None:
    """This process is stopping (Ctrl-C, an error): the worker finishes its run as interrupted.
    Ctrl-C on a terminal reaches it directly (same process group): it gets ``grace`` seconds first."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        worker.wait(grace if interrupted else 0)
        return
    worker.send_signal(signal.SIGINT if interrupted else signal.SIGTERM)
    worker.wait()


def serve_cascade(state: Cascade, settings: Settings, registry: Registry, store: Store,
                  on_finish: RunFinished | None) -> int:
    """A cascade worker (``python -m runner.child``, kind ``cascade``): run the rest of ``state``
    until it is over or the store is to change hands, telling the parent each line, then where it
    stands; exit (which gives the store and chdb's threads back). The exit code."""
    from runner.child_protocol import answer_stream

    answers = answer_stream()

    def send(**message: object) -> None:
        answers.write(json.dumps(message) + "\n")

    def report(result: RunRecord) -> int:
        send(report=result.model_dump(mode="json"))
        return int(result.exit_code)

    out = Outlet(say=lambda line: send(say=line), warn=lambda line: send(warn=line), report=report,
                 on_finish=on_finish)
    started = time.monotonic()
    try:
        finished = run_cascade(state, settings, store, registry, out,
                               lambda: hand_over_now(started, store, store.engine_opens, 1))
        send(cascade=state.to_dict(), finished=finished)
    except BrokenPipeError:  # the parent is gone (killed): nothing more starts
        log.warning("The process that started this cascade is gone: the rest of the cascade does not run")
        return 1
    finally:
        store.close()
        with contextlib.suppress(OSError):
            answers.close()
    return 0
