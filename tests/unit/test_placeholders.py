"""The one placeholder renderer: strict (SQL) and lenient (URLs, JSON bodies) modes."""

from __future__ import annotations

import pytest

from core.exceptions import ConfigError, LoadError
from core.placeholders import placeholders_in, render_placeholders

VALUES = {"start": "2024-01-01", "pipeline": "orders"}


def test_strict_mode_replaces_known_names_and_unescapes_doubled_braces() -> None:
    text = "WHERE d = {start} AND p = {pipeline} AND x = {mine:UInt8} AND y = {{start}}"
    assert (render_placeholders(text, VALUES)
            == "WHERE d = 2024-01-01 AND p = orders AND x = {mine:UInt8} AND y = {start}")
    assert placeholders_in(text) == {"start", "pipeline"}


def test_strict_mode_names_the_source_and_line_of_an_unknown_placeholder() -> None:
    with pytest.raises(LoadError) as error:
        render_placeholders("a\nb {day}", VALUES, source="x.sql", line=10, error=LoadError)
    assert str(error.value) == ("x.sql line 11: unknown placeholder {day} (known: {start}, {pipeline}; "
                                "write {{day}} for a literal {day})")
    with pytest.raises(ConfigError, match="unknown placeholder {day}"):
        render_placeholders("{day}", VALUES)


def test_lenient_mode_leaves_every_other_brace_as_written() -> None:
    body = '{"from": "{start}", "other": "{unknown}", "n": {"k": 1}, "lit": "{{pipeline}}"}'
    assert render_placeholders(body, VALUES, strict=False) == (
        '{"from": "2024-01-01", "other": "{unknown}", "n": {"k": 1}, "lit": "{orders}"}')
    assert placeholders_in(body, strict=False) == {"start", "unknown", "pipeline"}
