"""Check results in ClickHouse (``_dp_checks``): one row per check per run, kept like run history."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from core.framework_layout import framework_layout
from core.store import Store

CHECKS_TABLE = "_dp_checks"
_COLUMNS = ["run_id", "pipeline", "interval_start", "interval_end", "check_name", "kind", "severity", "status",
            "failing", "sample", "detail", "duration_seconds", "kept_table", "checked_at"]


@dataclass
class CheckResult:
    """One check's verdict on one run: ``status`` is ``pass``, ``fail`` or ``error`` (the check
    itself could not run)."""

    run_id: str
    pipeline: str
    interval_start: datetime
    interval_end: datetime
    check_name: str
    kind: str
    severity: str
    status: str
    failing: int
    sample: list[dict[str, Any]]
    detail: str
    duration_seconds: float
    kept_table: str
    checked_at: datetime

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("interval_start", "interval_end", "checked_at"):
            data[key] = data[key].isoformat()
        return data


def ensure_checks_table(store: Store) -> None:
    """Create ``_dp_checks`` when missing (once per Store instance)."""
    ttl = store.settings.run_history_ttl_days
    if getattr(store, "_dp_checks_table", None) == (store.database, ttl):
        return
    store.command(checks_ddl(store))
    store._dp_checks_table = (store.database, ttl)  # type: ignore[attr-defined]


def checks_ddl(store: Store) -> str:
    """``CREATE`` of ``_dp_checks`` in the store's layout (:mod:`core.framework_layout`)."""
    layout, ttl = framework_layout(store.settings), store.settings.run_history_ttl_days
    return f"""CREATE TABLE IF NOT EXISTS {store.table(CHECKS_TABLE)}{layout.on_cluster} (
        run_id String,
        pipeline LowCardinality(String),
        interval_start DateTime64(3, 'UTC'),
        interval_end DateTime64(3, 'UTC'),
        check_name String,
        kind LowCardinality(String),
        severity LowCardinality(String),
        status LowCardinality(String),
        failing UInt64,
        sample String,
        detail String,
        duration_seconds Float64,
        kept_table String,
        checked_at DateTime64(3, 'UTC')
    ) ENGINE = {layout.engine(CHECKS_TABLE)}
    PARTITION BY toYYYYMM(checked_at)
    ORDER BY (pipeline, checked_at, run_id)
    TTL toDateTime(checked_at) + INTERVAL {int(ttl)} DAY"""


def write_results(store: Store, results: list[CheckResult]) -> None:
    if not results:
        return
    ensure_checks_table(store)
    for pipeline in {r.pipeline for r in results if r.kept_table}:
        store.memo.forget(("kept tables", pipeline))  # see kept_tables_of
    rows = [[json.dumps(r.sample, default=str) if key == "sample" else getattr(r, key) for key in _COLUMNS]
            for r in results]
    store.insert_rows(CHECKS_TABLE, rows, _COLUMNS)


def _read(store: Store, where: str, params: dict[str, Any], limit: int) -> list[CheckResult]:
    ensure_checks_table(store)
    columns = ", ".join(f"`{c}`" for c in _COLUMNS)
    found = store.query_dicts(f"SELECT {columns} FROM {store.table(CHECKS_TABLE)} WHERE {where} "
                              "ORDER BY checked_at DESC, check_name LIMIT {limit:UInt32}", {**params, "limit": limit})
    for row in found:
        row["sample"] = json.loads(row["sample"] or "[]")
    return [CheckResult(**row) for row in found]


def read_results(store: Store, pipeline: str | None = None, failed: bool = False,
                 limit: int = 50) -> list[CheckResult]:
    """Newest results first, optionally of one pipeline, optionally only those that did not pass."""
    where = ("pipeline = {p:String}" if pipeline else "1") + (" AND status != 'pass'" if failed else "")
    return _read(store, where, {"p": pipeline or ""}, limit)


def results_of_runs(store: Store, run_ids: list[str]) -> dict[str, list[CheckResult]]:
    """Results by run id (for the ``runs`` summary)."""
    if not run_ids:
        return {}
    by_run: dict[str, list[CheckResult]] = {}
    for result in _read(store, "run_id IN {ids:Array(String)}", {"ids": run_ids}, 100_000):
        by_run.setdefault(result.run_id, []).append(result)
    return by_run


def summary(results: list[CheckResult]) -> str:
    """``3 passed, 1 warn failed`` or ``not_null(id) failed (error)``, for one run's results."""
    if not results:
        return ""
    failed = [r for r in results if r.status != "pass"]
    if not failed:
        return f"{len(results)} passed"
    parts = [f"{r.check_name} {'failed' if r.status == 'fail' else 'errored'} ({r.severity})" for r in failed]
    passed = len(results) - len(failed)
    return ", ".join(parts) + (f"; {passed} passed" if passed else "")


def latest_by_pipeline(store: Store) -> dict[str, list[CheckResult]]:
    """The results of each pipeline's most recently checked run."""
    ensure_checks_table(store)
    table = store.table(CHECKS_TABLE)
    runs = [run_id for (run_id,) in store.query_rows(
        f"SELECT argMax(run_id, checked_at) FROM {table} GROUP BY pipeline")]
    return {results[0].pipeline: results for results in results_of_runs(store, runs).values()}


def kept_tables_of(store: Store, pipeline: str, interval_start: datetime) -> list[str]:
    """Staged tables kept by failed runs of this pipeline and interval (dropped by its next run)."""
    ensure_checks_table(store)
    table = store.table(CHECKS_TABLE)
    # Whether the pipeline has kept tables at all is asked once while the embedded engine stays open
    # (``core.store_memo``; write_results forgets it), not per interval.
    if not store.memo.get(("kept tables", pipeline), lambda: bool(store.command(
            f"SELECT count() > 0 FROM {table} WHERE pipeline = {{p:String}} AND kept_table != ''", {"p": pipeline}))):
        return []
    return [name for (name,) in store.query_rows(
        f"SELECT DISTINCT kept_table FROM {table} WHERE pipeline = {{p:String}} "
        "AND interval_start = {s:DateTime64(3, 'UTC')} AND kept_table != ''",
        {"p": pipeline, "s": interval_start})]
