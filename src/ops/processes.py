"""The framework's own running pipeline processes: list (``ps``), stop (``kill``), tidy up (``clean``).

A run is known from its pid file ``RUN_DIR/pids/<run_id>.json`` (written by the runner). A pid
file is trusted only when the process it names is alive, was started before the run, still has
the recorded command line, and holds the run's lock file; anything else is *stale* (the run
died without cleaning up, or the pid now belongs to another program). Processes are never
found by name: only pid files verified this way are ever signalled.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from core.config import Settings
from core.locks import run_is_alive
from core.logging import get_logger
from runner.child_protocol import is_child_command

log = get_logger("ops")

TEMP_MIN_AGE = 60.0  # seconds: a younger temporary file may belong to a process writing it now


@dataclass
class RunProcess:
    """One pid file and what it says, with the verdict on the process it names."""

    path: Path
    pid: int = 0
    run_id: str = ""
    pipeline: str = ""
    interval_start: str = ""
    interval_end: str = ""
    trigger: str = ""
    started_at: datetime | None = None
    lock_file: str = ""
    cmdline: list[str] = field(default_factory=list)
    alive: bool = False
    problem: str = ""  # why it is stale
    process: psutil.Process | None = None

    @property
    def elapsed(self) -> float:
        return (datetime.now(UTC) - self.started_at).total_seconds() if self.started_at else 0.0

    @property
    def interval(self) -> str:
        if not self.interval_start:
            return ""
        start, end = (datetime.fromisoformat(v) for v in (self.interval_start, self.interval_end))
        seconds = (end - start).total_seconds()
        if seconds == 86400 and start.hour == 0:
            return f"{start:%Y-%m-%d}"
        if seconds == 3600:
            return f"{start:%Y-%m-%d %H}:00"
        return f"{start:%Y-%m-%dT%H:%M} .. {end:%Y-%m-%dT%H:%M}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline, "pid": self.pid, "run_id": self.run_id, "interval": self.interval,
            "trigger": self.trigger, "started_at": self.started_at.isoformat() if self.started_at else None,
            "elapsed_seconds": round(self.elapsed, 1), "alive": self.alive, "problem": self.problem,
            "pid_file": str(self.path),
        }


def _contains(haystack: list[str], needle: list[str]) -> bool:
    n = len(needle)
    return n > 0 and any(haystack[i:i + n] == needle for i in range(len(haystack) - n + 1))


def verify(run: RunProcess) -> RunProcess:
    """Decide whether the pid file names a live run of ours (sets ``alive``/``problem``)."""
    try:
        proc = psutil.Process(run.pid)
        cmdline = proc.cmdline()
        created = proc.create_time()
    except psutil.NoSuchProcess:
        run.problem = f"process {run.pid} is gone"
        return run
    except psutil.AccessDenied:
        run.problem = f"process {run.pid} cannot be inspected (another user's process)"
        return run
    ours = any(arg.endswith("main.py") for arg in cmdline) or is_child_command(cmdline)
    if not _contains(cmdline, run.cmdline) or not ours:
        run.problem = f"pid {run.pid} is now another program ({' '.join(cmdline)[:120]})"
    elif run.started_at and created > run.started_at.timestamp() + 1:
        run.problem = f"pid {run.pid} was reused by a process started after the run"
    elif run.lock_file and not run_is_alive(run.pid, run.lock_file):
        run.problem = f"process {run.pid} does not hold the run's lock {run.lock_file}"
    else:
        run.alive, run.process = True, proc
    return run


def read_pid_file(path: Path) -> RunProcess:
    run = RunProcess(path=path, run_id=path.stem)
    try:
        info = json.loads(path.read_text())
        run.pid = int(info["pid"])
        run.run_id = str(info.get("run_id") or path.stem)
        run.pipeline = str(info.get("pipeline", ""))
        run.interval_start = str(info.get("interval_start", ""))
        run.interval_end = str(info.get("interval_end", ""))
        run.trigger = str(info.get("trigger", ""))
        run.started_at = datetime.fromisoformat(info["started_at"]) if info.get("started_at") else None
        if run.started_at and run.started_at.tzinfo is None:
            run.started_at = run.started_at.replace(tzinfo=UTC)
        run.lock_file = str(info.get("lock_file", ""))
        run.cmdline = [str(a) for a in info.get("cmdline", [])]
    except FileNotFoundError:
        run.problem = "pid file vanished (the run just ended)"
        return run
    except (OSError, ValueError, KeyError, TypeError) as exc:
        run.problem = f"unreadable pid file ({type(exc).__name__}: {exc})"
        return run
    return verify(run)


def list_runs(settings: Settings, pipeline: str | None = None) -> list[RunProcess]:
    """Every pid file (oldest run first), verified; filtered to one pipeline when asked."""
    directory = settings.run_dir / "pids"
    runs = [read_pid_file(p) for p in sorted(directory.glob("*.json"))] if directory.is_dir() else []
    runs = [r for r in runs if r.problem != "pid file vanished (the run just ended)"]
    if pipeline:
        runs = [r for r in runs if r.pipeline == pipeline]
    return sorted(runs, key=lambda r: (r.started_at or datetime.min.replace(tzinfo=UTC), r.run_id))


# ---- kill -----------------------------------------------------------------------------------

@dataclass
class KillOutcome:
    run: RunProcess
    how: str  # "SIGTERM" (stopped and recorded itself) or "SIGKILL" (recorded by us) or "gone"


def kill_runs(settings: Settings, pipeline: str | None = None, grace: float = 10.0,
              on_signal: Any = None) -> tuple[list[KillOutcome], list[RunProcess]]:
    """SIGTERM the verified live runs (of one pipeline), SIGKILL those still alive after ``grace``.

    Returns (outcomes, stale pid files left alone). Runs stopped by SIGKILL are recorded as
    failed/killed here (they could not record it themselves); their pid files and staging tables
    are removed. The store is opened only after the processes are gone: a run stopping on
    SIGTERM needs it to record its own end.
    """
    runs = list_runs(settings, pipeline)
    live = [r for r in runs if r.alive and r.process is not None]
    stale = [r for r in runs if not r.alive]
    outcomes: dict[str, KillOutcome] = {}
    for run in live:
        try:
            run.process.terminate()  # psutil refuses if the pid was reused meanwhile
            outcomes[run.run_id] = KillOutcome(run, "SIGTERM")
            if on_signal:
                on_signal(run, "SIGTERM")
        except psutil.NoSuchProcess:
            outcomes[run.run_id] = KillOutcome(run, "gone")
    procs = [o.run.process for o in outcomes.values() if o.how == "SIGTERM"]
    still = _wait_gone(procs, grace)
    for proc in still:
        outcome = next(o for o in outcomes.values() if o.run.process is proc)
        try:
            proc.kill()
            outcome.how = "SIGKILL"
            if on_signal:
                on_signal(outcome.run, "SIGKILL")
        except psutil.NoSuchProcess:
            pass
    _wait_gone(still, 10)
    if outcomes:
        _record_killed(settings, list(outcomes.values()), grace)
    return list(outcomes.values()), stale


def _running(proc: psutil.Process) -> bool:
    # A zombie has finished (its parent just has not collected it yet).
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until the processes exit (they need not be our children); those still running."""
    deadline = time.monotonic() + timeout
    alive = [p for p in procs if _running(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in alive if _running(p)]
    return alive


def _record_killed(settings: Settings, outcomes: list[KillOutcome], grace: float) -> None:
    from core.store import Store
    from record.history import get_run, record_run
    from runner.cleanup import clean_up_dead_run, registered_loaders

    store = Store(settings)
    loader_of = registered_loaders(store)
    try:
        for outcome in outcomes:
            run = outcome.run
            run.path.unlink(missing_ok=True)
            record = get_run(store, run.run_id)
            if record is None or record.status != "running":
                continue  # the run recorded its own end (SIGTERM handled)
            error = (f"killed with SIGKILL by ./run.sh kill: still running {grace:g} s after SIGTERM"
                     if outcome.how == "SIGKILL" else "stopped by ./run.sh kill before recording its end")
            record_run(store, record.model_copy(update={
                "status": "failed", "reason": "killed", "error": error, "finished_at": datetime.now(UTC),
                "duration_seconds": max(0.0, time.time() - record.started_at.replace(tzinfo=UTC).timestamp()),
            }))
            clean_up_dead_run(store, record, loader_of(record.pipeline), why="killed")
    finally:
        store.close()


# ---- clean ----------------------------------------------------------------------------------

_ROTATED = re.compile(r"\.log\.\d+$")


@dataclass
class CleanReport:
    stale_pid_files: list[str] = field(default_factory=list)
    staging_tables: list[str] = field(default_factory=list)
    loader_leftovers: list[str] = field(default_factory=list)
    crashed_runs: list[str] = field(default_factory=list)
    temp_files: list[str] = field(default_factory=list)
    old_logs: list[str] = field(default_factory=list)
    rotated_logs: list[str] = field(default_factory=list)
    cleared_logs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[str]]:
        return {k: v for k, v in self.__dict__.items()}

    @property
    def total(self) -> int:
        return sum(len(v) for k, v in self.__dict__.items() if k != "notes")


