"""The page's turn at the store: bounded waits, polite back-off, and the last snapshot otherwise.

On the embedded store one process at a time has it open. A run must never wait long for the
page, and the page must never hang on a run, so each read here:

- waits at most ``UI_STORE_WAIT`` seconds for the store lock (while waiting it touches the
  waiting marker like any framework process, so a lingering holder hands the store over);
- does not even try while another process is already waiting for the store (its marker is
  fresh and it is not ours): that process goes first;
- holds the store while requests follow each other, and hands it over within 0.1 s of another
  process starting to wait for it (after ``MAX_IDLE`` seconds idle in any case); each turn is
  a child process's (:mod:`core.store_child`), so the page stays flat however many turns.

When it does not get its turn, the caller gets the last snapshot of the same view with the time
it was taken and who holds the store. On a ClickHouse server none of this applies: reads go
straight to the server.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from core.config import Settings
from core.exceptions import StoreError, StoreLockTimeout
from core.locks import FileLock
from core.store import Store

T = TypeVar("T")

# Seconds a page request waits for the embedded store before it shows the last snapshot.
UI_STORE_WAIT = 1.5
# A waiting marker touched this recently by another process means that process waits now
# (the same window the store itself uses to notice waiters).
_WAITER_RECENT = 0.3


@dataclass
class Reading:
    """A view's data, when it was read, and why it is old (``busy``) if it is."""

    value: Any
    as_of: datetime
    busy: str = ""

    @property
    def stale(self) -> bool:
        return bool(self.busy)


class StoreBusy(Exception):
    """The store was busy and there is no earlier snapshot of this view to show."""

    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


class StoreGate:
    """Reads for the web page, one at a time per process, never longer than the wait bound."""

    def __init__(self, settings: Settings, wait: float = UI_STORE_WAIT) -> None:
        self.wait = wait
        self.embedded = settings.is_embedded
        bounded = settings.model_copy(update={"store_lock_timeout": wait})
        # Each turn is a child process's (core/store_child.py: chdb does not give back what an
        # engine open takes); it lingers while requests follow each other and nobody waits.
        self.store = Store(bounded, turns=True)
        self.store.prepare()
        self._turn = threading.Lock()
        self._snapshots: dict[str, Reading] = {}
        self._lock_file = FileLock(settings.data_dir / "clickhouse.lock")
        self._marker = settings.data_dir / "clickhouse.lock.waiting"
        self._our_wait_ended = 0.0

    def read(self, key: str, reader: Callable[[Store], T]) -> Reading:
        """``reader(store)`` now, or the last snapshot of ``key`` when the store is not ours in time."""
        # Other page requests of this process queue here; one that queued long and has a snapshot
        # shows it rather than waiting for the store too (so no request waits much over the bound).
        started = time.monotonic()
        if not self._turn.acquire(timeout=self.wait):
            return self._snapshot(key, "another page is reading it")
        try:
            if key in self._snapshots and time.monotonic() - started > self.wait / 2:
                return self._snapshot(key, "another page was reading it")
            if self.embedded and key in self._snapshots and self._other_waits() and not self._lock_file.is_free():
                return self._snapshot(key, self._holder() + "; another process is waiting for it")
            try:
                with self.store.session():
                    value = reader(self.store)
            except StoreLockTimeout:
                return self._snapshot(key, self._holder())
            except StoreError as exc:  # a server down, a store that cannot be opened
                self.store.close()
                return self._snapshot(key, f"unavailable: {exc}")
            finally:
                self._our_wait_ended = time.time()
            reading = Reading(value, datetime.now(UTC))
            self._snapshots[key] = reading
            return reading
        finally:
            self._turn.release()

    def last(self, key: str) -> Reading | None:
        """The last reading of ``key`` (None before the first)."""
        return self._snapshots.get(key)

    def _snapshot(self, key: str, holder: str) -> Reading:
        last = self._snapshots.get(key)
        if last is None:
            raise StoreBusy(holder)
        return Reading(last.value, last.as_of, holder)

    def _other_waits(self) -> bool:
        """A process other than this one touches the waiting marker now.

        Our own last wait touched it too, so a recent touch from before that wait ended proves
        nothing either way: a real waiter touches it again within ``_WAITER_RECENT``, so look
        that long for a newer touch (a request right after our own wait saw only ours).
        """
        deadline = time.time() + _WAITER_RECENT
        while True:
            try:
                touched = self._marker.stat().st_mtime
            except OSError:
                return False
            now = time.time()
            if now - touched >= _WAITER_RECENT:
                return False
            if touched > self._our_wait_ended:
                return True
            if now >= deadline:
                return False
            time.sleep(0.02)

    def _holder(self) -> str:
        if not self.embedded:
            return "server busy"
        return f"in use by {self._lock_file.holder()}"

    def holder_pid(self) -> int | None:
        return self._lock_file.holder_pid() if self.embedded else None

    def close(self) -> None:
        self.store.close()
