"""Quarantine: input rows set aside with the reason, instead of failing the run.

A run's rejected rows are staged in the run's own table (``_dp_stage__dp_quarantine_<run>``) and
published only when the run commits, together with its state: a failed or retried attempt
stores nothing, and an interval that is re-run replaces what its earlier runs set aside (when
the pipeline owns its interval; otherwise a run's rows are added).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from core.run_tables import run_table_name
from core.store import Store
from record.tables import QUARANTINE_TABLE

_COLUMNS = ["pipeline", "run_id", "source", "line", "raw", "error", "interval_start", "interval_end"]


class RunQuarantine:
    """The rows one run rejected (see the module doc)."""

    def __init__(self, store: Store, pipeline: str, run_id: str, start: datetime, end: datetime,
                 replace_interval: bool = True) -> None:
        self.store, self.pipeline, self.run_id = store, pipeline, run_id
        self.start, self.end = start, end
        self.replace_interval = replace_interval
        # A run-private table: leftovers of a crashed run are dropped by the reaper and ``clean``.
        self.staging = run_table_name(QUARANTINE_TABLE, run_id)
        self.rows = 0

    def add(self, rows: list[dict[str, Any]]) -> None:
        """Stage rejected rows (keys: source, line, raw, error)."""
        if not rows:
            return
        if self.rows == 0:
            # A plain engine of its own: AS a replicated _dp_quarantine (a cluster) it would share the
            # quarantine's replication path (Code 253 REPLICA_ALREADY_EXISTS).
            self.store.command(f"CREATE TABLE IF NOT EXISTS {self.store.table(self.staging)} "
                               f"AS {self.store.table(QUARANTINE_TABLE)} "
                               "ENGINE = MergeTree ORDER BY (pipeline, run_id)")
        values = [
            [self.pipeline, self.run_id, str(r.get("source", "")),
             None if r.get("line") is None else int(r["line"]), str(r.get("raw", "")), str(r.get("error", "")),
             self.start, self.end]
            for r in rows
        ]
        self.store.insert_rows(self.staging, values, _COLUMNS)
        self.rows += len(rows)

    def commit(self) -> None:
        """Publish the staged rows; for an owned interval, replacing the interval's earlier ones."""
        store, table = self.store, self.store.table(QUARANTINE_TABLE)
        where = "pipeline = {p:String} AND interval_start = {s:DateTime64(3)} AND interval_end = {e:DateTime64(3)}"
        bounds = {"p": self.pipeline, "s": _ms(self.start), "e": _ms(self.end)}
        earlier = self.replace_interval and self._pipeline_has_rows()
        if earlier and store.command(f"SELECT count() FROM {table} WHERE {where}", bounds):
            store.command(f"DELETE FROM {table} WHERE {where}", bounds)
        if self.rows:
            store.memo.forget(("quarantined", self.pipeline))
            store.command(f"INSERT INTO {table} SELECT * FROM {store.table(self.staging)}")
        self.discard()

    def _pipeline_has_rows(self) -> bool:
        """Whether the pipeline has quarantined rows at all: asked once while the embedded engine stays
        open (``core.store_memo``), not per interval, as most pipelines never quarantine a row."""
        table = self.store.table(QUARANTINE_TABLE)
        return self.store.memo.get(("quarantined", self.pipeline), lambda: bool(self.store.command(
            f"SELECT count() > 0 FROM {table} WHERE pipeline = {{p:String}}", {"p": self.pipeline})))

    def discard(self) -> None:
        """Forget the staged rows (a failed attempt)."""
        if self.rows:
            self.store.command(f"DROP TABLE IF EXISTS {self.store.table(self.staging)} SYNC")
        self.rows = 0


def _ms(moment: datetime) -> str:
    from datetime import UTC

    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