def _older_than(path: Path, seconds: float) -> bool:
    try:
        return time.time() - path.stat().st_mtime > seconds
    except OSError:
        return False


def rotate(path: Path, backups: int, dry_run: bool = False) -> bool:
    """Rotate ``path`` like the log handlers do (``x.log`` -> ``x.log.1`` ...), keeping ``backups``.

    For logs written by shell redirection (``cron.log``): a writer that has the file open keeps
    appending to ``x.log.1`` until it exits; the next run starts a new ``x.log``.
    """
    if dry_run:
        return True
    if backups <= 0:
        path.unlink(missing_ok=True)
        return True
    for i in range(backups - 1, 0, -1):
        older = path.with_name(f"{path.name}.{i}")
        if older.exists():
            older.rename(path.with_name(f"{path.name}.{i + 1}"))
    path.rename(path.with_name(f"{path.name}.1"))
    return True


def clean(settings: Settings, days: float = 30.0, logs: bool = False, dry_run: bool = False) -> CleanReport:
    """Remove what runs leave behind; never data tables, never ``.env``.

    - pid files of runs that are not alive (verified as in ``ps``);
    - ``_dp_stage_*`` tables of runs that are not running, on every node of ``CLICKHOUSE_CLUSTER``
      (runs left 'running' by a dead process are marked crashed first); a staging table of a live
      run here, or of a 'running' run on another host, is kept;
    - what each registered pipeline's loader finds left by runs that are not running
      (``Loader.clean_up_leftovers``);
    - temporary files of interrupted writes (``RUN_DIR/pids/*.tmp``, ``.write-test-*``);
    - log files not written for ``days`` days; ``cron.log`` rotated when over ``LOG_MAX_BYTES``;
    - with ``logs``: every log file (current ones truncated, rotated ones deleted).
    """
    report = CleanReport()
    _clean_staging(settings, report, dry_run)
    for run in list_runs(settings):  # after the store work: a run may have ended meanwhile
        if not run.alive:
            report.stale_pid_files.append(f"{run.path.name} ({run.problem})")
            if not dry_run:
                run.path.unlink(missing_ok=True)
    temp = list((settings.run_dir / "pids").glob("*.tmp")) if (settings.run_dir / "pids").is_dir() else []
    for directory in (settings.run_dir, settings.log_dir, settings.data_dir):
        if directory.is_dir():
            temp.extend(directory.glob(".write-test-*"))
    for path in temp:
        if _older_than(path, TEMP_MIN_AGE):
            report.temp_files.append(str(path))
            if not dry_run:
                path.unlink(missing_ok=True)
    _clean_logs(settings, report, days, logs, dry_run)
    return report


