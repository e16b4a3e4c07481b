"""The runner: one run of one pipeline for one data interval, recorded from start to outcome.

- A kernel lock per pipeline (per pipeline and interval when the loader owns only the interval's
  slice) prevents overlapping runs; it dies with the process, kill -9 included.
- The run is recorded in ``_dp_runs`` as ``running`` before any work, then ``success`` or
  ``failed`` (with reason: error, check_failed, timeout, interrupted, killed, store_lock_timeout:
  ``runner.status.failure_kind`` reads it). A run whose
  process vanished is marked ``crashed`` by the next run or ``runs`` listing.
- Transient errors are retried (exponential backoff with jitter, capped); the loader commits
  only at the end, so a retry starts from a clean slate.
- Everything is logged to ``logs/jobs/<pipeline>.log`` with the run id.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from audit.run import AUDITOR
from core.config import Settings
from core.exceptions import AlreadyRunning, CheckFailed, DataProcessorError, RunTimeout, StoreLockTimeout, is_retryable
from core.intervals import Interval, last_complete_interval
from core.locks import FileLock
from core.logging import CONSOLE, attach_job_log, detach, get_logger, redact, run_context
from core.models import RunRecord
from core.retry import Backoff
from core.shared_locks import run_lock
from core.store import Store
from pipelines.interfaces import Loader, RunContext
from pipelines.pipeline_registry import PipelineSpec
from pipelines.run_counts import RunCounts
from record.coverage import record_coverage
from record.history import record_run, this_host
from record.quarantine import RunQuarantine
from record.spool import spool_run
from record.state import RunState
from record.tables import ensure_framework_tables
from runner.cleanup import reap_dead_runs

MAX_RETRY_DELAY = 300.0

#: Called with the run's final record once its locks are released (``ops`` passes its alerts):
#: the runner itself never imports a higher layer.
RunFinished = Callable[[PipelineSpec, Settings, Store, RunRecord], None]


class RunInterrupted(BaseException):  # noqa: N818  (BaseException: user code must not swallow it)
    """The run was asked to stop (SIGTERM from ``kill``, SIGINT from Ctrl-C)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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


def new_context(store: Store, run_id: str, pipeline: str, start: datetime, end: datetime, *, logger: Any,
                state: RunState | None = None, quarantined: RunQuarantine | None = None, trigger: str = "manual",
                attempt: int = 1, table_name: str | None = None, checks: list[Any] | None = None,
                allow_empty: bool = False) -> RunContext:
    """A run's context, wired as every run's is: the store's settings, the pipeline's state, the run's
    quarantine (both made here unless given, as a run shares them across its attempts) and the data-check
    runner (``audit.run.AUDITOR``). Tests that call components directly build theirs with it too."""
    return RunContext(
        run_id=run_id, pipeline=pipeline, start=start, end=end, logger=logger, settings=store.settings,
        store=store, state=state if state is not None else RunState(store, pipeline), trigger=trigger,
        attempt=attempt, table_name=table_name,
        quarantined=quarantined if quarantined is not None else RunQuarantine(store, pipeline, run_id, start, end),
        checks=checks or [], auditor=AUDITOR, allow_empty=allow_empty,
    )


