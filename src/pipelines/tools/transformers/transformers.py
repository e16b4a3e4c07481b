"""Transformers: user functions, type casts, column operations and validation.

Arrow batches stay Arrow except in the lambda transformer (user code gets a pandas DataFrame).
Errors name the transformer, the column, the row (0-based, within the run) and the value.
"""

from __future__ import annotations

import inspect
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from core.exceptions import ConfigError, TransformError
from pipelines.interfaces import Batch, RunContext, Transformer, batch_rows, to_arrow, to_pandas
from pipelines.tools.arrow_types import arrow_type, parse_utc_timestamps

_CAST_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError, ValueError)


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _RowCounting(Transformer):
    """Counts rows seen in the run so errors can give a row number across batches."""

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name)
        self._run: str | None = None
        self._offset = 0

    def _start(self, context: RunContext, batch: Batch) -> int:
        """Row number of this batch's first row within the run (resets for a new run)."""
        if self._run != context.run_id:
            self._run, self._offset = context.run_id, 0
            self._new_run()
        first = self._offset
        self._offset += batch_rows(batch)
        return first

    def _new_run(self) -> None:  # noqa: B027 (optional hook)
        pass


# ---- lambda -------------------------------------------------------------------------------------

class LambdaTransformer(Transformer):
    """Applies ``fn(df)`` or ``fn(df, context)`` to each batch as a pandas DataFrame."""

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
        except _CAST_ERRORS:
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
        except _CAST_ERRORS:
            return i, value
    return None


class TypeTransformer(_RowCounting):
    """Casts columns to types (Arrow-native)."""

    def __init__(self, types: Mapping[str, Any], name: str | None = None) -> None:
        super().__init__(name or "types")
        if not types:
            raise ConfigError(f"type transformer {self.name!r}: give at least one column: type")
        self.types = {col: arrow_type(t, f"type transformer {self.name!r}: column {col!r}") for col, t in types.items()}

    def transform(self, batch: Batch, context: RunContext) -> Batch | None:
        first = self._start(context, batch)
        table = to_arrow(batch)
        _check_columns(self.name, table, self.types)
        for column, target in self.types.items():
            i = table.column_names.index(column)
            try:
                cast = _cast_column(table.column(i), target)
            except _CAST_ERRORS as exc:
                bad = _first_bad(table.column(i), target)
                if bad is None:
                    raise TransformError(f"{self.name}: column {column!r} cannot be cast to {target}: {exc}") from None
                row, value = bad
                raise TransformError(f"{self.name}: column {column!r} row {first + row}: cannot cast "
                                     f"{_short(value)} to {target}") from None
            table = table.set_column(i, pa.field(column, target), cast)
        return table


def _check_columns(name: str, table: pa.Table, wanted: Iterable[str]) -> None:
    missing = [c for c in wanted if c not in table.column_names]
    if missing:
        raise TransformError(f"{name}: unknown column {', '.join(map(repr, missing))}; the batch has "
                             f"{', '.join(table.column_names) or 'no columns'}")


# ---- columns ------------------------------------------------------------------------------------

class ColumnTransformer(Transformer):
    """Select, rename, drop and add columns (in that order)."""

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
            _check_columns(self.name, table, self.select)
            table = table.select(self.select)
        if self.rename:
            _check_columns(self.name, table, self.rename)
            table = table.rename_columns([self.rename.get(c, c) for c in table.column_names])
        if self.drop:
            _check_columns(self.name, table, self.drop)
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


# ---- validation ---------------------------------------------------------------------------------

_RULES = {"not_null", "unique", "range", "min", "max", "regex", "allowed"}


