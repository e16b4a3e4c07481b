"""Versioned SQL migrations for ClickHouse: parsing, tracking, locking, applying, rolling back.

Modules: ``placeholders`` (the placeholder table, rendering a file's text), ``files`` (the files
on disk), ``tables`` (DDL of the framework tables), ``tracking`` (``_dp_migrations``), ``lock``
(``_dp_locks``), ``planner`` (status and plans), ``migrator`` (applying, rolling back). The
statement splitter is :mod:`core.sql_text`, the placeholder renderer :mod:`core.placeholders`.

Files live in ``MIGRATIONS_DIR`` (default ``migrations/sql``) and are named
``NNNN_description.sql``; an optional ``NNNN_description.down.sql`` undoes one. A file holds one or
more statements separated by ``;`` (semicolons inside quotes, comments and heredocs do not count).

Placeholders, substituted outside string literals and comments:

- ``{database}``: the configured database (``CLICKHOUSE_DATABASE``);
- ``{cluster}``: `` ON CLUSTER <name>`` when ``CLICKHOUSE_CLUSTER`` is set, else nothing;
- ``{{name}}``: a literal ``{name}``.

Any other ``{word}`` is an error naming the file and line. ClickHouse's query parameters
(``{name:Type}``) are left alone, and nothing inside a string literal is touched, so the macros of
Replicated engine paths (``'/clickhouse/tables/{shard}/{database}/{table}'``) reach ClickHouse as
written.

ClickHouse has no transactional DDL, so progress is recorded after every statement in
``_dp_migrations`` (a ReplacingMergeTree: every change is a new row version, read with
``argMax``). A migration that fails at statement 3 of 5 is resumed at statement 3 by the next
``migrate``. Two ``migrate`` processes are serialized by a local file lock (``DATA_DIR/migrate.lock``)
plus a lock row in ``_dp_locks`` that covers other hosts using the same server.
"""

from core.migrations.files import MigrationFile, display_path, file_checksum, load_migrations
from core.migrations.lock import LOCK_NAME, LOCK_SETTLE_SECONDS, LOCK_TTL_SECONDS, ClickHouseLock, LockRow
from core.migrations.migrator import DEFAULT_LOCK_TIMEOUT, Migrator
from core.migrations.placeholders import cluster_clause, placeholder_values, render_sql, settings_placeholders
from core.migrations.planner import (
    AppliedMigration,
    MigrateResult,
    MigrationStatus,
    PlannedMigration,
    summarize,
)
from core.migrations.tables import LOCKS_TABLE, MIGRATIONS_TABLE, framework_ddl
from core.migrations.tracking import Record, Tracker
from core.placeholders import PLACEHOLDER_PATTERN, render_statement
from core.sql_text import RenderedStatement, Segment, Statement, split_statements

__all__ = [
    "DEFAULT_LOCK_TIMEOUT", "LOCKS_TABLE", "LOCK_NAME", "LOCK_SETTLE_SECONDS", "LOCK_TTL_SECONDS",
    "MIGRATIONS_TABLE", "PLACEHOLDER_PATTERN", "AppliedMigration", "ClickHouseLock", "LockRow",
    "MigrateResult", "MigrationFile", "MigrationStatus", "Migrator", "PlannedMigration", "Record",
    "RenderedStatement", "Segment", "Statement", "Tracker", "cluster_clause", "display_path",
    "file_checksum", "framework_ddl", "load_migrations", "placeholder_values", "render_sql",
    "render_statement", "settings_placeholders", "split_statements", "summarize",
]
