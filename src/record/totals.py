"""Run outcomes kept for good (``_dp_run_totals``): what ``/metrics`` counts runs and durations from.

``_dp_runs`` expires after ``RUN_HISTORY_TTL_DAYS``, so counting its rows makes a "counter" that
goes down. This table keeps one small row per finished run (pipeline, run id, final status,
duration, rows), written by :func:`record.history.record_run` with the run's own row version, so
writing a record again (the spool) is the same row, and it has no TTL: the totals never shrink.
When the table is new it is filled once from the kept history. Reading it is one ``GROUP BY``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.framework_layout import framework_layout
from core.models import RunRecord
from core.store import Store

TOTALS_TABLE = "_dp_run_totals"
FINAL_STATUSES = ("success", "failed", "crashed")
# Upper bounds (seconds) of the run duration histogram's buckets; +Inf is the count.
DURATION_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 10800.0)
_COLUMNS = ("pipeline", "run_id", "status", "duration_seconds", "rows_loaded", "version")


def totals_ddl(store: Store) -> str:
    # ReplacingMergeTree on the run id: a run that was marked crashed and later recorded its real
    # outcome (the spool) counts once, as its newest status.
    layout = framework_layout(store.settings)
    return f"""CREATE TABLE IF NOT EXISTS {store.table(TOTALS_TABLE)}{layout.on_cluster} (
        pipeline LowCardinality(String),
        run_id String,
        status LowCardinality(String),
        duration_seconds Float64,
        rows_loaded UInt64,
        version UInt64
    ) ENGINE = {layout.engine(TOTALS_TABLE, "ReplacingMergeTree", "version")}
    ORDER BY (pipeline, run_id)"""


def fill_from_history(store: Store, runs_table: str) -> None:
    """Copy every finished run still in the run history (done once, when the table is new)."""
    statuses = ", ".join(f"'{s}'" for s in FINAL_STATUSES)
    store.command(
        f"INSERT INTO {store.table(TOTALS_TABLE)} ({', '.join(_COLUMNS)}) "
        f"SELECT pipeline, run_id, status, duration_seconds, rows_loaded, version FROM {store.table(runs_table)} "
        f"FINAL WHERE status IN ({statuses})",
        settings={"async_insert": 0})


def record_outcome(store: Store, record: RunRecord, version: int) -> None:
    """Count ``record`` when it is a run's final state (other states are not counted)."""
    if record.status not in FINAL_STATUSES:
        return
    store.insert_rows(TOTALS_TABLE, [[record.pipeline, record.run_id, record.status, float(record.duration_seconds),
                                      int(record.rows_loaded), version]], list(_COLUMNS))


@dataclass
class Totals:
    """One pipeline's finished runs ever recorded: per status, and the duration histogram of all."""

    runs: dict[str, int] = field(default_factory=dict)
    rows_loaded: int = 0
    duration_sum: float = 0.0
    duration_buckets: list[int] = field(default_factory=lambda: [0] * len(DURATION_BUCKETS))

    @property
    def count(self) -> int:
        return sum(self.runs.values())


def read_totals(store: Store) -> dict[str, Totals]:
    """Per pipeline, its totals; empty while the table does not exist (a store not set up since)."""
    if not store.table_exists(TOTALS_TABLE):
        return {}
    buckets = ", ".join(f"countIf(duration_seconds <= {b})" for b in DURATION_BUCKETS)
    rows: list[Any] = store.query_rows(
        f"SELECT pipeline, status, count(), sum(rows_loaded), sum(duration_seconds), {buckets} "
        f"FROM {store.table(TOTALS_TABLE)} FINAL GROUP BY pipeline, status")
    found: dict[str, Totals] = {}
    for pipeline, status, runs, loaded, seconds, *counts in rows:
        totals = found.setdefault(str(pipeline), Totals())
        totals.runs[str(status)] = int(runs)
        totals.rows_loaded += int(loaded) if status == "success" else 0  # what stayed loaded
        totals.duration_sum += float(seconds)
        totals.duration_buckets = [a + int(b) for a, b in zip(totals.duration_buckets, counts, strict=True)]
    return found
