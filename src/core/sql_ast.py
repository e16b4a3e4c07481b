"""What ClickHouse's own parser says about one statement: ``EXPLAIN AST``, read as a tree.

``./run.sh sql`` needs four facts about a user's statement that ClickHouse's ``readonly``
setting does not cover: its kind (``KILL QUERY`` and ``UNDROP`` pass ``readonly``), whether it
ends in ``INTO OUTFILE`` (written by the client side of the
embedded engine, whatever ``readonly`` says), which functions it calls (the scalar ``file()``
function reads a file under ``readonly = 1``) and whether it ends in a ``FORMAT`` clause. They
are read from the tree ClickHouse's parser builds, never from the statement's text: a keyword
in a string, a comment or an identifier is not a clause. ``EXPLAIN AST`` only parses: it runs
nothing, and it is allowed in a ``readonly`` session.

The tree is printed one node a line, indented by depth: ``Type [name] [(alias a)] [(children N)]``.
A query's output clauses are the last children of its root node: ``INTO OUTFILE`` a string
``Literal``, ``FORMAT`` an ``Identifier`` (ClickHouse's ``ASTQueryWithOutput``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.store import Store

#: Functions that read the machine (files) and that ClickHouse's ``readonly = 1`` lets through.
MACHINE_READING_FUNCTIONS = frozenset({"file"})
#: Root nodes of the statements read-only mode runs (lowercased prefixes of ClickHouse's AST names:
#: SelectWithUnionQuery, ShowTables, "SHOW USERS query", ExistsTableQuery, DescribeQuery, Explain,
#: CheckQuery); anything else is refused before it runs, whatever ``readonly`` would say.
READ_KINDS = ("select", "show", "exists", "describe", "explain", "check")


@dataclass(frozen=True)
class Node:
    depth: int
    kind: str
    name: str


@dataclass(frozen=True)
class StatementShape:
    """A statement as ClickHouse parsed it."""

    kind: str  # the root node: SelectWithUnionQuery, InsertQuery, DescribeQuery, Explain, ...
    into_outfile: bool
    output_format: str | None  # the trailing FORMAT clause's format, as written
    functions: frozenset[str]  # every function called (table functions included)
    describes_table_function: bool  # DESCRIBE file(...): ClickHouse infers the schema by reading it

    def read_only_refusal(self) -> str | None:
        """Why read-only mode refuses the statement although ClickHouse's ``readonly = 1`` would run
        it, or None: a statement that is no query (``KILL QUERY``/``MUTATION`` and ``UNDROP`` pass
        ``readonly``), an ``INTO OUTFILE``, a function or a ``DESCRIBE`` that reads a file."""
        if not self.kind.lower().startswith(READ_KINDS):
            return f"{self.kind} is not a query (read-only mode runs SELECT, SHOW, DESCRIBE, EXISTS, EXPLAIN, CHECK)"
        if self.into_outfile:
            return "INTO OUTFILE writes a file"
        called = sorted(self.functions & MACHINE_READING_FUNCTIONS)
        if called:
            return f"{called[0]}() reads a file of this machine"
        if self.describes_table_function:
            return "DESCRIBE of a table function reads outside the store"
        return None


def parse_tree(lines: list[str]) -> list[Node]:
    """The nodes of ``EXPLAIN AST`` output, in order."""
    nodes = []
    for line in lines:
        text = line.rstrip()
        if not text.strip():
            continue
        words = text.strip().split(" ")
        name = words[1] if len(words) > 1 and not words[1].startswith("(") else ""
        nodes.append(Node(depth=len(text) - len(text.lstrip(" ")), kind=words[0], name=name))
    return nodes


def shape(nodes: list[Node], output_formats: frozenset[str]) -> StatementShape:
    """The facts ``./run.sh sql`` needs, from the parsed tree (``output_formats``: ClickHouse's)."""
    if not nodes:
        raise ValueError("ClickHouse returned no syntax tree")
    root_children = [node for node in nodes if node.depth == 1]
    outputs = [node for node in root_children if node.kind != "Set"]  # SETTINGS may follow FORMAT
    last = outputs[-1] if outputs else None
    fmt = last.name if last is not None and last.kind == "Identifier" and last.name in output_formats else None
    describe_function = nodes[0].kind == "DescribeQuery" and any(
        node.kind == "Function" and node.depth == 2 for node in nodes)
    return StatementShape(
        kind=nodes[0].kind,
        # INTO OUTFILE's file name is a string literal (a KILL's WHERE 1 is a number).
        into_outfile=any(node.kind == "Literal" and node.name.startswith(("'", "\\'")) for node in root_children),
        output_format=fmt,
        functions=frozenset(node.name for node in nodes if node.kind == "Function"),
        describes_table_function=describe_function,
    )


def statement_shape(store: Store, statement: str) -> StatementShape:
    """Ask ClickHouse to parse ``statement``.

    Sent as is, with no FORMAT of ours (ClickHouse's default output, TabSeparated): a FORMAT
    appended to ``EXPLAIN AST x`` would become ``x``'s own when ``x`` has none.
    """
    tree = store.raw_query(f"EXPLAIN AST {statement}").decode().split("\n")
    formats = frozenset(str(row[0]) for row in store.query_rows("SELECT name FROM system.formats WHERE is_output"))
    return shape(parse_tree(tree), formats)
