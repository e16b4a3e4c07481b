"""Commands about SQL and the dependency graph: ``sql`` (query the store) and ``graph``."""

from __future__ import annotations

import csv
import io
import json
import sys
from contextlib import nullcontext
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table
from rich.text import Text

from cli.app import EXIT_OK, App, cli, pass_app
from core.exceptions import StoreError, UsageError

if TYPE_CHECKING:
    from core.sql_ast import StatementShape

DEFAULT_TERMINAL_LIMIT = 100
FORMATS = ("table", "tsv", "csv", "json", "vertical")


def read_query(query: str | None) -> str:
    """The statement: the argument, a file it names, or stdin (``-`` or no argument off a terminal)."""
    if query is None or query == "-":
        if sys.stdin.isatty():
            raise UsageError('give a query: ./run.sh sql "SELECT ...", a .sql file, or pipe one on stdin')
        query = sys.stdin.read()
    elif not any(c.isspace() for c in query.strip()) and Path(query).expanduser().is_file():
        query = Path(query).expanduser().read_text(encoding="utf-8")
    from core.sql_text import split_statements

    try:
        statements = split_statements(query, "query")
    except Exception as exc:
        raise UsageError(str(exc)) from None
    if len(statements) != 1:
        raise UsageError(f"give exactly one statement, got {len(statements)}")
    return statements[0].raw


#: How a NULL shows in a table or vertical output: ClickHouse's own marker (its Pretty and
#: Vertical formats), so the string 'NULL' and a NULL never look alike.
NULL_MARK = "ᴺᵁᴸᴸ"
READ_ONLY_HINT = ("(read-only by default, ClickHouse's readonly = 1: queries of the store's tables only, no "
                  "files, URLs or other servers, no changes; pass --write to change data or use table functions)")


def _text(value: Any) -> str:
    if value is None:
        return NULL_MARK
    if isinstance(value, datetime | date):
        return value.isoformat(sep=" ") if isinstance(value, datetime) else value.isoformat()
    return str(value)


def _tsv(value: Any) -> str:
    """A TSV field as ClickHouse writes one: NULL is ``\\N``, backslash, tab and newline escaped."""
    if value is None:
        return "\\N"
    return _text(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal | bytes):
        return str(value)
    return str(value)


def _vertical(columns: list[str], rows: list[tuple[Any, ...]]) -> str:
    """ClickHouse's Vertical layout: a block per row, one ``column: value`` line per column."""
    width = max((len(c) for c in columns), default=0)
    blocks = []
    for number, row in enumerate(rows, 1):
        title = f"Row {number}:"
        lines = [title, "─" * len(title)]
        lines += [f"{column}:".ljust(width + 2) + _text(value) for column, value in zip(columns, row, strict=True)]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def render(columns: list[str], rows: list[tuple[Any, ...]], fmt: str) -> str:
    """Rows as TSV (with a header), CSV (with a header), JSON (a list of objects) or vertical."""
    if fmt == "json":
        return json.dumps([dict(zip(columns, row, strict=True)) for row in rows], default=_json_value, indent=2)
    if fmt == "vertical":
        return _vertical(columns, rows)
    out = io.StringIO()
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(["" if v is None else _text(v) for v in row] for row in rows)
    else:
        out.write("\t".join(columns) + "\n")
        for row in rows:
            out.write("\t".join(_tsv(v) for v in row) + "\n")
    return out.getvalue().removesuffix("\n")  # only the last newline: an empty last field stays


def _checked(store: Any, statement: str, write: bool) -> StatementShape:
    """ClickHouse's parse of the statement; in read-only mode, refuse what ``readonly`` lets through."""
    from core.sql_ast import StatementShape, statement_shape

    try:
        found = statement_shape(store, statement)
    except StoreError:
        if not write:
            raise  # read-only runs only what ClickHouse could parse (its syntax error is the message)
        # --write: a statement EXPLAIN AST cannot wrap (WATCH) runs as written
        return StatementShape("", into_outfile=False, output_format=None, functions=frozenset(),
                              describes_table_function=False)
    reason = None if write else found.read_only_refusal()
    if reason:
        raise UsageError(f"Refused: {reason} {READ_ONLY_HINT}")
    return found


