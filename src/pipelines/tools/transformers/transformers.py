"""Transformers: user functions, type casts, column operations and validation.

Arrow batches stay Arrow except in the lambda transformer (user code gets a pandas DataFrame).
Errors name the transformer, the column, the row (0-based, within the run) and the value.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from core.exceptions import ConfigError, TransformError
from pipelines.interfaces import Batch, RunContext, Transformer, to_arrow, to_pandas
from pipelines.tools.arrow_types import arrow_type, parse_utc_timestamps
from pipelines.tools.factory import component_factory
from pipelines.tools.transformers.common import CAST_ERRORS, RowCounting, check_columns, short

# The validation transformer lives in its own module; importing it from here keeps working.
from pipelines.tools.transformers.validation import ValidationTransformer, create_validation_transformer

__all__ = ["ColumnTransformer", "LambdaTransformer", "TypeTransformer", "ValidationTransformer",
           "create_column_transformer", "create_lambda_transformer", "create_type_transformer",
           "create_validation_transformer"]

# ---- lambda -------------------------------------------------------------------------------------

class LambdaTransformer(Transformer):
    """Run ``fn(df)`` or ``fn(df, context)`` on each batch (a pandas DataFrame).

    ``fn`` may return a DataFrame or a pyarrow Table; returning ``None`` drops the batch. Whether
    it takes the context is read from its signature once, here. An integer column holding NULLs
    arrives as pandas' nullable ``Int64`` (see :func:`pipelines.interfaces.to_pandas`).
    """

    def __init__(self, fn: Callable[..., Any], name: str | None = None) -> None:
        if not callable(fn):
            raise ConfigError(f"lambda transformer {name!r}: fn must be callable, got {type(fn).__name__}")
        super().__init__(name or getattr(fn, "__name__", "lambda"))
        self.fn = fn
        self.wants_context = self._arity(fn) >= 2

    @staticmethod
    def _arity(fn: Callable[..., Any]) -> int:
        try:
            params = inspect.signature(fn).parameters.values()
        except (TypeError, ValueError):
            return 1
        if any(p.kind is p.VAR_POSITIONAL for p in params):
            return 2
        return sum(1 for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))

    def transform(self, batch: Batch, context: RunContext) -> Batch | None:
        df = to_pandas(batch)
        try:
            result = self.fn(df, context) if self.wants_context else self.fn(df)
        except (TransformError, ConfigError):
            raise
        except Exception as exc:
            raise TransformError(f"{self.name}: {type(exc).__name__}: {exc}") from exc
        if result is None or isinstance(result, (pd.DataFrame, pa.Table)):
            return result
        raise TransformError(f"{self.name}: the function returned {type(result).__name__}; return a pandas "
                             "DataFrame, a pyarrow Table, or None to drop the batch")


# ---- types --------------------------------------------------------------------------------------

_TRUE = {"true", "t", "yes", "y", "1", "on"}
_FALSE = {"false", "f", "no", "n", "0", "off"}


def _cast_column(column: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray:
    source = column.type
    if source == target:
        return column
    text = pa.types.is_string(source) or pa.types.is_large_string(source)
    if pa.types.is_boolean(target) and text:
        lowered = pc.utf8_lower(pc.utf8_trim_whitespace(column))
        is_true = pc.is_in(lowered, pa.array(sorted(_TRUE)))
        is_false = pc.is_in(lowered, pa.array(sorted(_FALSE)))
        if not pc.all(pc.or_(pc.or_(is_true, is_false), pc.is_null(lowered))).as_py():
            raise pa.ArrowInvalid("not a boolean")
        return pc.if_else(pc.is_null(lowered), pa.scalar(None, pa.bool_()), is_true)
    if pa.types.is_timestamp(target) and text:
        return parse_utc_timestamps(column, target)
    if pa.types.is_date(target) and text:
        try:
            return column.cast(target)
        except CAST_ERRORS:
            return parse_utc_timestamps(column, pa.timestamp("us", tz="UTC")).cast(target, safe=False)
    if pa.types.is_date(target) and pa.types.is_timestamp(source):
        return column.cast(target, safe=False)  # drops the time of day (UTC for zoned timestamps)
    if (pa.types.is_integer(target) or pa.types.is_floating(target) or pa.types.is_decimal(target)) and text:
        return pc.utf8_trim_whitespace(column).cast(target)
    return column.cast(target)


def _first_bad(column: pa.ChunkedArray, target: pa.DataType) -> tuple[int, Any] | None:
    """Row and value of the first element that cannot be cast (runs only after a failed cast)."""
    values = column.to_pylist()
    if (pa.types.is_timestamp(target) or pa.types.is_date(target)) and pa.types.is_string(column.type):
        parsed = pd.to_datetime(pd.Series(values, dtype="object"), utc=True, format="ISO8601", errors="coerce")
        for i, (value, when) in enumerate(zip(values, parsed, strict=False)):
            if value is not None and pd.isna(when):
                return i, value
    for i, value in enumerate(values):
        if value is None:
            continue
        try:
            _cast_column(pa.chunked_array([pa.array([value], type=column.type)]), target)
        except CAST_ERRORS:
            return i, value
    return None


class TypeTransformer(RowCounting):
    """Cast columns: ``{"id": "int", "amount": "float", "at": "datetime", "day": "date",
    "flag": "bool", "code": "str"}`` (or pyarrow types). A value that cannot be cast fails the run
    naming the column, the row and the value. ``datetime`` means UTC timestamps; strings are read
    as ISO-8601, with or without offset. Arrow-native: the batch never becomes pandas."""

    def __init__(self, types: Mapping[str, Any], name: str | None = None) -> None:
        super().__init__(name or "types")
        if not types:
            raise ConfigError(f"type transformer {self.name!r}: give at least one column: type")
        self.types = {col: arrow_type(t, f"type transformer {self.name!r}: column {col!r}") for col, t in types.items()}

    def transform(self, batch: Batch, context: RunContext) -> Batch | None:
        first = self._start(context, batch)
        table = to_arrow(batch)
        check_columns(self.name, table, self.types)
        for column, target in self.types.items():
            i = table.column_names.index(column)
            try:
                cast = _cast_column(table.column(i), target)
            except CAST_ERRORS as exc:
                bad = _first_bad(table.column(i), target)
                if bad is None:
                    raise TransformError(f"{self.name}: column {column!r} cannot be cast to {target}: {exc}") from None
                row, value = bad
                raise TransformError(f"{self.name}: column {column!r} row {first + row}: cannot cast "
                                     f"{short(value)} to {target}") from None
            table = table.set_column(i, pa.field(column, target), cast)
        return table


# ---- columns ------------------------------------------------------------------------------------

class ColumnTransformer(Transformer):
    """Select, rename, drop, then add columns.

    ``add`` maps a new column to a constant (``{"source": "api"}``) or to a function of the batch
    (a pyarrow Table) returning an array, a list, a pandas Series or a scalar, e.g.
    ``{"total": lambda t: pc.multiply(t["qty"], t["price"])}``. An unknown column fails with the
    list of the batch's columns.
    """

    def __init__(self, select: Sequence[str] | None = None, rename: Mapping[str, str] | None = None,
                 drop: Sequence[str] | None = None, add: Mapping[str, Any] | None = None,
                 name: str | None = None) -> None:
        super().__init__(name or "columns")
        if not (select or rename or drop or add):
            raise ConfigError(f"column transformer {self.name!r}: give select, rename, drop or add")
        self.select = list(select) if select else None
        self.rename = dict(rename or {})
        self.drop = list(drop or [])
        self.add = dict(add or {})

    def transform(self, batch: Batch, context: RunContext) -> Batch | None:
        table = to_arrow(batch)
        if self.select:
            check_columns(self.name, table, self.select)
            table = table.select(self.select)
        if self.rename:
            check_columns(self.name, table, self.rename)
            table = table.rename_columns([self.rename.get(c, c) for c in table.column_names])
        if self.drop:
            check_columns(self.name, table, self.drop)
            table = table.drop_columns(self.drop)
        for column, value in self.add.items():
            array = self._added(column, value, table, context)
            if column in table.column_names:
                table = table.set_column(table.column_names.index(column), column, array)
            else:
                table = table.append_column(column, array)
        return table

    def _added(self, column: str, value: Any, table: pa.Table, context: RunContext) -> pa.ChunkedArray | pa.Array:
        n = table.num_rows
        if callable(value):
            try:
                result = value(table)
            except Exception as exc:
                raise TransformError(f"{self.name}: computing column {column!r} failed: "
                                     f"{type(exc).__name__}: {exc}") from exc
            if isinstance(result, pd.Series):
                result = pa.array(result, from_pandas=True)
            elif isinstance(result, (list, tuple)):
                result = pa.array(result)
            elif not isinstance(result, (pa.Array, pa.ChunkedArray)):
                return pa.repeat(pa.scalar(result), n) if n else pa.array([], type=pa.scalar(result).type)
            if len(result) != n:
                raise TransformError(f"{self.name}: column {column!r}: the function returned {len(result)} values "
                                     f"for {n} rows")
            return result
        scalar = value if isinstance(value, pa.Scalar) else pa.scalar(value)
        return pa.repeat(scalar, n) if n else pa.array([], type=scalar.type)


# ---- factories ---------------------------------------------------------------------------------

create_lambda_transformer = component_factory(LambdaTransformer, "create_lambda_transformer")
create_type_transformer = component_factory(TypeTransformer, "create_type_transformer")
create_column_transformer = component_factory(ColumnTransformer, "create_column_transformer")
