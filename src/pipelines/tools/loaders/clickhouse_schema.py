"""Arrow <-> ClickHouse column types: table creation from a batch, schema evolution, conflicts."""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc

from core.exceptions import LoadError
from pipelines.tools.arrow_types import CLICKHOUSE_TYPE_KEY


def clickhouse_type(field: pa.Field, nullable: bool) -> str:
    """The ClickHouse type for an Arrow field (``Nullable(...)`` when ``nullable``); a type declared
    in the field's metadata (``clickhouse_type``) wins over the Arrow type."""
    declared = (field.metadata or {}).get(CLICKHOUSE_TYPE_KEY)
    base = declared.decode() if declared else _base_type(field.type, field.name)
    if nullable and not base.startswith(("Array(", "LowCardinality(")):
        return f"Nullable({base})"
    if nullable and base.startswith("LowCardinality("):
        return f"LowCardinality(Nullable({base[len('LowCardinality('):-1]}))"
    return base


def _base_type(t: pa.DataType, column: str) -> str:
    if pa.types.is_boolean(t):
        return "Bool"
    if pa.types.is_integer(t):
        return ("UInt" if pa.types.is_unsigned_integer(t) else "Int") + str(t.bit_width)
    if pa.types.is_float16(t) or pa.types.is_float32(t):
        return "Float32"
    if pa.types.is_floating(t):
        return "Float64"
    if pa.types.is_decimal(t):
        return f"Decimal({t.precision}, {t.scale})"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "String"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_time(t):
        return "String"
    if pa.types.is_timestamp(t):
        scale = {"s": 0, "ms": 3, "us": 6, "ns": 9}[t.unit]
        return f"DateTime64({scale}, 'UTC')" if scale else "DateTime('UTC')"
    if pa.types.is_date(t):
        return "Date32"
    if pa.types.is_dictionary(t):
        return f"LowCardinality({_base_type(t.value_type, column)})"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"Array({_base_type(t.value_type, column)})"
    if pa.types.is_null(t):
        return "String"
    raise LoadError(f"Column '{column}' has Arrow type {t}, which has no ClickHouse column type here: "
                    "flatten it or cast it to a string first")


def times_as_text(table: pa.Table) -> pa.Table:
    """Arrow time-of-day columns (a CSV's ``08:15:00``) as ``HH:MM:SS[.fff]`` text: their
    ClickHouse column is a String (ClickHouse's Time types are too new to rely on)."""
    for i, field in enumerate(table.schema):
        if pa.types.is_time(field.type):
            table = table.set_column(i, pa.field(field.name, pa.string(), field.nullable),
                                     table.column(i).cast(pa.string()))
    return table


# Families a value can move between without loss or surprise.
def _family(clickhouse: str) -> str:
    inner = clickhouse
    for wrapper in ("Nullable", "LowCardinality"):
        match = re.fullmatch(rf"{wrapper}\((.*)\)", inner)
        if match:
            inner = match.group(1)
    inner = re.sub(r"\(.*\)$", "", inner)
    if inner.startswith(("Int", "UInt")):
        return "int"
    if inner.startswith(("Float", "Decimal")):
        return "number"
    if inner in ("String", "FixedString", "Enum8", "Enum16", "UUID", "IPv4", "IPv6"):
        return "string"
    if inner.startswith("DateTime"):
        return "datetime"
    if inner.startswith("Date"):
        return "date"
    if inner == "Bool":
        return "bool"
    if inner.startswith("Array"):
        return "array"
    return inner.lower()


_ACCEPTS = {
    "int": {"int", "bool"},
    "number": {"int", "number", "bool"},
    "string": {"string"},
    "datetime": {"datetime", "date"},
    "date": {"date", "datetime"},
    "bool": {"bool", "int"},
    "array": {"array"},
}


def check_compatible(column: str, table_type: str, field: pa.Field, table: str) -> None:
    """Raise LoadError when data of ``field``'s type cannot go into a ``table_type`` column."""
    if pa.types.is_null(field.type):
        return
    data_type = _base_type(field.type, column)
    target, source = _family(table_type), _family(data_type)
    if source not in _ACCEPTS.get(target, {target}):
        raise LoadError(f"Column '{column}' of {table} is {table_type} but the data has {field.type} "
                        f"({data_type}); cast it in a transformer or migrate the column")


