"""Can a SQL pipeline's query read several intervals at once? Read from its parsed tree (sqlglot).

A batch (``batch_size``) gives the query the batch's ``{start}``/``{end}``. That is exact only when
the time placeholders bound the rows read, i.e. each is a whole operand of a range comparison
(``<``, ``<=``, ``>``, ``>=``, ``BETWEEN``) in a ``WHERE``/``PREWHERE``: then each row keeps its own
time and lands in its own interval. Anywhere else the batch changes the result: ``SELECT {start}
AS day`` gives one row per batch instead of one per day, ``ts >= {start} - INTERVAL 7 DAY`` (a
rolling window) reads before the batch's first day only, ``toDate(ts) = {start_date}`` reads its
first day only. Such a query is refused for batching, with the reason.
"""

from __future__ import annotations

#: Placeholders whose value changes with the run's interval (``core.placeholders`` names them).
TIME_PLACEHOLDERS = frozenset({"start", "end", "start_date", "end_date"})


def range_refusal(query: str, prefix: str) -> str | None:
    """Why ``query`` (compiled: placeholders as ``{<prefix><name>:Type}``) cannot read a range of
    intervals at once, or ``None`` when it can."""
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import SqlglotError

    try:
        tree = sqlglot.parse_one(query, read="clickhouse")
    except SqlglotError as exc:
        why = str(exc).splitlines()[0][:120]
        return f"its query could not be parsed to check where {{start}}/{{end}} are used ({why})"
    for node in tree.find_all(exp.Placeholder):
        name = str(node.this.name if isinstance(node.this, exp.Expression) else node.this or "")
        name = name.removeprefix(prefix)
        if name in TIME_PLACEHOLDERS and not _bounds_rows(node):
            return (f"{{{name}}} is used outside a WHERE range bound ({_context(node, prefix)}), so one run of "
                    "several intervals would not give each interval its own rows")
    return None


def _bounds_rows(node: object) -> bool:
    """The placeholder (or a cast of it) is one side of a range comparison inside a WHERE/PREWHERE."""
    from sqlglot import exp

    assert isinstance(node, exp.Expression)
    operand = node
    while isinstance(operand.parent, exp.Cast | exp.Paren):
        operand = operand.parent
    parent = operand.parent
    if isinstance(parent, exp.Between):
        ranged = parent.args.get("low") is operand or parent.args.get("high") is operand
    else:
        ranged = isinstance(parent, exp.GT | exp.GTE | exp.LT | exp.LTE)
    return ranged and parent is not None and parent.find_ancestor(exp.Where, exp.PreWhere) is not None


def _context(node: object, prefix: str) -> str:
    """The expression around the placeholder, as SQL with the user's ``{name}``, for the message."""
    import re

    from sqlglot import exp

    assert isinstance(node, exp.Expression)
    around = node.parent if node.parent is not None and not isinstance(node.parent, exp.Select) else node
    text = re.sub(r"\{" + re.escape(prefix) + r"(\w+):[^}]*\}", r"{\1}", around.sql(dialect="clickhouse"))
    return " ".join(text.split())[:120]
