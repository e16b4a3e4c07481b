"""A long-running process's turn at the embedded store, taken in a child process.

chdb does not give back what an engine start takes: every open and close of an on-disk store
with MergeTree tables leaves its 5 background-executor threads (and their ``/proc/self/task``
descriptors) behind in the process (chdb 4.4 / chdb-core 26.9; measured by
``benchmarks/store_turns.py``). A short command opens the store once or twice and exits; a
process that lives for days and hands the store over thousands of times (the status page, the
scheduler, a long backfill) would grow by ~5 threads and ~11 descriptors a turn until it dies.

Such a process therefore never opens the engine itself. Each turn is taken by a child process
(``python -m core.store_child``), started ahead of time so its imports are paid while idle:

1. the parent waits until the store lock is free (touching the waiting marker), then sends one
   line: the store, the lock wait, the lock's note;
2. the child takes the store lock, serves the store on a loopback port with a private listener
   (:class:`LocalServer` with a one-turn password, no server record: no other command finds it)
   and answers with the port and password on its stdout (a pipe only the parent reads);
3. the parent uses it as a server over HTTP for the turn, then closes the child's stdin: the
   child stops the listener and exits, and the kernel takes back its threads, descriptors and
   lock. (One turn per child: the listener cannot start twice in one process, chdb says
   "EventNotifier is initialized twice".) The next turn's child was started when this turn
   began, so its imports (~0.5 s of CPU, seconds on a busy machine) are paid meanwhile.

The child also exits when its parent dies (its stdin closes), so it never keeps the store.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from core.exceptions import StoreError, StoreLockTimeout
from core.locks import FileLock

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

    from core.config import Settings
    from core.local_server import ServerRecord

_SRC = Path(__file__).resolve().parents[1]
# Seconds a child may take to start its listener once it has the lock, and to stop.
_START_GRACE = 60.0
_STOP_WAIT = 30.0


class StoreChild:
    """The parent's side: one child per turn, the next one started as soon as a turn begins."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._mutex = threading.Lock()
        self._ready: subprocess.Popen[str] | None = None
        self._serving: subprocess.Popen[str] | None = None
        self._stopping: list[subprocess.Popen[str]] = []
        self._lock = FileLock(settings.data_dir / "clickhouse.lock")
        self._marker = settings.data_dir / "clickhouse.lock.waiting"
        self._shut = False

    def prestart(self) -> None:
        """Start the next turn's child now (it imports, then waits for its request)."""
        with self._mutex:
            if not self._shut and (self._ready is None or self._ready.poll() is not None):
                self._ready = _spawn()

    def client(self, description: str, prepare: Callable[[Client], None]) -> Client:
        """A client of a new turn at the store (``prepare``: the store's set-up of a new client)."""
        from core.store_server import connect

        record, password = self.open(self.settings.store_lock_timeout, note=f"store turn of pid {os.getpid()}")
        try:
            client = connect(self.settings, record, description, password=password)
            prepare(client)
        except BaseException:
            self.close()
            raise
        return client

    def open(self, timeout: float, note: str) -> tuple[ServerRecord, str]:
        """Have a child take the store (waiting up to ``timeout`` s for its lock) and serve it:
        its loopback address (as a record) and the turn's password."""
        from core.local_server import SERVER_USER, ServerRecord

        self.prestart()
        # Wait here while another process holds the store, so a turn that does not come keeps
        # the child (and its paid imports) for the next one.
        started = time.monotonic()
        if not self._lock_frees(timeout):
            raise StoreLockTimeout(f"The embedded store {self.settings.store_path} is still in use by "
                                   f"{self._lock.holder()} after {timeout:.1f} s")
        timeout = max(timeout - (time.monotonic() - started), 0.5)
        with self._mutex:
            child, self._ready = self._ready, None
        self.prestart()  # the next turn's child imports during this turn
        if child is None or child.stdin is None or child.stdout is None:
            raise StoreError("No store turn after shutdown (the process is exiting)")
        request = {"data_dir": str(self.settings.data_dir), "store": str(self.settings.store_path),
                   "wait": timeout, "note": note}
        try:
            child.stdin.write(json.dumps(request) + "\n")
            child.stdin.flush()
            answer = _read_answer(child.stdout, timeout + _START_GRACE)
        except BaseException:
            self._retire(child)
            raise
        if "port" not in answer:
            self._retire(child)
            error = str(answer.get("error", "the store child exited without answering"))
            if answer.get("busy"):
                raise StoreLockTimeout(error)
            raise StoreError(error)
        self._serving = child
        record = ServerRecord(pid=child.pid, host="127.0.0.1", port=int(answer["port"]),
                              store_path=str(self.settings.store_path), store_id="", user=SERVER_USER)
        return record, str(answer["password"])

    def _lock_frees(self, timeout: float) -> bool:
        """True once nobody holds the store lock (within ``timeout`` s), touching the waiting
        marker meanwhile as any waiting framework process does."""
        deadline = time.monotonic() + timeout
        while not self._lock.is_free():
            if time.monotonic() >= deadline:
                return False
            signal_waiting(self._marker)
            time.sleep(0.05)
        return True

    def close(self, next_turn: bool = True) -> None:
        """End the current turn: the child stops its listener, releases the store and exits (the
        caller does not wait for that; the next turn's child, already started, waits for the lock)."""
        child, self._serving = self._serving, None
        if child is not None:
            self._retire(child)
        if next_turn:
            self.prestart()

    def _retire(self, child: subprocess.Popen[str]) -> None:
        """Tell ``child`` to stop; reap the children that have exited (never wait for one)."""
        _stop(child)
        self._stopping = [c for c in [*self._stopping, child] if not _reaped(c)]

    def shutdown(self) -> None:
        """End the turn and the waiting child, and wait for both (process exit): no child after."""
        self._shut = True
        self.close(next_turn=False)
        with self._mutex:
            child, self._ready = self._ready, None
        for each in [*self._stopping, *([child] if child else [])]:
            _finish(each)
        self._stopping = []


