"""Type names accepted by extractors (``types=``) and the type transformer, as Arrow types."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from core.exceptions import ConfigError

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
