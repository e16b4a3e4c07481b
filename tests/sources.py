"""Private PostgreSQL 15 and MariaDB 10.11 instances for tests (issue 24), one of each per session.

Each runs from Debian's packages in a temporary directory, on a free 127.0.0.1 port, with its unix
socket in that directory: no system service is touched. Under root (CI), the servers run as the
``postgres``/``mysql`` users the packages create. The server zones are deliberately not UTC
(PostgreSQL ``TimeZone=America/New_York``, MariaDB ``default-time-zone=+02:00``) so that tests
prove the framework is zone-independent. The login user has a password with special characters,
so URLs must percent-encode it.

    def test_x(postgres_source):
        postgres_source.execute("CREATE TABLE t (id int); INSERT INTO t VALUES (1)")
        create_db_extractor(postgres_source.url, table="t")
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

PG_BIN = Path("/usr/lib/postgresql/15/bin")
USER = "dp_reader"
PASSWORD = "p@ss:w/rd%#?&="  # every character a URL gives a meaning to
DATABASE = "shop"
START_TIMEOUT = 60.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class SourceServer:
    """A running private database server and how to reach it."""

    kind: str  # "postgresql" or "mariadb"
    host: str
    port: int
    user: str
    password: str
    database: str
    process: subprocess.Popen
    directory: Path
    connect: Callable[[], Any] = field(repr=False)
    stop_signal: int = signal.SIGTERM

    @property
    def url(self) -> str:
        """SQLAlchemy URL with the password percent-encoded."""
        driver = "postgresql+psycopg2" if self.kind == "postgresql" else "mysql+pymysql"
        return (f"{driver}://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
                f"@{self.host}:{self.port}/{self.database}")

    def execute(self, sql: str, params: Any = None) -> list[tuple]:
        """Run one statement or several (``;``-separated, no params then); rows of the last one."""
        connection = self.connect()
        try:
            with connection.cursor() as cursor:
                if self.kind == "postgresql":
                    # The server's zone, stated: a test may set PGTZ in this process (a push-down
                    # does while its statements run), which would change the tests' own literals.
                    cursor.execute("SET TIME ZONE 'America/New_York'")
                cursor.execute(sql, params)
                rows = cursor.fetchall() if cursor.description else []
                if self.kind == "mariadb":
                    while cursor.nextset():
                        rows = cursor.fetchall() if cursor.description else []
            connection.commit()
            return [tuple(r) for r in rows]
        finally:
            connection.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(self.stop_signal)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


def _as_service_user(name: str) -> dict[str, Any]:
    """``subprocess`` arguments that run a command as ``name`` when we are root (CI), else as us."""
    if os.geteuid() != 0:
        return {}
    import pwd

    entry = pwd.getpwnam(name)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _private_directory(owner: str, prefix: str) -> Path:
    """A short temporary directory (unix socket paths are limited to ~100 bytes) owned by ``owner``."""
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        import pwd

        entry = pwd.getpwnam(owner)
        os.chown(directory, entry.pw_uid, entry.pw_gid)
    return directory


def _run(args: list[str], owner: str | None, what: str) -> None:
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                          **(_as_service_user(owner) if owner else {}))
    if done.returncode != 0:
        pytest.fail(f"{what} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")


def _wait_until_up(server: SourceServer, connect: Callable[[], Any], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if server.process.poll() is not None:
            server.stop()
            pytest.fail(f"{server.kind} exited at start: {log.read_text()[-2000:] if log.exists() else ''}")
        try:
            connect().close()
            return
        except Exception:  # noqa: BLE001 (not accepting connections yet)
            if time.monotonic() > deadline:
                server.stop()
                pytest.fail(f"{server.kind} did not start within {START_TIMEOUT} s")
            time.sleep(0.1)


def start_postgres() -> SourceServer:
    """initdb + postgres (as the ``postgres`` user under root), fsync off: data is thrown away."""
    from conftest import require_tool

    initdb = require_tool(str(PG_BIN / "initdb"))
    postgres = str(Path(initdb).parent / "postgres")
    import psycopg2

    directory = _private_directory("postgres", "dp-pg-")
    data = directory / "data"
    _run([initdb, "-D", str(data), "-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256",
          "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"], "postgres", "initdb")
    port = free_port()
    log = directory / "postgres.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [postgres, "-D", str(data), "-p", str(port), "-h", "127.0.0.1", "-k", str(directory),
             "-c", "TimeZone=America/New_York", "-c", "fsync=off", "-c", "synchronous_commit=off",
             "-c", "full_page_writes=off", "-c", "shared_buffers=32MB", "-c", "max_connections=40"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **_as_service_user("postgres"))

    def admin(database: str = "postgres") -> Any:
        return psycopg2.connect(host=str(directory), port=port, user="postgres", dbname=database)

    def login() -> Any:
        return psycopg2.connect(host="127.0.0.1", port=port, user=USER, password=PASSWORD, dbname=DATABASE,
                                connect_timeout=5)

    server = SourceServer("postgresql", "127.0.0.1", port, USER, PASSWORD, DATABASE, process, directory,
                          login, signal.SIGINT)  # SIGINT: PostgreSQL's fast shutdown
    _wait_until_up(server, admin, log)
    try:
        connection = admin()
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE ROLE {USER} LOGIN PASSWORD %s", (PASSWORD,))
            cursor.execute(f"CREATE DATABASE {DATABASE} OWNER {USER}")
        connection.close()
    except BaseException:
        server.stop()
        raise
    return server


def start_mariadb() -> SourceServer:
    """mariadb-install-db + mariadbd (``--user=mysql``), a real user with a password, no binary log."""
    from conftest import require_tool

    install = require_tool("mariadb-install-db")
    daemon = require_tool("mariadbd")
    import pymysql

    directory = _private_directory("mysql", "dp-my-")
    data = directory / "data"
    sock = directory / "mysqld.sock"
    user_args = ["--user=mysql"] if os.geteuid() == 0 else []
    _run([install, "--no-defaults", f"--datadir={data}", *user_args, "--auth-root-authentication-method=normal",
          "--skip-test-db", "--skip-name-resolve"], None, "mariadb-install-db")
    port = free_port()
    log = directory / "mariadb.log"
    process = subprocess.Popen(
        [daemon, "--no-defaults", f"--datadir={data}", f"--socket={sock}", f"--port={port}",
         "--bind-address=127.0.0.1", f"--pid-file={directory / 'mariadb.pid'}", *user_args,
         "--default-time-zone=+02:00", "--skip-log-bin", "--skip-name-resolve", "--innodb-buffer-pool-size=32M",
         "--innodb-log-file-size=8M", "--innodb-flush-log-at-trx-commit=0", "--character-set-server=utf8mb4",
         "--collation-server=utf8mb4_unicode_ci", f"--log-error={log}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)

    def admin() -> Any:
        return pymysql.connect(unix_socket=str(sock), user="root", connect_timeout=5)

    def login() -> Any:
        from pymysql.constants import CLIENT

        return pymysql.connect(host="127.0.0.1", port=port, user=USER, password=PASSWORD, database=DATABASE,
                               connect_timeout=5, client_flag=CLIENT.MULTI_STATEMENTS, charset="utf8mb4")

    server = SourceServer("mariadb", "127.0.0.1", port, USER, PASSWORD, DATABASE, process, directory, login)
    _wait_until_up(server, admin, log)
    try:
        connection = admin()
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {DATABASE} CHARACTER SET utf8mb4")
            for host in ("127.0.0.1", "localhost", "%"):
                cursor.execute("CREATE USER %s@%s IDENTIFIED BY %s", (USER, host, PASSWORD))
                cursor.execute(f"GRANT ALL ON {DATABASE}.* TO %s@%s", (USER, host))
        connection.commit()
        connection.close()
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="session")
def postgres_source() -> Iterator[SourceServer]:
    """A private PostgreSQL 15 (TimeZone America/New_York) for the session; see the module doc."""
    server = start_postgres()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mariadb_source() -> Iterator[SourceServer]:
    """A private MariaDB 10.11 (time zone +02:00) for the session; see the module doc."""
    server = start_mariadb()
    yield server
    server.stop()
