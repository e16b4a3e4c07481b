"""``check``: materialized views over loaded tables, which never see the loader's writes.

A ClickHouse materialized view fires on INSERTs into its source table only. The ClickHouse
loader commits with ``REPLACE PARTITION`` (interval), ``ATTACH PARTITION`` (append, merge) or
``EXCHANGE TABLES`` (replace): none is an INSERT, so a view over such a table stays empty or
stale without an error. The fix is a SQL pipeline with ``depends_on`` (docs/sql-pipelines.md).
"""

from __future__ import annotations

from core.config import Settings
from core.exceptions import DataProcessorError
from core.health import CheckResult
from pipelines.pipeline_registry import Registry

SWAPPING_MODES = ("interval", "append", "merge", "replace")
STORE_WAIT = 10.0  # seconds check waits for a busy embedded store before giving up


def loaded_tables(registry: Registry) -> dict[str, tuple[str, str]]:
    """Table -> (pipeline, mode) for every ClickHouse loader committing by partition or exchange."""
    tables = {}
    for spec in registry.pipelines.values():
        loader = spec.pipeline.loader
        mode, table = loader.mode, loader.table
        if table and mode in SWAPPING_MODES:
            tables[table] = (spec.name, mode)
    return tables


def check_materialized_views(registry: Registry, settings: Settings) -> list[CheckResult]:
    """One warning per loaded table that a materialized view reads from (none: no result)."""
    from core.store import Store

    tables = loaded_tables(registry)
    if not tables:
        return []
    store = Store(settings.model_copy(update={"store_lock_timeout": min(settings.store_lock_timeout, STORE_WAIT)}),
                  linger=0)
    try:
        if not store.database_exists():
            return []
        rows = store.adapter.dependents(tables).items()
        views = set(store.adapter.tables(engine="MaterializedView"))
    except DataProcessorError as exc:
        return [CheckResult("materialized views", "warn", f"could not look for materialized views: {exc}")]
    finally:
        store.close()
    results = []
    for table, dependents in sorted(rows):
        readers = sorted(v for v in dependents if v in views)
        if readers:
            pipeline, mode = tables[table]
            results.append(CheckResult(
                f"mview:{table}", "warn",
                f"materialized view(s) {', '.join(readers)} read from {table}, which pipeline '{pipeline}' writes in "
                f"mode '{mode}' (partition swaps / table exchange, not INSERTs): the view(s) never see those rows; "
                "use a SQL pipeline with depends_on instead (docs/sql-pipelines.md)"))
    return results
