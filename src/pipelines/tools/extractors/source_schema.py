"""Column types of a database source, from its declared schema (issue 24), never from the data.

One function, :func:`source_columns`, gives the columns a table or a query has, each as a
:class:`SourceColumn`: the type the source declares, the ClickHouse column type the loader creates
for it, and the Arrow type the Python path builds its batches with (from the first batch on). The
push-down path casts every column to ``clickhouse_type``, so both paths give the same ``DESCRIBE``.

- A table: the catalog (PostgreSQL ``pg_attribute``/``format_type``, MySQL/MariaDB
  ``information_schema.COLUMNS``); ``NOT NULL`` columns are not ``Nullable``.
- A query: the result's description, from ``SELECT * FROM (query) LIMIT 0`` or, on MySQL, from
  the query's own executed result (PostgreSQL: type OIDs with the numeric precision and scale;
  MySQL: field types, flags, lengths). A query's columns are all
  ``Nullable`` on PostgreSQL (an outer join can make a NOT NULL column NULL); on MySQL the server's
  own NOT NULL flag for the result column is kept.

The mapping (docs/connectors.md, "Databases", has it as a table):

====================================  =========================================================
source                                ClickHouse
====================================  =========================================================
smallint / integer / bigint           Int16 / Int32 / Int64 (MySQL: tinyint Int8, mediumint
                                      Int32, ``UNSIGNED`` the UInt of the same width)
tinyint(1) (MySQL's BOOLEAN)          Int8: it holds -128..127, a Bool would change values
boolean                               Bool
real / double precision, float/double Float32 / Float64
numeric(p,s), decimal(p,s), p <= 38   Decimal(p, s)
numeric without (p,s), or p > 38      String: the exact decimal text (no ClickHouse Decimal holds
                                      every such value)
timestamptz, MySQL TIMESTAMP          DateTime64(6, 'UTC'): the instant, whatever the zones
timestamp, MySQL DATETIME             DateTime64(6, 'UTC'): the wall time, read as UTC
date                                  Date32
time, interval, MySQL TIME            String (PostgreSQL's text form; MySQL ``[-]HH:MM:SS[.f]``)
uuid                                  UUID
json / jsonb (MariaDB JSON)           String holding the JSON text
bytea, binary/blob                    String (the bytes)
enums, MySQL SET, text, varchar, char String
arrays (PostgreSQL)                   Array(Nullable(element)); a NULL array lands as []
anything else                         String (the driver's text of the value)
====================================  =========================================================

``Nullable(...)`` wraps every type but arrays unless the column is ``NOT NULL``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from pipelines.tools.arrow_types import CLICKHOUSE_TYPE_KEY

#: Arrow field metadata key carrying the source's declared type (for messages).
SOURCE_TYPE_KEY = b"source_type"

_UTC = pa.timestamp("us", tz="UTC")
_BY_CLICKHOUSE: dict[str, pa.DataType] = {
    "Int8": pa.int8(), "Int16": pa.int16(), "Int32": pa.int32(), "Int64": pa.int64(),
    "UInt8": pa.uint8(), "UInt16": pa.uint16(), "UInt32": pa.uint32(), "UInt64": pa.uint64(),
    "Float32": pa.float32(), "Float64": pa.float64(), "Bool": pa.bool_(), "String": pa.string(),
    "DateTime64(6, 'UTC')": _UTC, "Date32": pa.date32(), "UUID": pa.string(),
}
_BYTES = "String|bytes"  # a String column filled from bytes (Arrow binary)


@dataclass(frozen=True)
class SourceColumn:
    """One column of a database source and the types it gets."""

    name: str
    source_type: str  # as the source declares it, e.g. "numeric(12,2)"
    clickhouse_type: str  # the ClickHouse column type, Nullable(...) unless NOT NULL (or an array)
    arrow_type: pa.DataType  # what the Python path builds batches with
    nullable: bool = True

    @property
    def base_type(self) -> str:
        """``clickhouse_type`` without ``Nullable(...)``."""
        match = re.fullmatch(r"Nullable\((.*)\)", self.clickhouse_type)
        return match.group(1) if match else self.clickhouse_type

    def arrow_field(self) -> pa.Field:
        """The Arrow field for batches: nullability and, where Arrow cannot say it, the ClickHouse type."""
        metadata = {SOURCE_TYPE_KEY: self.source_type.encode()}
        if _arrow_says(self.arrow_type) != self.base_type:
            metadata[CLICKHOUSE_TYPE_KEY] = self.base_type.encode()
        return pa.field(self.name, self.arrow_type, nullable=self.nullable, metadata=metadata)


def _arrow_says(t: pa.DataType) -> str:
    for name, arrow in _BY_CLICKHOUSE.items():
        if arrow == t and name != "UUID":
            return name
    if pa.types.is_binary(t):
        return "String"
    if pa.types.is_decimal(t):
        return f"Decimal({t.precision}, {t.scale})"
    return ""


def column(name: str, source_type: str, base: str, nullable: bool) -> SourceColumn:
    """A SourceColumn for ClickHouse type ``base`` (``Decimal(p, s)``, ``Array(Nullable(T))``...)."""
    arrow = _arrow_type(base)
    base = "String" if base == _BYTES else base
    is_array = base.startswith("Array(")
    clickhouse = f"Nullable({base})" if nullable and not is_array else base
    return SourceColumn(name, source_type, clickhouse, arrow, nullable)


def _arrow_type(base: str) -> pa.DataType:
    if base == _BYTES:
        return pa.binary()
    decimal = re.fullmatch(r"Decimal\((\d+), (\d+)\)", base)
    if decimal:
        return pa.decimal128(int(decimal.group(1)), int(decimal.group(2)))
    array = re.fullmatch(r"Array\(Nullable\((.*)\)\)", base) or re.fullmatch(r"Array\((.*)\)", base)
    if array:
        return pa.list_(_arrow_type(array.group(1)))
    return _BY_CLICKHOUSE[base]


# ---- PostgreSQL --------------------------------------------------------------------------------

_PG_SIMPLE = {
    "smallint": "Int16", "integer": "Int32", "bigint": "Int64", "real": "Float32",
    "double precision": "Float64", "boolean": "Bool", "date": "Date32", "uuid": "UUID",
    "bytea": _BYTES, "oid": "UInt32",
}


def postgres_base(declared: str, is_enum: bool = False) -> str:
    """The ClickHouse type (without Nullable) for a PostgreSQL type as ``format_type`` writes it
    (``String|bytes``: a String column filled from bytes; :func:`column` resolves it)."""
    if declared.endswith("[]"):
        inner = postgres_base(declared[:-2])
        return f"Array(Nullable({'String' if inner == _BYTES else inner}))"
    if is_enum:
        return "String"
    if declared in _PG_SIMPLE:
        return _PG_SIMPLE[declared]
    numeric = re.fullmatch(r"numeric\((\d+),(\d+)\)", declared)
    if numeric and int(numeric.group(1)) <= 38:
        return f"Decimal({numeric.group(1)}, {numeric.group(2)})"
    if re.fullmatch(r"timestamp(\(\d\))? with(out)? time zone", declared):
        return "DateTime64(6, 'UTC')"
    return "String"


_PG_TABLE = """
SELECT a.attname,
       CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod)
            ELSE format_type(a.atttypid, a.atttypmod) END,
       a.attnotnull,
       coalesce(b.typtype, t.typtype) = 'e' OR coalesce(e.typtype, '') = 'e'
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_type b ON b.oid = t.typbasetype AND t.typtype = 'd'
LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A'
WHERE a.attrelid = to_regclass(%(table)s) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""