def _clean_staging(settings: Settings, report: CleanReport, dry_run: bool) -> None:
    from core.exceptions import DataProcessorError
    from core.shards import find_run_tables
    from core.store import Store
    from record.history import list_runs as history
    from record.tables import ensure_framework_tables
    from runner.cleanup import reap_dead_runs

    store = Store(settings)
    try:
        if not store.database_exists():
            report.notes.append(f"database '{settings.database}' does not exist yet: no tables to check")
            return
        # Tables first, then who is running: the runner writes its pid file before it creates a
        # staging table, so a table listed here belongs to a run visible below (or one that ended).
        tables = find_run_tables(store)  # on every node of CLICKHOUSE_CLUSTER, whichever node this is
        ensure_framework_tables(store)
        if not dry_run:
            report.crashed_runs = [f"{r.pipeline} {r.run_id}" for r in reap_dead_runs(store)]
        running = {r.run_id for r in history(store, status="running", limit=100_000)}
        running |= {r.run_id for r in list_runs(settings) if r.alive}
        dead = tables.except_runs(running)
        report.staging_tables = dead.names()
        if not dry_run:
            dead.drop(store)
            report.loader_leftovers = _clean_loaders(settings, store, running, report)
    except DataProcessorError as exc:
        report.notes.append(f"staging tables not checked: {exc}")
    finally:
        store.close()


def _clean_loaders(settings: Settings, store: Any, running: set[str], report: CleanReport) -> list[str]:
    """Ask each registered pipeline's loader to remove what runs not in ``running`` left behind."""
    from pipelines.pipeline_registry import get_registry

    try:
        specs = get_registry(settings.pipelines_dir).pipelines
    except Exception as exc:  # noqa: BLE001 (the rest of clean still runs)
        report.notes.append(f"loaders not asked to clean up: the pipelines could not be loaded: {exc}")
        return []
    removed = []
    for name, spec in sorted(specs.items()):
        loader = spec.pipeline.loader
        try:
            removed += [f"{name}: {item}" for item in loader.clean_up_leftovers(store, frozenset(running))]
        except Exception as exc:  # noqa: BLE001 (one loader's failing hook must not stop the others)
            report.notes.append(f"pipeline '{name}': its loader {loader.name!r} could not clean up: {exc}")
    return removed


def _clean_logs(settings: Settings, report: CleanReport, days: float, clear: bool, dry_run: bool) -> None:
    root = settings.log_dir
    if not root.is_dir():
        return
    cron_log = root / "cron.log"
    files = sorted(p for p in root.rglob("*") if p.is_file() and (p.suffix == ".log" or _ROTATED.search(p.name)))
    for path in files:
        rotated = bool(_ROTATED.search(path.name))
        if clear:
            report.cleared_logs.append(str(path))
            if not dry_run:
                if rotated:
                    path.unlink(missing_ok=True)
                else:
                    path.open("w").close()  # truncate: a running process may hold it open (O_APPEND)
        elif _older_than(path, days * 86400):
            report.old_logs.append(str(path))
            if not dry_run:
                path.unlink(missing_ok=True)
    if not clear and cron_log.is_file() and cron_log.stat().st_size > settings.log_max_bytes:
        rotate(cron_log, settings.log_backup_count, dry_run)
        report.rotated_logs.append(str(cron_log))
