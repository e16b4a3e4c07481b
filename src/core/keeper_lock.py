"""A named lock kept in ClickHouse Keeper / ZooKeeper through a ``KeeperMap`` table (issue 28).

The claim-table lock (:class:`core.migrations.ClickHouseLock`: insert a claim, wait, the earliest
claim wins) is only as safe as every reader seeing every claim; replicas that lag break it. Here
the decision is Keeper's: one key per lock name in ``_dp_keeper_locks``, written with
``keeper_map_strict_mode = 1``, so

- a claim is an INSERT that fails when the key exists ("Node exists"): one winner, at once;
- release deletes the key where it still carries this holder's token;
- the holder's heartbeat pushes ``expires_at`` (server time) forward every lease / 3;
- a claim past its lease (a holder killed on any host), or one of a dead process on this host, is
  taken over by an UPDATE conditioned on the old token (and, for a lease, on being expired). Strict
  mode checks the key's version, so of two contenders updating the same stale claim one fails or
  finds nothing to update: whoever's token is in Keeper afterwards holds the lock.

The table needs ``<keeper_map_path_prefix>`` (and ``<zookeeper>``) in the server config;
:func:`core.shared_locks.cross_host_lock` refuses a cluster without it.
"""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Callable

from core.exceptions import StoreError
from core.logging import get_logger
from core.migrations.lock import LockRow, wait_for
from core.migrations.tables import owner, utcnow
from core.sql_literals import sql_literal
from core.store import Store

log = get_logger("locks")

KEEPER_LOCKS_TABLE = "_dp_keeper_locks"
#: A claim whose holder has not renewed it for this long is abandoned (its process died); the
#: holder renews it every third of it, from a thread, so a long statement does not lose it.
LEASE_SECONDS = 60.0
STRICT = {"keeper_map_strict_mode": 1}


def keeper_path(store: Store) -> str:
    """The table's path under the server's ``keeper_map_path_prefix``: one per database, shared by every node."""
    return f"/data_processor/{store.database}/locks"


def keeper_table_ddl(store: Store, on_cluster: str = "") -> str:
    return (f"CREATE TABLE IF NOT EXISTS {store.table(KEEPER_LOCKS_TABLE)}{on_cluster} "
            "(name String, token String, owner String, acquired_at DateTime64(3, 'UTC'), "
            f"expires_at DateTime64(3, 'UTC')) ENGINE = KeeperMap({sql_literal(keeper_path(store))}) PRIMARY KEY name")


