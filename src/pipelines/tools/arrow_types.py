"""Type names accepted by extractors (``types=``) and the type transformer, as Arrow types.

One rule for time everywhere: ``datetime`` is a UTC timestamp; a value without an offset (a naive
string, a Parquet timestamp without a time zone) is UTC wall time, a value with an offset is
converted to UTC.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from core.exceptions import ConfigError

#: Arrow field metadata naming the ClickHouse column type when the Arrow type cannot say it (a
#: database's uuid is an Arrow string, its column UUID); the loader creates the column with it.
CLICKHOUSE_TYPE_KEY = b"clickhouse_type"

_NAMES: dict[str, pa.DataType] = {
    "int": pa.int64(), "integer": pa.int64(), "int64": pa.int64(), "int32": pa.int32(),
    "int16": pa.int16(), "int8": pa.int8(), "uint64": pa.uint64(), "uint32": pa.uint32(),
    "uint16": pa.uint16(), "uint8": pa.uint8(),
    "float": pa.float64(), "double": pa.float64(), "float64": pa.float64(), "float32": pa.float32(),
    "str": pa.string(), "string": pa.string(), "text": pa.string(),
    "bool": pa.bool_(), "boolean": pa.bool_(),
    "datetime": pa.timestamp("us", tz="UTC"), "timestamp": pa.timestamp("us", tz="UTC"),
    "date": pa.date32(),
}


def arrow_type(spec: Any, where: str = "type") -> pa.DataType:
    """``"int"``, ``"float"``, ``"str"``, ``"bool"``, ``"datetime"`` (UTC), ``"date"``,
    ``"decimal(p,s)"``, a Python type (``int``, ``str``...) or a ``pyarrow.DataType``."""
    if isinstance(spec, pa.DataType):
        return spec
    if isinstance(spec, type):
        by_type = {int: "int", float: "float", str: "str", bool: "bool"}
        import datetime as dt

        by_type.update({dt.datetime: "datetime", dt.date: "date"})
        if spec in by_type:
            return _NAMES[by_type[spec]]
    if isinstance(spec, str):
        key = spec.strip().lower()
        if key in _NAMES:
            return _NAMES[key]
        if key.startswith("decimal(") and key.endswith(")"):
            try:
                precision, scale = (int(x) for x in key[8:-1].split(","))
                return pa.decimal128(precision, scale)
            except ValueError:
                pass
    raise ConfigError(f"{where}: unknown type {spec!r}; use one of int, float, str, bool, datetime, date, "
                      "decimal(p,s) or a pyarrow type")


_CAST_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError, ValueError)


def parse_utc_timestamps(column: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray:
    """ISO-8601 strings (``T`` or space, optional fraction and offset; no offset means UTC)."""
    try:
        return column.cast(target)  # strings with an offset or Z
    except _CAST_ERRORS:
        pass
    try:  # naive strings: read as UTC wall time
        return column.cast(pa.timestamp(target.unit)).cast(target)
    except _CAST_ERRORS:
        pass
    # Mixed forms (some with offsets, some without): pandas parses them (this column only).
    import pandas as pd

    values = pd.to_datetime(pd.Series(column.to_pylist(), dtype="object"), utc=True, format="ISO8601")
    return pa.chunked_array([pa.array(values, type=pa.timestamp("us", tz="UTC"))]).cast(target)


def convert_column(column: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray:
    """``column`` as ``target``, timestamps by the rule above (a plain cast otherwise)."""
    if pa.types.is_timestamp(target) and target.tz is not None and (
            pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return parse_utc_timestamps(column, target)
    return column.cast(target)
