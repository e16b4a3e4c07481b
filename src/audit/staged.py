"""What a check sees: the run's staged rows, the target table, the interval, typed parameters."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.intervals import in_slice_sql, outside_slice_sql
from core.models import as_utc
from core.validators import quote_identifier
from pipelines.interfaces import Staged  # what a loader hands to the checks (re-exported here)

if TYPE_CHECKING:
    from pipelines.interfaces import RunContext

SAMPLE_ROWS = 5
# Interval placeholders of a `sql` check and the ClickHouse types they are bound as.
PARAMETER_TYPES = {
    "start": "DateTime64(6, 'UTC')", "end": "DateTime64(6, 'UTC')",
    "start_date": "Date", "end_date": "Date", "run_id": "String", "pipeline": "String",
}
_WRAPPER = re.compile(r"^(?:LowCardinality|Nullable)\((.*)\)$")
#: Every check query's settings. On a Distributed target the staged rows and the target are both
#: Distributed tables: an ``IN``/``JOIN`` over one inside a query over the other must be ``GLOBAL``
#: (else Code 288, or each shard comparing with its own rows only); ``global`` makes it so, and
#: changes nothing for other tables.
CHECK_SETTINGS = {"distributed_product_mode": "global"}


@dataclass
class Outcome:
    """What a check found: how many rows (or keys, or 1 for a table-level check) fail, a few of
    them, and a sentence for people."""

    failing: int
    sample: list[dict[str, Any]] = field(default_factory=list)
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.failing == 0


class Audit:
    """Handed to every check: names to use in SQL and helpers that run it.

    ``audit.staging`` / ``audit.table`` are quoted, database-qualified names of the staged rows
    and of the target (inside a batch, ``staging`` is a subquery of the interval's staged rows);
    ``audit.params`` binds ``{start:DateTime64(6, 'UTC')}`` and the others in
    :data:`PARAMETER_TYPES`.
    """

    def __init__(self, context: RunContext, staged: Staged, columns: dict[str, str], piece: bool = False) -> None:
        self.context = context
        self.staged = staged
        self.store = context.store
        self.staging = self.store.table(staged.staging)
        if piece and staged.time_column:  # one interval of a batch: its own staged rows only
            self.staging = f"(SELECT * FROM {self.staging} WHERE {in_slice_sql(quote_identifier(staged.time_column))})"
        #: False on a pipeline's first run: the target is created only once the checks pass, so
        #: ``table`` is then an empty set of the staged structure.
        self.target_exists = self.store.table_exists(staged.target)
        self.table = (self.store.table(staged.target) if self.target_exists
                      else f"(SELECT * FROM {self.staging} WHERE 0)")
        self.column_types = columns
        self.params: dict[str, Any] = {
            "start": as_utc(context.start), "end": as_utc(context.end),
            "start_date": context.start.date(), "end_date": context.end.date(),
            "run_id": context.run_id, "pipeline": context.pipeline,
        }

    @staticmethod
    def q(column: str) -> str:
        """A quoted column name."""
        return quote_identifier(column)

    def base_type(self, column: str) -> str:
        """The column's ClickHouse type without Nullable/LowCardinality (for typed parameters)."""
        kind = self.column_types[column]
        while match := _WRAPPER.match(kind):
            kind = match.group(1)
        return kind

    def in_slice(self) -> str:
        """SQL condition: a target row lies in the run's interval (interval mode); false when its
        time column is NULL (such a row belongs to no interval: every rebuild keeps it)."""
        return in_slice_sql(self.q(self.staged.time_column or ""))

    def outside_slice(self) -> str:
        """SQL condition: a target row stays when this run is published (interval mode): the exact
        complement of :meth:`in_slice`, true when the time column is NULL."""
        return outside_slice_sql(self.q(self.staged.time_column or ""))

    def scalar(self, sql: str, params: dict[str, Any] | None = None) -> Any:
        rows = self.store.query(sql, {**self.params, **(params or {})}, settings=CHECK_SETTINGS).result_rows
        return rows[0][0] if rows and rows[0] else None

    def failing_rows(self, sql: str, params: dict[str, Any] | None = None) -> Outcome:
        """Count the rows of ``sql`` and keep a few of them as the sample."""
        bound = {**self.params, **(params or {})}
        count = int(self.scalar(f"SELECT count() FROM ({sql})", bound))
        sample = []
        if count:
            result = self.store.query(f"SELECT * FROM ({sql}) LIMIT {SAMPLE_ROWS}", bound, settings=CHECK_SETTINGS)
            sample = [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]
        return Outcome(count, [_jsonable(row) for row in sample], f"{count} failing row(s)" if count else "")


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(row, default=str))
