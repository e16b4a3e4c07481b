"""Cleaning up after runs whose process died (kill -9, a crash, a power loss).

Such a run never reached its loader's ``rollback``. What it left is removed in two parts: its
run-private tables in the store (``core.run_tables``: the ClickHouse loader's staging, its
staged quarantine rows), and whatever the pipeline's loader declares in its
:meth:`~pipelines.interfaces.Loader.clean_up_run` hook (any loader, built-in or the user's).
Used by the crashed-run reaper (each run, ``runs``, ``backfill``, ``check --alert``), ``kill``
and ``clean``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from core.logging import get_logger
from core.models import RunRecord
from core.shards import FoundTables, drop_run_tables, find_run_tables
from core.store import Store
from pipelines.interfaces import Loader
from record.history import mark_crashed

log = get_logger("runner")

LoaderOf = Callable[[str], Loader | None]


def registered_loaders(store: Store) -> LoaderOf:
    """Pipeline name -> its loader, from the registry of ``PIPELINES_DIR`` (discovered on first use;
    ``None`` for a pipeline that is gone or broken: only its run-private tables are dropped)."""
    from pipelines.pipeline_registry import get_registry

    def loader_of(pipeline: str) -> Loader | None:
        try:
            spec = get_registry(store.settings.pipelines_dir).pipelines.get(pipeline)
            return spec.pipeline.loader if spec is not None else None
        except Exception as exc:  # noqa: BLE001 (a broken pipelines dir must not stop the clean-up)
            log.warning("Pipeline '%s': its loader could not be loaded to clean up after a dead run: %s", pipeline, exc)
            return None

    return loader_of


def clean_up_dead_run(store: Store, run: RunRecord, loader: Loader | None, why: str = "crashed",
                      found: FoundTables | None = None) -> list[str]:
    """Remove what the dead ``run`` left: its run-private tables (on every node of ``CLICKHOUSE_CLUSTER``;
    ``found``: as listed already), then its loader's leftovers; what was removed."""
    removed = drop_run_tables(store, run.run_id, found)
    for table in removed:
        log.warning("Dropped staging table %s left by %s run %s", table, why, run.run_id)
    if loader is None:
        return removed
    try:
        found = loader.clean_up_run(store, run.run_id)
    except Exception as exc:  # noqa: BLE001 (one loader's failing hook must not stop the reaper)
        log.warning("Loader %r of pipeline '%s' could not clean up after %s run %s: %s",
                    loader.name, run.pipeline, why, run.run_id, exc)
        return removed
    for item in found:
        log.warning("Loader %r removed %s left by %s run %s", loader.name, item, why, run.run_id)
    return removed + list(found)


def reap_dead_runs(store: Store, pipeline: str | None = None,
                   loaders: Mapping[str, Loader] | LoaderOf | None = None) -> list[RunRecord]:
    """Mark runs whose process is gone as crashed and clean up after each (:func:`clean_up_dead_run`).

    ``loaders``: the pipelines' loaders by name (default: the registered pipelines').
    """
    crashed = mark_crashed(store, pipeline)
    if not crashed:
        return crashed
    loader_of = loaders.get if isinstance(loaders, Mapping) else loaders or registered_loaders(store)
    found = find_run_tables(store)  # one listing (of every node on a cluster) for all the dead runs
    for dead in crashed:
        clean_up_dead_run(store, dead, loader_of(dead.pipeline), found=found)
    return crashed
