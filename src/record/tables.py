"""The framework's own tables, created idempotently by the framework (not by user migrations)."""

from __future__ import annotations

from core.framework_layout import FrameworkLayout, create_tables, framework_layout
from core.store import Store

RUNS_TABLE = "_dp_runs"
STATE_TABLE = "_dp_state"
QUARANTINE_TABLE = "_dp_quarantine"

_UTC_MS = "DateTime64(3, 'UTC')"


def history_ddl(store: Store, ttl_days: int) -> list[str]:
    """``CREATE`` of the run history, state and quarantine tables in the store's layout."""
    layout = framework_layout(store.settings)
    return [
        # Run history: one row per state change of a run; the newest version wins (FINAL).
        f"""CREATE TABLE IF NOT EXISTS {store.table(RUNS_TABLE)}{layout.on_cluster} (
            run_id String,
            pipeline LowCardinality(String),
            interval_start {_UTC_MS},
            interval_end {_UTC_MS},
            trigger LowCardinality(String),
            status LowCardinality(String),
            reason LowCardinality(String),
            attempt UInt16,
            started_at {_UTC_MS},
            finished_at Nullable({_UTC_MS}),
            duration_seconds Float64,
            rows_extracted UInt64,
            rows_loaded UInt64,
            rows_quarantined UInt64,
            error String,
            host LowCardinality(String),
            pid UInt32,
            lock_file String,
            version UInt64
        ) ENGINE = {layout.engine(RUNS_TABLE, "ReplacingMergeTree", "version")}
        PARTITION BY toYYYYMM(started_at)
        ORDER BY (pipeline, run_id)
        TTL toDateTime(started_at) + INTERVAL {ttl_days} DAY""",
        # Incremental cursors: a value per (pipeline, key); the newest write wins.
        f"""CREATE TABLE IF NOT EXISTS {store.table(STATE_TABLE)}{layout.on_cluster} (
            pipeline LowCardinality(String),
            key String,
            value String,
            deleted UInt8 DEFAULT 0,
            updated_at DateTime64(6, 'UTC'),
            run_id String
        ) ENGINE = {layout.engine(STATE_TABLE, "ReplacingMergeTree", "updated_at")}
        ORDER BY (pipeline, key)""",
        # Rows rejected by an extractor or a validation transformer, with the reason.
        f"""CREATE TABLE IF NOT EXISTS {store.table(QUARANTINE_TABLE)}{layout.on_cluster} (
            pipeline LowCardinality(String),
            run_id String,
            source String,
            line Nullable(UInt64),
            raw String,
            error String,
            quarantined_at {_UTC_MS} DEFAULT now64(3, 'UTC'),
            interval_start {_UTC_MS},
            interval_end {_UTC_MS}
        ) ENGINE = {layout.engine(QUARANTINE_TABLE)}
        PARTITION BY toYYYYMM(quarantined_at)
        ORDER BY (pipeline, run_id)
        TTL toDateTime(quarantined_at) + INTERVAL {ttl_days} DAY""",
    ]


def _ensure_waivers(store: Store) -> None:
    """``_dp_waivers`` (no TTL): added to stores made before failed intervals could be waived."""
    from record.waivers import waivers_ddl

    store.command(waivers_ddl(store))


def _ensure_coverage(store: Store) -> None:
    """``_dp_coverage`` (no TTL); when it is new, filled once from the run history."""
    from record.coverage import COVERAGE_TABLE, coverage_ddl, fill_from_history

    if store.table_exists(COVERAGE_TABLE):
        return
    store.command(coverage_ddl(store))
    fill_from_history(store, RUNS_TABLE)


def _ensure_totals(store: Store) -> None:
    """``_dp_run_totals`` (no TTL); when it is new, filled once from the run history."""
    from record.totals import TOTALS_TABLE, fill_from_history, totals_ddl

    if store.table_exists(TOTALS_TABLE):
        return
    store.command(totals_ddl(store))
    fill_from_history(store, RUNS_TABLE)


