"""Every framework table's ``CREATE`` in the store's layout, and ``db_to_cluster``: moving the
framework tables a single server made to the replicated layout of a cluster, with their history.

The move, on the node ``CLICKHOUSE_HOST`` names, while no run is running:

1. refuse when another node has framework tables of its own (a second history: the command would
   silently leave it behind) or a run is still running;
2. rename each single-server table to ``<name>__single_server`` (one ``RENAME``);
3. create the database on every node and each table ``ON CLUSTER`` with its replicated engine
   (:mod:`core.framework_layout`); when that fails, drop what was made and rename the tables back:
   the store is as it was, and the error says why;
4. copy each table's rows (the columns both have), check the row counts, drop the old tables.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from core.exceptions import StoreError
from core.framework_layout import FrameworkLayout, framework_layout
from core.sql_literals import sql_literal
from core.validators import quote_identifier

if TYPE_CHECKING:
    from core.store import Store

SINGLE_SUFFIX = "__single_server"
_CREATE_NAME = re.compile(r"CREATE TABLE IF NOT EXISTS `[^`]+`\.`([^`]+)`")


def framework_statements(store: Store) -> dict[str, str]:
    """The ``CREATE`` of every framework table (``_dp_*``) in the store's layout, by table name."""
    from audit.results import checks_ddl
    from core.migrations import framework_ddl
    from ops.alerts.state import alert_ddl
    from pipelines.tools.loaders.clickhouse_attach import attached_ddl
    from record.coverage import coverage_ddl
    from record.tables import history_ddl
    from record.totals import totals_ddl
    from record.waivers import waivers_ddl

    statements = [*history_ddl(store, store.settings.run_history_ttl_days), coverage_ddl(store), waivers_ddl(store),
                  totals_ddl(store), checks_ddl(store), *alert_ddl(store),
                  *framework_ddl(store, framework_layout(store.settings).cluster), attached_ddl(store)]
    by_name = {}
    for statement in statements:
        match = _CREATE_NAME.match(statement.strip())
        assert match is not None, statement
        by_name[match.group(1)] = statement
    return by_name


def check_layout(store: Store) -> str | None:
    """``check``'s line when the framework tables do not fit the store's layout (None: they do)."""
    layout = framework_layout(store.settings)
    misfit = layout.misfit(store.adapter.create_statements(list(framework_statements(store))), store.database)
    return None if misfit is None else str(misfit)


def move_to_cluster(store: Store) -> list[tuple[str, int]]:
    """``db_to_cluster``: move the single-server framework tables to the replicated layout (see the
    module doc); the tables moved and their rows (empty: nothing to move)."""
    layout = framework_layout(store.settings)
    if not layout.cluster:
        raise StoreError("db_to_cluster moves the framework tables to a cluster's replicated layout: set "
                         "CLICKHOUSE_CLUSTER (and CLICKHOUSE_HOST) first")
    statements = framework_statements(store)
    live = store.adapter.create_statements(list(statements))
    tables = sorted(name for name, create in live.items() if not layout.fits(create))
    if not tables:
        return []
    _refuse_busy(store, layout, tables)
    return move_tables(store, layout, {name: statements[name] for name in tables})


def move_tables(store: Store, layout: FrameworkLayout, creates: dict[str, str]) -> list[tuple[str, int]]:
    """Steps 2-4 of the move for ``creates`` (table -> its new ``CREATE``); rows moved per table."""
    counts = {name: int(store.command(f"SELECT count() FROM {store.table(name)}")) for name in creates}
    _rename(store, {name: name + SINGLE_SUFFIX for name in creates})
    try:
        if layout.cluster:
            from core.topology import create_database_on_cluster

            create_database_on_cluster(store, layout.cluster)
        for statement in creates.values():
            store.command(statement)
    except StoreError as exc:
        for name in creates:
            store.adapter.drop(name)
        _rename(store, {name + SINGLE_SUFFIX: name for name in creates})
        raise layout.refusal(exc) or exc from None
    moved = []
    for name, rows in counts.items():
        old = name + SINGLE_SUFFIX
        kept = store.adapter.columns(old)  # an older store may lack columns added since: they take defaults
        columns = ", ".join(quote_identifier(c) for c in store.adapter.columns(name) if c in kept)
        # Every row as it is: no deduplication of identical blocks, no collapsing of a Replacing table's row
        # versions at insert (optimize_on_insert), so the counts can be compared.
        store.command(f"INSERT INTO {store.table(name)} ({columns}) SELECT {columns} FROM {store.table(old)}",
                      settings={"insert_deduplicate": 0, "optimize_on_insert": 0, "async_insert": 0})
        copied = int(store.command(f"SELECT count() FROM {store.table(name)}"))
        if copied != rows:
            raise StoreError(f"{name}: {copied:,} rows copied of {rows:,}; the old table is kept as {old}")
        store.adapter.drop(old)
        moved.append((name, rows))
    return moved


def _rename(store: Store, names: dict[str, str]) -> None:
    pairs = ", ".join(f"{store.table(old)} TO {store.table(new)}" for old, new in names.items())
    store.command(f"RENAME TABLE {pairs}")


def _refuse_busy(store: Store, layout: FrameworkLayout, tables: list[str]) -> None:
    """Refuse while a run is running, or when another node keeps framework tables of its own."""
    from record.tables import RUNS_TABLE

    if RUNS_TABLE in tables and int(store.command(
            f"SELECT count() FROM {store.table(RUNS_TABLE)} FINAL WHERE status = 'running'")):
        raise StoreError("a run is running: stop the scheduler (./run.sh cron_remove) and wait for it, then run "
                         "./run.sh db_to_cluster again")
    here = store.query_rows("SELECT hostName(), getServerPort('tcp_port')")[0]
    view = (f"view(SELECT hostName() AS host, getServerPort('tcp_port') AS port, name FROM system.tables "
            f"WHERE database = {sql_literal(store.database)} AND name LIKE '\\_dp\\_%' "
            "AND engine NOT LIKE 'Replicated%')")
    others = store.query_rows(
        f"SELECT host, port, groupArray(name) FROM clusterAllReplicas({sql_literal(layout.cluster)}, {view}) "
        "GROUP BY host, port ORDER BY host, port SETTINGS skip_unavailable_shards = 1")
    for host, port, names in others:
        if (host, port) != tuple(here):
            raise StoreError(f"node {host}:{port} of cluster '{layout.cluster}' has framework tables of its own "
                             f"({', '.join(sorted(names))}: another history): keep one node's, drop the others "
                             "there, then run ./run.sh db_to_cluster again")
