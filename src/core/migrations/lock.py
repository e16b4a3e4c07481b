"""A named lock as rows in ``_dp_locks``, for processes on other hosts using the same server."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from core.exceptions import MigrationLocked
from core.logging import get_logger
from core.migrations.tables import LOCKS_TABLE, next_version, owner, utcnow
from core.store import Store

log = get_logger("migrations")

LOCK_NAME = "migrate"
# A lock row older than this (since its last refresh, done after every statement) is taken to
# belong to a dead process on another host.
LOCK_TTL_SECONDS = 3600
# After writing its claim a process waits this long before checking who won, so that a claim
# written at the same moment by another host is visible to both.
LOCK_SETTLE_SECONDS = 0.25


@dataclass(frozen=True)
class LockRow:
    token: str
    owner: str
    acquired_at: datetime
    expires_at: datetime
    version: int

    def describe(self) -> str:
        return f"{self.owner} (since {_fmt_time(self.acquired_at)} UTC, expires {_fmt_time(self.expires_at)} UTC)"


def _fmt_time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


class ClickHouseLock:
    """A named lock as rows in ``_dp_locks``: covers processes on other hosts using the same server.

    Each contender inserts a claim (owner, server-side acquired_at and expires_at); the earliest
    live claim wins. After claiming, a contender waits :data:`LOCK_SETTLE_SECONDS` and re-reads,
    so two claims written at the same moment are both seen and both sides agree on the winner.
    Claims expire unless refreshed; a claim by a dead process on this host is broken at once.
    """

    def __init__(self, store: Store, name: str = LOCK_NAME, ttl: float = LOCK_TTL_SECONDS,
                 settle: float = LOCK_SETTLE_SECONDS) -> None:
        self.store = store
        self.name = name
        self.ttl = int(ttl)
        self.settle = settle
        self.token = uuid.uuid4().hex
        self.owner = owner()
        self._version = 0
        self.held = False

    def live(self) -> list[LockRow]:
        """Unreleased, unexpired claims, winner first."""
        if not self.store.table_exists(LOCKS_TABLE):
            return []
        rows = self.store.query_rows(
            "SELECT token, argMax(owner, version) AS o, argMax(acquired_at, version) AS a, "
            "argMax(expires_at, version) AS e, argMax(released, version) AS r, max(version) AS v "
            f"FROM {self.store.table(LOCKS_TABLE)} WHERE name = {{n:String}} GROUP BY token "
            "HAVING r = 0 AND e > now64(3, 'UTC') ORDER BY a, token",
            {"n": self.name},
        )
        return [LockRow(token, owner, acq, exp, int(v)) for token, owner, acq, exp, _, v in rows]

    def _insert(self, token: str, owner: str, version: int, released: int) -> None:
        # Times come from the server: hosts' clocks may disagree, the server's is the one reference.
        self.store.command(
            f"INSERT INTO {self.store.table(LOCKS_TABLE)} "
            "(name, token, owner, acquired_at, expires_at, released, version) "
            "SELECT {n:String}, {t:String}, {o:String}, now64(3, 'UTC'), "
            "now64(3, 'UTC') + toIntervalSecond({ttl:UInt32}), {r:UInt8}, {v:UInt64}",
            {"n": self.name, "t": token, "o": owner, "ttl": self.ttl, "r": released, "v": version},
        )

    def _stale_here(self, row: LockRow) -> bool:
        """A claim by a process of this host that no longer exists."""
        import psutil

        host, _, pid = row.owner.rpartition(":")
        return host == socket.gethostname() and pid.isdigit() and not psutil.pid_exists(int(pid))

    def break_claim(self, row: LockRow) -> None:
        self._insert(row.token, row.owner, next_version(row.version), released=1)

    def try_acquire(self) -> LockRow | None:
        """Take the lock if nobody else holds it; returns the holder's claim when busy."""
        for row in self.live():
            if row.token != self.token and self._stale_here(row):
                log.warning("Breaking the migration lock of %s: that process no longer exists", row.describe())
                self.break_claim(row)
        others = [r for r in self.live() if r.token != self.token]
        if others:
            return others[0]
        self._version = next_version(self._version)
        self._insert(self.token, self.owner, self._version, released=0)
        time.sleep(self.settle)
        claims = self.live()
        if claims and claims[0].token == self.token:
            self.held = True
            return None
        # Lost a race with a claim written at the same moment: withdraw ours.
        self._version = next_version(self._version)
        self._insert(self.token, self.owner, self._version, released=1)
        winner = next((r for r in claims if r.token != self.token), None)
        return winner or LockRow("", "another process", utcnow(), utcnow(), 0)

    def acquire(self, timeout: float, on_wait: Callable[[str], None] | None = None, poll: float = 1.0) -> None:
        wait_for(self.try_acquire, timeout, on_wait, poll, lambda holder: (
            f"migrations are locked by {holder.describe()} (lock row in {self.store.database}.{LOCKS_TABLE}); "
            "if that process is gone, run ./run.sh migrate --force-unlock"))


    def refresh(self) -> None:
        """Push the expiry forward (called after every statement)."""
        if not self.held:
            return
        self._version = next_version(self._version)
        self.store.command(
            f"INSERT INTO {self.store.table(LOCKS_TABLE)} "
            "(name, token, owner, acquired_at, expires_at, released, version) "
            "SELECT name, token, owner, acquired_at, now64(3, 'UTC') + toIntervalSecond({ttl:UInt32}), 0, {v:UInt64} "
            f"FROM {self.store.table(LOCKS_TABLE)} WHERE name = {{n:String}} AND token = {{t:String}} "
            "ORDER BY version DESC LIMIT 1",
            {"n": self.name, "t": self.token, "ttl": self.ttl, "v": self._version},
        )

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        self._version = next_version(self._version)
        self._insert(self.token, self.owner, self._version, released=1)

    def force_unlock(self) -> list[LockRow]:
        """Release every live claim (for a lock left behind by a dead process on another host)."""
        broken = [r for r in self.live() if r.token != self.token]
        for row in broken:
            log.warning("Force-unlocking the migration lock held by %s", row.describe())
            self.break_claim(row)
        return broken


def wait_for(try_acquire: Callable[[], LockRow | None], timeout: float, on_wait: Callable[[str], None] | None,
             poll: float, locked: Callable[[LockRow], str]) -> None:
    """Call ``try_acquire`` until it returns None (taken) or ``timeout`` seconds pass, then raise
    :class:`MigrationLocked` with ``locked(holder)``; ``on_wait`` hears the holder every 10 s."""
    deadline = time.monotonic() + timeout
    next_report = 0.0
    while True:
        holder = try_acquire()
        if holder is None:
            return
        now = time.monotonic()
        if now >= deadline:
            raise MigrationLocked(locked(holder))
        if on_wait and now >= next_report:
            on_wait(holder.describe())
            next_report = now + 10
        time.sleep(min(poll, max(deadline - now, 0.05)))
