"""The runner: one run of one pipeline for one data interval, recorded from start to outcome.

- A kernel lock per pipeline (per pipeline and interval when the loader owns only the interval's
  slice) prevents overlapping runs; it dies with the process, kill -9 included.
- The run is recorded in ``_dp_runs`` as ``running`` before any work, then ``success`` or
  ``failed`` (with reason: error, timeout, interrupted, killed, store_lock_timeout). A run whose
  process vanished is marked ``crashed`` by the next run or ``runs`` listing.
- Transient errors are retried (exponential backoff with jitter, capped); the loader commits
  only at the end, so a retry starts from a clean slate.
- Everything is logged to ``logs/jobs/<pipeline>.log`` with the run id.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from audit.run import audit_staged
from core.config import Settings
from core.exceptions import AlreadyRunning, DataProcessorError, RunTimeout, StoreLockTimeout, is_retryable
from core.locks import FileLock
from core.logging import CONSOLE, attach_job_log, detach, get_logger, redact, run_context
from core.models import RunRecord
from core.store import Store
from pipelines.interfaces import Loader, RunContext
from pipelines.pipeline_factory import RunStats
from pipelines.pipeline_registry import PipelineSpec
from record.coverage import record_coverage
from record.history import record_run, this_host
from record.quarantine import RunQuarantine
from record.state import RunState
from record.tables import ensure_framework_tables
from runner.cleanup import reap_dead_runs
from runner.intervals import Interval, last_complete_interval
from runner.shared_locks import run_lock

EXIT_SUCCESS, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130
MAX_RETRY_DELAY = 300.0


class RunInterrupted(BaseException):  # noqa: N818  (BaseException: user code must not swallow it)
    """The run was asked to stop (SIGTERM from ``kill``, SIGINT from Ctrl-C)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class RunResult:
    run_id: str
    pipeline: str
    interval: Interval
    status: str
    reason: str = ""
    error: str = ""
    attempts: int = 1
    rows_extracted: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    duration_seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        if self.status == "success":
            return EXIT_SUCCESS
        return EXIT_INTERRUPTED if self.reason == "interrupted" else EXIT_FAILED


def new_run_id(now: datetime | None = None) -> str:
    """Sortable and unique: ``20260115T130501-3fa9c2d1``."""
    return f"{(now or datetime.now(UTC)):%Y%m%dT%H%M%S}-{os.urandom(4).hex()}"


def lock_path(settings: Settings, spec: PipelineSpec, interval: Interval) -> Path:
    """Per pipeline; per pipeline and interval when runs of different intervals cannot collide."""
    locks = settings.run_dir / "locks"
    if spec.pipeline.loader.interval_scoped:
        return locks / f"{spec.name}@{interval.start:%Y%m%dT%H%M%S}.lock"
    return locks / f"{spec.name}.lock"


def is_transient(exc: BaseException, context: RunContext, loader: Loader) -> bool:
    """Worth retrying: the error is marked transient (``core.exceptions.is_retryable``), and the
    commit had not started yet or the loader's commit is idempotent (a retry after a lost
    response to a commit that did happen must not write the rows twice)."""
    if not is_retryable(exc):
        return False
    return not context.commit_started or loader.idempotent_commit


def retry_delay(attempt: int, base: float) -> float:
    """Exponential backoff with +-20% jitter, capped at 5 minutes."""
    return min(MAX_RETRY_DELAY, base * 2 ** (attempt - 1)) * random.uniform(0.8, 1.2)


@contextmanager
def _signals(timeout: float | None) -> Iterator[None]:
    """Turn SIGTERM/SIGINT into RunInterrupted and an elapsed timeout into RunTimeout."""

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise RunInterrupted("killed")

    def on_int(signum: int, frame: FrameType | None) -> None:
        raise RunInterrupted("interrupted")

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        raise RunTimeout(f"the run exceeded its timeout of {timeout:g} s")

    import threading

    if threading.current_thread() is not threading.main_thread():
        yield  # signals can only be handled in the main thread
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM)}
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_int)
    if timeout:
        signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _error_text(exc: BaseException, settings: Settings) -> str:
    text = f"{type(exc).__name__}: {exc}" if not isinstance(exc, RunTimeout) else str(exc)
    return redact(text, settings)[:4000]


def _discard_quietly(quarantined: RunQuarantine, log: Any) -> None:
    """Drop a failed run's staged quarantine rows (nothing after a commit); never raises."""
    try:
        quarantined.discard()
    except Exception as exc:  # noqa: BLE001 (the run's outcome matters more; clean drops leftovers)
        log.warning("Could not drop the run's staged quarantine rows: %s", exc)


