"""The framework tables of migrations (``_dp_migrations``, ``_dp_locks``) and their row versions."""

from __future__ import annotations

import os
import socket
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from core.framework_layout import FrameworkLayout

if TYPE_CHECKING:
    from core.store import Store

MIGRATIONS_TABLE = "_dp_migrations"
LOCKS_TABLE = "_dp_locks"


def framework_ddl(store: Store, cluster: str | None) -> list[str]:
    """DDL of the tracking and lock tables.

    On a cluster both are created ``ON CLUSTER`` as Replicated tables sharing ONE replication
    path for the whole cluster (not one per shard), so every node sees the same history and locks
    (:mod:`core.framework_layout`, like every framework table).
    """
    layout = FrameworkLayout(cluster)
    on_cluster = layout.on_cluster

    def engine(table: str, version_column: str) -> str:
        return layout.engine(table, "ReplacingMergeTree", version_column)

    return [
        f"""CREATE TABLE IF NOT EXISTS {store.table(MIGRATIONS_TABLE)}{on_cluster} (
            version UInt64,
            name String,
            file String,
            checksum String,
            statements_total UInt32,
            statements_applied UInt32,
            status LowCardinality(String),
            applied_at DateTime64(3, 'UTC'),
            duration_seconds Float64,
            error String,
            host String,
            row_version UInt64
        ) ENGINE = {engine(MIGRATIONS_TABLE, 'row_version')}
        ORDER BY version""",
        f"""CREATE TABLE IF NOT EXISTS {store.table(LOCKS_TABLE)}{on_cluster} (
            name String,
            token String,
            owner String,
            acquired_at DateTime64(3, 'UTC'),
            expires_at DateTime64(3, 'UTC'),
            released UInt8,
            version UInt64
        ) ENGINE = {engine(LOCKS_TABLE, 'version')}
        ORDER BY (name, token)
        TTL toDateTime(expires_at) + INTERVAL 30 DAY""",
    ]


def create_locks_table(store: Store) -> None:
    """Create ``_dp_locks`` (in the store's layout) when missing."""
    from core.framework_layout import create_tables

    create_tables(store, [framework_ddl(store, store.settings.clickhouse_cluster)[1]])


def owner() -> str:
    """``host:pid`` of this process, as recorded in tracking and lock rows."""
    return f"{socket.gethostname()}:{os.getpid()}"


def next_version(previous: int = 0) -> int:
    """The row version of a row superseding one of version ``previous``."""
    # Wall-clock nanoseconds, but always above the row it supersedes, even if this host's clock
    # is behind the host that wrote that row.
    return max(time.time_ns(), previous + 1)


def utcnow() -> datetime:
    """Now, in UTC."""
    return datetime.now(UTC)