def _pg_table(cursor: Any, table: str) -> list[SourceColumn]:
    # Quoted as the extractor's SELECT quotes it (SQLAlchemy quotes names with capitals).
    quoted = ".".join('"' + part.replace('"', '""') + '"' for part in table.split("."))
    cursor.execute(_PG_TABLE, {"table": quoted})
    return [column(name, declared, postgres_base(declared, is_enum), not not_null)
            for name, declared, not_null, is_enum in cursor.fetchall()]


def _described(connection: Any, query: str, params: Any) -> Any:
    """The DB-API cursor of the query run for no rows (its description is the result's columns)."""
    from sqlalchemy import text

    return connection.execute(text(f"SELECT * FROM ({_strip(query)}) AS _dp_source LIMIT 0"), params or {}).cursor


def _pg_query(connection: Any, cursor: Any, query: str, params: Any) -> list[SourceColumn]:
    description = _described(connection, query, params).description
    oids = sorted({d.type_code for d in description})
    cursor.execute("SELECT t.oid, format_type(t.oid, NULL), t.typtype = 'e' OR coalesce(e.typtype, '') = 'e' "
                   "FROM pg_type t LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A' "
                   "WHERE t.oid = ANY(%(oids)s)", {"oids": oids})
    known = {oid: (declared, is_enum) for oid, declared, is_enum in cursor.fetchall()}
    result = []
    for d in description:
        declared, is_enum = known.get(d.type_code, ("unknown", False))
        if declared == "numeric" and d.precision is not None and 0 < d.precision < 1000:
            declared = f"numeric({d.precision},{d.scale})"
        result.append(column(d.name, declared, postgres_base(declared, is_enum), True))
    return result


# ---- MySQL / MariaDB ---------------------------------------------------------------------------

_MY_INTS = {"tinyint": 8, "smallint": 16, "mediumint": 32, "int": 32, "integer": 32, "bigint": 64, "year": 16}


