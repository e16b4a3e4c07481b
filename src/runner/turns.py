"""Handing the embedded store over during a long series of runs (a backfill, a cascade).

Such a series keeps its store open between runs; when another process waits for the store (a
cron run, ``./run.sh runs``, the status page), the series hands it over between two runs, at most
every ``STORE_SHARE_EVERY`` seconds (a setting, 5 by default), so the other process waits seconds, not for the whole
series.

One mechanism for every series: chdb never gives back the threads of an engine it opened (5 a
time, see :mod:`core.store_child`), so a process that reopened its engine at each hand-over would
grow until it dies. A series therefore runs in the process that started it, on its open store,
only until the store first changes hands (:func:`hand_over_now`: someone waits, or the engine was
reopened, e.g. a waiter took the store between a run's batches); from then on the rest of the
series runs in a worker process (``python -m runner.child``, :mod:`runner.child_protocol`) that
exits at each hand-over (its exit gives back the store and every thread chdb kept) and is
replaced by a new one. The starting process holds no engine meanwhile, so it stays flat however
often the store changes hands; a series nobody waits for never starts a worker. The backfill's
workers: :mod:`runner.backfill.worker`; the cascade's: :mod:`runner.cascade`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from core.logging import get_logger

if TYPE_CHECKING:
    from core.store import Store

log = get_logger("backfill")


def share_now(held_since: float, store: Store) -> bool:
    """True when the store, held since ``held_since`` (monotonic), is to go to a waiting process now."""
    if time.monotonic() - held_since > store.settings.store_share_every and store.someone_waits():
        log.info("Handing the embedded store to a waiting process")
        return True
    return False


def hand_over_now(held_since: float, store: Store, engine_opens: int, allowed_opens: int) -> bool:
    """Is the process running a series to give the embedded store up now (see the module doc)?
    Yes when it opened its engine more than ``allowed_opens`` times (``engine_opens``: how often it
    did) or :func:`share_now` says so."""
    return engine_opens > allowed_opens or share_now(held_since, store)
