"""The spool: run records that could not be written to ``_dp_runs`` (the embedded store stayed busy).

A run the scheduler (or anyone) started always reaches the history. When its record cannot be
written, it is kept as one file per run in ``DATA_DIR/spool/runs/<run_id>.json`` (written to a
temporary file, fsynced, renamed; the directory 0700, the file 0600) and written on the next
store turn by :func:`replay` (``cron_run``, ``backfill``, ``runs``, ``check --alert``).

The replay is idempotent, keyed by the run id and the row version it was given when spooled: a
record already in ``_dp_runs`` is not inserted again (a ``running`` version of the same run,
written before it lost the store, is another version, and the newer spooled one supersedes it).
The file is removed only after the row was written and the caller's ``after`` hook (the alert)
ran: a process killed in between leaves the file, and the next replay finds the row there and
does not write it again.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from core.config import Settings
from core.logging import get_logger
from core.models import RunRecord
from core.store import Store
from record.history import record_run
from record.tables import RUNS_TABLE

log = get_logger("history")


def spool_dir(settings: Settings) -> Path:
    return settings.data_dir / "spool" / "runs"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def spool_run(settings: Settings, record: RunRecord) -> Path:
    """Keep ``record`` durably until :func:`replay` writes it (atomic: temp file, fsync, rename)."""
    directory = spool_dir(settings)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    directory.chmod(0o700)
    path = directory / f"{record.run_id}.json"
    tmp = directory / f".{record.run_id}.{os.getpid()}.tmp"
    data = json.dumps({"record": record.model_dump(mode="json"), "version": time.time_ns()}).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)
    _fsync_dir(directory)
    return path


def spooled(settings: Settings) -> list[Path]:
    """The spool's files, oldest run first (run ids sort by their start)."""
    directory = spool_dir(settings)
    return sorted(directory.glob("*.json")) if directory.is_dir() else []


def _written(store: Store, record: RunRecord, version: int) -> bool:
    """Is this version of the run's row in ``_dp_runs``? (Its ``running`` version, written before
    the run lost the store, is another row version: it does not count.)"""
    return bool(store.query_rows(
        f"SELECT 1 FROM {store.table(RUNS_TABLE)} WHERE pipeline = {{p:String}} AND run_id = {{r:String}} "
        "AND version = {v:UInt64} LIMIT 1", {"p": record.pipeline, "r": record.run_id, "v": version}))


def replay(store: Store, settings: Settings,
           after: Callable[[RunRecord], None] | None = None) -> list[RunRecord]:
    """Write the spooled runs that are not in ``_dp_runs`` yet, call ``after`` for each spooled run
    (written now or before a crash), then clear its file; returns the spooled runs."""
    done = []
    for path in spooled(settings):
        try:
            content = json.loads(path.read_text())
            record, version = RunRecord(**content["record"]), int(content["version"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("Spooled run %s cannot be read, left in place: %s", path, exc)
            continue
        if not _written(store, record, version):
            record_run(store, record, version=version)
            log.warning("Run %s of %s (%s, %s) written to the run history from the spool", record.run_id,
                        record.pipeline, record.status, record.reason)
        if after is not None:
            after(record)
        path.unlink(missing_ok=True)
        _fsync_dir(path.parent)
        done.append(record)
    return done
