"""The one placeholder renderer: ``{name}`` in SQL, URLs, request parameters and bodies.

Two modes:

- strict (SQL: migrations, SQL pipelines): every ``{name}`` must be one of the values given, else
  an error naming the source and line; ``{{name}}`` is a literal ``{name}``;
- lenient (HTTP URLs, parameters, JSON bodies): only the names given are replaced, any other
  brace stays as written.

In both, ClickHouse's own query parameters (``{name:Type}``) do not match and pass through. In SQL
(:func:`render_statement`) nothing inside a string literal or a comment is touched, so the macros
of Replicated engine paths (``'/clickhouse/tables/{shard}/{table}'``) reach ClickHouse as written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from core.exceptions import ConfigError, DataProcessorError, MigrationError
from core.sql_text import RenderedStatement, Segment, Statement

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
#: ``{{name}}`` (group 1, a literal) or ``{name}`` (group 2).
PLACEHOLDER_PATTERN = re.compile(r"\{\{(" + _NAME + r")\}\}|\{(" + _NAME + r")\}")
_LENIENT = re.compile(r"\{(" + _NAME + r")\}")
# Segments of a statement placeholders are substituted in (never strings or comments).
_SQL_KINDS = ("code", "ident")


def placeholders_in(text: str, *, strict: bool = True) -> set[str]:
    """The placeholder names ``text`` uses (strict mode: ``{{name}}`` is not a use)."""
    if not strict:
        return set(_LENIENT.findall(text))
    return {match.group(2) for match in PLACEHOLDER_PATTERN.finditer(text) if match.group(2) is not None}


def render_placeholders(text: str, values: Mapping[str, str], *, strict: bool = True, source: str = "<text>",
                        line: int = 1, error: type[DataProcessorError] = ConfigError) -> str:
    """``text`` with each ``{name}`` replaced by ``values[name]`` (see the module doc for the modes).

    Strict mode raises ``error`` for a name not in ``values``: ``"<source> line <n>: unknown
    placeholder {x} (known: ...)"``, ``line`` being the line ``text`` starts on.
    """
    if not strict:
        return _LENIENT.sub(lambda m: values[m.group(1)] if m.group(1) in values else m.group(0), text)

    def replace(match: re.Match[str]) -> str:
        if match.group(1) is not None:  # {{name}}: a literal {name}
            return "{" + match.group(1) + "}"
        name = match.group(2)
        if name not in values:
            at = line + text[: match.start()].count("\n")
            known = ", ".join("{" + k + "}" for k in values)
            raise error(f"{source} line {at}: unknown placeholder {{{name}}} (known: {known}; "
                        f"write {{{{{name}}}}} for a literal {{{name}}})")
        return values[name]

    return PLACEHOLDER_PATTERN.sub(replace, text)


def statement_placeholders(statement: Statement) -> set[str]:
    """The placeholders a SQL statement uses outside its strings and comments."""
    return {name for seg in statement.segments if seg.kind in _SQL_KINDS for name in placeholders_in(seg.text)}


def render_statement(statement: Statement, values: Mapping[str, str], source: str = "<sql>",
                     error: type[DataProcessorError] = MigrationError) -> RenderedStatement:
    """Substitute placeholders (strict) in code and quoted identifiers, never in strings or comments."""

    def substitute(seg: Segment) -> str:
        if seg.kind not in _SQL_KINDS:
            return seg.text
        return render_placeholders(seg.text, values, source=source, line=seg.line, error=error)

    return RenderedStatement(statement.text(substitute), statement.line)