def check_values_fit(column: str, table_type: str, values: pa.ChunkedArray, table: str, first_row: int) -> None:
    """Numbers wider than the table's ``Decimal(p, s)`` or ``(U)IntN`` column (a source column
    widened later): every value must fit, else a LoadError naming the row (ClickHouse's own cast
    names no row, and a Decimal past its precision went in without an error)."""
    bad = _first_misfit(table_type, values)
    if bad is not None:
        row, value = bad
        raise LoadError(f"Column '{column}' of {table} is {table_type} but row {first_row + row} of the run's "
                        f"data holds {value}, which does not fit: widen the column with a migration "
                        f"(ALTER TABLE ... MODIFY COLUMN)", table=table, column=column, row=first_row + row)


def _first_misfit(table_type: str, values: pa.ChunkedArray) -> tuple[int, object] | None:
    decimal = re.search(r"Decimal\((\d+), (\d+)\)", table_type)
    integer = re.search(r"\b(U?)Int(8|16|32|64)\b", table_type)
    if decimal and pa.types.is_decimal(values.type):
        precision, scale = int(decimal.group(1)), int(decimal.group(2))
        if not _wider(table_type, values.type):
            return None
        limit = 10 ** (precision - scale)
        return next(((row, v) for row, v in enumerate(values.to_pylist())
                     if v is not None and not (abs(v) < limit and v == round(v, scale))), None)
    if integer and pa.types.is_integer(values.type):
        bits = int(integer.group(2))
        unsigned = bool(integer.group(1))
        if not _wider(table_type, values.type):
            return None
        low, high = (0, 2 ** bits - 1) if unsigned else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        extremes = pc.min_max(values)
        if extremes["min"].as_py() is None or (low <= extremes["min"].as_py() and extremes["max"].as_py() <= high):
            return None
        return next(((row, v) for row, v in enumerate(values.to_pylist())
                     if v is not None and not low <= v <= high), None)
    return None


def may_not_fit(table_type: str, arrow_type: pa.DataType) -> bool:
    """True when values of ``arrow_type`` can be too wide for the table's ``Decimal(p, s)`` or
    ``(U)IntN`` column: ClickHouse's own conversion would not refuse them (``INSERT ... SELECT``
    wraps integers and ignores a Decimal's precision), so such rows go through
    :func:`check_values_fit` instead."""
    return _wider(table_type, arrow_type)


def _wider(table_type: str, arrow_type: pa.DataType) -> bool:
    decimal = re.search(r"Decimal\((\d+), (\d+)\)", table_type)
    integer = re.search(r"\b(U?)Int(8|16|32|64)\b", table_type)
    if decimal and pa.types.is_decimal(arrow_type):
        precision, scale = int(decimal.group(1)), int(decimal.group(2))
        return not (arrow_type.precision - arrow_type.scale <= precision - scale and arrow_type.scale <= scale)
    if integer and pa.types.is_integer(arrow_type):
        bits, unsigned = int(integer.group(2)), bool(integer.group(1))
        return not (arrow_type.bit_width < bits or (arrow_type.bit_width == bits
                                                    and pa.types.is_unsigned_integer(arrow_type) == unsigned))
    return False


# ---- nullability -------------------------------------------------------------------------------

def is_nullable(clickhouse: str) -> bool:
    """True when a column of this type can hold NULL."""
    return clickhouse.startswith("Nullable(") or clickhouse.startswith("LowCardinality(Nullable(")


def can_be_nullable(clickhouse: str) -> bool:
    """ClickHouse has no ``Nullable(Array(...))``: an array column cannot hold NULL at all."""
    inner = clickhouse[len("LowCardinality("):-1] if clickhouse.startswith("LowCardinality(") else clickhouse
    return not inner.startswith(("Array(", "Map(", "Tuple("))


def nullable_type(clickhouse: str) -> str:
    """``T`` widened to hold NULL (``Nullable(T)``, ``LowCardinality(Nullable(T))``)."""
    if is_nullable(clickhouse):
        return clickhouse
    if clickhouse.startswith("LowCardinality("):
        return f"LowCardinality(Nullable({clickhouse[len('LowCardinality('):-1]}))"
    return f"Nullable({clickhouse})"


def referenced_columns(expressions: list[str], names: list[str]) -> set[str]:
    """Which of ``names`` the SQL ``expressions`` (ORDER BY, PARTITION BY...) mention."""
    text = " ".join(expressions)
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text)) | set(re.findall(r"`([^`]+)`", text))
    return {name for name in names if name in words}


def first_null(column: pa.ChunkedArray) -> int:
    """Offset of the first NULL in a column that has one."""
    offset = 0
    for chunk in column.chunks:
        if chunk.null_count:
            return offset + chunk.is_null().to_pylist().index(True)
        offset += len(chunk)
    raise ValueError("no NULL in the column")


NULL_INTO_NON_NULLABLE = re.compile(r"Code: 349\b.*?(?:destination column|for column) (`?)([^\s`:]+)\1", re.S)
