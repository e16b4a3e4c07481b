"""Kernel file locks (``flock``) that die with their process, kill -9 included.

The lock file holds the holder's pid and command line so a waiting process can say who it is
waiting for. The file itself is never deleted: deleting a flock'ed file lets two processes
believe they hold "the" lock.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path


class FileLock:
    """An exclusive, non-reentrant lock on ``path`` for this process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self, note: str = "") -> bool:
        """Take the lock if it is free; never waits."""
        if self._fd is not None:
            raise RuntimeError(f"lock {self.path} is already held by this process")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.set_inheritable(fd, False)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n{note or ' '.join(sys.argv)}\n".encode())
        self._fd = fd
        return True

    def acquire(
        self,
        timeout: float,
        note: str = "",
        on_wait: Callable[[str], None] | None = None,
        poll: float = 0.05,
        on_poll: Callable[[], None] | None = None,
    ) -> bool:
        """Wait up to ``timeout`` seconds for the lock. ``on_wait(holder)`` is called once when
        the lock is busy (and every 10 s after), with a description of the holder; ``on_poll()``
        each time it is found busy."""
        deadline = time.monotonic() + timeout
        next_report = 0.0
        while not self.try_acquire(note):
            now = time.monotonic()
            if now >= deadline:
                return False
            if on_poll:
                on_poll()
            if on_wait and now >= next_report:
                on_wait(self.holder())
                next_report = now + 10
            time.sleep(min(poll, max(deadline - now, 0)))
        return True

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def holder(self) -> str:
        """``pid 123 (command line)`` of the current holder, as it wrote itself in the file."""
        for _ in range(5):  # a new holder empties the file, then writes itself: read it once it has
            try:
                pid, _, note = self.path.read_text().partition("\n")
            except OSError:
                return "an unknown process"
            pid = pid.strip()
            if pid:
                break
            time.sleep(0.01)
        if not pid:
            return "an unknown process"
        return f"pid {pid} ({note.strip()})" if note.strip() else f"pid {pid}"

    def holder_pid(self) -> int | None:
        try:
            text = self.path.read_text().partition("\n")[0].strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def is_free(self) -> bool:
        """True when nobody holds the lock right now (checked by taking and dropping it)."""
        if self._fd is not None:
            return False
        if self.try_acquire("probe"):
            self.release()
            return True
        return False


def this_host() -> str:
    """The host name runs record (a run's lock can be checked only on its own host)."""
    return socket.gethostname()


def _lock_holders(path: Path) -> set[int] | None:
    """Pids holding a flock on ``path`` per ``/proc/locks`` (None when that file is unavailable).

    Reading /proc/locks, unlike probing with flock, can never make a starting run fail.
    """
    try:
        inode = os.stat(path).st_ino
        text = Path("/proc/locks").read_text()
    except FileNotFoundError:
        return set() if Path("/proc/locks").exists() else None
    except OSError:
        return None
    holders = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 6 or parts[1] == "->" or parts[1] != "FLOCK":
            continue  # "->" marks a waiter, not a holder
        try:
            if int(parts[5].rsplit(":", 1)[1]) == inode:
                holders.add(int(parts[4]))
        except (ValueError, IndexError):
            continue
    return holders


def holds_lock(pid: int, lock_file: str | Path) -> bool:
    """True when process ``pid`` holds the flock on ``lock_file`` right now."""
    holders = _lock_holders(Path(lock_file))
    if holders is None:  # no /proc/locks: trust what the holder wrote into the lock file
        return FileLock(Path(lock_file)).holder_pid() == pid
    return pid in holders


def run_is_alive(pid: int, lock_file: str, host: str = "") -> bool:
    """Is the run of process ``pid`` with run lock ``lock_file`` still running?

    A run holds its lock for as long as its process lives (kill -9 included), so a free lock, or
    one now held by another process, proves it dead. A run of another host cannot be checked
    from here: it is taken as alive. The one aliveness test (reaper, ``ps``/``kill``/``clean``,
    backfill coverage).
    """
    if host and host != this_host():
        return True
    return bool(lock_file and pid and holds_lock(pid, lock_file))
