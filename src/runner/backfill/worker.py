"""Parallel backfills: worker processes and the line protocol between them and the parent.

With ``parallel > 1`` each interval runs in a worker process (a ``worker`` child of
:mod:`runner.child_protocol`; never a fork: chdb hangs in forked children), at most ``parallel``
at a time (the CLI asks for that on a ClickHouse server only: on the embedded store workers would
just take turns). After the child's request, the parent writes ``{"pipeline", "intervals":
[[start, end], ...]}`` lines to a worker's stdin (one run: one interval, or a batch of contiguous
ones, :mod:`runner.backfill.batches`); the worker answers each with a ``{"dp_backfill_results":
[<run record per interval>], "engine_opens": n}`` line (``n``: how often it opened the embedded
engine). EOF on stdin ends it.
A worker keeps its Python and ClickHouse start-up (~1.5 s) across intervals, which per-interval
processes would pay each time.

On the embedded store a worker is also how a sequential backfill hands the store over without
growing (:mod:`runner.backfill.execution`): after an interval, a worker that has held the store
for ``STORE_SHARE_EVERY`` seconds (:mod:`runner.turns`) while a process waits for it, or that
reopened its engine (:func:`runner.turns.hand_over_now`), is ended (its exit gives back the store
and every thread chdb kept) and a new one spawned.
"""

from __future__ import annotations

import contextlib
import json
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from core.intervals import Interval
from runner.backfill.batches import group, run_group
from runner.backfill.planning import Step
from runner.backfill.reports import Listener, Report, not_run
from runner.backfill.stopping import StopRequest
from runner.turns import hand_over_now

if TYPE_CHECKING:
    from core.config import Settings
    from core.models import RunRecord
    from core.store import Store
    from pipelines.pipeline_registry import Registry

RESULT_KEY = "dp_backfill_results"

# Sibling workers wait for the embedded store while one holds it: each hands it over 0.1 s after
# a burst of statements (e.g. while extracting) instead of the default 0.5 s.
WORKER_STORE_LINGER = 0.1


class _Worker:
    """One worker process of a parallel backfill: one run (an interval or a batch) at a time (see the module doc)."""

    def __init__(self) -> None:
        from runner.child_protocol import ChildRequest, start_child

        self.stderr = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 (closed in close())
        self.process = start_child(ChildRequest("worker", "backfill"), stdout=subprocess.PIPE, stderr=self.stderr)
        self.steps: list[Step] | None = None
        self.started = 0.0
        self.signalled = False
        self.since: float | None = None  # when it was sent its first interval
        self.engine_opens = 0

    def send(self, steps: list[Step]) -> None:
        assert self.process.stdin is not None
        self.steps, self.started, self.signalled = steps, time.monotonic(), False
        self.since = self.since or self.started
        intervals = [[s.interval.start.isoformat(), s.interval.end.isoformat()] for s in steps]
        self.process.stdin.write(json.dumps({"pipeline": steps[0].pipeline, "intervals": intervals}) + "\n")
        self.process.stdin.flush()

    def read(self) -> list[RunRecord] | None:
        """The outcomes of the current steps once their line arrived (call when stdout is readable)."""
        from core.models import RunRecord

        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:  # the process is gone
            self.process.wait()
            return self._died()
        try:
            answer = json.loads(line)
            self.engine_opens = int(answer.get("engine_opens", 0))
            return [RunRecord.model_validate(r) for r in answer[RESULT_KEY]]
        except (ValueError, KeyError, TypeError):  # (pydantic's ValidationError is a ValueError)
            return None  # not ours (the worker sends user code's stdout to stderr; be safe anyway)

    def _died(self) -> list[RunRecord] | None:
        if self.steps is None:
            return None
        self.stderr.seek(0)
        lines = self.stderr.read().strip().splitlines()
        message = next((x.removeprefix("error: ") for x in reversed(lines) if x.startswith("error: ")), "")
        tail = message or " | ".join(lines[-3:])
        error = (f"the backfill worker (pid {self.process.pid}) exited with code {self.process.returncode}"
                 + (f": {tail}" if tail else "")[:2000])
        return [not_run(s.pipeline, s.interval, "crashed", "process gone", error,
                        duration_seconds=time.monotonic() - self.started) for s in self.steps]

    def close(self) -> None:
        if self.process.stdin and not self.process.stdin.closed:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        self.process.wait()
        self.stderr.close()


