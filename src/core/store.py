"""The ClickHouse store: the one place that builds a client, for the embedded engine or a server.

With no ``CLICKHOUSE_HOST``/``CLICKHOUSE_URL`` the store is ClickHouse itself running in-process
(chdb) on ``DATA_DIR/clickhouse``; otherwise a ClickHouse server over HTTP(S). Both are driven by
the same ``clickhouse-connect`` client, so the rest of the framework never knows which.

An on-disk chdb store admits one process at a time. Every process therefore takes an exclusive
file lock (``DATA_DIR/clickhouse.lock``) before opening it and releases it shortly after its last
use (``linger``), so several processes doing short operations take turns instead of failing.
While no other process waits (a waiting process touches ``DATA_DIR/clickhouse.lock.waiting``),
an idle store stays open up to ``MAX_IDLE`` seconds, so a run's batches do not reopen it.
A process that has to wait logs for whom; after ``STORE_LOCK_TIMEOUT`` seconds it gives up.
"""

from __future__ import annotations

import atexit
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

from core.clickhouse_adapter import ClickHouseAdapter
from core.exceptions import StoreError, StoreLockTimeout
from core.locks import FileLock
from core.logging import get_logger
from core.store_child import StoreChild, signal_waiting
from core.store_errors import errors as _errors
from core.store_errors import setting_literal as _setting_literal
from core.store_inserts import inline_settings, insert_in_process, insert_json, with_constants, worth_in_process
from core.store_memo import CatalogueMemo
from core.store_server import short as _short
from core.validators import quote_identifier

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    from clickhouse_connect.driver.client import Client

    from core.config import Settings
    from core.local_server import ServerRecord

log = get_logger("store")

# Seconds an idle embedded store stays open after its last use: a stream of batches does not
# pay the open cost (~0.05 s) each time, and other processes get their turn quickly.
DEFAULT_LINGER = 0.5
# ...and while no other process waits for it (waiters touch a marker file), up to this long: a run
# whose batches come every second or two would otherwise reopen it (~0.2 s of CPU) per batch.
MAX_IDLE = 5.0
_WAIT_CHECK = 0.1  # seconds between looks at the marker while idle past the linger
_WAITER_RECENT = 0.3  # a marker touched this recently means a process is waiting now

_BUSY_MARKERS = ("Error initializing EmbeddedServer", "Cannot lock file")  # chdb's: another process has it open


