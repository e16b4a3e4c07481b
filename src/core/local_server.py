"""The project's own ClickHouse server: ``DATA_DIR/clickhouse`` served over HTTP and the native
protocol by the chdb wheel.

chdb contains clickhouse-local, whose one-shot query path implements ``SYSTEM START LISTEN HTTP``
and ``TCP``: ClickHouse's own handlers, same SQL, formats, settings and error codes as clickhouse-server.
The listener lives while that query runs, so the query ends in a long ``sleepEachRow`` and the
server is stopped by killing that query (on SIGTERM/Ctrl-C). Ports, users and grants come from
the ``config.xml`` in the working directory, which is why chdb is imported *before* changing into
the configuration directory (the import opens a connection with the config of the cwd).

Security: the users (``default``, the framework's :data:`SERVER_USER`, BI tools' :data:`BI_USER`),
their grants, limits and passwords are in :mod:`core.local_server_config`; ``default``'s client
queries are bounded here, by :meth:`LocalServer.wait` (a profile limit would end the listener).

Framework commands of the same project use a running server instead of opening the store when no
server is configured: see :func:`find_running_server` for the rules.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.exceptions import StoreError, StoreLockTimeout
from core.local_server_config import (  # noqa: F401  (password_file: re-exported)
    BI_USER,
    DEFAULT_USER_MAX_SECONDS,
    SERVER_USER,
    password_file,
    server_password,
    write_config,
)
from core.locks import FileLock
from core.logging import get_logger

if TYPE_CHECKING:
    from core.config import Settings

log = get_logger("local_server")

STORE_ID_TABLE = "default._dp_store_id"
READY_TIMEOUT = 60.0
# The listener's query: its output format becomes the HTTP default format, and clickhouse-connect's
# version probe needs TabSeparated. About 300 years of tenth-of-a-second rows: a KILL is noticed
# within 0.1 s (a store turn's listener stops that much sooner).
_LISTEN_SQL = ("SYSTEM START LISTEN HTTP; SYSTEM START LISTEN TCP; SELECT sleepEachRow(0.1) "
               "FROM numbers(100000000000) SETTINGS max_block_size = 1 FORMAT Null")
_BOUND_DEFAULT_SQL = ("KILL QUERY WHERE user = 'default' AND interface != 'Local' "
                      f"AND elapsed > {DEFAULT_USER_MAX_SECONDS} ASYNC")
_STOP_SQL = ("KILL QUERY WHERE query LIKE 'SELECT sleepEachRow(0.1) FROM numbers(100000000000)%' "
             "AND user != currentUser() SYNC")


@dataclass(frozen=True)
class ServerRecord:
    """What a running server writes next to the store (``DATA_DIR/clickhouse-server.json``)."""

    pid: int
    host: str
    port: int
    store_path: str
    store_id: str
    user: str = SERVER_USER
    tcp_port: int = 0  # ClickHouse's native protocol (clickhouse-client, clickhouse-driver)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def record_path(settings: Settings) -> Path:
    return settings.data_dir / "clickhouse-server.json"


def store_lock(settings: Settings) -> FileLock:
    """The embedded store's lock (the same file :class:`core.store.Store` takes)."""
    return FileLock(settings.data_dir / "clickhouse.lock")


def read_record(settings: Settings) -> ServerRecord | None:
    try:
        data = json.loads(record_path(settings).read_text())
        return ServerRecord(**data)
    except (OSError, ValueError, TypeError):
        return None


def find_running_server(settings: Settings) -> ServerRecord | None:
    """The project's running local server, or None when there is none to use.

    Used only when no server is configured. A record counts only when its pid holds the store
    lock (so a stale record or one copied from another project is ignored); the caller must then
    check that the store id read over HTTP matches (:func:`verify_store_id`).
    """
    if settings.url or settings.clickhouse_host:
        return None
    record = read_record(settings)
    if record is None or Path(record.store_path) != settings.store_path:
        return None
    lock = store_lock(settings)
    if lock.holder_pid() != record.pid or lock.is_free():
        return None
    return record


