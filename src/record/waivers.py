"""Waivers in ClickHouse (``_dp_waivers``): failed intervals a person closed without loading them.

``./run.sh waive NAME --date D --reason "..."`` records one row: the pipeline, the span waived
(``[interval_start, interval_end)``; the whole history up to the waiver for a pipeline that is not
interval-aware), who and why. A waiver closes the open failures of that span that happened before
it (see :mod:`runner.status`); a later failure of the same interval opens it again. No TTL: what a
person decided is kept like the coverage.
"""

from __future__ import annotations

import getpass
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from core.framework_layout import framework_layout
from core.models import as_utc
from core.store import Store

WAIVERS_TABLE = "_dp_waivers"
_UTC_MS = "DateTime64(3, 'UTC')"
_COLUMNS = ("pipeline", "interval_start", "interval_end", "reason", "waived_by", "waived_at", "version")


def waivers_ddl(store: Store) -> str:
    layout = framework_layout(store.settings)
    return f"""CREATE TABLE IF NOT EXISTS {store.table(WAIVERS_TABLE)}{layout.on_cluster} (
        pipeline LowCardinality(String),
        interval_start {_UTC_MS},
        interval_end {_UTC_MS},
        reason String,
        waived_by String,
        waived_at {_UTC_MS},
        version UInt64
    ) ENGINE = {layout.engine(WAIVERS_TABLE)}
    ORDER BY (pipeline, interval_start, waived_at)"""


@dataclass(frozen=True)
class Waiver:
    """A span of a pipeline's intervals a person closed, with the reason."""

    pipeline: str
    start: datetime
    end: datetime
    reason: str
    waived_by: str
    waived_at: datetime

    def covers(self, start: datetime, end: datetime, failed_at: datetime) -> bool:
        """True when this waiver closes a failure of ``[start, end)`` that happened at ``failed_at``."""
        return self.start <= start and end <= self.end and failed_at <= self.waived_at


def record_waiver(store: Store, pipeline: str, start: datetime, end: datetime, reason: str) -> Waiver:
    """Record a waiver of ``[start, end)`` of ``pipeline`` (now, by the current user)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        user = ""
    waiver = Waiver(pipeline, as_utc(start), as_utc(end), reason, user, datetime.now(UTC))
    store.insert_rows(WAIVERS_TABLE, [[pipeline, waiver.start, waiver.end, reason, user, waiver.waived_at,
                                       time.time_ns()]], _COLUMNS)
    return waiver


def read_waivers(store: Store) -> dict[str, list[Waiver]]:
    """Every waiver, by pipeline (a table a person writes to by hand: small)."""
    found: dict[str, list[Waiver]] = {}
    for p, s, e, r, by, at in store.query_rows(
            f"SELECT pipeline, interval_start, interval_end, reason, waived_by, waived_at "
            f"FROM {store.table(WAIVERS_TABLE)} ORDER BY pipeline, waived_at"):
        found.setdefault(p, []).append(Waiver(p, as_utc(s), as_utc(e), r, by, as_utc(at)))
    return found