def run_pipeline(spec: PipelineSpec, settings: Settings, store: Store, interval: Interval | None = None,
                 trigger: str = "manual", on_finish: RunFinished | None = None,
                 batch: Sequence[Interval] = ()) -> RunRecord:
    """Run ``spec`` for ``interval`` (default: the last complete interval of its granularity) and
    return its final run record; ``on_finish`` gets it after the locks are released.

    ``batch``: several contiguous intervals run as this one run (``interval`` is then their span):
    one run id and run record for the span, coverage per interval (``runner.batches``)."""
    entry = spec.entry
    batch = list(batch) if len(batch) > 1 else []
    interval = Interval(batch[0].start, batch[-1].end) if batch else interval or last_complete_interval(
        entry.granularity)
    lock = FileLock(lock_path(settings, spec, interval))
    run_id = new_run_id()
    if not lock.try_acquire(f"run_id={run_id} pipeline={spec.name} interval={interval.label}"):
        raise AlreadyRunning(f"Pipeline '{spec.name}' is already running for {interval.label} "
                             f"({lock.holder()}); not starting a second run")
    job_log = attach_job_log(settings, spec.name)
    log = get_logger(f"job.{spec.name}")
    recorded = True
    try:
        with run_context(spec.name, run_id):
            try:
                # On a server, the same exclusion across hosts (each has its own RUN_DIR); deciding
                # whether the store is a server may wait for the embedded store, hence inside. The
                # framework's tables first: a cluster refuses a layout it cannot share before any lock.
                ensure_framework_tables(store)
                with run_lock(store, lock.path.stem, f"Pipeline '{spec.name}' for {interval.label}", entry.timeout):
                    result = _run_locked(spec, settings, store, interval, trigger, run_id, lock, log, batch)
            except StoreLockTimeout as exc:
                result, recorded = _record_lock_timeout(spec, settings, store, interval, trigger, run_id, lock,
                                                        log, exc)
    finally:
        detach(job_log)
        lock.release()
    if on_finish is not None and recorded:  # a spooled run gets its on_finish (alerts) when it is written
        on_finish(spec, settings, store, result)
    return result


def _record_lock_timeout(spec: PipelineSpec, settings: Settings, store: Store, interval: Interval, trigger: str,
                         run_id: str, lock: FileLock, log: Any, exc: StoreLockTimeout) -> tuple[RunRecord, bool]:
    """The run gave up waiting for the embedded store: record it as failed when the store frees
    up within another STORE_LOCK_TIMEOUT, else keep it in the spool (``record.spool``), written by
    the next command that takes the store. Returns the record and whether it is in the history."""
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
        return record, True
    except StoreLockTimeout:
        pass
    try:
        path = spool_run(settings, record)
    except OSError as error:
        log.error("Run %s could not be recorded: the store is still busy and the spool cannot be written (%s)",
                  run_id, error)
        return record, False
    log.error("Run %s could not be recorded yet (the store is still busy): kept in %s; the next command that "
              "takes the store writes it to the run history and sends its alert", run_id, path)
    return record, False


def _run_locked(spec: PipelineSpec, settings: Settings, store: Store, interval: Interval, trigger: str,
                run_id: str, lock: FileLock, log: Any, batch: list[Interval]) -> RunRecord:
    bootstrap_store(store, settings)
    ensure_framework_tables(store)
    # Once while this process holds the embedded engine: no other process can start a run meanwhile.
    if store.memo.first(("reaped", spec.name)):
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
    attempts = _Attempts(spec, settings, store, record, state, quarantined, log, batch)
    try:
        outcome, failure = attempts.outcome()
    finally:
        pid_file.remove()
        _discard_quietly(quarantined, log)
    final = _final_record(record, outcome, attempts, time.monotonic() - started)
    record_run(store, final)
    if spec.pipeline.interval_aware:  # a complete success: its interval(s) done, for good
        record_coverage(store, final, batch, attempts.context.rows_by_interval if attempts.context else {})
    _log_outcome(final, attempts.counts, failure, log)
    return final