def mysql_base(declared: str) -> str:
    """The ClickHouse type (without Nullable) for a MySQL/MariaDB ``COLUMN_TYPE`` (``String|bytes``
    as in :func:`postgres_base`)."""
    text = declared.lower().strip()
    word = re.match(r"[a-z]+", text)
    kind = word.group(0) if word else text
    if kind in _MY_INTS:
        return ("UInt" if "unsigned" in text else "Int") + str(_MY_INTS[kind])
    if kind in ("decimal", "numeric", "dec", "fixed"):
        numbers = re.match(r"[a-z]+\((\d+)(?:,(\d+))?\)", text)
        precision, scale = (int(numbers.group(1)), int(numbers.group(2) or 0)) if numbers else (10, 0)
        return f"Decimal({precision}, {scale})" if precision <= 38 else "String"
    if kind == "float":
        return "Float32"
    if kind in ("double", "real"):
        return "Float64"
    if kind in ("timestamp", "datetime"):
        return "DateTime64(6, 'UTC')"
    if kind == "date":
        return "Date32"
    if kind == "bool" or kind == "boolean":
        return "Int8"
    if kind in ("binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob", "bit"):
        return _BYTES
    if kind == "uuid":  # MariaDB 10.7+
        return "UUID"
    return "String"


def _my_table(cursor: Any, table: str) -> list[SourceColumn]:
    schema, _, name = table.rpartition(".")
    cursor.execute("SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE FROM information_schema.COLUMNS "
                   "WHERE TABLE_SCHEMA = COALESCE(%s, DATABASE()) AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
                   (schema or None, name))
    return [column(name, declared, mysql_base(declared), nullable == "YES")
            for name, declared, nullable in cursor.fetchall()]


# MySQL protocol field types (include/mysql_com.h) as COLUMN_TYPE words.
_MY_FIELD = {0: "decimal", 1: "tinyint", 2: "smallint", 3: "int", 4: "float", 5: "double", 7: "timestamp",
             8: "bigint", 9: "mediumint", 10: "date", 11: "time", 12: "datetime", 13: "year", 16: "bit",
             245: "json", 246: "decimal", 247: "enum", 248: "set"}
_BINARY_CHARSET = 63
_UNSIGNED_FLAG, _NOT_NULL_FLAG = 32, 1


def _my_fields(cursor: Any) -> list[SourceColumn]:
    """The columns of an executed MySQL query, from its DB-API cursor (PyMySQL's field packets)."""
    fields = getattr(getattr(cursor, "_result", None), "fields", None)
    result = []
    for i, d in enumerate(cursor.description):
        field = fields[i] if fields else None
        flags = field.flags if field is not None else (0 if d[6] else _NOT_NULL_FLAG)
        kind = _MY_FIELD.get(d[1])
        if kind is None:
            binary = field is not None and field.charsetnr == _BINARY_CHARSET
            declared = "blob" if binary else "text"
        elif kind == "decimal":
            length, scale = int(d[3] or 0), int(d[5] or 0)
            declared = f"decimal({length - (scale > 0) - (not flags & _UNSIGNED_FLAG)},{scale})"
        else:
            numeric = kind in _MY_INTS or kind in ("float", "double")
            declared = kind + (" unsigned" if numeric and flags & _UNSIGNED_FLAG else "")
        result.append(column(d[0], declared, mysql_base(declared), not flags & _NOT_NULL_FLAG))
    return result


# ---- entry point -------------------------------------------------------------------------------

def _strip(query: str) -> str:
    return query.strip().rstrip(";").strip()


def source_columns(connection_or_engine: Any, table: str | None = None, query: str | None = None,
                   params: dict[str, Any] | None = None, result: Any = None) -> list[SourceColumn]:
    """The columns of ``table`` (from the catalog) or of ``query`` (from its result description).

    ``result``: on MySQL/MariaDB, the query's own executed SQLAlchemy result, described instead
    of running the query again (MySQL may materialize a derived table before its ``LIMIT 0``).

    ``connection_or_engine``: a SQLAlchemy Engine or Connection to PostgreSQL or MySQL/MariaDB
    (other databases return ``[]``: their batches keep the types the driver's values give).
    ``query`` may use ``:name`` binds (as the db extractor's queries do) filled from ``params``; it
    is run for no rows. An unknown table gives ``[]``.
    """
    if (table is None) == (query is None):
        raise ValueError("give exactly one of table= or query=")
    engine = getattr(connection_or_engine, "engine", connection_or_engine)
    dialect = engine.dialect.name
    if dialect not in ("postgresql", "mysql", "mariadb"):
        return []
    own = not hasattr(connection_or_engine, "exec_driver_sql")
    connection = engine.connect() if own else connection_or_engine
    try:
        if dialect != "postgresql" and query is not None:
            return _my_fields(result.cursor if result is not None else _described(connection, query, params))
        with connection.connection.dbapi_connection.cursor() as cursor:
            if dialect == "postgresql":
                return _pg_table(cursor, table) if table else _pg_query(connection, cursor, query or "", params)
            return _my_table(cursor, table or "")
    finally:
        if own:
            connection.close()
