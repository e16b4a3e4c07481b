"""Locks that hold across hosts when the store is a ClickHouse server.

On the embedded engine one machine owns the store, and the kernel file locks under ``RUN_DIR``
suffice. A server can be written by processes on several hosts with separate ``RUN_DIR``s, so
there the same exclusions are also claimed in ClickHouse (``_dp_locks``, see
:class:`core.migrations.ClickHouseLock`): one run per pipeline (and interval), and one partition
rebuild at a time per table for rebuilds that copy rows from outside the run's slice.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from core.exceptions import AlreadyRunning, LoadError
from core.store import Store

# A claim not refreshed for this long is considered abandoned (a process killed on another host);
# claims of dead processes on this host are broken at once.
RUN_LOCK_TTL = 6 * 3600.0
REBUILD_LOCK_TTL = 3600.0


def _lock(store: Store, name: str, ttl: float):  # noqa: ANN202  (ClickHouseLock, imported late)
    from core.migrations import LOCKS_TABLE, ClickHouseLock
    from core.migrations.tables import create_locks_table

    if not store.table_exists(LOCKS_TABLE):
        store.create_database()
        create_locks_table(store)
    return ClickHouseLock(store, name=f"{store.database}:{name}", ttl=ttl)


@contextmanager
def run_lock(store: Store, name: str, what: str, timeout: float | None = None) -> Iterator[None]:
    """Claim run ``name`` (e.g. ``hours@20260115T000000``) in ClickHouse on a server; raise
    :class:`AlreadyRunning` when a process (on any host) holds it."""
    if not store.is_server:
        yield
        return
    ttl = max(RUN_LOCK_TTL, (timeout or 0) + 60)
    lock = _lock(store, f"run:{name}", ttl)
    holder = lock.try_acquire()
    if holder is not None:
        raise AlreadyRunning(f"{what} is already running on {holder.describe()} (lock row in "
                             f"{store.database}._dp_locks); not starting a second run")
    try:
        yield
    finally:
        lock.release()


@contextmanager
def rebuild_lock(store: Store, table: str, wait: float, note: str) -> Iterator[None]:
    """Serialise partition rebuilds of ``table`` across hosts (no-op on the embedded engine)."""
    if not store.is_server:
        yield
        return
    lock = _lock(store, f"rebuild:{table}", REBUILD_LOCK_TTL)
    try:
        lock.acquire(wait, poll=0.2)
    except Exception as exc:
        raise LoadError(f"Timed out waiting for another run's rebuild of {table} ({note}): {exc}") from None
    try:
        yield
    finally:
        lock.release()
