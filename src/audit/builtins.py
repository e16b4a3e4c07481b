"""The built-in data checks, written with the same two tools a user has (:class:`Check`, :func:`data_check`).

``row_count``, ``not_null``, ``unique``, ``accepted_values``, ``in_range`` (kind ``range``),
``freshness`` and ``sql``. Each looks at the run's staged rows only (the slice it is about to
publish), inside ClickHouse.
"""

from __future__ import annotations

import statistics
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from audit.checks import Check, Outcome, Severity, data_check, parse_age
from audit.staged import PARAMETER_TYPES, Audit
from core.exceptions import CheckDefinitionError
from core.placeholders import render_statement, statement_placeholders
from core.sql_text import split_statements
from pipelines.tools.factory import component_factory

# ---- function checks ------------------------------------------------------------------------


@data_check
def not_null(audit: Audit, *columns: str) -> str:
    """Rows where any of ``columns`` is NULL."""
    return f"SELECT * FROM {audit.staging} WHERE " + " OR ".join(f"isNull({audit.q(c)})" for c in columns)


def _values_given(arguments: dict[str, Any]) -> str | None:
    values = arguments.get("values")
    if isinstance(values, str) or not isinstance(values, list | tuple | set | frozenset) or not values:
        return f"values must be a non-empty list, got {values!r}"
    return None


def _bound_given(arguments: dict[str, Any]) -> str | None:
    if arguments.get("min") is None and arguments.get("max") is None:
        return "give min, max or both"
    return None


@data_check(validate=_values_given)
def accepted_values(audit: Audit, column: str, values: list[Any]) -> str:
    """Rows whose ``column`` is not one of ``values`` (NULLs pass: use ``not_null`` for them)."""
    audit.params["dp_accepted"] = [str(v) for v in values]
    column_sql = audit.q(column)
    return (f"SELECT * FROM {audit.staging} WHERE isNotNull({column_sql}) "
            f"AND NOT has({{dp_accepted:Array(String)}}, toString({column_sql}))")


@data_check(kind="range", validate=_bound_given)
def in_range(audit: Audit, column: str, min: Any = None, max: Any = None) -> str:  # noqa: A002
    """Rows whose ``column`` is below ``min`` or above ``max`` (bounds inclusive, bound with the column's type)."""
    kind, column_sql = audit.base_type(column), audit.q(column)
    conditions = []
    if min is not None:
        audit.params["dp_min"] = min
        conditions.append(f"{column_sql} < {{dp_min:{kind}}}")
    if max is not None:
        audit.params["dp_max"] = max
        conditions.append(f"{column_sql} > {{dp_max:{kind}}}")
    return f"SELECT * FROM {audit.staging} WHERE " + " OR ".join(conditions)


def _columns_given(check: Check, columns: tuple[str, ...] | list[str]) -> None:
    if not columns or not all(isinstance(c, str) and c for c in columns):
        raise CheckDefinitionError(f"check '{check.kind}': give one or more column names, got {list(columns)!r}")


# ---- class checks ---------------------------------------------------------------------------


