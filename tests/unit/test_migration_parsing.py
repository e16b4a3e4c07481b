"""Migration files as text: statement splitting, placeholders, ON CLUSTER rendering, file names."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from core.exceptions import MigrationError
from core.migrations import (
    cluster_clause,
    framework_ddl,
    load_migrations,
    placeholder_values,
    render_sql,
    split_statements,
)

VALUES = placeholder_values("dw", None)


def sqls(text: str, values: dict[str, str] = VALUES) -> list[str]:
    return [s.sql for s in render_sql(text, values, "m.sql")]


def test_splits_on_semicolons_and_drops_empty_statements() -> None:
    assert sqls("SELECT 1;\n\n  SELECT 2 ;;\n;SELECT 3") == ["SELECT 1", "SELECT 2", "SELECT 3"]


def test_semicolons_inside_quotes_do_not_split() -> None:
    text = """INSERT INTO t VALUES ('a;b', 'it''s; fine', 'back\\'slash;');
SELECT "we;ird", `col;umn` FROM t;
SELECT $$heredoc; with ; semicolons$$, $tag$ more; $tag$"""
    assert sqls(text) == [
        "INSERT INTO t VALUES ('a;b', 'it''s; fine', 'back\\'slash;')",
        'SELECT "we;ird", `col;umn` FROM t',
        "SELECT $$heredoc; with ; semicolons$$, $tag$ more; $tag$",
    ]


def test_comments_are_removed_and_their_semicolons_ignored() -> None:
    text = """-- header; with a semicolon
CREATE TABLE a (x UInt8) -- trailing; comment
ENGINE = Memory;
/* block; comment /* nested; */ still comment; */
SELECT 1 /* inline; */ + 2;
# hash comment; too
-- a statement of only comments is dropped:
/* ; */ ;
SELECT '-- not a comment', '/* nor this */', 'a # b'"""
    assert sqls(text) == [
        "CREATE TABLE a (x UInt8) \nENGINE = Memory",
        "SELECT 1   + 2",
        "SELECT '-- not a comment', '/* nor this */', 'a # b'",
    ]


def test_statement_lines_are_those_of_their_first_token() -> None:
    text = "-- one\n\nSELECT 1;\n/* two\nlines */ SELECT\n2;\n\n\n  SELECT 'a\nb';SELECT 4"
    statements = split_statements(text)
    assert [s.line for s in statements] == [3, 5, 9, 10]


@pytest.mark.parametrize("text, line, what", [
    ("SELECT 1;\nSELECT 'open", 2, "unterminated string"),
    ("SELECT `col\n\n", 1, "unterminated quoted identifier (`)"),
    ("SELECT 1;\n\n/* never closed", 3, "unterminated /* comment"),
    ("SELECT $x$ abc", 1, "unterminated heredoc $x$"),
])
def test_unterminated_quotes_and_comments_name_file_and_line(text: str, line: int, what: str) -> None:
    with pytest.raises(MigrationError) as err:
        split_statements(text, "migrations/sql/0003_x.sql")
    assert str(err.value) == f"migrations/sql/0003_x.sql line {line}: {what} starting here"


def test_database_placeholder_is_substituted_in_code_and_quoted_identifiers() -> None:
    assert sqls("CREATE TABLE {database}.t{cluster} (x UInt8) ENGINE = Memory; SELECT * FROM `{database}`.`t`") == [
        "CREATE TABLE dw.t (x UInt8) ENGINE = Memory",
        "SELECT * FROM `dw`.`t`",
    ]


def test_cluster_renders_on_cluster_only_when_set() -> None:
    assert cluster_clause(None) == ""
    assert cluster_clause("") == ""
    assert cluster_clause("prod") == " ON CLUSTER prod"
    text = "ALTER TABLE {database}.events{cluster} ADD COLUMN IF NOT EXISTS y UInt8"
    assert sqls(text, placeholder_values("dw", "prod")) == [
        "ALTER TABLE dw.events ON CLUSTER prod ADD COLUMN IF NOT EXISTS y UInt8"
    ]
    assert sqls(text) == ["ALTER TABLE dw.events ADD COLUMN IF NOT EXISTS y UInt8"]


def test_strings_comments_and_query_parameters_are_left_alone() -> None:
    text = ("CREATE TABLE {database}.r{cluster} (x UInt8) "
            "ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}') ORDER BY x;\n"
            "-- {unknown} in a comment is fine\n"
            "SELECT {value:UInt32}, {{literal}}, '{\"json\": {\"k\": 1}}', match(s, 'a{2}')")
    assert sqls(text, placeholder_values("dw", "c1")) == [
        "CREATE TABLE dw.r ON CLUSTER c1 (x UInt8) "
        "ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}') ORDER BY x",
        "SELECT {value:UInt32}, {literal}, '{\"json\": {\"k\": 1}}', match(s, 'a{2}')",
    ]


def test_unknown_placeholder_names_file_and_line() -> None:
    text = "SELECT 1;\n\nCREATE TABLE {database}.t (\n  x UInt8\n) ENGINE = {engine}"
    with pytest.raises(MigrationError) as err:
        render_sql(text, VALUES, "migrations/sql/0002_t.sql")
    assert str(err.value) == (
        "migrations/sql/0002_t.sql line 5: unknown placeholder {engine} "
        "(known: {database}, {cluster}; write {{engine}} for a literal {engine})"
    )


def test_framework_tables_on_a_cluster_are_replicated_on_cluster(store_free_table) -> None:
    local = framework_ddl(store_free_table, None)
    assert "ReplacingMergeTree(row_version)" in local[0] and "ON CLUSTER" not in local[0]
    clustered = framework_ddl(store_free_table, "prod")
    assert clustered[0].startswith("CREATE TABLE IF NOT EXISTS `dw`.`_dp_migrations` ON CLUSTER `prod` (")
    assert ("ReplicatedReplacingMergeTree('/clickhouse/data_processor/{database}/_dp_migrations', '{replica}', "
            "row_version)") in clustered[0]
    assert "`dw`.`_dp_locks` ON CLUSTER `prod`" in clustered[1]


@pytest.fixture
def store_free_table():
    class _Names:  # framework_ddl only needs table-name quoting
        def table(self, name: str) -> str:
            return f"`dw`.`{name}`"

    return _Names()


def _touch(directory: Path, *names: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        (directory / name).write_text("SELECT 1")


def test_files_are_ordered_numerically_with_their_down_files(tmp_path: Path) -> None:
    _touch(tmp_path, "10_ten.sql", "0002_two.sql", "0002_two.down.sql", "0001_one.sql", "README.md")
    found = load_migrations(tmp_path)
    assert [(m.version, m.name, m.down_path.name if m.down_path else None) for m in found] == [
        (1, "one", None), (2, "two", "0002_two.down.sql"), (10, "ten", None),
    ]
    assert found[0].checksum == hashlib.sha256(b"SELECT 1").hexdigest()
    assert load_migrations(tmp_path / "absent") == []


@pytest.mark.parametrize("names, message", [
    (["0001_a.sql", "1_b.sql"], "two migration files have version 1: 0001_a.sql and 1_b.sql"),
    (["create_things.sql"], "migration files must be named NNNN_description.sql"),
    (["0001_a.sql", "0002_b.down.sql"], "down file 0002_b.down.sql in .* has no migration 0002_b.sql"),
    (["0001_a.sql", "0001_b.down.sql"], "down file 0001_b.down.sql does not match its migration 0001_a.sql"),
])
def test_bad_file_names_are_errors(tmp_path: Path, names: list[str], message: str) -> None:
    _touch(tmp_path, *names)
    with pytest.raises(MigrationError, match=message.replace(".sql", r"\.sql")):
        load_migrations(tmp_path)


def test_a_migration_file_renders_its_placeholders() -> None:
    from conftest import FIXTURE_MIGRATIONS

    [readings] = load_migrations(FIXTURE_MIGRATIONS)
    [create] = readings.statements(placeholder_values("dw", "prod"))
    assert create.sql.startswith("CREATE TABLE IF NOT EXISTS dw.fixture_readings ON CLUSTER prod\n(")
    assert "PARTITION BY reading_date\nORDER BY (reading_date, sensor, reading_time)" in create.sql
    [drop] = readings.down_statements(placeholder_values("dw", None))
    assert drop.sql == "DROP TABLE IF EXISTS dw.fixture_readings SYNC"