class _Attempts:
    """A run's attempts, each with a fresh context; a transient error is retried ``retries`` times
    (the loader commits only at the end, so a retry starts from a clean slate)."""

    def __init__(self, spec: PipelineSpec, settings: Settings, store: Store, record: RunRecord, state: RunState,
                 quarantined: RunQuarantine, log: Any, batch: list[Interval]) -> None:
        self.spec, self.settings, self.store, self.record, self.log = spec, settings, store, record, log
        self.batch = batch
        self.state, self.quarantined = state, quarantined
        self.attempt = 0
        self.counts = RunCounts()  # the last attempt's
        self.context: RunContext | None = None  # the last attempt's

    def outcome(self) -> tuple[dict[str, str], Any]:
        """Run to success or a final error: the outcome's fields, and the exc_info to log for a bug."""
        run_id = self.record.run_id
        try:
            with _signals(self.spec.entry.timeout):
                self._until_done()
            return {"status": "success", "reason": "", "error": ""}, None
        except RunTimeout as exc:
            self.log.error("Run %s stopped: %s", run_id, exc)
            return {"status": "failed", "reason": "timeout", "error": str(exc)}, None
        except RunInterrupted as exc:
            self.log.error("Run %s stopped: %s", run_id,
                           "killed (SIGTERM)" if exc.reason == "killed" else "interrupted")
            return {"status": "failed", "reason": exc.reason, "error": f"run {exc.reason}"}, None
        except Exception as exc:
            # An expected error (bad input, a refused load) needs no traceback; a bug does. The error is
            # logged once, by the caller (the job log gets the traceback, the console only with --debug).
            expected = isinstance(exc, DataProcessorError) and self.settings.log_level != "DEBUG"
            reason = ("store_lock_timeout" if isinstance(exc, StoreLockTimeout)
                      else "check_failed" if isinstance(exc, CheckFailed) else "error")
            return ({"status": "failed", "reason": reason, "error": _error_text(exc, self.settings)},
                    None if expected else (type(exc), exc, exc.__traceback__))

    def _until_done(self) -> None:
        """Attempts until one succeeds, the error is not transient, or ``retries`` are spent; between
        attempts the one retry policy's delay (``core.retry.Backoff``: ``retry_delay`` doubling,
        +-20%, capped at 5 minutes)."""
        entry = self.spec.entry
        Retrying(stop=stop_after_attempt(entry.retries + 1), wait=Backoff(entry.retry_delay, MAX_RETRY_DELAY),
                 retry=retry_if_exception(self._transient), before_sleep=self._before_retry, reraise=True,
                 sleep=time.sleep)(self._attempt)

    def _attempt(self) -> None:
        """One attempt with a fresh context; its state and quarantined rows are kept only on success."""
        entry, record = self.spec.entry, self.record
        self.attempt += 1
        self.context = context = new_context(
            self.store, record.run_id, self.spec.name, record.interval_start, record.interval_end,
            logger=self.log, state=self.state, quarantined=self.quarantined, trigger=record.trigger,
            attempt=self.attempt, table_name=self.spec.table_name, checks=entry.checks or [],
            allow_empty=entry.allow_empty,
        )
        context.intervals = list(self.batch)
        self.counts = context.counters
        try:
            self.spec.pipeline.run(context)
        except Exception:
            self.state.discard()
            self.quarantined.discard()
            raise
        self.state.commit(record.run_id)
        self.quarantined.commit()

    def _transient(self, exc: BaseException) -> bool:
        return self.context is not None and is_transient(exc, self.context, self.spec.pipeline.loader)

    def _before_retry(self, retry_state: RetryCallState) -> None:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        delay = retry_state.next_action.sleep if retry_state.next_action else 0.0
        self.log.warning("Attempt %d of %d failed with a transient error (%s); retrying in %.1f s",
                         self.attempt, self.spec.entry.retries + 1, _error_text(exc, self.settings), delay)
        record_run(self.store, self.record.model_copy(update={"attempt": self.attempt + 1}))


def _final_record(record: RunRecord, outcome: dict[str, str], attempts: _Attempts, duration: float) -> RunRecord:
    """The run's last version: its outcome and counts (a failed run loaded nothing)."""
    counts = attempts.counts
    return record.model_copy(update={
        **outcome, "attempt": max(attempts.attempt, 1), "finished_at": datetime.now(UTC),
        "duration_seconds": duration, "rows_extracted": counts.rows_extracted,
        "rows_loaded": counts.rows_loaded if outcome["status"] == "success" else 0,
        "rows_quarantined": counts.rows_quarantined,
    })


def _log_outcome(final: RunRecord, counts: RunCounts, failure: Any, log: Any) -> None:
    if final.status == "success":
        log.info("Run %s succeeded in %.2f s: %d rows extracted, %d transformed, %d loaded in %d batches%s",
                 final.run_id, final.duration_seconds, counts.rows_extracted, counts.rows_transformed,
                 counts.rows_loaded, counts.batches,
                 f", {final.rows_quarantined} quarantined" if final.rows_quarantined else "")
    else:
        # The job log gets the error and its traceback; the console shows the caller's one-line
        # summary instead (cron_run, backfill), so the error is printed once (see core.logging).
        log.error("Run %s %s after %.2f s (%s): %s", final.run_id, final.status, final.duration_seconds,
                  final.reason, final.error, exc_info=failure, extra={CONSOLE: False})
