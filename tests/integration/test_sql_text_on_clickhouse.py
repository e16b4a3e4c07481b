"""What the SQL text helpers produce is what the real ClickHouse reads."""

from __future__ import annotations

import pytest

from core.sql_literals import sql_literal
from core.sql_text import split_statements
from core.store import Store

#: (text, the statements it holds): every one of them is SQL ClickHouse accepts.
EDGE_CASES = [
    # An escaped backslash ends right before the closing quote: the string is closed.
    ("SELECT 'a\\\\'; SELECT 2", ["SELECT 'a\\\\'", "SELECT 2"]),
    # Quotes, comment markers and semicolons inside a heredoc are its text.
    ("SELECT $$it's -- no; /* nor */$$; SELECT 2", ["SELECT $$it's -- no; /* nor */$$", "SELECT 2"]),
    ("SELECT $tag$ x $ y $$ ; $tag$; SELECT 2", ["SELECT $tag$ x $ y $$ ; $tag$", "SELECT 2"]),
    # A quote inside a comment opens nothing.
    ("SELECT 1 -- it's\n+ 1; SELECT 2", ["SELECT 1 \n+ 1", "SELECT 2"]),
    ("SELECT 1 /* it's; */ + 2; SELECT 3", ["SELECT 1   + 2", "SELECT 3"]),
    # Doubled and backslash-escaped quotes inside quoted identifiers.
    ('SELECT 1 AS "a""b;"; SELECT 1 AS `c``d;`; SELECT 1 AS "we\\"ird;"',
     ['SELECT 1 AS "a""b;"', "SELECT 1 AS `c``d;`", 'SELECT 1 AS "we\\"ird;"']),
    # A shebang line is a comment; "--" needs no space after it.
    ("#!/usr/bin/env clickhouse; not a statement\nSELECT 3; SELECT 1--2; not a statement either\n",
     ["SELECT 3", "SELECT 1"]),
    # A $ inside a name opens no heredoc.
    ("SELECT a$b$ FROM (SELECT 1 AS a$b$); SELECT 2", ["SELECT a$b$ FROM (SELECT 1 AS a$b$)", "SELECT 2"]),
]


@pytest.mark.parametrize("text, statements", EDGE_CASES)
def test_the_splitter_ends_statements_where_clickhouse_does(store: Store, text: str, statements: list[str]) -> None:
    assert [s.raw for s in split_statements(text)] == statements
    for statement in statements:  # and ClickHouse runs each of them
        store.query_rows(statement)


@pytest.mark.parametrize("value", ["plain", "it's", "back\\slash", "\\'", "'; DROP TABLE x; --", "tab\there",
                                   "new\nline", "{start}", "", "ünïcode"])
def test_a_string_literal_reads_back_as_the_value(store: Store, value: str) -> None:
    assert store.query_rows(f"SELECT {sql_literal(value)}") == [(value,)]