def _own_tables() -> tuple[str, ...]:
    """The tables :func:`ensure_framework_tables` makes (coverage, waivers, run totals too)."""
    from record.coverage import COVERAGE_TABLE
    from record.totals import TOTALS_TABLE
    from record.waivers import WAIVERS_TABLE

    return RUNS_TABLE, STATE_TABLE, QUARANTINE_TABLE, COVERAGE_TABLE, WAIVERS_TABLE, TOTALS_TABLE


def _framework_ddl(store: Store) -> dict[str, str]:
    """The live ``CREATE`` statements of those tables that exist, and of the migrations' and locks' tables
    (their layout is checked too)."""
    from core.migrations import LOCKS_TABLE, MIGRATIONS_TABLE

    return store.adapter.create_statements([*_own_tables(), MIGRATIONS_TABLE, LOCKS_TABLE])


def _up_to_date(store: Store, ttl_days: int, ddl: dict[str, str] | None = None) -> bool:
    """Do all framework tables exist with the current columns and retention (``ddl``, read when not given: one
    query)?

    A store is set up once; every later process (each cron run) then pays this SELECT instead of
    the eight statements below. It reads the live DDL, so a dropped table or a changed
    RUN_HISTORY_TTL_DAYS is still noticed and repaired.
    """
    ddl = _framework_ddl(store) if ddl is None else ddl
    ttl = f"toIntervalDay({ttl_days})"
    return (all(table in ddl for table in _own_tables()) and ttl in ddl[RUNS_TABLE] and ttl in ddl[QUARANTINE_TABLE]
            and all(f"`{column}` " in ddl[QUARANTINE_TABLE] for column in ("interval_start", "interval_end")))


def _create_database(store: Store, layout: FrameworkLayout) -> None:
    if not layout.cluster:
        store.create_database()
        return
    from core.topology import create_database_on_cluster

    create_database_on_cluster(store, layout.cluster)


def ensure_framework_tables(store: Store) -> None:
    """Create the database and the framework tables when missing (cheap when they exist), in the
    layout of the store's topology (:mod:`core.framework_layout`).

    Done once per Store instance (then one ``EXISTS`` check: 2 ms instead of 25 ms, which a
    backfill pays per interval); a dropped database is noticed and recreated. A new process
    finds an up-to-date store with one query (:func:`_up_to_date`).
    """
    done = (store.database, store.settings.run_history_ttl_days)
    if getattr(store, "_dp_framework_tables", None) == done and store.table_exists(RUNS_TABLE):
        return
    layout, ttl_days = framework_layout(store.settings), store.settings.run_history_ttl_days
    ddl = _framework_ddl(store)
    misfit = layout.misfit(ddl, store.database)
    if misfit is not None:
        raise misfit
    if _up_to_date(store, ttl_days, ddl):
        store._dp_framework_tables = done  # type: ignore[attr-defined]
        return
    if layout.cluster or not store.database_exists():  # on a cluster: on every node, even if this one has it
        _create_database(store, layout)
    create_tables(store, history_ddl(store, ttl_days))
    _upgrade(store, ttl_days)
    store._dp_framework_tables = done  # type: ignore[attr-defined]


def _upgrade(store: Store, ttl_days: int) -> None:
    """Columns and tables added since a store was made, and the retention of RUN_HISTORY_TTL_DAYS.
    (An ALTER of a replicated table replicates: no ON CLUSTER.)"""
    # Stores created before quarantine was kept per interval.
    for column in ("interval_start", "interval_end"):
        store.command(f"ALTER TABLE {store.table(QUARANTINE_TABLE)} ADD COLUMN IF NOT EXISTS {column} {_UTC_MS}")
    _ensure_coverage(store)
    _ensure_waivers(store)
    _ensure_totals(store)
    # Keep the retention in step with RUN_HISTORY_TTL_DAYS when it changes.
    for table in (RUNS_TABLE, QUARANTINE_TABLE):
        ddl = store.adapter.create_statements([table]).get(table, "")
        if f"toIntervalDay({ttl_days})" not in ddl:
            column = "started_at" if table == RUNS_TABLE else "quarantined_at"
            store.command(f"ALTER TABLE {store.table(table)} MODIFY TTL toDateTime({column}) + INTERVAL {ttl_days} DAY")