def verify_store_id(client: Any, record: ServerRecord) -> None:
    """Fail unless the server answering on the record's port serves this store."""
    try:
        found = client.command(f"SELECT any(id) FROM {STORE_ID_TABLE}")
    except Exception as exc:
        raise StoreError(f"The local ClickHouse server (pid {record.pid}) holds {record.store_path} but "
                         f"{record.url} does not answer as it: {_short(exc)}") from None
    if found != record.store_id:
        raise StoreError(f"{record.url} answers, but not for the store {record.store_path} (store id "
                         f"differs): another server took the port? Stop it or restart clickhouse_server")


def port_is_free(host: str, port: int) -> bool:
    """True when ClickHouse can listen on ``port``: probed with ``SO_REUSEADDR``, as ClickHouse binds
    its own listeners, so connections of a killed server left in TIME_WAIT do not count (a restart
    after ``kill -9`` gets its port back at once) while a process listening there does."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1", exclude: list[int] | None = None) -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in (exclude or []):
            return port


def ping(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/ping", timeout=timeout) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


class LocalServer:
    """Serve the store in this process until :meth:`stop` (the ``clickhouse_server`` command)."""

    def __init__(self, settings: Settings, host: str = "127.0.0.1", port: int = 8123, tcp_port: int = 9000,
                 password: str | None = None, conf_dir: Path | None = None) -> None:
        """``password`` (with ``conf_dir``): a private listener for one process's store turn
        (:mod:`core.store_child`): that password, its configuration in ``conf_dir``, any free native
        port, and no server record, so other commands never find it."""
        if host not in ("127.0.0.1", "localhost", "::1") and not settings.clickhouse_password.get_secret_value():
            raise StoreError(f"Binding {host} (not loopback) requires CLICKHOUSE_PASSWORD to be set")
        self.settings = settings
        self.host = "127.0.0.1" if host == "localhost" else host
        self.port = port
        self.tcp_port = tcp_port
        self.lock = store_lock(settings)
        self.record: ServerRecord | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._watchdog: Any = None
        self.private = password is not None
        self._password = password
        self._conf = conf_dir or settings.data_dir / "clickhouse-server"
        if self.private:
            self.tcp_port = 0

    def start(self, wait: float = 0.0, note: str = "clickhouse_server",
              on_poll: Callable[[], None] | None = None) -> ServerRecord:
        """Take the store (waiting up to ``wait`` s), start the listener, wait for ``/ping``,
        write the server record (not for a private listener)."""
        import chdb  # noqa: F401  (before chdir: the import opens a connection with the cwd's config)

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self._stop.set())
        if not self.lock.acquire(wait, note=note, on_poll=on_poll):
            raise StoreLockTimeout(f"The store {self.settings.store_path} is in use by {self.lock.holder()}; "
                                   "stop that process first")
        try:
            return self._start_locked()
        except BaseException:
            self.lock.release()
            raise

    def _start_locked(self) -> ServerRecord:
        from chdb import _chdb

        self.port, self.tcp_port = self._ports()
        password = self._password or server_password(self.settings, create=True)
        # A private turn's listener has no BI user worth a password file: a random one nobody knows.
        bi_password = secrets.token_urlsafe(24) if self.private else server_password(
            self.settings, create=True, user=BI_USER)
        write_config(self._conf, self.host, (self.port, self.tcp_port), password, bi_password)
        os.chdir(self._conf)
        store = str(self.settings.store_path)
        self.settings.store_path.mkdir(parents=True, exist_ok=True)

        def listen() -> None:
            try:
                _chdb.query(_LISTEN_SQL, "TabSeparated", path=store)
            except BaseException as exc:  # reported by start()/wait()
                self._error = exc

        self._thread = threading.Thread(target=listen, name="clickhouse-listener", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + READY_TIMEOUT
        while not ping(self.host, self.port):
            if self._stop.is_set():
                raise StoreError("Stopped by a signal while starting")
            if not self._thread.is_alive():
                raise StoreError(f"The ClickHouse listener stopped at start: {_short(self._error or 'no error')}")
            if time.monotonic() > deadline:
                raise StoreError(f"The ClickHouse listener did not answer /ping within {READY_TIMEOUT:.0f} s")
            time.sleep(0.05)
        self.record = ServerRecord(pid=os.getpid(), host=self.host, port=self.port, store_path=store,
                                   store_id="" if self.private else self._store_id(password),
                                   tcp_port=self.tcp_port)
        if self.private:
            return self.record
        tmp = record_path(self.settings).with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self.record)))
        tmp.replace(record_path(self.settings))
        return self.record

    def _ports(self) -> tuple[int, int]:
        """The HTTP and native TCP ports (0: a free one), each checked free."""
        ports = []
        for port, option in ((self.port, "--port"), (self.tcp_port, "--tcp-port")):
            port = port or free_port(self.host, exclude=ports)
            if not port_is_free(self.host, port):
                raise StoreError(f"Port {port} on {self.host} is already in use; choose another with {option}")
            ports.append(port)
        if ports[0] == ports[1]:
            raise StoreError(f"--port and --tcp-port are both {ports[0]}: give two ports")
        return ports[0], ports[1]

    def _client(self, password: str) -> Any:
        import clickhouse_connect

        return clickhouse_connect.get_client(host=self.host, port=self.port, username=SERVER_USER,
                                             password=password, connect_timeout=5)

    def _store_id(self, password: str) -> str:
        """The store's random id, kept in ClickHouse so clients can tell this store from another."""
        client = self._client(password)
        try:
            client.command(f"CREATE TABLE IF NOT EXISTS {STORE_ID_TABLE} (id String) "
                           "ENGINE = MergeTree ORDER BY tuple()")
            found = client.command(f"SELECT any(id) FROM {STORE_ID_TABLE}")
            if not found:
                found = secrets.token_hex(16)
                client.command(f"INSERT INTO {STORE_ID_TABLE} VALUES ('{found}')")
            return str(found)
        finally:
            client.close()

    def wait(self) -> None:
        """Block until SIGTERM/SIGINT (or the listener dies)."""
        failures = 0
        while not self._stop.wait(1.0):
            if self._thread is not None and not self._thread.is_alive():
                raise StoreError(f"The ClickHouse listener stopped: {_short(self._error or 'no error')}")
            # Any client, even `default`, can run SYSTEM STOP LISTEN HTTP: then exit (non-zero, so
            # a supervisor restarts it) rather than hold the store while serving nobody.
            failures = 0 if ping(self.host, self.port) else failures + 1
            if failures >= 3:
                raise StoreError(f"The ClickHouse listener on {self.host}:{self.port} stopped answering "
                                 "(SYSTEM STOP LISTEN HTTP?); exiting")
            if not failures:
                self._bound_default_user()

    def _bound_default_user(self) -> None:
        """End every query of a client logged in as ``default`` that ran longer than its bound.

        A profile limit cannot do it: the listener's own endless query runs under ``default``'s
        profile too. It is the one query of the ``Local`` interface; clients come over HTTP or TCP.
        """
        try:
            if self._watchdog is None:
                self._watchdog = self._client(self._password or server_password(self.settings))
            self._watchdog.command(_BOUND_DEFAULT_SQL)
        except Exception as exc:  # the next second tries again with a new client
            log.warning("Could not bound the default user's queries: %s", _short(exc))
            if self._watchdog is not None:
                self._watchdog.close()
            self._watchdog = None

    def stop(self) -> None:
        """Stop the listener's query (so ClickHouse shuts its store down), drop record and lock."""
        if not self.private:
            record_path(self.settings).unlink(missing_ok=True)
        if self._watchdog is not None:
            self._watchdog.close()
        if self._thread is not None and self._thread.is_alive() and ping(self.host, self.port):
            try:
                client = self._client(self._password or server_password(self.settings))
                try:
                    client.command(_STOP_SQL)
                finally:
                    client.close()
            except Exception as exc:
                log.warning("Could not stop the listener cleanly: %s", _short(exc))
            self._thread.join(30)
        self.lock.release()


def _short(exc: object) -> str:
    text = " ".join(str(exc).split())
    return text[:300] + ("..." if len(text) > 300 else "")