class _Pool:
    """The worker processes of one parallel backfill and the selector watching their answers."""

    def __init__(self, size: int) -> None:
        self.selector: selectors.BaseSelector = selectors.DefaultSelector()
        self.workers: list[_Worker] = []
        for _ in range(size):
            self.add()

    def add(self) -> None:
        self.workers.append(worker := _Worker())
        self.selector.register(worker.process.stdout, selectors.EVENT_READ, worker)  # type: ignore[arg-type]

    def feed(self, pending: list[list[Step]]) -> None:
        """Give each idle live worker the next pending run."""
        for worker in self.workers:
            if worker.steps is None and pending and worker.process.poll() is None:
                worker.send(pending.pop(0))

    def busy(self) -> list[_Worker]:
        return [w for w in self.workers if w.steps is not None]

    def answers(self) -> Iterator[tuple[_Worker, list[Step], list[RunRecord]]]:
        """Each answer that arrived within 0.2 s: the worker (idle again), its steps and their outcomes."""
        for key, _ in self.selector.select(timeout=0.2):
            worker = key.data
            outcomes = worker.read()
            if outcomes is None or worker.steps is None or len(outcomes) != len(worker.steps):
                continue
            steps, worker.steps = worker.steps, None
            yield worker, steps, outcomes

    def drop(self, worker: _Worker) -> None:
        self.selector.unregister(worker.process.stdout)  # type: ignore[arg-type]
        worker.close()
        self.workers.remove(worker)

    def close(self) -> None:
        for worker in self.workers:
            worker.close()
        self.selector.close()


def run_parallel(todo: Sequence[Step], settings: Settings, store: Store, parallel: int, continue_on_error: bool,
                 listener: Listener, report: Report, stop: StopRequest) -> list[Step]:
    """Run ``todo`` on up to ``parallel`` workers; returns the steps that were not started."""
    store.close()  # release our hold on the embedded store: the workers need it
    pending = group(todo)
    pool = _Pool(min(parallel, len(pending)))
    stop_at: float | None = None
    try:
        while True:
            if stop.reason:
                report.stopped = report.stopped or stop.reason
            if not report.stopped:
                pool.feed(pending)
            busy = pool.busy()
            if not busy:
                break
            listener.running([s for w in busy for s in w.steps or []])
            if report.stopped:
                stop_at = stop_at or time.monotonic()
                _stop_workers(busy, report.stopped, time.monotonic() - stop_at)
            for worker, steps, outcomes in pool.answers():
                for step, outcome in zip(steps, outcomes, strict=True):
                    report.add(step, outcome, continue_on_error)
                    listener.finished(step, outcome)
                if outcomes[0].reason == "process gone":
                    pool.drop(worker)
                    if pending and not report.stopped:  # replace it
                        pool.add()
                elif settings.is_embedded and pending and not report.stopped and _hand_over(worker, store):
                    pool.add()  # first: its imports overlap the old worker's exit and the waiter's turn
                    pool.drop(worker)
    except BaseException:
        _stop_workers(pool.busy(), "interrupted", waited=float("inf"))
        raise
    finally:
        pool.close()
    return [s for g in pending for s in g]


def _hand_over(worker: _Worker, store: Store) -> bool:
    """True when ``worker`` is to end so the embedded store changes hands (see the module doc)."""
    return hand_over_now(worker.since or time.monotonic(), store, worker.engine_opens, allowed_opens=1)


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
    """A backfill worker's loop: run each interval read from stdin, answer on stdout."""
    from runner.child_protocol import answer_stream

    answers = answer_stream()
    # Idle, a Ctrl-C meant for the parent must not kill us (during a run the runner handles it).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            task = json.loads(line)
            intervals = [Interval(datetime.fromisoformat(s), datetime.fromisoformat(e)) for s, e in task["intervals"]]
            results = _run_task(settings, registry, store, task["pipeline"], intervals)
            answers.write(json.dumps({RESULT_KEY: [r.model_dump(mode="json") for r in results],
                                      "engine_opens": store.engine_opens}) + "\n")
    finally:
        store.close()
        answers.close()
    return 0


def _run_task(settings: Settings, registry: Registry, store: Store, pipeline: str,
              intervals: list[Interval]) -> list[RunRecord]:
    try:
        spec = registry.get(pipeline)
        return run_group([Step(spec, i, "run", "") for i in intervals], settings, store)
    except Exception as exc:  # the run could not even start: report it, stay available
        return [not_run(pipeline, i, "failed", "error", f"{type(exc).__name__}: {exc}") for i in intervals]