def signal_waiting(marker: Path) -> None:
    """Touch the waiting marker: the holder hands the store over at its next idle moment."""
    with contextlib.suppress(OSError):
        marker.touch()


def _spawn() -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(_SRC), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-m", "core.store_child"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env, cwd=str(_SRC), close_fds=True)


def _read_answer(stdout: IO[str], timeout: float) -> dict[str, Any]:
    """The child's one-line answer (a reader thread bounds the wait; EOF: it died)."""
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if reader.is_alive():
        raise StoreError(f"The store child did not answer within {timeout:.0f} s")
    line = box[0] if box else ""
    return json.loads(line) if line.strip() else {}


def _stop(child: subprocess.Popen[str]) -> None:
    """Close the child's stdin: its signal to stop."""
    try:
        if child.stdin is not None:
            child.stdin.close()
    except OSError:
        pass


def _reaped(child: subprocess.Popen[str]) -> bool:
    """True (its pipe closed) once the child has exited."""
    if child.poll() is None:
        return False
    if child.stdout is not None:
        child.stdout.close()
    return True


def _finish(child: subprocess.Popen[str]) -> None:
    """Stop the child and wait for it to exit (kill it after a while)."""
    _stop(child)
    try:
        child.wait(_STOP_WAIT)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
    if child.stdout is not None:
        child.stdout.close()


# ---- the child -------------------------------------------------------------------------------

def _serve(request: dict[str, Any], out: IO[str]) -> bool:
    """Take the store, serve it until the parent says ``end`` (or goes), stop and release it.
    False when the parent has gone (stdin closed)."""
    from core.config import Settings
    from core.local_server import LocalServer

    settings = Settings(_env_file=None, data_dir=Path(request["data_dir"]),  # type: ignore[call-arg]
                        clickhouse_host=None, clickhouse_url=None)
    marker = settings.data_dir / "clickhouse.lock.waiting"
    conf = Path(tempfile.mkdtemp(prefix="dp-store-turn-"))
    password = secrets.token_urlsafe(24)
    server = LocalServer(settings, port=0, password=password, conf_dir=conf)
    more = True
    try:
        try:
            record = server.start(float(request["wait"]), note=str(request["note"]),
                                  on_poll=lambda: signal_waiting(marker))
        except StoreLockTimeout as exc:
            _answer(out, {"busy": True, "error": str(exc)})
            return True
        except StoreError as exc:
            _answer(out, {"error": _foreign(str(exc), settings)})
            return True
        _answer(out, {"port": record.port, "password": password})
        more = sys.stdin.readline().strip() == "end"  # until the turn ends (or the parent goes)
    finally:
        # Stopping makes the engine print "Query was cancelled" for its listener: not news.
        saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        os.close(null)
        try:
            server.stop()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        shutil.rmtree(conf, ignore_errors=True)
    return more


def _foreign(error: str, settings: Settings) -> str:
    if "Cannot lock file" in error or "Error initializing EmbeddedServer" in error:
        return (f"The embedded store {settings.store_path} is open in a process that is not data-processor "
                "(a notebook or script using chdb on it?); close it and try again")
    return f"Cannot open the embedded store {settings.store_path}: {error}"


def _answer(out: IO[str], answer: dict[str, Any]) -> None:
    out.write(json.dumps(answer) + "\n")
    out.flush()


def main() -> None:
    """Entry point of ``python -m core.store_child``: a turn per request, until stdin closes."""
    # The imports are what the ahead-of-time start pays for, before the request comes.
    import chdb  # noqa: F401
    import clickhouse_connect  # noqa: F401  (stopping the listener uses a client)

    import core.config  # noqa: F401
    import core.local_server  # noqa: F401

    # The answer pipe is a private copy of stdout; stdout itself (Python's and the engine's) goes
    # to stderr, so nothing else can ever write into the answer.
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    while True:
        line = sys.stdin.readline()
        if not line.strip() or not _serve(json.loads(line), out):
            return  # the parent has gone, or is done with this child


if __name__ == "__main__":
    main()
