"""ClickHouse SQL string literals, for the few values that cannot be bound as query parameters
(DDL, ``SETTINGS``, table-function arguments). Bind everything else as ``{name:Type}``."""

from __future__ import annotations


def sql_literal(value: str) -> str:
    """``value`` as a ClickHouse string literal: quoted with ``'``, backslashes and quotes escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
