"""core/sql_ast: the facts ./run.sh sql reads from ClickHouse's EXPLAIN AST tree (trees as 26.9 prints them)."""

from __future__ import annotations

from core.sql_ast import parse_tree, shape

FORMATS = frozenset({"Vertical", "CSV", "TabSeparated", "JSONEachRow"})


def facts(tree: str):
    return shape(parse_tree(tree.strip("\n").split("\n")), FORMATS)


def test_into_outfile_and_format_are_the_roots_last_children() -> None:
    found = facts("""
SelectWithUnionQuery (children 3)
 ExpressionList (children 1)
  SelectQuery (children 1)
   ExpressionList (children 1)
    Literal UInt64_1
 Literal \\'x.txt\\'
 Identifier CSV
""")
    assert (found.kind, found.into_outfile, found.output_format, found.read_only_refusal()) == (
        "SelectWithUnionQuery", True, "CSV", "INTO OUTFILE writes a file")


def test_a_string_or_a_column_is_not_a_clause_and_file_is_found_at_any_depth() -> None:
    found = facts("""
SelectWithUnionQuery (children 1)
 ExpressionList (children 1)
  SelectQuery (children 2)
   ExpressionList (children 2)
    Literal \\'INTO OUTFILE\\'
    Function f (alias y) (children 1)
     ExpressionList (children 1)
      Function file (children 1)
       ExpressionList (children 1)
        Literal \\'/x\\'
   TablesInSelectQuery (children 1)
    TablesInSelectQueryElement (children 1)
     TableExpression (children 1)
      TableIdentifier Vertical
""")
    assert (found.into_outfile, found.output_format, found.functions) == (False, None, frozenset({"f", "file"}))
    assert found.read_only_refusal() == "file() reads a file of this machine"


def test_describe_of_a_table_function_and_settings_after_format() -> None:
    described = facts("""
DescribeQuery (children 2)
 TableExpression (children 1)
  Function url (children 1)
   ExpressionList (children 1)
    Literal \\'http://x\\'
 Identifier Vertical
""")
    assert described.describes_table_function and described.output_format == "Vertical"
    assert described.read_only_refusal() == "DESCRIBE of a table function reads outside the store"
    plain = facts("""
SelectWithUnionQuery (children 3)
 ExpressionList (children 1)
  SelectQuery (children 1)
   ExpressionList (children 1)
    Literal UInt64_1
 Identifier JSONEachRow
 Set
""")
    assert plain.output_format == "JSONEachRow" and plain.read_only_refusal() is None


def test_a_number_literal_under_the_root_is_no_outfile() -> None:
    found = facts("""
KillQueryQuery Literal_UInt64_1 ASYNC (children 1)
 Literal UInt64_1
""")
    assert not found.into_outfile
    assert found.read_only_refusal() == ("KillQueryQuery is not a query (read-only mode runs SELECT, SHOW, "
                                         "DESCRIBE, EXISTS, EXPLAIN, CHECK)")
