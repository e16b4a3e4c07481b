"""Keep the run's interval of a whole-dataset file (the file extractor's ``keep_interval_rows``).

One condition on both paths, the slice predicate of ``core.intervals`` (start inclusive, end
exclusive, UTC): ClickHouse filters a pushed-down source with ``in_slice_sql``; the Python path
filters each Arrow table the same way. A row whose time is NULL is kept, so the loader refuses it
with its usual message (a NULL time places a row in no interval); rows outside are dropped and
counted, and the job log says how many.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc

from core.exceptions import ExtractError, StoreError
from core.intervals import in_slice_sql, slice_parameters
from core.validators import quote_identifier
from pipelines.interfaces import RunContext, SqlSource


def kept_message(name: str, kept: int, total: int) -> str:
    """The job log's line: how many rows of the source were the interval's, how many were dropped."""
    return f"{name}: kept {kept} of {total} rows of the interval (dropped {total - kept} outside it)"


def _keep_sql(column: str) -> str:
    quoted = quote_identifier(column)
    return f"({in_slice_sql(quoted)} OR {quoted} IS NULL)"


def filter_sql_source(source: SqlSource, column: str, context: RunContext, name: str) -> SqlSource | None:
    """``source`` reduced to the run's interval (and NULL times), after logging the counts; None
    (read in Python instead) when ClickHouse cannot count the source or it has no such column."""
    if column not in source.schema.names:
        return None  # the Python path names the missing column
    parameters = {**source.parameters, **slice_parameters(context.start, context.end)}
    try:
        [(total, kept)] = context.store.query_rows(
            f"SELECT count(), countIf({_keep_sql(column)}) FROM {source.expression}", parameters)
    except StoreError:
        return None
    context.logger.info("%s", kept_message(name, int(kept), int(total)))
    expression = f"(SELECT * FROM {source.expression} WHERE {_keep_sql(column)})"
    return replace(source, expression=expression, parameters=parameters)


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def filter_table(table: pa.Table, column: str, context: RunContext, where: str) -> pa.Table:
    """The rows of ``table`` in the run's interval, and those whose ``column`` is NULL."""
    if column not in table.column_names:
        raise ExtractError(f"{where} has no column {column!r} to keep the interval's rows by "
                           f"(it has {', '.join(table.column_names)})")
    values = table.column(column)
    if pa.types.is_date(values.type):
        values = values.cast(pa.timestamp("s"))
    if not pa.types.is_timestamp(values.type):
        raise ExtractError(f"{where}: column {column!r} is {values.type}, not a time: declare it, "
                           f"e.g. types={{{column!r}: 'datetime'}}")
    kind = values.type
    start, end = ((context.start, context.end) if kind.tz else (_naive_utc(context.start), _naive_utc(context.end)))
    inside = pc.and_kleene(pc.greater_equal(values, pa.scalar(start, type=kind)),
                           pc.less(values, pa.scalar(end, type=kind)))
    return table.filter(pc.or_kleene(pc.is_null(values), inside))