class RowCount(Check):
    """The number of staged rows, against fixed bounds and/or the median of recent history.

    ``min``/``max``: fixed bounds. ``min_ratio``/``max_ratio``: relative to the median row count
    of the last ``history`` complete intervals (interval-mode pipelines) or successful runs
    (others); ``min_ratio=0.5`` means "at least half of usual". Without history it passes.
    """

    kind = "row_count"

    def __init__(self, min: int | None = None, max: int | None = None, *,  # noqa: A002
                 min_ratio: float | None = None, max_ratio: float | None = None, history: int = 7,
                 name: str | None = None, severity: Severity = "error") -> None:
        super().__init__(name=name, severity=severity)
        if all(v is None for v in (min, max, min_ratio, max_ratio)):
            raise CheckDefinitionError("check 'row_count': give min, max, min_ratio or max_ratio")
        for label, value in (("min", min), ("max", max), ("min_ratio", min_ratio), ("max_ratio", max_ratio)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0):
                raise CheckDefinitionError(f"check 'row_count': {label} must be a number >= 0, got {value!r}")
        if min is not None and max is not None and min > max:
            raise CheckDefinitionError(f"check 'row_count': min {min} is greater than max {max}")
        if not isinstance(history, int) or history < 1:
            raise CheckDefinitionError(f"check 'row_count': history must be an integer >= 1, got {history!r}")
        self.min, self.max, self.min_ratio, self.max_ratio, self.history = min, max, min_ratio, max_ratio, history

    def evaluate(self, audit: Audit) -> Outcome:
        from audit.baseline import recent_row_counts

        rows = int(audit.scalar(f"SELECT count() FROM {audit.staging}"))
        problems = []
        if self.min is not None and rows < self.min:
            problems.append(f"{rows} rows, fewer than min {self.min}")
        if self.max is not None and rows > self.max:
            problems.append(f"{rows} rows, more than max {self.max}")
        usual = ""
        if self.min_ratio is not None or self.max_ratio is not None:
            counts = recent_row_counts(audit, self.history)
            if counts:
                median = statistics.median(counts)
                usual = f"; usual {median:g} (median of {len(counts)})"
                if self.min_ratio is not None and rows < self.min_ratio * median:
                    problems.append(f"{rows} rows, under {self.min_ratio:g} x the usual {median:g}")
                if self.max_ratio is not None and rows > self.max_ratio * median:
                    problems.append(f"{rows} rows, over {self.max_ratio:g} x the usual {median:g}")
            else:
                usual = "; no history yet for the relative bounds"
        return Outcome(1 if problems else 0, [{"rows": rows}] if problems else [],
                       "; ".join(problems) if problems else f"{rows} rows{usual}")


class Unique(Check):
    """No two rows share ``columns`` in the table as it will be once this run is published.

    - ``interval``: staged rows plus the target's rows outside the run's slice;
    - ``append``: staged rows plus every target row (the run adds to them);
    - ``replace``: the staged rows alone (they become the table);
    - ``merge``: what readers see with ``FINAL``: staged rows collapsed by the primary key (newest
      version wins), plus target rows whose key this run does not replace. Uniqueness of the
      primary key itself therefore always holds within a partition.

    The failing count is the number of duplicated key values; only keys that occur in the
    staged rows are looked at, so the target is never scanned in full.
    """

    kind = "unique"

    def __init__(self, *columns: str, name: str | None = None, severity: Severity = "error") -> None:
        super().__init__(name=name, severity=severity)
        _columns_given(self, columns)
        self._columns = list(columns)

    def columns(self) -> list[str]:
        return list(self._columns)

    def failing_sql(self, audit: Audit) -> str:
        key = ", ".join(audit.q(c) for c in self._columns)
        staged_keys = f"SELECT {key} FROM {audit.staging}"
        mode = audit.staged.mode
        parts = [f"SELECT {key} FROM {audit.staging}" + (" FINAL" if mode == "merge" else "")]
        if not audit.target_exists:
            pass  # a first run: the staged rows are the whole table-to-be
        elif mode == "interval":
            parts.append(f"SELECT {key} FROM {audit.table} "
                         f"WHERE {audit.outside_slice()} AND ({key}) IN ({staged_keys})")
        elif mode == "append":
            parts.append(f"SELECT {key} FROM {audit.table} WHERE ({key}) IN ({staged_keys})")
        elif mode == "merge":
            pk = ", ".join(audit.q(c) for c in audit.staged.primary_key)
            parts.append(f"SELECT {key} FROM {audit.table} FINAL WHERE ({key}) IN ({staged_keys}) "
                         f"AND ({pk}) NOT IN (SELECT {pk} FROM {audit.staging})")
        union = " UNION ALL ".join(parts)
        return f"SELECT {key}, count() AS copies FROM ({union}) GROUP BY {key} HAVING copies > 1"


