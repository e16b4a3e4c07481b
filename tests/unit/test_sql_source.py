"""Placeholders of SQL pipelines: typed parameters in code, left alone in strings and comments."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.exceptions import PipelineError
from pipelines.tools.extractors.sql_source import compile_query, create_sql_extractor


def test_placeholders_become_typed_parameters_and_strings_are_left_alone() -> None:
    query, used = compile_query(
        "SELECT '{start}' AS s, `{end}` AS quoted, {start_date} AS d -- {nope} in a comment\n"
        "FROM t WHERE ts >= {start} AND ts < {end} AND x = {mine:UInt8} AND m = map('{a}', 1) AND y = '{{z}}'")
    assert used == {"start", "end", "start_date"}
    assert "'{start}' AS s" in query and "'{a}'" in query and "'{{z}}'" in query
    assert "{dp_start_date:Date} AS d" in query
    assert "ts >= {dp_start:DateTime64(6, 'UTC')} AND ts < {dp_end:DateTime64(6, 'UTC')}" in query
    assert "{mine:UInt8}" in query  # the user's own ClickHouse parameters pass through


def test_literal_braces_in_code_are_written_doubled() -> None:
    query, used = compile_query("SELECT {{start}} AS x")
    assert query == "SELECT {start} AS x" and used == set()


@pytest.mark.parametrize(("sql", "message"), [
    ("SELECT 1\nFROM t WHERE a = {starts}", "q.sql line 2: unknown placeholder {starts} (known: {start}, {end}, "
                                            "{start_date}, {end_date}, {run_id}, {pipeline}"),
    ("SELECT 1; SELECT 2", "q.sql: a SQL pipeline needs exactly one SELECT statement, found 2"),
    ("INSERT INTO t SELECT 1", "q.sql line 1: a SQL pipeline's source must be a SELECT (or WITH ... SELECT) query, "
                               "got 'INSERT'"),
    ("SELECT 'unterminated", "q.sql line 1: unterminated string starting here"),
])
def test_bad_queries_fail_at_construction_naming_the_file_and_line(sql: str, message: str) -> None:
    with pytest.raises(PipelineError) as error:
        compile_query(sql, "q.sql")
    assert message in str(error.value)


def test_with_queries_and_interval_awareness() -> None:
    assert create_sql_extractor("WITH 1 AS x SELECT x FROM t WHERE d = {start_date}").interval_aware
    assert not create_sql_extractor("SELECT count() FROM t").interval_aware


def test_sql_from_a_file_next_to_the_calling_module(tmp_path: Path) -> None:
    import importlib.util

    (tmp_path / "q.sql").write_text("SELECT {start} AS t")
    (tmp_path / "caller.py").write_text("from pipelines.tools.extractors.sql_source import create_sql_extractor\n"
                                        "EXTRACTOR = create_sql_extractor(sql_file='q.sql')\n")
    spec = importlib.util.spec_from_file_location("caller_of_sql_file", tmp_path / "caller.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.EXTRACTOR.source == str(tmp_path / "q.sql") and module.EXTRACTOR.placeholders == {"start"}
    with pytest.raises(PipelineError, match="SQL file .*missing.sql does not exist"):
        create_sql_extractor(sql_file="missing.sql")
    with pytest.raises(PipelineError, match="give either sql or sql_file"):
        create_sql_extractor()
