"""The migrations' placeholder table and the rendering of a migration file's text."""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.exceptions import MigrationError
from core.placeholders import render_statement, statement_placeholders
from core.sql_literals import sql_literal
from core.sql_text import RenderedStatement, split_statements

if TYPE_CHECKING:
    from core.config import Settings


def cluster_clause(cluster: str | None) -> str:
    """What ``{cluster}`` renders to: `` ON CLUSTER <name>`` or nothing."""
    return f" ON CLUSTER {cluster}" if cluster else ""


def placeholder_values(database: str, cluster: str | None) -> dict[str, str]:
    """The placeholder table for a database and an optional cluster: ``{cluster_name}`` (the name as a
    string literal, for ``Distributed({cluster_name}, ...)`` or ``clusterAllReplicas``) only with a cluster."""
    values = {"database": database, "cluster": cluster_clause(cluster)}
    if cluster:
        values["cluster_name"] = sql_literal(cluster)
    return values


def settings_placeholders(settings: Settings) -> dict[str, str]:
    return placeholder_values(settings.database, settings.clickhouse_cluster)


def render_sql(sql: str, values: dict[str, str], source: str = "<sql>") -> list[RenderedStatement]:
    """Split and substitute a whole file's text."""
    statements = split_statements(sql, source, MigrationError)
    for statement in statements:
        if "cluster_name" not in values and "cluster_name" in statement_placeholders(statement):
            raise MigrationError(f"{source} line {statement.line}: {{cluster_name}} is the name of the cluster "
                                 "CLICKHOUSE_CLUSTER names: set it (a single server has no cluster)")
    return [render_statement(s, values, source, MigrationError) for s in statements]