class Store:
    """Access to the configured ClickHouse for this process.

    Use the helpers (:meth:`command`, :meth:`query_rows`, :meth:`insert_arrow`, ...) or hold a
    raw client for a block with :meth:`session`. Table names without a dot are taken to be in
    the configured database.
    """

    def __init__(self, settings: Settings, linger: float = DEFAULT_LINGER, turns: bool = False) -> None:
        """``turns``: for a long-lived process (the status page): each turn at the embedded store
        is a child process's (:mod:`core.store_child`), and the store's owner is looked up anew."""
        self.settings = settings
        self.database = settings.database
        self.linger = linger
        self._mutex = threading.RLock()
        self._client: Client | None = None
        self._users = 0
        self._timer: threading.Timer | None = None
        self._lock = FileLock(settings.data_dir / "clickhouse.lock") if settings.is_embedded else None
        self._waiting_marker = settings.data_dir / "clickhouse.lock.waiting"
        self._idle_since = 0.0
        self.engine_opens = 0  # in this process: each costs threads chdb keeps (core/store_child.py)
        # The project's clickhouse_server when it serves this store (None: not looked for yet, False: none).
        self._local: ServerRecord | Literal[False] | None = None
        self._child = StoreChild(settings) if turns and settings.is_embedded else None
        #: Catalogue look-ups and publishing DDL (``core.clickhouse_adapter``): every question about tables.
        self.adapter = ClickHouseAdapter(self)
        #: Catalogue answers kept while this process holds the embedded engine (``core.store_memo``).
        self.memo = CatalogueMemo()
        atexit.register(self.close)
        if self._child is not None:
            atexit.register(self._child.shutdown)  # runs first: no new child once exiting

    @property
    def description(self) -> str:
        if self._local:
            return f"local server http://{self._local.user}@{self._local.host}:{self._local.port} " \
                   f"(serving {self._local.store_path}, pid {self._local.pid})"
        return self.settings.store_description

    @property
    def is_server(self) -> bool:
        """True for a ClickHouse server (configured, or the project's ``clickhouse_server``): other hosts may write."""
        if self._lock is not None and self._local is None:
            with self.session():
                pass
        return self._lock is None

    # ---- connection lifecycle ----------------------------------------------------------

    def prepare(self) -> None:
        """Start what the next turn needs ahead of time (a ``turns`` store's child process)."""
        if self._child is not None:
            self._child.prestart()

    @contextmanager
    def session(self) -> Iterator[Client]:
        """A live client for the duration of the block (re-entrant, thread-safe)."""
        with self._mutex:
            # A pending release timer stays armed (it waits on while the store is in use): no thread per statement.
            if self._client is None:
                self._client = self._open()
            self._users += 1
            client = self._client
        try:
            yield client
        finally:
            with self._mutex:
                self._users -= 1
                if self._users == 0 and self._lock is not None:
                    self._release_later()
                elif self._users == 0 and self._child is not None:  # served: find the owner anew next time
                    self._disconnect()

    def _release_later(self) -> None:
        if self.linger <= 0:
            self._close_if_idle()
            return
        self._idle_since = time.monotonic()
        if self._timer is None:
            self._arm(self.linger)

    def _arm(self, delay: float) -> None:
        self._timer = threading.Timer(delay, self._close_if_idle)
        self._timer.daemon = True
        self._timer.start()

    def _close_if_idle(self) -> None:
        with self._mutex:
            if self._timer not in (None, threading.current_thread()):
                return  # cancelled, or replaced by a newer timer
            self._timer, idle = None, time.monotonic() - self._idle_since
            if self._users != 0 or self._client is None:
                return  # the session's end arms a new timer
            if self.linger > 0 and idle < self.linger:
                self._arm(self.linger - idle)  # used since this timer was armed
            elif self.linger > 0 and idle < max(MAX_IDLE, self.linger) and not self.someone_waits():
                self._arm(_WAIT_CHECK)
            else:
                self._disconnect()

    def someone_waits(self) -> bool:
        """True when another process recently waited for the embedded store (touched its marker)."""
        try:
            return time.time() - self._waiting_marker.stat().st_mtime < _WAITER_RECENT
        except OSError:
            return False

    def close(self) -> None:
        """Close the client and release the store lock (waits for no one)."""
        with self._mutex:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._disconnect()

    def _disconnect(self) -> None:
        client, self._client = self._client, None
        self.memo.reset(active=False)
        try:
            if client is not None:
                if self._child is not None:  # a turn's port is never seen again: drop its sockets
                    client.close_connections()
                client.close()
        finally:
            if self._lock is not None:
                self._lock.release()
            if self._child is not None:  # the next turn looks for the store's owner again
                self._child.close()
                self._local, self._lock = None, FileLock(self.settings.data_dir / "clickhouse.lock")

    def _open(self) -> Client:
        if self._lock is not None and self._local is None:
            from core.local_server import find_running_server
            self._local = find_running_server(self.settings) or False
            if self._local:
                self._lock = None  # decided once per process: a run never switches engine midway
        if self._lock is None:
            return self._open_server()
        if self._child is not None:
            return self._child.client(self.description, self._use_database)

        path = self.settings.store_path
        timeout = self.settings.store_lock_timeout
        deadline = time.monotonic() + timeout
        waited = False

        def waiting(holder: str) -> None:
            nonlocal waited
            waited = True
            log.warning("Waiting for the embedded store %s: it is in use by %s (giving up after %.0f s)",
                        path, holder, timeout)

        if not self._lock.acquire(timeout, on_wait=waiting, on_poll=lambda: signal_waiting(self._waiting_marker)):
            raise StoreLockTimeout(
                f"The embedded store {path} is still in use by {self._lock.holder()} after {timeout:.0f} s "
                f"(STORE_LOCK_TIMEOUT); wait for that process to finish or stop it"
            )
        try:
            path.mkdir(parents=True, exist_ok=True)
            client = self._open_embedded(deadline)
            self.engine_opens += 1
            self.memo.reset(active=True)
        except BaseException:
            self._lock.release()
            raise
        if waited:
            log.info("Got the embedded store %s", path)
        self._use_database(client)
        return client

    def _open_embedded(self, deadline: float) -> Client:
        import clickhouse_connect

        path = self.settings.store_path
        reported = False
        while True:
            try:
                return clickhouse_connect.get_client(dsn=f"chdb://{path}")
            except Exception as exc:
                busy = any(marker in str(exc) for marker in _BUSY_MARKERS)
                if not busy:
                    raise StoreError(f"Cannot open the embedded store {path}: {_short(exc)}") from None
                # Our lock is free but chdb says the directory is open: a process outside the
                # framework (a notebook, a script) holds it.
                if time.monotonic() >= deadline:
                    raise StoreLockTimeout(
                        f"The embedded store {path} is open in a process that is not data-processor "
                        f"(a notebook or script using chdb on it?); close it and try again"
                    ) from None
                if not reported:
                    log.warning("Waiting for the embedded store %s: another program has it open", path)
                    reported = True
                time.sleep(0.2)

    def _open_server(self) -> Client:
        from core.store_server import connect

        client = connect(self.settings, self._local or None, self.description)
        self._use_database(client)
        return client

    def _use_database(self, client: Client) -> None:
        from core.store_server import use_database

        use_database(client, self.database, self.settings.clickhouse_cluster, self.description)

    # ---- helpers -----------------------------------------------------------------------

    def table(self, name: str) -> str:
        """The quoted, database-qualified name of a table."""
        if "." in name:
            db, _, tbl = name.partition(".")
            return f"{quote_identifier(db)}.{quote_identifier(tbl)}"
        return f"{quote_identifier(self.database)}.{quote_identifier(name)}"

    def command(self, sql: str, parameters: dict[str, Any] | None = None,
                settings: dict[str, Any] | None = None) -> Any:
        """Run DDL or a statement returning at most a single value."""
        with self.session() as client, _errors(sql):
            self.memo.note(sql)
            if settings and self._lock is not None:  # chdb in this process
                sql, settings = inline_settings(sql, settings)
            return client.command(sql, parameters=parameters, settings=settings)

    def query_rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        with self.session() as client, _errors(sql):
            return list(client.query(sql, parameters=parameters).result_rows)

    def query_dicts(self, sql: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        with self.session() as client, _errors(sql):
            result = client.query(sql, parameters=parameters)
            return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]

    def query(self, sql: str, parameters: dict[str, Any] | None = None,
              settings: dict[str, Any] | None = None) -> Any:
        """Any statement, with query settings; the clickhouse-connect result (rows fetched)."""
        with self.session() as client, _errors(sql):
            self.memo.note(sql)
            return client.query(sql, parameters=parameters, settings=settings)

    def raw_query(self, sql: str) -> bytes:
        """A statement's output as ClickHouse formats it (the statement names its own ``FORMAT``)."""
        with self.session() as client, _errors(sql):
            self.memo.note(sql)
            return bytes(client.raw_query(sql))

    @contextmanager
    def read_only(self, settings: Mapping[str, Any] | None = None) -> Iterator[None]:
        """A block in which ClickHouse itself refuses every write: ``readonly = 1`` (after ``settings``).

        ``readonly = 1`` refuses INSERT, DDL, SYSTEM, KILL, temporary tables, every table
        function that reaches outside the store (file, url, s3, remote, mysql, ...) and any change
        of a setting, ``readonly`` included, so no text of a statement can undo it. On the embedded
        engine it is set on the session (a statement's own SETTINGS cannot override a session's
        readonly); on a server it goes with every request (applied before the statement's own
        SETTINGS are checked). The client is closed after the block: a chdb session cannot leave
        read-only mode.
        """
        changes = {**(settings or {}), "readonly": 1}
        try:
            with self.session() as client, _errors("SET readonly = 1"):
                if self._lock is not None:
                    client.command("SET " + ", ".join(f"{quote_identifier(k)} = {_setting_literal(v)}"
                                                      for k, v in changes.items()))
                else:
                    for key, value in changes.items():
                        client.set_client_setting(key, value)
                yield
        finally:
            self.close()

    def query_df(self, sql: str, parameters: dict[str, Any] | None = None) -> pd.DataFrame:
        with self.session() as client, _errors(sql):
            return client.query_df(sql, parameters=parameters)

    def query_arrow(self, sql: str, parameters: dict[str, Any] | None = None) -> pa.Table:
        with self.session() as client, _errors(sql):
            return client.query_arrow(sql, parameters=parameters)

    def insert_arrow(self, table: str, data: pa.Table, settings: dict[str, Any] | None = None,
                     constants: Mapping[str, str] | None = None) -> int:
        """Insert an Arrow table; returns the number of rows written.

        On the embedded engine the table is read in-process by ClickHouse (``Python()`` table
        function, no serialisation), which measured ~20% faster than ``insert_arrow``.
        ``constants`` are string columns with one value for every row (e.g. the run id): on the
        embedded engine ClickHouse fills them in the ``SELECT``, so no per-row column is built
        in Python; for a server they are appended to the Arrow table.
        """
        with self.session() as client, _errors(f"INSERT INTO {table}"):
            if not (self.settings.is_embedded and worth_in_process(data)
                    and insert_in_process(client, self.table(table), data, settings, constants or {})):
                client.insert_arrow(self.table(table), with_constants(data, constants or {}), settings=settings)
        return data.num_rows

    def insert_df(self, table: str, data: pd.DataFrame, settings: dict[str, Any] | None = None) -> int:
        """Insert a pandas DataFrame; returns the number of rows written."""
        with self.session() as client, _errors(f"INSERT INTO {table}"):
            client.insert_df(self.table(table), data, settings=settings)
        return len(data)

    def insert_rows(self, table: str, rows: Sequence[Sequence[Any]], columns: Sequence[str]) -> int:
        """Insert a few Python rows (framework records) as JSONEachRow: no pandas import (~0.4 s a CLI call)."""
        with self.session() as client, _errors(f"INSERT INTO {table}"):
            insert_json(client, self.table(table), rows, columns)
        return len(rows)

    def database_exists(self) -> bool:
        sql = f"EXISTS DATABASE {quote_identifier(self.database)}"
        return self.memo.get(sql, lambda: self.command(sql) in (1, "1"))

    def table_exists(self, name: str) -> bool:
        sql = f"EXISTS TABLE {self.table(name)}"
        return self.memo.get(sql, lambda: self.command(sql) in (1, "1"))

    def list_tables(self) -> list[dict[str, Any]]:
        """Tables of the configured database: name, engine, rows (``None`` for views)."""
        return self.adapter.table_listing()

    def server_version(self) -> str:
        with self.session() as client:
            return str(client.server_version)

    def create_database(self) -> bool:
        """Create the configured database; returns False when it already existed."""
        existed = self.database_exists()
        self.command(f"CREATE DATABASE IF NOT EXISTS {quote_identifier(self.database)}")
        with self.session() as client:
            client.database = self.database
        return not existed

    def drop_database(self) -> None:
        with self.session() as client:
            client.database = "default"
        self.command(f"DROP DATABASE IF EXISTS {quote_identifier(self.database)} SYNC")