class KeeperLock:
    """A named lock as one key of ``_dp_keeper_locks`` (same interface as ``ClickHouseLock``)."""

    def __init__(self, store: Store, name: str, lease: float = LEASE_SECONDS) -> None:
        self.store = store
        self.name = name
        self.lease = lease
        self.token = uuid.uuid4().hex
        self.owner = owner()
        self.held = False
        self.lost = False  # set by the heartbeat when another process took the claim over
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def _current(self) -> tuple[LockRow, bool] | None:
        """The claim on this name and whether its lease ran out (server time), or None."""
        rows = self.store.query_rows(
            "SELECT token, owner, acquired_at, expires_at, expires_at < now64(3, 'UTC') "
            f"FROM {self.store.table(KEEPER_LOCKS_TABLE)} WHERE name = {{n:String}}", {"n": self.name})
        if not rows:
            return None
        token, who, acquired, expires, expired = rows[0]
        return LockRow(token, who, acquired, expires, 0), bool(expired)

    def live(self) -> list[LockRow]:
        """The unexpired claim, if any (a list, like ``ClickHouseLock.live``)."""
        current = self._current()
        return [current[0]] if current and not current[1] else []

    def _insert(self) -> bool:
        try:
            self.store.command(
                f"INSERT INTO {self.store.table(KEEPER_LOCKS_TABLE)} (name, token, owner, acquired_at, expires_at) "
                "SELECT {n:String}, {t:String}, {o:String}, now64(3, 'UTC'), "
                "now64(3, 'UTC') + toIntervalMillisecond({ms:UInt64})",
                {"n": self.name, "t": self.token, "o": self.owner, "ms": int(self.lease * 1000)}, settings=STRICT)
            return True
        except StoreError as exc:
            if "Node exists" in str(exc) or "KEEPER_EXCEPTION" in str(exc):
                return False
            raise

    def _update(self, assignments: str, condition: str, params: dict[str, object]) -> None:
        """A strict-mode UPDATE of this name's key; a concurrent change of the key fails it (ignored:
        the caller reads the key again)."""
        try:
            self.store.command(
                f"ALTER TABLE {self.store.table(KEEPER_LOCKS_TABLE)} UPDATE {assignments} "
                f"WHERE name = {{n:String}} AND {condition}",
                {"n": self.name, "ms": int(self.lease * 1000), **params}, settings=STRICT)
        except StoreError as exc:
            if "KEEPER_EXCEPTION" not in str(exc) and "Code: 999" not in str(exc):
                raise

    def _stale_here(self, row: LockRow) -> bool:
        """A claim by a process of this host that no longer exists."""
        import psutil

        host, _, pid = row.owner.rpartition(":")
        return host == socket.gethostname() and pid.isdigit() and not psutil.pid_exists(int(pid))

    def _take_over(self, row: LockRow, expired: bool) -> None:
        log.warning("Taking over lock %s from %s: %s", self.name, row.describe(),
                    "its lease ran out" if expired else "that process no longer exists")
        self._update("token = {t:String}, owner = {o:String}, acquired_at = now64(3, 'UTC'), "
                     "expires_at = now64(3, 'UTC') + toIntervalMillisecond({ms:UInt64})",
                     "token = {old:String}" + (" AND expires_at < now64(3, 'UTC')" if expired else ""),
                     {"t": self.token, "o": self.owner, "old": row.token})

    def try_acquire(self) -> LockRow | None:
        """Take the lock if nobody else holds it; returns the holder's claim when busy."""
        for _ in range(3):  # a claim released between our insert and our read: try again
            if self._insert():
                return self._won()
            current = self._current()
            if current is None:
                continue
            row, expired = current
            if row.token == self.token:
                return self._won()
            if not (expired or self._stale_here(row)):
                return row
            self._take_over(row, expired)
            current = self._current()
            if current and current[0].token == self.token:
                return self._won()
            if current:
                return current[0]
        return LockRow("", "another process", utcnow(), utcnow(), 0)

    def _won(self) -> None:
        """Held: start renewing the lease."""
        self.held, self.lost = True, False
        self._stop.clear()
        self._beat = threading.Thread(target=self._heartbeat, name=f"lock-heartbeat {self.name}", daemon=True)
        self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.lease / 3):
            try:
                self.refresh()
            except Exception as exc:  # the server unreachable for a moment: the lease covers two misses
                log.warning("Could not renew lock %s: %s", self.name, exc)

    def refresh(self) -> None:
        """Push the lease forward; marks the lock ``lost`` when another process has taken the claim."""
        if not self.held:
            return
        self._update("expires_at = now64(3, 'UTC') + toIntervalMillisecond({ms:UInt64})", "token = {t:String}",
                     {"t": self.token})
        current = self._current()
        if not current or current[0].token != self.token:
            if not self.lost:
                log.error("Lock %s was taken over by %s while this process held it (its lease of %g s "
                          "ran out)", self.name, current[0].describe() if current else "nobody", self.lease)
            self.lost = True

    def acquire(self, timeout: float, on_wait: Callable[[str], None] | None = None, poll: float = 1.0) -> None:
        """Wait up to ``timeout`` seconds; :class:`MigrationLocked` naming the holder when it stays busy."""
        wait_for(self.try_acquire, timeout, on_wait, poll, lambda holder: (
            f"{self.name} is locked by {holder.describe()} (key in {self.store.database}.{KEEPER_LOCKS_TABLE}); "
            f"if that process is gone, its claim expires {self.lease:g} s after its last renewal"))

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        self._stop.set()
        if self._beat is not None and self._beat is not threading.current_thread():
            self._beat.join()
        self._delete(self.token)

    def _delete(self, token: str) -> None:
        self.store.command(f"DELETE FROM {self.store.table(KEEPER_LOCKS_TABLE)} WHERE name = {{n:String}} "
                           "AND token = {t:String}", {"n": self.name, "t": token}, settings=STRICT)

    def force_unlock(self) -> list[LockRow]:
        """Delete another process's claim (a holder gone for good, before its lease ends)."""
        broken = [r for r in self.live() if r.token != self.token]
        for row in broken:
            log.warning("Force-unlocking lock %s held by %s", self.name, row.describe())
            self._delete(row.token)
        return broken

