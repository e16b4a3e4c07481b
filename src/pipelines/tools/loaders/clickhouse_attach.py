"""Attaching staged partitions exactly once, also when a retry follows a lost response.

A run's append/merge commit attaches each staged partition to the target. When the response to an
``ATTACH`` is lost (a dropped connection to a server), the run is retried with the same run id and
must not attach the partition again. With a run id column the target itself says which partitions
hold the run's rows. Without one, the attach is recorded first in ``_dp_attached``: the target
partition's row count before the attach and the rows staged. A retry of the same run that finds
such a record counts the partition again: ``before + staged`` means the attach happened (skip),
``before`` means it did not (attach), anything else means another writer changed the partition
meanwhile, and the run fails rather than guess.
"""

from __future__ import annotations

from core.exceptions import LoadError
from core.framework_layout import create_tables, framework_layout
from core.store import Store
from core.validators import quote_identifier
from pipelines.interfaces import RunContext

ATTACHED_TABLE = "_dp_attached"
# Records are needed only until the run that wrote them has finished its retries.
ATTACHED_TTL_DAYS = 30


def partitions_of_run(context: RunContext, table: str, run_id_column: str | None) -> set[str]:
    """Partitions of ``table`` holding rows of this run, read from its run id column."""
    if not run_id_column:
        return set()
    return set(context.store.adapter.partitions(table, f"{quote_identifier(run_id_column)} = {{r:String}}",
                                                 {"r": context.run_id}))


def ensure_attached_table(store: Store) -> None:
    """``_dp_attached``, made on first use (only tables without a run id column need it)."""
    create_tables(store, [attached_ddl(store)])


def attached_ddl(store: Store) -> str:
    """``CREATE`` of ``_dp_attached`` in the store's layout (replicated on a cluster: a retried commit
    may reach another node, which must see what this one attached)."""
    layout = framework_layout(store.settings)
    return (f"CREATE TABLE IF NOT EXISTS {store.table(ATTACHED_TABLE)}{layout.on_cluster} (run_id String, "
            "table String, partition_id String, rows_before UInt64, rows_staged UInt64, "
            f"recorded_at DateTime64(3, 'UTC') DEFAULT now64(3)) ENGINE = {layout.engine(ATTACHED_TABLE)} "
            f"ORDER BY (table, run_id) TTL toDateTime(recorded_at) + INTERVAL {ATTACHED_TTL_DAYS} DAY")


def attach_recorded(context: RunContext, table: str, staging: str, partition: str) -> bool:
    """Attach ``partition`` of ``staging`` to ``table`` unless this run already did; True if attached.

    For targets without a run id column (see the module doc); :func:`ensure_attached_table` first.
    """
    store = context.store
    staged = store.adapter.partition_rows(staging, partition)
    now = store.adapter.partition_rows(table, partition)
    earlier = store.query_rows(
        f"SELECT rows_before, rows_staged FROM {store.table(ATTACHED_TABLE)} WHERE table = {{t:String}} "
        "AND run_id = {r:String} AND partition_id = {p:String} ORDER BY recorded_at DESC LIMIT 1",
        {"t": table, "r": context.run_id, "p": partition})
    if earlier:
        before, was_staged = (int(v) for v in earlier[0])
        if now == before + was_staged:
            context.logger.warning("Partition %s of %s was attached by an earlier attempt of run %s: "
                                   "not attached again", partition, table, context.run_id)
            return False
        if now != before:
            raise LoadError(f"Partition {partition} of {table} changed since an earlier attempt of run "
                            f"{context.run_id} attached to it ({before:,} rows before, {was_staged:,} staged, "
                            f"{now:,} now): cannot tell whether its rows are in; check the table",
                            table=table, partition=partition)
    store.insert_rows(ATTACHED_TABLE, [[context.run_id, table, partition, now, staged]],
                      ["run_id", "table", "partition_id", "rows_before", "rows_staged"])
    store.adapter.attach_partition(table, staging, partition)
    return True
