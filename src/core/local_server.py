"""The project's own ClickHouse server: ``DATA_DIR/clickhouse`` served over HTTP by the chdb wheel.

chdb contains clickhouse-local, whose one-shot query path implements ``SYSTEM START LISTEN HTTP``:
ClickHouse's own HTTP handler, same SQL, formats, settings and error codes as clickhouse-server.
The listener lives while that query runs, so the query ends in a long ``sleepEachRow`` and the
server is stopped by killing that query (on SIGTERM/Ctrl-C). Ports, users and grants come from
the ``config.xml`` in the working directory, which is why chdb is imported *before* changing into
the configuration directory (the import opens a connection with the config of the cwd).

Security: clickhouse-local runs its own queries as ``default`` without a password, so ``default``
cannot get one. Instead ``default`` is granted only what the listener's own query needs
(``SYSTEM LISTEN`` and ``system.numbers``): it can read no table and no file. The framework and
BI tools use :data:`SERVER_USER` with a password (``CLICKHOUSE_PASSWORD``, or one generated into
a 0600 file under ``DATA_DIR``).

Framework commands of the same project use a running server instead of opening the store when no
server is configured: see :func:`find_running_server` for the rules.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

from core.exceptions import StoreError, StoreLockTimeout
from core.locks import FileLock
from core.logging import get_logger

if TYPE_CHECKING:
    from core.config import Settings

log = get_logger("local_server")

SERVER_USER = "data_processor"
STORE_ID_TABLE = "default._dp_store_id"
READY_TIMEOUT = 60.0
# The listener's query: its output format becomes the HTTP default format, and clickhouse-connect's
# version probe needs TabSeparated. About 300 years of tenth-of-a-second rows: a KILL is noticed
# within 0.1 s (a store turn's listener stops that much sooner).
_LISTEN_SQL = ("SYSTEM START LISTEN HTTP; SELECT sleepEachRow(0.1) FROM numbers(100000000000) "
               "SETTINGS max_block_size = 1 FORMAT Null")
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

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def record_path(settings: Settings) -> Path:
    return settings.data_dir / "clickhouse-server.json"


def password_file(settings: Settings) -> Path:
    return settings.data_dir / "clickhouse-server.password"


def store_lock(settings: Settings) -> FileLock:
    """The embedded store's lock (the same file :class:`core.store.Store` takes)."""
    return FileLock(settings.data_dir / "clickhouse.lock")


def server_password(settings: Settings, create: bool = False) -> str:
    """``CLICKHOUSE_PASSWORD`` when set, else the generated one (made on first serve, mode 0600)."""
    configured = settings.clickhouse_password.get_secret_value()
    if configured:
        return configured
    path = password_file(settings)
    if path.is_file():
        return path.read_text().strip()
    if not create:
        raise StoreError(f"The local ClickHouse server's password file {path} is missing")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    password = secrets.token_urlsafe(24)
    with os.fdopen(fd, "w") as handle:
        handle.write(password + "\n")
    return password


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
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def write_config(directory: Path, host: str, port: int, user: str, password: str) -> None:
    """``config.xml`` and ``users.xml`` for the listener, readable by this user only."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    digest = hashlib.sha256(password.encode()).hexdigest()
    any_address = "<ip>::/0</ip>"
    users = f"""<clickhouse>
  <users>
    <default>
      <password></password><profile>default</profile><quota>default</quota>
      <networks>{any_address}</networks>
      <!-- clickhouse-local's own queries run as default without a password: it may only
           start the listener and run its sleeping query, nothing else (no tables, no files). -->
      <grants><query>GRANT SYSTEM LISTEN ON *.*</query><query>GRANT SELECT ON system.numbers</query></grants>
    </default>
    <{user}>
      <password_sha256_hex>{digest}</password_sha256_hex><profile>default</profile><quota>default</quota>
      <networks>{any_address}</networks>
    </{user}>
  </users>
  <profiles><default/></profiles>
  <quotas><default/></quotas>
</clickhouse>
"""
    config = (f"<clickhouse><http_port>{port}</http_port><listen_host>{escape(host)}</listen_host>"
              "<keep_alive_timeout>1</keep_alive_timeout><users_config>users.xml</users_config></clickhouse>\n")
    for name, text in (("users.xml", users), ("config.xml", config)):
        path = directory / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)


def ping(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/ping", timeout=timeout) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


class LocalServer:
    """Serve the store in this process until :meth:`stop` (the ``clickhouse_server`` command)."""

    def __init__(self, settings: Settings, host: str = "127.0.0.1", port: int = 8123,
                 password: str | None = None, conf_dir: Path | None = None) -> None:
        """``password`` (with ``conf_dir``): a private listener for one process's store turn
        (:mod:`core.store_child`): that password, its configuration in ``conf_dir``, and no server
        record, so other commands never find it."""
        if host not in ("127.0.0.1", "localhost", "::1") and not settings.clickhouse_password.get_secret_value():
            raise StoreError(f"Binding {host} (not loopback) requires CLICKHOUSE_PASSWORD to be set")
        self.settings = settings
        self.host = "127.0.0.1" if host == "localhost" else host
        self.port = port
        self.lock = store_lock(settings)
        self.record: ServerRecord | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self.private = password is not None
        self._password = password
        self._conf = conf_dir or settings.data_dir / "clickhouse-server"

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

        if self.port == 0:
            self.port = free_port(self.host)
        if not port_is_free(self.host, self.port):
            raise StoreError(f"Port {self.port} on {self.host} is already in use; choose another with --port")
        password = self._password or server_password(self.settings, create=True)
        write_config(self._conf, self.host, self.port, SERVER_USER, password)
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
                                   store_id="" if self.private else self._store_id(password))
        if self.private:
            return self.record
        tmp = record_path(self.settings).with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self.record)))
        tmp.replace(record_path(self.settings))
        return self.record

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

    def stop(self) -> None:
        """Stop the listener's query (so ClickHouse shuts its store down), drop record and lock."""
        if not self.private:
            record_path(self.settings).unlink(missing_ok=True)
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
