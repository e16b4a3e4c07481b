"""How the framework's own tables (``_dp_*``) are created on each topology (issue 28): the one place
that decides their ``ON CLUSTER`` clause and engine.

- single server, embedded engine, ClickHouse Cloud / a ``Replicated`` database: the plain engines
  and no ``ON CLUSTER`` (Cloud refuses it with Code 80; a Replicated database replicates DDL and
  turns ``MergeTree`` into its replicated form by itself);
- self-managed cluster (``CLICKHOUSE_CLUSTER``): ``ON CLUSTER <name>`` and the ``Replicated`` form of
  each engine, with ONE replication path per table for the whole cluster (no ``{shard}``): every
  node is a replica of the small framework tables, so every runner host sees one history.

Only CREATE takes ``ON CLUSTER``: an ``ALTER``, ``INSERT`` or lightweight ``DELETE`` of a replicated
table on one node replicates to the others, so those statements are the same on every topology.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.exceptions import StoreError
from core.sql_literals import sql_literal
from core.validators import quote_identifier

if TYPE_CHECKING:
    from collections.abc import Iterable

    from core.config import Settings
    from core.store import Store

#: ZooKeeper path of a framework table on a cluster; ``{database}`` is ClickHouse's own macro,
#: expanded at CREATE, so two projects (databases) on one cluster never share a path.
REPLICATION_PATH = "/clickhouse/data_processor/{database}/"
#: The server refuses ``ON CLUSTER`` (distributed DDL disabled; nodes run from the chdb wheel).
DDL_REFUSED = "Code: 392"


@dataclass(frozen=True)
class FrameworkLayout:
    """``cluster`` set: the replicated layout of a self-managed cluster; None: the plain layout."""

    cluster: str | None = None

    @property
    def on_cluster(self) -> str:
        """What follows the table name in a CREATE: `` ON CLUSTER `name` `` or nothing."""
        return f" ON CLUSTER {quote_identifier(self.cluster)}" if self.cluster else ""

    def engine(self, table: str, engine: str = "MergeTree", version: str | None = None) -> str:
        """``engine`` (``MergeTree`` or ``ReplacingMergeTree``) of framework table ``table``, with the
        ``version`` column of a ReplacingMergeTree; on a cluster its Replicated form."""
        if not self.cluster:
            return f"{engine}({version})" if version else engine
        arguments = [sql_literal(REPLICATION_PATH + table), "'{replica}'", *([version] if version else [])]
        return f"Replicated{engine}({', '.join(arguments)})"

    def fits(self, create_statement: str) -> bool:
        """True when a table's live ``CREATE`` statement has this layout's kind of engine."""
        replicated = re.search(r"\bENGINE = (Replicated|Shared)\w*MergeTree", create_statement) is not None
        return replicated or not self.cluster

    def misfit(self, ddl: dict[str, str], database: str) -> StoreError | None:
        """On a cluster, framework tables (``ddl``: their live ``CREATE`` by name) made for a single server
        would keep one history per node: the error naming the command that moves them (None: they fit)."""
        plain = sorted(table for table, create in ddl.items() if not self.fits(create))
        if not plain:
            return None
        return StoreError(f"cluster '{self.cluster}': the framework's tables in '{database}' ({', '.join(plain)}) "
                          "were made for a single server, so each node would keep its own history: run "
                          "./run.sh db_to_cluster to move them, with their history, to the replicated layout")

    def refusal(self, exc: Exception) -> StoreError | None:
        """The one-line error for a CREATE ... ON CLUSTER the server refused (None: another error)."""
        if not self.cluster or DDL_REFUSED not in str(exc):
            return None
        return StoreError(
            f"cluster '{self.cluster}': the server refuses ON CLUSTER DDL (Code 392, distributed DDL disabled), "
            "so the framework's tables (run history, coverage, state) cannot be made on every node: enable "
            "<distributed_ddl> in every server's config, see docs/deployment.md (Clusters and Cloud)")


def create_tables(store: Store, statements: Iterable[str]) -> None:
    """Run framework ``CREATE`` statements made for the store's layout; a server refusing ``ON CLUSTER``
    is said in one line (:meth:`FrameworkLayout.refusal`)."""
    layout = framework_layout(store.settings)
    try:
        for statement in statements:
            store.command(statement)
    except StoreError as exc:
        refused = layout.refusal(exc)
        if refused is None:
            raise
        raise refused from None


def framework_layout(settings: Settings) -> FrameworkLayout:
    """The layout of the framework's tables for these settings (replicated only on a self-managed cluster)."""
    if settings.is_embedded or not settings.clickhouse_cluster:
        return FrameworkLayout()
    return FrameworkLayout(settings.clickhouse_cluster)
