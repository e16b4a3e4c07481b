"""Recent row counts of a pipeline, the baseline of relative ``row_count`` bounds.

Interval mode reads the coverage (``_dp_coverage``: complete successes only, kept as long as the
data); other modes read the run history (``_dp_runs``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from record.coverage import COVERAGE_TABLE
from record.tables import RUNS_TABLE

if TYPE_CHECKING:
    from audit.staged import Audit


def recent_row_counts(audit: Audit, limit: int) -> list[int]:
    """Rows loaded by the last ``limit`` complete intervals before this run's (interval mode: the
    newest successful run of each), or by the last ``limit`` successful runs (other modes)."""
    store, context = audit.store, audit.context
    params = {"p": context.pipeline, "s": audit.params["start"], "n": limit}
    if audit.staged.mode == "interval":
        sql = (f"SELECT rows_loaded FROM {store.table(COVERAGE_TABLE)} FINAL "
               "WHERE pipeline = {p:String} AND interval_start < {s:DateTime64(6, 'UTC')} "
               "ORDER BY interval_start DESC LIMIT {n:UInt32}")
    else:
        sql = (f"SELECT rows_loaded FROM {store.table(RUNS_TABLE)} FINAL WHERE pipeline = {{p:String}} "
               "AND status = 'success' ORDER BY started_at DESC LIMIT {n:UInt32}")
    return [int(n) for (n,) in store.query_rows(sql, params)]