class Freshness(Check):
    """The newest ``column`` value is no older than ``max_age`` before the interval's end (or
    before now, while the interval has not ended), so backfills of old days pass. No rows fail."""

    kind = "freshness"

    def __init__(self, column: str, max_age: timedelta | float | str, *, name: str | None = None,
                 severity: Severity = "error") -> None:
        super().__init__(name=name, severity=severity)
        _columns_given(self, [column])
        self.column = column
        self.max_age = parse_age(max_age, f"check 'freshness({column})': max_age")

    def columns(self) -> list[str]:
        return [self.column]

    def evaluate(self, audit: Audit) -> Outcome:
        reference = min(audit.params["end"], datetime.now(UTC))
        limit = reference - self.max_age
        newest = audit.scalar(f"SELECT max(toDateTime64({audit.q(self.column)}, 6, 'UTC')) FROM {audit.staging} "
                              f"WHERE isNotNull({audit.q(self.column)})")
        rows = int(audit.scalar(f"SELECT count() FROM {audit.staging}"))
        if not rows or newest is None:
            return Outcome(1, [], f"no rows with a {self.column}: nothing newer than {limit:%Y-%m-%d %H:%M:%S} UTC")
        newest = newest if newest.tzinfo else newest.replace(tzinfo=UTC)
        if newest < limit:
            return Outcome(1, [{"newest": newest.isoformat()}],
                           f"newest {self.column} {newest:%Y-%m-%d %H:%M:%S} is older than "
                           f"{limit:%Y-%m-%d %H:%M:%S} UTC "
                           f"({self.max_age} before {reference:%Y-%m-%d %H:%M:%S})")
        return Outcome(0, [], f"newest {self.column} {newest:%Y-%m-%d %H:%M:%S} UTC")




class Sql(Check):
    """Your own query over ``{staging}`` (the run's staged rows) and ``{table}`` (the target), with
    ``{start}``, ``{end}``, ``{start_date}``, ``{end_date}``, ``{run_id}``, ``{pipeline}`` bound as
    typed query parameters (never pasted into the SQL). ``returns='rows'``: the query selects the
    failing rows; ``returns='count'``: it returns one number, the failing count."""

    kind = "sql"

    def __init__(self, query: str, *, name: str | None = None, returns: Literal["rows", "count"] = "rows",
                 severity: Severity = "error") -> None:
        super().__init__(name=name, severity=severity)
        if not isinstance(query, str) or not query.strip():
            raise CheckDefinitionError(f"check '{name or 'sql'}': the query is empty")
        if returns not in ("rows", "count"):
            raise CheckDefinitionError(f"check '{self.name}': returns must be 'rows' or 'count', got {returns!r}")
        statements = split_statements(query, f"check '{self.name}'", error=CheckDefinitionError)
        if len(statements) != 1:
            raise CheckDefinitionError(f"check '{self.name}': the query must be one statement, "
                                       f"got {len(statements)}")
        # Placeholders are read outside string literals and comments (one renderer, core.placeholders).
        used = statement_placeholders(statements[0])
        unknown = sorted(used - {"staging", "table", *PARAMETER_TYPES})
        if unknown:
            raise CheckDefinitionError(f"check '{self.name}': unknown placeholder(s) {', '.join(unknown)} (use "
                                       f"{{staging}}, {{table}}, {', '.join('{' + p + '}' for p in PARAMETER_TYPES)})")
        if not used & {"staging", "table"}:
            raise CheckDefinitionError(f"check '{self.name}': the query must read {{staging}} (the run's rows) "
                                       "or {table}")
        self.query = query.strip().rstrip(";")
        self._statement = statements[0]
        self.returns = returns

    @property
    def name(self) -> str:
        return self._name or "sql"

    def render(self, audit: Audit, staging: str | None = None) -> str:
        values = {"staging": staging or audit.staging, "table": audit.table,
                  **{key: f"{{{key}:{type_}}}" for key, type_ in PARAMETER_TYPES.items()}}
        return render_statement(self._statement, values, f"check '{self.name}'", CheckDefinitionError).sql

    def sql_to_explain(self, audit: Audit) -> str | None:
        return self.render(audit, staging=audit.table)

    def evaluate(self, audit: Audit) -> Outcome:
        sql = self.render(audit)
        if self.returns == "rows":
            return audit.failing_rows(sql)
        value = audit.scalar(sql)
        try:
            count = int(value)
        except (TypeError, ValueError):
            raise CheckDefinitionError(f"check '{self.name}': returns='count' but the query gave {value!r}") from None
        return Outcome(count, [], f"{count} failing" if count else "")


# The check functions a pipeline declares are their classes (one parameter list, documented there).
row_count = component_factory(RowCount, "row_count")
unique = component_factory(Unique, "unique")
freshness = component_factory(Freshness, "freshness")
sql = component_factory(Sql, "sql")
