"""Placeholder until h24db's module is merged: each source column's ClickHouse and Arrow type."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa


@dataclass(frozen=True)
class SourceColumn:
    name: str
    source_type: str
    clickhouse_type: str
    arrow_type: pa.DataType


_PG = {"bigint": ("Int64", pa.int64()), "integer": ("Int32", pa.int32()), "text": ("String", pa.string()),
       "boolean": ("Bool", pa.bool_()), "date": ("Date32", pa.date32()),
       "timestamp with time zone": ("DateTime64(6, 'UTC')", pa.timestamp("us", "UTC")),
       "timestamp without time zone": ("DateTime64(6)", pa.timestamp("us"))}


def source_columns(connection_or_engine: Any, table: str | None = None, query: str | None = None) -> list[SourceColumn]:
    from sqlalchemy import text

    schema, _, name = (table or "").rpartition(".")
    with connection_or_engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relname = :t AND n.nspname = :s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"),
            {"t": name, "s": schema or "public"}).fetchall()
    out = []
    for col, kind, notnull in rows:
        if kind.startswith("numeric("):
            p, s = kind[8:-1].split(",")
            ch, arrow = f"Decimal({p}, {s})", pa.decimal128(int(p), int(s))
        else:
            ch, arrow = _PG[kind]
        out.append(SourceColumn(col, kind, ch if notnull else f"Nullable({ch})", arrow))
    return out
