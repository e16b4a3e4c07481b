"""Which db extractor queries ClickHouse can run itself: the query read in the source's dialect.

ClickHouse's ``postgresql()``/``mysql()`` table functions read one table and push simple
comparisons down to the source. So a query is *expressible* when, parsed with sqlglot in the
source's dialect, it is::

    SELECT <*, or plain columns, optionally renamed> FROM <[schema.]table>
    [WHERE <column> <op> :bind AND ... ] [ORDER BY ...]

with ``op`` one of ``= <> != < <= > >=`` (the bind on either side) and, for the documented
incremental form, ``(:cursor IS NULL OR <column> > :cursor)`` as one of the AND-ed terms (decided
at run time from the bind's value). ``ORDER BY`` is dropped: a load does not keep row order.
Anything else (joins, functions, literals, LIMIT, GROUP BY, DISTINCT, CTEs, subqueries) is not
expressible, and :func:`query_shape` says why in words for the job log.
"""

from __future__ import annotations

from dataclasses import dataclass, field

_DIALECTS = {"postgresql": "postgres", "mysql": "mysql"}
_FLIPPED = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "=": "=", "<>": "<>"}


@dataclass(frozen=True)
class Comparison:
    """``column op :bind``; with ``unless_null``, the term holds outright when that bind is NULL."""

    column: str
    op: str
    bind: str
    unless_null: bool = False


@dataclass(frozen=True)
class QueryShape:
    """An expressible query: its table, its columns (``None``: all), its AND-ed comparisons."""

    schema: str | None
    table: str
    columns: list[tuple[str, str]] | None  # (source column, output name)
    where: list[Comparison] = field(default_factory=list)


class NotExpressible(Exception):  # noqa: N818 (a reason, not an error: the Python path runs)
    """The query has a part ClickHouse's table function cannot take; the message says which."""


def table_shape(table: str) -> QueryShape:
    """The shape of ``table=`` mode: every column of ``[schema.]table``."""
    schema, _, name = table.rpartition(".")
    return QueryShape(schema or None, name, None)


def query_shape(sql: str, backend: str) -> QueryShape:
    """``sql``'s shape, read in ``backend``'s dialect (``postgresql`` or ``mysql``).

    Raises :class:`NotExpressible` naming what ClickHouse cannot take.
    """
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import ParseError

    try:
        statements = [s for s in sqlglot.parse(sql, read=_DIALECTS[backend]) if s is not None]
    except ParseError as exc:
        raise NotExpressible(f"sqlglot cannot read the query ({str(exc).splitlines()[0][:120]})") from None
    if len(statements) != 1 or not isinstance(statements[0], exp.Select):
        raise NotExpressible("the query is not one plain SELECT")
    select = statements[0]
    for key, what in (("joins", "a JOIN"), ("with_", "a WITH clause"), ("group", "GROUP BY"),
                      ("having", "HAVING"), ("limit", "LIMIT"), ("offset", "OFFSET"), ("distinct", "DISTINCT"),
                      ("windows", "a WINDOW"), ("qualify", "QUALIFY"), ("locks", "a locking clause")):
        if select.args.get(key):
            raise NotExpressible(f"the query has {what}")
    source = select.args.get("from_") or select.args.get("from")
    table = source.this if source is not None else None
    if not isinstance(table, exp.Table) or table.args.get("catalog") or not isinstance(table.this, exp.Identifier):
        raise NotExpressible("the query does not read one plain [schema.]table")
    names = {_name(table.this, backend)} | ({_name(table.args["alias"].this, backend)}
                                           if table.args.get("alias") else set())
    return QueryShape(_name(table.args["db"], backend) if table.args.get("db") else None,
                      _name(table.this, backend), _columns(select, names, backend),
                      _where(select.args.get("where"), names, backend))


def _name(identifier: object, backend: str) -> str:
    """An identifier as the source stores it: PostgreSQL folds unquoted names to lower case."""
    from sqlglot import exp

    assert isinstance(identifier, exp.Identifier)
    text = identifier.this
    return text.lower() if backend == "postgresql" and not identifier.quoted else text


def _column(node: object, tables: set[str], backend: str) -> str:
    from sqlglot import exp

    if not isinstance(node, exp.Column) or node.args.get("db") or node.args.get("catalog") \
            or not isinstance(node.this, exp.Identifier):
        raise NotExpressible(f"{_sql(node)} is not a plain column")
    if node.args.get("table") and _name(node.args["table"], backend) not in tables:
        raise NotExpressible(f"{_sql(node)} names another table")
    return _name(node.this, backend)


def _columns(select: object, tables: set[str], backend: str) -> list[tuple[str, str]] | None:
    from sqlglot import exp

    assert isinstance(select, exp.Select)
    items = select.expressions
    if len(items) == 1 and isinstance(items[0], exp.Star):
        return None
    columns = []
    for item in items:
        if isinstance(item, exp.Alias):
            columns.append((_column(item.this, tables, backend), _name(item.args["alias"], backend)))
        else:
            name = _column(item, tables, backend)
            columns.append((name, name))
    outputs = [output for _, output in columns]
    if len(set(outputs)) != len(outputs):
        raise NotExpressible("the query names a column twice")
    return columns


def _where(where: object, tables: set[str], backend: str) -> list[Comparison]:
    from sqlglot import exp

    if where is None:
        return []
    terms: list[Comparison] = []
    pending = [where.this]  # type: ignore[attr-defined]
    while pending:
        node = pending.pop()
        while isinstance(node, exp.Paren):
            node = node.this
        if isinstance(node, exp.And):
            pending.extend([node.expression, node.this])
        elif isinstance(node, exp.Or):
            terms.append(_null_guard(node, tables, backend))
        else:
            terms.append(_comparison(node, tables, backend))
    return terms


def _comparison(node: object, tables: set[str], backend: str) -> Comparison:
    from sqlglot import exp

    ops = {exp.EQ: "=", exp.NEQ: "<>", exp.LT: "<", exp.LTE: "<=", exp.GT: ">", exp.GTE: ">="}
    op = next((symbol for kind, symbol in ops.items() if type(node) is kind), None)
    if op is None:
        raise NotExpressible(f"the condition {_sql(node)} is not a comparison of a column with a :bind")
    left, right = node.this, node.expression  # type: ignore[attr-defined]
    if isinstance(left, exp.Placeholder) and not isinstance(right, exp.Placeholder):
        left, right, op = right, left, _FLIPPED[op]
    if not isinstance(right, exp.Placeholder) or not right.name:
        raise NotExpressible(f"the condition {_sql(node)} does not compare a column with a :bind")
    return Comparison(_column(left, tables, backend), op, right.name)


def _null_guard(node: object, tables: set[str], backend: str) -> Comparison:
    """``(:b IS NULL OR column op :b)``, either order, the incremental form the docs show."""
    from sqlglot import exp

    sides = [node.this, node.expression]  # type: ignore[attr-defined]
    for guard, other in (sides, sides[::-1]):
        if isinstance(guard, exp.Is) and isinstance(guard.this, exp.Placeholder) \
                and isinstance(guard.expression, exp.Null):
            comparison = _comparison(other.this if isinstance(other, exp.Paren) else other, tables, backend)
            if comparison.bind == guard.this.name:
                return Comparison(comparison.column, comparison.op, comparison.bind, unless_null=True)
    raise NotExpressible(f"the condition {_sql(node)} is an OR (ClickHouse takes only "
                         "'(:b IS NULL OR column > :b)')")


def _sql(node: object) -> str:
    sql = getattr(node, "sql", None)
    return repr(sql()[:80]) if callable(sql) else repr(node)
