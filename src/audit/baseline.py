"""Recent row counts of a pipeline, the baseline of relative ``row_count`` bounds.

Read from the run history (``_dp_runs``) through this one function, so it can later read a
coverage table instead without the checks noticing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from record.tables import RUNS_TABLE

if TYPE_CHECKING:
    from audit.staged import Audit


def recent_row_counts(audit: Audit, limit: int) -> list[int]:
    """Rows loaded by the last ``limit`` complete intervals before this run's (interval mode: the
    newest successful run of each), or by the last ``limit`` successful runs (other modes)."""
    store, context = audit.store, audit.context
    table = store.table(RUNS_TABLE)
    params = {"p": context.pipeline, "s": audit.params["start"], "n": limit}
    if audit.staged.mode == "interval":
        sql = (f"SELECT argMax(rows_loaded, started_at) FROM {table} FINAL "
               "WHERE pipeline = {p:String} AND status = 'success' AND interval_start < {s:DateTime64(6, 'UTC')} "
               "GROUP BY interval_start ORDER BY interval_start DESC LIMIT {n:UInt32}")
    else:
        sql = (f"SELECT rows_loaded FROM {table} FINAL WHERE pipeline = {{p:String}} AND status = 'success' "
               "ORDER BY started_at DESC LIMIT {n:UInt32}")
    return [int(n) for (n,) in store.query_rows(sql, params)]
