"""Writing the runs kept in the spool (``record.spool``) on the next store turn, with their alerts.

Commands that take the store to record or read runs call :func:`replay_spooled_runs` first
(``cron_run`` before its run, ``backfill``, ``runs``, ``check --alert``): a run that could not be
recorded reaches ``_dp_runs`` and its alert is decided and sent as if it had just finished (the
alert's de-duplication in ``_dp_alerts`` makes a second replay after a crash send nothing).
"""

from __future__ import annotations

from typing import Any

from core.config import Settings
from core.exceptions import StoreLockTimeout
from core.logging import get_logger
from core.models import RunRecord
from core.store import Store
from ops.alerts.dispatch import notify_run
from record.spool import replay, spooled
from record.tables import ensure_framework_tables

log = get_logger("history")


def replay_spooled_runs(store: Store, settings: Settings, registry: Any) -> list[RunRecord]:
    """Write the spooled runs and send their alerts; nothing (no store access) when the spool is
    empty. A store still busy leaves the spool for the next command (logged, never raised)."""
    if not spooled(settings):
        return []

    def alert(record: RunRecord) -> None:
        spec = registry.pipelines.get(record.pipeline)
        if spec is not None:
            notify_run(spec, settings, store, record)

    try:
        ensure_framework_tables(store)
        return replay(store, settings, alert)
    except StoreLockTimeout as exc:
        log.warning("Spooled runs not written yet (the store is busy): %s", exc)
        return []
