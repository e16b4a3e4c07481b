"""Run history in ClickHouse (``_dp_runs``): one row version per state change of a run.

The table is a ReplacingMergeTree on ``(pipeline, run_id)`` with a ``version`` column, so a run's
newest version wins; readers use ``FINAL``. A TTL (``RUN_HISTORY_TTL_DAYS``) keeps it bounded.
"""

from __future__ import annotations

import time
from typing import Any

# this_host is imported from here by the runner and others; it lives beside the aliveness test.
from core.locks import run_is_alive, this_host
from core.logging import get_logger
from core.models import RunRecord
from core.store import Store
from record.tables import RUNS_TABLE

log = get_logger("history")

_COLUMNS = list(RunRecord.model_fields) + ["version"]


def record_run(store: Store, record: RunRecord, version: int | None = None) -> None:
    """Store the current state of a run (a new version of its row; ``version``: a given one, e.g. the
    spooled record's, so that writing it again is the same row version)."""
    from record.totals import record_outcome

    version = version or time.time_ns()
    row = [getattr(record, column) for column in _COLUMNS[:-1]] + [version]
    store.insert_rows(RUNS_TABLE, [row], _COLUMNS)
    record_outcome(store, record, version)


def _select(where: str = "1", order: str = "started_at DESC", limit: int | None = None) -> str:
    columns = ", ".join(f"`{c}`" for c in RunRecord.model_fields)
    sql = f"SELECT {columns} FROM {{table}} FINAL WHERE {where} ORDER BY {order}"
    return sql + (f" LIMIT {int(limit)}" if limit else "")


def _records(store: Store, sql: str, parameters: dict[str, Any] | None = None) -> list[RunRecord]:
    return [RunRecord(**row) for row in store.query_dicts(sql.replace("{table}", store.table(RUNS_TABLE)),
                                                          parameters)]


def list_runs(store: Store, pipeline: str | None = None, status: str | None = None,
              limit: int = 20, offset: int = 0) -> list[RunRecord]:
    """Most recent runs first, optionally for one pipeline and/or one status, after skipping ``offset``."""
    clauses, params = [], {}
    if pipeline:
        clauses.append("pipeline = {p:String}")
        params["p"] = pipeline
    if status:
        clauses.append("status = {s:String}")
        params["s"] = status
    sql = _select(" AND ".join(clauses) or "1", limit=limit)
    return _records(store, sql + (f" OFFSET {int(offset)}" if offset else ""), params)


def get_run(store: Store, run_id: str) -> RunRecord | None:
    found = _records(store, _select("run_id = {r:String}"), {"r": run_id})
    return found[0] if found else None


def last_runs(store: Store) -> dict[str, RunRecord]:
    """The most recent run of each pipeline."""
    sql = _select(order="pipeline, started_at DESC") + " LIMIT 1 BY pipeline"
    return {r.pipeline: r for r in _records(store, sql)}


def last_success(store: Store) -> dict[str, RunRecord]:
    """The most recent successful run of each pipeline."""
    sql = _select("status = 'success'", order="pipeline, finished_at DESC") + " LIMIT 1 BY pipeline"
    return {r.pipeline: r for r in _records(store, sql)}


def recent_runs(store: Store, per_pipeline: int) -> list[RunRecord]:
    """The newest ``per_pipeline`` runs of every pipeline, newest first within each pipeline."""
    sql = _select(order="pipeline, started_at DESC") + f" LIMIT {int(per_pipeline)} BY pipeline"
    return _records(store, sql)


def window_runs(store: Store, pipeline: str, start: Any = None, end: Any = None,
                complete: bool = False) -> list[RunRecord]:
    """The runs of a pipeline overlapping ``[start, end)`` (all without bounds), oldest interval first.

    Without ``complete`` only those that are not complete successes (failed, crashed, running,
    incomplete): what coverage questions need besides ``_dp_coverage``.
    """
    where = "pipeline = {p:String}"
    if not complete:
        where += " AND NOT (status = 'success' AND started_at >= interval_end)"
    params: dict[str, Any] = {"p": pipeline}
    if start is not None and end is not None:
        where += " AND interval_start < {end:DateTime64(3, 'UTC')} AND interval_end > {start:DateTime64(3, 'UTC')}"
        params |= {"start": start, "end": end}
    return _records(store, _select(where, order="interval_start, started_at"), params)


def runs_overlapping(store: Store, start: Any, end: Any) -> list[RunRecord]:
    """Every run, of any pipeline, whose interval overlaps ``[start, end)`` (one query, for pages
    that show many pipelines at once)."""
    where = "interval_start < {end:DateTime64(3, 'UTC')} AND interval_end > {start:DateTime64(3, 'UTC')}"
    sql = _select(where, order="pipeline, interval_start, started_at").replace("{table}", store.table(RUNS_TABLE))
    # The rows come from our own typed table: validating 20,000 of them again took half the read.
    return [RunRecord.model_construct(**row) for row in store.query_dicts(sql, {"start": start, "end": end})]


def mark_crashed(store: Store, pipeline: str | None = None) -> list[RunRecord]:
    """Mark ``running`` runs of this host whose process is gone as ``crashed``.

    A run holds its lock file for as long as its process lives (kill -9 included), so a free
    lock (or one now held by another run) proves the run is dead. Runs of other hosts are left
    alone: their locks cannot be checked from here.
    """
    where = "status = 'running' AND host = {h:String}" + (" AND pipeline = {p:String}" if pipeline else "")
    crashed = []
    for run in _records(store, _select(where), {"h": this_host(), "p": pipeline or ""}):
        if run_is_alive(run.pid, run.lock_file):
            continue
        finished = time.time()
        update = run.model_copy(update={
            "status": "crashed", "reason": "process gone",
            "error": run.error or f"process {run.pid} ended without recording an outcome (killed or crashed)",
            "finished_at": None, "duration_seconds": max(0.0, finished - run.started_at.timestamp()),
        })
        record_run(store, update)
        log.warning("Run %s of %s was left 'running' by process %d, which is gone: marked crashed",
                    run.run_id, run.pipeline, run.pid)
        crashed.append(update)
    return crashed
