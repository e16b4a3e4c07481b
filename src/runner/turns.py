"""Sharing the embedded store during a long series of runs (a backfill, a cascade).

Such a series keeps its store open between runs; when another process waits for the store (a
cron run, ``./run.sh runs``), the series hands it over between two runs, at most every
:data:`SHARE_STORE_EVERY` seconds, so the other process waits seconds, not for the whole series.
Only when one waits: every reopen of the engine costs the process threads chdb never gives back
(5 a time, see core/store_child.py), so a series nobody waits for keeps its store.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from core.logging import get_logger

if TYPE_CHECKING:
    from core.config import Settings
    from core.store import Store

SHARE_STORE_EVERY = 5.0
_SHARE_PAUSE = 0.15  # > the 0.05 s poll of a waiting FileLock

log = get_logger("backfill")


def share_now(held_since: float, store: Store) -> bool:
    """True when the store, held since ``held_since`` (monotonic), is to go to a waiting process now."""
    if time.monotonic() - held_since > SHARE_STORE_EVERY and store.someone_waits():
        log.info("Handing the embedded store to a waiting process")
        return True
    return False


class StoreTurns:
    """Call :meth:`between_runs` after each run of a series (see the module doc)."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.held_since = time.monotonic()

    def between_runs(self) -> None:
        """Hand the embedded store to a waiting process if the series held it long enough."""
        if self.settings.is_embedded and share_now(self.held_since, self.store):
            self.store.close()
            time.sleep(_SHARE_PAUSE)
            self.held_since = time.monotonic()
