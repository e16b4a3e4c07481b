"""Small validation helpers shared by config, pipelines and loaders."""

from __future__ import annotations

import re

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def is_identifier(name: str) -> bool:
    """True for names that need no quoting in ClickHouse (letters, digits, underscore)."""
    return bool(_IDENTIFIER.match(name))


def quote_identifier(name: str) -> str:
    """Quote a database, table or column name for ClickHouse SQL."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"
