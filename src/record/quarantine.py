"""Quarantine: input rows set aside with the reason, instead of failing the run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from record.tables import QUARANTINE_TABLE

if TYPE_CHECKING:
    from pipelines.interfaces import RunContext

_COLUMNS = ["pipeline", "run_id", "source", "line", "raw", "error"]


def write_quarantine(context: RunContext, rows: list[dict[str, Any]]) -> None:
    """Store rejected rows (keys: source, line, raw, error) for this run."""
    values = [
        [context.pipeline, context.run_id, str(r.get("source", "")),
         None if r.get("line") is None else int(r["line"]), str(r.get("raw", "")), str(r.get("error", ""))]
        for r in rows
    ]
    context.store.insert_rows(QUARANTINE_TABLE, values, _COLUMNS)