def _fetch(store: Any, statement: str, write: bool, limit: int, fmt: str | None) -> tuple[Any, str | None]:
    """Run the statement: its rows (columns, rows) or, with its own FORMAT clause, ClickHouse's output."""
    limits = {"max_result_rows": limit + 1, "result_overflow_mode": "break"} if limit else {}
    guard = nullcontext() if write else store.read_only(limits)
    try:
        with guard:
            found = _checked(store, statement, write)
            if found.output_format:
                if fmt:
                    raise UsageError(f"FORMAT {found.output_format} in the query and --format {fmt}: give one")
                return store.raw_query(statement), found.output_format
            result = store.query(statement, settings=limits if write else None)
            return (list(result.column_names), list(result.result_rows)), None
    except StoreError as exc:
        if "READONLY" in str(exc) and not write:
            raise UsageError(f"{exc}\n{READ_ONLY_HINT}") from None
        raise
    finally:
        store.close()


@cli.command("sql")
@click.argument("query", required=False)
@click.option("--format", "fmt", type=click.Choice(FORMATS),
              help="Output format (default: a table on a terminal, TSV when piped); a trailing FORMAT "
                   "clause in the query prints ClickHouse's own output instead.")
@click.option("--limit", type=click.IntRange(0), help=f"Rows to show; 0 = all (default: {DEFAULT_TERMINAL_LIMIT} "
                                                        "in a table, all otherwise).")
@click.option("--write", is_flag=True, help="Allow statements that change data or tables, or read files and "
                                            "other servers (default: read-only).")
@pass_app
def sql(app: App, query: str | None, fmt: str | None, limit: int | None, write: bool) -> int:
    """Run one SQL statement in the store and print the result (QUERY, a .sql file, or stdin).

    Read-only unless --write (ClickHouse's readonly setting; docs/sql-pipelines.md says what
    read-only may read). The result is fetched, the store released, then printed: a slow reader
    of the output never holds the embedded store.
    """
    statement = read_query(query)
    shown = fmt or ("table" if app.console.is_terminal else "tsv")
    if limit is None:
        limit = DEFAULT_TERMINAL_LIMIT if shown == "table" else 0
    fetched, own_format = _fetch(app.store, statement, write, limit, fmt)
    if own_format:
        sys.stdout.buffer.write(fetched)
        sys.stdout.flush()
        return EXIT_OK
    columns, rows = fetched
    more = bool(limit) and len(rows) > limit
    rows = rows[:limit] if limit else rows
    if shown != "table":
        if columns:
            click.echo(render(columns, rows, shown))
        if more:
            app.err.print(f"(first {limit} rows; --limit 0 for all)")
        return EXIT_OK
    if not columns:
        app.console.print("OK")
        return EXIT_OK
    table = Table(title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(Text(NULL_MARK, style="dim") if v is None else Text(_text(v)) for v in row))
    app.console.print(table, as_table=True)  # asked for (or a terminal): a table even when piped
    app.console.print(f"{len(rows)} row(s)" + (" shown (more exist; --limit to change)" if more else ""))
    return EXIT_OK


@cli.command("graph")
@click.argument("name", required=False)
@pass_app
def graph(app: App, name: str | None) -> int:
    """Print the dependency tree (depends_on): every pipeline, or NAME's upstreams and downstreams."""
    from runner.dependencies import tree_lines

    reg = app.registry
    lines = tree_lines(reg, name)
    if not lines:
        app.console.print("No pipelines found")
    for line in lines:
        click.echo(line)
    return EXIT_OK