class ValidationTransformer(_RowCounting):
    """Checks rows against a pydantic model and/or rules; bad rows fail the run or are quarantined."""

    def __init__(self, model: Any = None, rules: Mapping[str, Mapping[str, Any]] | None = None,
                 on_invalid: str = "fail", name: str | None = None) -> None:
        super().__init__(name or "validation")
        if on_invalid not in {"fail", "quarantine"}:
            raise ConfigError(f"validation transformer {self.name!r}: on_invalid must be 'fail' or "
                              f"'quarantine', got {on_invalid!r}")
        if model is None and not rules:
            raise ConfigError(f"validation transformer {self.name!r}: give a pydantic model or rules")
        if model is not None and not hasattr(model, "model_validate"):
            raise ConfigError(f"validation transformer {self.name!r}: model must be a pydantic BaseModel class")
        self.model = model
        self.on_invalid = on_invalid
        self.rules: dict[str, dict[str, Any]] = {}
        for column, spec in (rules or {}).items():
            spec = dict(spec)
            unknown = set(spec) - _RULES
            if unknown:
                raise ConfigError(f"validation transformer {self.name!r}: column {column!r}: unknown rule(s) "
                                  f"{', '.join(sorted(unknown))}; use {', '.join(sorted(_RULES))}")
            if "range" in spec:
                low, high = spec.pop("range")
                spec.setdefault("min", low)
                spec.setdefault("max", high)
            if "regex" in spec:
                try:
                    re.compile(spec["regex"])
                except re.error as exc:
                    raise ConfigError(f"validation transformer {self.name!r}: column {column!r}: bad regex: {exc}") \
                        from None
            if "allowed" in spec:
                spec["allowed"] = list(spec["allowed"])
            self.rules[column] = spec
        self._seen: dict[str, set[Any]] = {}

    def _new_run(self) -> None:
        self._seen = {column: set() for column, spec in self.rules.items() if spec.get("unique")}

    def transform(self, batch: Batch, context: RunContext) -> Batch | None:
        first = self._start(context, batch)
        table = to_arrow(batch)
        _check_columns(self.name, table, self.rules)
        n = table.num_rows
        reasons: list[str | None] = [None] * n

        def flag(mask: pa.Array | pa.ChunkedArray, column: str, rule: str) -> None:
            column_values = None
            for i in _true_indices(mask):
                if reasons[i] is None:
                    if column_values is None:
                        column_values = table.column(column)
                    value = column_values[i].as_py()
                    reasons[i] = f"rule {rule} failed on column {column!r} with value {_short(value)}"

        for column, spec in self.rules.items():
            col = table.column(column)
            if spec.get("not_null"):
                flag(pc.is_null(col), column, "not_null")
            if "min" in spec and spec["min"] is not None:
                flag(pc.fill_null(pc.less(col, pa.scalar(spec["min"]).cast(col.type) if _castable(spec["min"], col)
                                          else spec["min"]), False), column, f"range (min {spec['min']!r})")
            if "max" in spec and spec["max"] is not None:
                flag(pc.fill_null(pc.greater(col, pa.scalar(spec["max"]).cast(col.type) if _castable(spec["max"], col)
                                             else spec["max"]), False), column, f"range (max {spec['max']!r})")
            if "regex" in spec:
                is_text = pa.types.is_string(col.type) or pa.types.is_large_string(col.type)
                text = col if is_text else col.cast(pa.string())
                matched = pc.match_substring_regex(text, f"^(?:{spec['regex']})$")
                flag(pc.invert(pc.fill_null(matched, True)), column, f"regex {spec['regex']!r}")
            if "allowed" in spec:
                allowed = pa.array(spec["allowed"])
                probe = col if allowed.type == col.type else col.cast(allowed.type) if _can_cast(col, allowed.type) \
                    else col.cast(pa.string())
                if probe.type != allowed.type:
                    allowed = allowed.cast(probe.type)
                ok = pc.or_(pc.is_in(probe, allowed), pc.is_null(probe))
                flag(pc.invert(ok), column, f"allowed values {spec['allowed']!r}")
            if spec.get("unique"):
                seen = self._seen.setdefault(column, set())
                for i, value in enumerate(col.to_pylist()):
                    if value is None:
                        continue
                    key = _hashable(value)
                    if key in seen:
                        if reasons[i] is None:
                            reasons[i] = f"rule unique failed on column {column!r}: duplicate value {_short(value)}"
                    else:
                        seen.add(key)

        if self.model is not None:
            self._validate_model(table, reasons)

        bad = [i for i, reason in enumerate(reasons) if reason is not None]
        if not bad:
            return batch if isinstance(batch, pa.Table) else table
        if self.on_invalid == "fail":
            i = bad[0]
            more = f" ({len(bad) - 1} more row(s) in this batch)" if len(bad) > 1 else ""
            raise TransformError(f"{self.name}: row {first + i}: {reasons[i]}{more}")
        rows = table.take(pa.array(bad)).to_pylist()
        context.quarantine([
            {"source": self.name, "line": first + i, "raw": json.dumps(row, default=str, ensure_ascii=False),
             "error": reasons[i]}
            for i, row in zip(bad, rows, strict=False)
        ])
        context.logger.warning("%s: %d invalid row(s) quarantined (first: row %d: %s)", self.name, len(bad),
                               first + bad[0], reasons[bad[0]])
        keep = pa.array([r is None for r in reasons])
        return table.filter(keep)

    def _validate_model(self, table: pa.Table, reasons: list[str | None]) -> None:
        from pydantic import ValidationError

        for i, row in enumerate(table.to_pylist()):
            if reasons[i] is not None:
                continue
            try:
                self.model.model_validate(row)
            except ValidationError as exc:
                error = exc.errors()[0]
                field = ".".join(str(p) for p in error.get("loc", ())) or "?"
                value = row.get(field, error.get("input")) if isinstance(row, dict) else error.get("input")
                reasons[i] = f"model {self.model.__name__} failed on column {field!r} with value " \
                             f"{_short(value)}: {error.get('msg')}"


