"""ClickHouse SQL as text: where statements end and where strings, identifiers and comments are.

Not a parser: it knows only the constructs that can hide a ``;`` or a ``{placeholder}``. They are
declared as data (:data:`CLICKHOUSE`, one :class:`Span` each: how it opens, how it closes, its
escapes) and read by one scanning loop, :func:`split_statements`, which migrations, SQL pipelines
and ``./run.sh sql`` share.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from core.exceptions import DataProcessorError, MigrationError

#: ``Span.closing`` of a construct closed by the same text that opened it (a heredoc's ``$tag$``).
SAME_AS_OPENING = "\0same"


@dataclass(frozen=True)
class Span:
    """A construct inside which ``;`` does not end the statement.

    ``opening`` is a regular expression, ``closing`` literal text (``None``: the end of the line,
    the newline itself staying outside). Inside, ``escape`` makes the next character literal,
    ``doubled`` makes the closing text written twice a literal one, ``nested`` counts inner
    openings. ``what`` names it in the unterminated-... error (``{opening}``: as written).
    """

    kind: str  # the Segment kind it becomes: string, ident or comment
    opening: str
    closing: str | None
    escape: str = ""
    doubled: bool = False
    nested: bool = False
    what: str = ""

    @cached_property
    def _stops(self) -> re.Pattern[str]:
        """What ends the scan of the inside: an escape, an inner opening or the closing text."""
        stops = [re.escape(self.escape)] if self.escape else []
        if self.nested:
            stops.append(self.opening)
        return re.compile("|".join([*stops, re.escape(self.closing or "")]))

    def end(self, sql: str, opened: re.Match[str]) -> int | None:
        """Index just after the construct ``opened`` starts, or ``None`` when it never closes."""
        if self.closing is None:
            newline = sql.find("\n", opened.end())
            return len(sql) if newline < 0 else newline
        closing = opened.group() if self.closing == SAME_AS_OPENING else self.closing
        if not (self.escape or self.doubled or self.nested):
            found = sql.find(closing, opened.end())
            return None if found < 0 else found + len(closing)
        depth, at = 1, opened.end()
        while (stop := self._stops.search(sql, at)) is not None:
            text, at = stop.group(), stop.end()
            if text == self.escape:
                at += 1
            elif text != closing:  # an inner opening
                depth += 1
            elif self.doubled and sql.startswith(closing, at):
                at += len(closing)
            else:
                depth -= 1
                if not depth:
                    return at
        return None


@dataclass(frozen=True)
class Dialect:
    """The spans of a SQL dialect and its statement terminator."""

    spans: tuple[Span, ...]
    terminator: str = ";"

    @cached_property
    def scanner(self) -> re.Pattern[str]:
        """Finds the next span opening (group ``s<index>``) or terminator (group ``end``)."""
        groups = [f"(?P<s{i}>{span.opening})" for i, span in enumerate(self.spans)]
        return re.compile("|".join([*groups, f"(?P<end>{re.escape(self.terminator)})"]))


#: ClickHouse's lexer, as far as statements and placeholders are concerned.
CLICKHOUSE = Dialect(spans=(
    Span("string", "'", "'", escape="\\", doubled=True, what="string"),
    Span("ident", '"', '"', escape="\\", doubled=True, what='quoted identifier (")'),
    Span("ident", "`", "`", escape="\\", doubled=True, what="quoted identifier (`)"),
    Span("comment", "--", None),
    # "# x" and "#!" start a comment, "#x" does not.
    Span("comment", r"#(?=[! \t\r\n]|\Z)", None),
    Span("comment", r"/\*", "*/", nested=True, what="/* comment"),
    # $$...$$ or $tag$...$tag$; a $ inside a name (a$b$) opens nothing.
    Span("string", r"(?<!\w)\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$", SAME_AS_OPENING, what="heredoc {opening}"),
))


@dataclass(frozen=True)
class Segment:
    """A piece of a statement: ``code``, ``string`` ('...' or a heredoc), ``ident`` ("..." or
    `...`) or ``comment``; ``line`` is the line it starts on."""

    kind: str
    text: str
    line: int


@dataclass(frozen=True)
class Statement:
    """One statement of a text, as written (placeholders not substituted yet)."""

    segments: tuple[Segment, ...]

    @property
    def line(self) -> int:
        """Line of the statement's first token."""
        for seg in self.segments:
            if seg.kind != "comment" and seg.text.strip():
                lead = seg.text[: len(seg.text) - len(seg.text.lstrip())]
                return seg.line + lead.count("\n")
        return self.segments[0].line if self.segments else 1

    @property
    def raw(self) -> str:
        """The statement without comments and without substitution (what ``./run.sh sql`` runs)."""
        return self.text()

    def text(self, text_of: Callable[[Segment], str] = lambda seg: seg.text) -> str:
        """The statement without its comments, each other segment written as ``text_of`` says."""
        parts = []
        for seg in self.segments:
            if seg.kind == "comment":
                # Keep the tokens around a comment apart, and keep the line structure.
                # (a line comment ends before its newline, which stays in the code)
                line_comment = not seg.text.startswith("/*")
                parts.append("" if line_comment else "\n" * seg.text.count("\n") or " ")
            else:
                parts.append(text_of(seg))
        return "".join(parts).strip()


@dataclass(frozen=True)
class RenderedStatement:
    """A statement ready to run: substituted SQL and the line it starts on."""

    sql: str
    line: int


def split_statements(sql: str, source: str = "<sql>", error: type[DataProcessorError] = MigrationError,
                     dialect: Dialect = CLICKHOUSE) -> list[Statement]:
    """Split SQL text into statements at ``;``, honouring quotes, comments and heredocs.

    With :data:`CLICKHOUSE`: '...' strings (with ``\\'`` and ``''`` escapes), "..." and `...`
    identifiers, ``--``, ``#`` and (nested) ``/* */`` comments and ``$tag$...$tag$`` heredocs.
    Raises ``error`` naming ``source`` and the line of an unterminated quote or comment.
    Statements that hold only comments are dropped.
    """
    statements: list[Statement] = []
    current: list[Segment] = []
    at, line = 0, 1

    def add(kind: str, text: str) -> None:
        nonlocal line
        current.append(Segment(kind, text, line))
        line += text.count("\n")

    def end_statement() -> None:
        if any(seg.kind != "comment" and seg.text.strip() for seg in current):
            statements.append(Statement(tuple(current)))
        current.clear()

    while (found := dialect.scanner.search(sql, at)) is not None:
        if found.start() > at:
            add("code", sql[at:found.start()])
        if found.lastgroup == "end":
            end_statement()
            at = found.end()
            continue
        span = dialect.spans[int(str(found.lastgroup)[1:])]
        end = span.end(sql, found)
        if end is None:
            what = span.what.format(opening=found.group())
            raise error(f"{source} line {line}: unterminated {what} starting here")
        add(span.kind, sql[found.start():end])
        at = end
    if at < len(sql):
        add("code", sql[at:])
    end_statement()
    return statements
