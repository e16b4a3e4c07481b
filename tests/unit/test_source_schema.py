"""The source-type mapping of database sources (issue 24); real servers: tests/integration/test_db_sources.py."""

from __future__ import annotations

import pyarrow as pa

from pipelines.tools.extractors.source_schema import column, mysql_base, postgres_base
from pipelines.tools.loaders.clickhouse_schema import clickhouse_type


def declared(base: str) -> str:
    """The column type a NOT NULL column of ClickHouse type ``base`` gets."""
    return column("c", "", base, nullable=False).clickhouse_type


def test_postgres_types() -> None:
    types = ("numeric(38,10)", "numeric(39,2)", "numeric", "timestamp(3) with time zone",
             "timestamp without time zone", "uuid[]", "bytea[]", "character(3)", "inet")
    assert [declared(postgres_base(t)) for t in types] \
        == ["Decimal(38, 10)", "String", "String", "DateTime64(6, 'UTC')", "DateTime64(6, 'UTC')",
            "Array(Nullable(UUID))", "Array(Nullable(String))", "String", "String"]
    assert postgres_base("mood", is_enum=True) == "String"


def test_mysql_types() -> None:
    types = ("tinyint(1)", "tinyint(3) unsigned", "bigint(20) unsigned", "mediumint(9)", "decimal(65,30)",
             "decimal(10,0)", "float", "double", "year(4)", "bit(1)", "timestamp(6)", "set('a','b')", "json")
    assert [declared(mysql_base(t)) for t in types] \
        == ["Int8", "UInt8", "UInt64", "Int32", "String", "Decimal(10, 0)", "Float32", "Float64", "Int16", "String",
            "DateTime64(6, 'UTC')", "String", "String"]


def test_the_loader_creates_the_declared_type() -> None:
    uuid = column("u", "uuid", "UUID", nullable=True)
    assert (uuid.clickhouse_type, uuid.arrow_type) == ("Nullable(UUID)", pa.string())
    assert clickhouse_type(uuid.arrow_field(), nullable=uuid.nullable) == "Nullable(UUID)"
    ids = column("ids", "integer[]", postgres_base("integer[]"), nullable=True)
    assert clickhouse_type(ids.arrow_field(), nullable=True) == "Array(Nullable(Int32))"
    code = column("code", "varchar(10)", "String", nullable=False)
    assert not code.arrow_field().nullable and clickhouse_type(code.arrow_field(), nullable=False) == "String"
    # A transformer that rebuilds the field (create_type_transformer) drops the declaration with it.
    assert clickhouse_type(pa.field("u", pa.string()), nullable=True) == "Nullable(String)"