class _PidFile:
    """``RUN_DIR/pids/<run_id>.json`` while the run lives (``ps`` and ``kill`` read these)."""

    def __init__(self, settings: Settings, record: RunRecord) -> None:
        self.path = settings.run_dir / "pids" / f"{record.run_id}.json"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        info = {
            "pid": os.getpid(), "run_id": record.run_id, "pipeline": record.pipeline,
            "interval_start": record.interval_start.isoformat(), "interval_end": record.interval_end.isoformat(),
            "trigger": record.trigger, "started_at": record.started_at.isoformat(), "lock_file": record.lock_file,
            "cmdline": sys.argv,
        }
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(info))
        tmp.rename(self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def bootstrap_store(store: Store, settings: Settings) -> None:
    """A store that was never migrated (a fresh clone, a new server database) gets its database
    and the project's migrations before its first run, so the first ``cron_run`` just works.
    A store that has been migrated once is never migrated implicitly again."""
    from core.migrations import MIGRATIONS_TABLE, Migrator

    if store.database_exists() and store.table_exists(MIGRATIONS_TABLE):
        return
    if store.create_database():
        get_logger("runner").info("Created database '%s' in %s", store.database, store.description)
    result = Migrator(settings, store).migrate()
    if result.applied:
        get_logger("runner").info("New store: applied %d migration(s): %s", len(result.applied),
                                  ", ".join(a.file for a in result.applied))


def run_pipeline(spec: PipelineSpec, settings: Settings, store: Store, interval: Interval | None = None,
                 trigger: str = "manual") -> RunResult:
    """Run ``spec`` for ``interval`` (default: the last complete interval of its granularity)."""
    entry = spec.entry
    interval = interval or last_complete_interval(entry.granularity)
    lock = FileLock(lock_path(settings, spec, interval))
    run_id = new_run_id()
    if not lock.try_acquire(f"run_id={run_id} pipeline={spec.name} interval={interval.label}"):
        raise AlreadyRunning(f"Pipeline '{spec.name}' is already running for {interval.label} "
                             f"({lock.holder()}); not starting a second run")
    job_log = attach_job_log(settings, spec.name)
    log = get_logger(f"job.{spec.name}")
    try:
        with run_context(spec.name, run_id):
            try:
                # On a server, the same exclusion across hosts (each has its own RUN_DIR); deciding
                # whether the store is a server may wait for the embedded store, hence inside.
                with run_lock(store, lock.path.stem, f"Pipeline '{spec.name}' for {interval.label}", entry.timeout):
                    result = _run_locked(spec, settings, store, interval, trigger, run_id, lock, log)
            except StoreLockTimeout as exc:
                result = _record_lock_timeout(spec, store, interval, trigger, run_id, lock, log, exc)
    finally:
        detach(job_log)
        lock.release()
    from ops.alerts.dispatch import notify_run

    notify_run(spec, settings, store, result, trigger)  # after the run; releases the store before sending
    return result


def _record_lock_timeout(spec: PipelineSpec, store: Store, interval: Interval, trigger: str, run_id: str,
                         lock: FileLock, log: Any, exc: StoreLockTimeout) -> RunResult:
    """The run gave up waiting for the embedded store: record it as failed when the store frees
    up within another STORE_LOCK_TIMEOUT (otherwise say that it could not be recorded)."""
    log.error("Run %s gave up waiting for the embedded store: %s; recording it as failed", run_id, exc)
    now = datetime.now(UTC)
    record = RunRecord(
        run_id=run_id, pipeline=spec.name, interval_start=interval.start, interval_end=interval.end,
        trigger=trigger, status="failed", reason="store_lock_timeout", error=str(exc)[:4000], started_at=now,
        finished_at=now, host=this_host(), pid=os.getpid(), lock_file=str(lock.path),
    )
    try:
        ensure_framework_tables(store)
        record_run(store, record)
    except StoreLockTimeout:
        log.error("Run %s could not be recorded in the run history: the store is still busy", run_id)
    return RunResult(run_id=run_id, pipeline=spec.name, interval=interval, status="failed",
                     reason="store_lock_timeout", error=record.error)


def _run_locked(spec: PipelineSpec, settings: Settings, store: Store, interval: Interval, trigger: str,
                run_id: str, lock: FileLock, log: Any) -> RunResult:
    entry = spec.entry
    bootstrap_store(store, settings)
    ensure_framework_tables(store)
    reap_dead_runs(store, spec.name, {spec.name: spec.pipeline.loader})
    # The recorded duration is the run's own work: it starts once the store is open and set up
    # (opening the embedded store costs 0.2-0.3 s, more on a loaded machine), like started_at.
    started = time.monotonic()
    record = RunRecord(
        run_id=run_id, pipeline=spec.name, interval_start=interval.start, interval_end=interval.end,
        trigger=trigger, status="running", started_at=datetime.now(UTC), host=this_host(), pid=os.getpid(),
        lock_file=str(lock.path),
    )
    record_run(store, record)
    pid_file = _PidFile(settings, record)
    log.info("Run %s started: pipeline %s, interval %s, trigger %s", run_id, spec.name, interval, trigger)
    state = RunState(store, spec.name)
    # Rejected rows replace the interval's earlier ones only when the pipeline owns its interval.
    owns_interval = spec.pipeline.extractor.interval_aware or spec.pipeline.loader.interval_scoped
    quarantined = RunQuarantine(store, spec.name, run_id, interval.start, interval.end, owns_interval)
    stats = RunStats()
    context: RunContext | None = None
    outcome: dict[str, Any] = {"status": "failed", "reason": "error", "error": ""}
    failure: Any = None
    attempt = 0
    try:
        with _signals(entry.timeout):
            while True:
                attempt += 1
                context = RunContext(
                    run_id=run_id, pipeline=spec.name, start=interval.start, end=interval.end, logger=log,
                    settings=settings, store=store, state=state, trigger=trigger, attempt=attempt,
                    table_name=spec.table_name, quarantined=quarantined, checks=spec.entry.checks or [],
                    auditor=audit_staged, allow_empty=entry.allow_empty,
                )
                try:
                    stats = spec.pipeline.run(context)
                    state.commit(run_id)
                    quarantined.commit()
                    outcome = {"status": "success", "reason": "", "error": ""}
                    break
                except Exception as exc:
                    state.discard()
                    quarantined.discard()
                    if is_transient(exc, context, spec.pipeline.loader) and attempt <= entry.retries:
                        delay = retry_delay(attempt, entry.retry_delay)
                        log.warning("Attempt %d of %d failed with a transient error (%s); retrying in %.1f s",
                                    attempt, entry.retries + 1, _error_text(exc, settings), delay)
                        record_run(store, record.model_copy(update={"attempt": attempt + 1}))
                        time.sleep(delay)
                        continue
                    raise
    except RunTimeout as exc:
        log.error("Run %s stopped: %s", run_id, exc)
        outcome = {"status": "failed", "reason": "timeout", "error": str(exc)}
    except RunInterrupted as exc:
        log.error("Run %s stopped: %s", run_id, "killed (SIGTERM)" if exc.reason == "killed" else "interrupted")
        outcome = {"status": "failed", "reason": exc.reason, "error": f"run {exc.reason}"}
    except Exception as exc:
        # An expected error (bad input, a refused load) needs no traceback; a bug does. The error is
        # logged once, below (the job log gets the traceback, the console only with --debug).
        expected = isinstance(exc, DataProcessorError) and settings.log_level != "DEBUG"
        failure = None if expected else (type(exc), exc, exc.__traceback__)
        reason = "store_lock_timeout" if isinstance(exc, StoreLockTimeout) else "error"
        outcome = {"status": "failed", "reason": reason, "error": _error_text(exc, settings)}
    finally:
        pid_file.remove()
        _discard_quietly(quarantined, log)
    counters = context.counters if context else {}
    duration = time.monotonic() - started
    final = record.model_copy(update={
        **outcome, "attempt": max(attempt, 1), "finished_at": datetime.now(UTC), "duration_seconds": duration,
        "rows_extracted": stats.rows_extracted if outcome["status"] == "success" else counters.get("rows_extracted", 0),
        "rows_loaded": stats.rows_loaded if outcome["status"] == "success" else 0,
        "rows_quarantined": counters.get("rows_quarantined", 0),
    })
    record_run(store, final)
    if spec.pipeline.interval_aware:
        record_coverage(store, final)  # a complete success: its interval is done, for good
    if final.status == "success":
        log.info("Run %s succeeded in %.2f s: %d rows extracted, %d transformed, %d loaded in %d batches%s",
                 run_id, duration, stats.rows_extracted, stats.rows_transformed, stats.rows_loaded, stats.batches,
                 f", {final.rows_quarantined} quarantined" if final.rows_quarantined else "")
    else:
        # The job log gets the error and its traceback; the console shows the caller's one-line
        # summary instead (cron_run, backfill), so the error is printed once (see core.logging).
        log.error("Run %s %s after %.2f s (%s): %s", run_id, final.status, duration, final.reason, final.error,
                  exc_info=failure, extra={CONSOLE: False})
    return RunResult(
        run_id=run_id, pipeline=spec.name, interval=interval, status=final.status, reason=final.reason,
        error=final.error, attempts=final.attempt, rows_extracted=final.rows_extracted,
        rows_loaded=final.rows_loaded, rows_quarantined=final.rows_quarantined, duration_seconds=duration,
    )
