"""Commands about SQL and the dependency graph: ``sql`` (query the store) and ``graph``."""

from __future__ import annotations

import csv
import io
import json
import sys
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from cli.app import EXIT_OK, App, cli, pass_app
from core.exceptions import StoreError, UsageError

DEFAULT_TERMINAL_LIMIT = 100
FORMATS = ("table", "tsv", "csv", "json")


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


def _text(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, datetime | date):
        return value.isoformat(sep=" ") if isinstance(value, datetime) else value.isoformat()
    return str(value)


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal | bytes):
        return str(value)
    return str(value)


def render(columns: list[str], rows: list[tuple[Any, ...]], fmt: str) -> str:
    """Rows as TSV (with a header), CSV (with a header) or JSON (a list of objects)."""
    if fmt == "json":
        return json.dumps([dict(zip(columns, row, strict=True)) for row in rows], default=_json_value, indent=2)
    out = io.StringIO()
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(["" if v is None else _text(v) for v in row] for row in rows)
    else:
        out.write("\t".join(columns) + "\n")
        for row in rows:
            out.write("\t".join(_text(v).replace("\t", "\\t").replace("\n", "\\n") for v in row) + "\n")
    return out.getvalue().rstrip("\n")


@cli.command("sql")
@click.argument("query", required=False)
@click.option("--format", "fmt", type=click.Choice(FORMATS),
              help="Output format (default: a table on a terminal, TSV when piped).")
@click.option("--limit", type=click.IntRange(0), help=f"Rows to show; 0 = all (default: {DEFAULT_TERMINAL_LIMIT} "
                                                        "in a table, all otherwise).")
@click.option("--write", is_flag=True, help="Allow statements that change data or tables (default: read-only).")
@pass_app
def sql(app: App, query: str | None, fmt: str | None, limit: int | None, write: bool) -> int:
    """Run one SQL statement in the store and print the result (QUERY, a .sql file, or stdin).

    Read-only unless --write (ClickHouse's readonly setting). The result is fetched, the store
    released, then printed: a slow reader of the output never holds the embedded store.
    """
    statement = read_query(query)
    fmt = fmt or ("table" if app.console.is_terminal else "tsv")
    if limit is None:
        limit = DEFAULT_TERMINAL_LIMIT if fmt == "table" else 0
    settings: dict[str, Any] = {} if write else {"readonly": 2}
    if limit:  # stop reading soon after the limit (ClickHouse stops at a block boundary)
        settings.update(max_result_rows=limit + 1, result_overflow_mode="break")
    store = app.store
    try:
        result = store.query(statement, settings=settings)
        columns, rows = list(result.column_names), list(result.result_rows)
    except StoreError as exc:
        if "READONLY" in str(exc) and not write:
            raise UsageError(f"{exc}\n(read-only by default: pass --write to change data)") from None
        raise
    finally:
        store.close()
    more = bool(limit) and len(rows) > limit
    rows = rows[:limit] if limit else rows
    if fmt != "table":
        if columns:
            click.echo(render(columns, rows, fmt))
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
        table.add_row(*(_text(v) for v in row))
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