def _true_indices(mask: pa.Array | pa.ChunkedArray) -> list[int]:
    mask = pc.fill_null(mask, False)
    if isinstance(mask, pa.ChunkedArray):
        mask = mask.combine_chunks()
    if not pc.any(mask).as_py():
        return []
    return pc.indices_nonzero(mask).to_pylist()


def _castable(value: Any, column: pa.ChunkedArray) -> bool:
    try:
        pa.scalar(value).cast(column.type)
        return True
    except _CAST_ERRORS:
        return False


def _can_cast(column: pa.ChunkedArray, target: pa.DataType) -> bool:
    try:
        column.cast(target)
        return True
    except _CAST_ERRORS:
        return False


def _hashable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True, default=str)
    return value


# ---- factories ----------------------------------------------------------------------------------

def create_lambda_transformer(fn: Callable[..., Any], name: str | None = None) -> LambdaTransformer:
    """Run ``fn(df)`` or ``fn(df, context)`` on each batch (a pandas DataFrame).

    ``fn`` may return a DataFrame or a pyarrow Table; returning ``None`` drops the batch. Whether
    it takes the context is read from its signature once, here.
    """
    return LambdaTransformer(fn, name)


def create_type_transformer(types: Mapping[str, Any], name: str | None = None) -> TypeTransformer:
    """Cast columns: ``{"id": "int", "amount": "float", "at": "datetime", "day": "date",
    "flag": "bool", "code": "str"}`` (or pyarrow types). A value that cannot be cast fails the run
    naming the column, the row and the value. ``datetime`` means UTC timestamps; strings are read
    as ISO-8601, with or without offset."""
    return TypeTransformer(types, name)


def create_column_transformer(select: Sequence[str] | None = None, rename: Mapping[str, str] | None = None,
                              drop: Sequence[str] | None = None, add: Mapping[str, Any] | None = None,
                              name: str | None = None) -> ColumnTransformer:
    """Select, rename, drop, then add columns.

    ``add`` maps a new column to a constant (``{"source": "api"}``) or to a function of the batch
    (a pyarrow Table) returning an array, a list, a pandas Series or a scalar, e.g.
    ``{"total": lambda t: pc.multiply(t["qty"], t["price"])}``. An unknown column fails with the
    list of the batch's columns.
    """
    return ColumnTransformer(select, rename, drop, add, name)


def create_validation_transformer(model: Any = None, rules: Mapping[str, Mapping[str, Any]] | None = None,
                                  on_invalid: str = "fail", name: str | None = None) -> ValidationTransformer:
    """Validate rows with a pydantic model and/or per-column rules.

    Rules: ``{"id": {"not_null": True, "unique": True}, "amount": {"range": (0, 1000)},
    "email": {"regex": r"[^@]+@[^@]+"}, "status": {"allowed": ["new", "paid"]}}`` (``min``/``max``
    alone also work; ``unique`` holds across the run's batches; a regex must match the whole
    value; nulls pass every rule but ``not_null``). ``on_invalid="fail"`` fails the run naming the
    rule, column, row and value; ``"quarantine"`` moves failing rows to ``_dp_quarantine``
    (source: this transformer's name, raw: the row as JSON, error: the reason) and keeps the rest.
    """
    return ValidationTransformer(model, rules, on_invalid, name)
