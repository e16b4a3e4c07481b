"""The statement splitter's errors and the constructs it must not take for a comment (its edge cases
that ClickHouse accepts are in tests/integration/test_sql_text_on_clickhouse.py)."""

from __future__ import annotations

import pytest

from core.exceptions import PipelineError
from core.sql_text import split_statements


def test_a_lone_hash_before_a_word_is_not_a_comment() -> None:
    # ClickHouse starts a comment at "# " and "#!" only; "#x" stays code (and so does its ;).
    assert [s.raw for s in split_statements("SELECT 1 #x; SELECT 2")] == ["SELECT 1 #x", "SELECT 2"]


def test_the_caller_chooses_the_error_class() -> None:
    with pytest.raises(PipelineError, match="^q.sql line 2: unterminated quoted identifier \\(\"\\) starting here$"):
        split_statements('SELECT 1;\nSELECT "open', "q.sql", PipelineError)


def test_an_escape_at_the_very_end_leaves_the_string_open() -> None:
    with pytest.raises(PipelineError, match="line 1: unterminated string starting here"):
        split_statements("SELECT 'a\\", "q.sql", PipelineError)
