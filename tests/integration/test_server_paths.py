"""Server-path behaviour: exclusion across hosts, idempotent commits after a lost response,
synchronous framework inserts, connect timeout. Always against the session's real server (in
embedded mode too), each test in its own database; "hosts" are processes with separate RUN_DIRs.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conftest import ROOT, SRC, cli_env, run_cli, server_database, wait_for

pytestmark = pytest.mark.same_in_both_runs("runs against a real ClickHouse server in either run")

MODULE = textwrap.dedent('''
    import os, pathlib, time
    from datetime import timedelta
    import pyarrow as pa
    from pipelines.interfaces import Extractor
    from pipelines.pipeline_factory import create_el_pipeline
    from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader

    class Hours(Extractor):
        """One row per hour of the run's interval; waits SLOW_SECONDS after writing MARKER."""
        interval_aware = True
        def extract(self, context):
            if os.environ.get("TEST_MARKER"):
                pathlib.Path(os.environ["TEST_MARKER"]).write_text(str(os.getpid()))
            time.sleep(float(os.environ.get("SLOW_SECONDS", "0")))
            hours = int((context.end - context.start).total_seconds() // 3600)
            ts = [context.start + timedelta(hours=h) for h in range(hours)]
            yield pa.table({"ts": pa.array(ts, pa.timestamp("ms", tz="UTC")), "v": list(range(hours))})

    PIPELINE_REGISTRY = {
        "daily": {"pipeline": create_el_pipeline(Hours(), create_clickhouse_loader("daily_t", time_column="ts"), "d")},
        "hourly": {"pipeline": create_el_pipeline(Hours(), create_clickhouse_loader("hourly_t", time_column="ts"),
                                                  "h")},
        "appended": {"pipeline": create_el_pipeline(Hours(), create_clickhouse_loader("appended_t"), "a"),
                     "retries": 2, "retry_delay": 0.05},
        "untagged": {"pipeline": create_el_pipeline(
                         Hours(), create_clickhouse_loader("untagged_t", mode="append", run_id_column=None), "u"),
                     "retries": 2, "retry_delay": 0.05},
    }
''')


@pytest.fixture
def on_server(project_env: dict[str, str], clickhouse_server, pipelines_dir: Path,
              monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """project_env pointed at the session's server (already so in server mode), module written."""
    (pipelines_dir / "test_pipeline.py").write_text(MODULE)
    added = "CLICKHOUSE_HOST" not in project_env
    if added:
        for key, value in clickhouse_server.client_env(server_database(request)).items():
            monkeypatch.setenv(key, value)
            project_env[key] = value
    yield project_env
    if added:
        client = clickhouse_server.client()
        client.command(f"DROP DATABASE IF EXISTS `{project_env['CLICKHOUSE_DATABASE']}` SYNC")
        client.close()


def host_env(project_env: dict[str, str], tmp_path: Path, host: str, **extra: str) -> dict[str, str]:
    """The environment of a process on another "host": its own RUN_DIR and LOG_DIR."""
    return cli_env({**project_env, "RUN_DIR": str(tmp_path / host / "run"), "LOG_DIR": str(tmp_path / host / "logs"),
                    **extra})


def query(server, database: str, sql: str):
    client = server.client(database)
    try:
        return client.query(sql).result_rows
    finally:
        client.close()


@pytest.mark.slow
def test_two_hosts_never_run_one_interval_at_once(on_server, clickhouse_server, tmp_path: Path) -> None:
    assert run_cli("setup_db").returncode == 0
    marker = tmp_path / "marker"
    first = subprocess.Popen(
        [sys.executable, str(SRC / "main.py"), "cron_run", "daily", "--date", "2026-01-15"],
        env=host_env(on_server, tmp_path, "a", TEST_MARKER=str(marker), SLOW_SECONDS="8"), cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(marker.exists, what="the first run to start")
        second = subprocess.run([sys.executable, str(SRC / "main.py"), "cron_run", "daily", "--date", "2026-01-15"],
                                env=host_env(on_server, tmp_path, "b"), cwd=ROOT, capture_output=True, text=True,
                                timeout=120)
        assert second.returncode == 75, second.stderr
        assert f"Pipeline 'daily' for 2026-01-15 is already running on {socket.gethostname()}:{first.pid}" \
            in second.stderr
        other_day = subprocess.run([sys.executable, str(SRC / "main.py"), "cron_run", "daily", "--date", "2026-01-16"],
                                   env=host_env(on_server, tmp_path, "b"), cwd=ROOT, capture_output=True, text=True,
                                   timeout=120)
        assert other_day.returncode == 0, other_day.stderr
    finally:
        out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    # The claim was released: the same interval runs again from the other host.
    again = subprocess.run([sys.executable, str(SRC / "main.py"), "cron_run", "daily", "--date", "2026-01-15"],
                           env=host_env(on_server, tmp_path, "b"), cwd=ROOT, capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 0, again.stderr
    assert query(clickhouse_server, on_server["CLICKHOUSE_DATABASE"],
                 "SELECT toDate(ts), count() FROM daily_t GROUP BY 1 ORDER BY 1") == [
        (datetime(2026, 1, 15).date(), 24), (datetime(2026, 1, 16).date(), 24)]


def hour(n: int) -> str:
    return (datetime(2026, 1, 15, tzinfo=UTC) + timedelta(hours=n)).strftime("%Y-%m-%dT%H:%M")


@pytest.mark.slow
def test_hourly_runs_on_two_hosts_rebuilding_one_day_lose_no_rows(on_server, clickhouse_server,
                                                                   tmp_path: Path) -> None:
    """Hourly runs into daily partitions copy the day's other hours on every commit: interleaved
    rebuilds from two hosts would drop each other's hours without the lock in ClickHouse."""
    assert run_cli("setup_db").returncode == 0
    hosts = []
    for host, hours in (("a", range(0, 24, 2)), ("b", range(1, 24, 2))):
        script = " && ".join(
            f"{sys.executable} {SRC / 'main.py'} cron_run hourly --start {hour(h)} --end {hour(h + 1)}" for h in hours)
        hosts.append(subprocess.Popen(["/bin/sh", "-c", script], env=host_env(on_server, tmp_path, host), cwd=ROOT,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for process in hosts:
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, err
    assert query(clickhouse_server, on_server["CLICKHOUSE_DATABASE"],
                 "SELECT count(), uniqExact(ts) FROM hourly_t") == [(24, 24)]


def test_a_rebuild_waits_for_another_hosts_rebuild_lock(on_server, tmp_path: Path) -> None:
    from core.config import load_settings
    from core.migrations import ClickHouseLock
    from core.shared_locks import cross_host_lock
    from core.store import Store

    assert run_cli("cron_run", "hourly", "--start", "2026-01-15T00:00", "--end", "2026-01-15T01:00").returncode == 0
    store = Store(load_settings())
    # A single server keeps the claim-row lock (a cluster gets Keeper's: test_cluster_locks.py).
    assert type(cross_host_lock(store, "any", 60)) is ClickHouseLock
    other = ClickHouseLock(store, name=f"{store.database}:rebuild:hourly_t")
    other.owner = "build-7.example.com:4242"
    assert other.try_acquire() is None
    try:
        blocked = run_cli("cron_run", "hourly", "--start", "2026-01-15T01:00", "--end", "2026-01-15T02:00",
                          env={"STORE_LOCK_TIMEOUT": "1"})
        assert blocked.returncode == 1
        assert "Timed out waiting for another run's rebuild of hourly_t" in blocked.stderr
        assert "build-7.example.com:4242" in blocked.stderr
        # A daily run replaces whole daily partitions: it copies nothing and takes no lock.
        daily = run_cli("cron_run", "daily", "--date", "2026-01-15", env={"STORE_LOCK_TIMEOUT": "1"})
        assert daily.returncode == 0, daily.stderr
    finally:
        other.release()
        store.close()


class DropAttachResponse:
    """A TCP proxy to the server that, once, forwards a request containing ``ATTACH`` and then
    closes the client's connection without its response (the statement did run).

    One request per connection (``Connection: close`` is added to each), and either side closing
    closes the other: the server ends idle keep-alive connections after 1 s (keep_alive_timeout);
    a client whose side stayed open reused it and waited for an answer that never came (that hung
    test_retry_commit on a loaded machine), and one that sent just as the server closed lost its
    statement. Without idle connections there is no such race."""

    def __init__(self, port: int, on_drop: Callable[[], None] = lambda: None) -> None:
        self.target = port
        self.dropped = 0
        self.on_drop = on_drop
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    @staticmethod
    def _close(*sockets: socket.socket) -> None:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _drops(self, seen: bytes) -> bool:
        """Is this the request whose answer is dropped (the first naming ATTACH, of any connection)?"""
        with self.lock:
            if b"ATTACH" in seen and not self.dropped:
                self.dropped += 1
                return True
            return False

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.target))
        drop = threading.Event()
        threading.Thread(target=self._answer, args=(upstream, client, drop), daemon=True).start()
        tail, head = b"", b""  # the end of the previous chunk: ATTACH may be split between two
        try:
            while chunk := client.recv(65536):
                if head is not None:  # the request line: one request on this connection, then the server closes it
                    head += chunk
                    if b"\r\n" not in head:
                        continue
                    chunk, head = head.replace(b"\r\n", b"\r\nConnection: close\r\n", 1), None
                if self._drops(tail + chunk):
                    drop.set()
                tail = chunk[-5:]
                upstream.sendall(chunk)
        except OSError:
            pass
        self._close(upstream, client)

    def _answer(self, upstream: socket.socket, client: socket.socket, drop: threading.Event) -> None:
        """Server to client; after a dropped request, the answer (the statement ran) is discarded
        and the client's connection closed."""
        try:
            while chunk := upstream.recv(65536):
                if drop.is_set():
                    self.on_drop()
                    break
                client.sendall(chunk)
        except OSError:
            pass
        self._close(client, upstream)

    def close(self) -> None:
        self.listener.close()


@pytest.mark.parametrize(("pipeline", "columns"), [("appended", ["ts", "v", "_dp_run_id"]), ("untagged", ["ts", "v"])])
def test_a_commit_retried_after_a_lost_response_attaches_once(on_server, clickhouse_server, pipeline: str,
                                                              columns: list[str]) -> None:
    """With a run id column the target says what the run attached; without one (``untagged``) the
    attached partitions are recorded in ``_dp_attached``."""
    assert run_cli("cron_run", pipeline, "--date", "2026-01-15").returncode == 0  # the table exists now
    proxy = DropAttachResponse(clickhouse_server.port)
    try:
        result = run_cli("cron_run", pipeline, "--date", "2026-01-16", env={"CLICKHOUSE_PORT": str(proxy.port)})
    finally:
        proxy.close()
    assert proxy.dropped == 1
    assert result.returncode == 0, result.stderr
    database, table = on_server["CLICKHOUSE_DATABASE"], f"{pipeline}_t"
    assert query(clickhouse_server, database, f"SELECT toDate(ts), count() FROM {table} GROUP BY 1 ORDER BY 1") == [
        (datetime(2026, 1, 15).date(), 24), (datetime(2026, 1, 16).date(), 24)]
    assert [name for (name,) in query(clickhouse_server, database, "SELECT name FROM system.columns WHERE "
                                      f"database = currentDatabase() AND table = '{table}'")] == columns
    runs = json.loads(run_cli("runs", "--json", pipeline).stdout)
    assert [(r["status"], r["attempt"], r["rows_loaded"]) for r in runs][0] == ("success", 2, 24)


def test_a_partition_changed_between_a_lost_attach_and_its_retry_fails_the_run(on_server, clickhouse_server) -> None:
    """Without a run id column the retry cannot tell whether its rows are in: it fails, never guesses."""
    assert run_cli("cron_run", "untagged", "--date", "2026-01-15").returncode == 0
    database = on_server["CLICKHOUSE_DATABASE"]

    def another_writer() -> None:
        query(clickhouse_server, database, "INSERT INTO untagged_t VALUES ('2026-01-16 05:30:00', 99)")

    proxy = DropAttachResponse(clickhouse_server.port, on_drop=another_writer)
    try:
        result = run_cli("cron_run", "untagged", "--date", "2026-01-16", env={"CLICKHOUSE_PORT": str(proxy.port)})
    finally:
        proxy.close()
    assert result.returncode == 1
    assert "LoadError: Partition all of untagged_t changed since an earlier attempt of run " in result.stderr
    assert "(24 rows before, 24 staged, 49 now): cannot tell whether its rows are in; check the table" in result.stderr
    assert query(clickhouse_server, database, "SELECT count() FROM untagged_t WHERE toDate(ts) = '2026-01-16'") == [
        (25,)]


def test_framework_inserts_are_synchronous_whatever_the_server_default(on_server) -> None:
    from core.config import load_settings
    from core.store import Store

    store = Store(load_settings())
    try:
        assert store.query_rows("SELECT getSetting('async_insert'), getSetting('wait_for_async_insert')") == [
            (False, True)]
    finally:
        store.close()


def blackhole() -> tuple[socket.socket, list[socket.socket]]:
    """A listening socket that never accepts, its tiny backlog filled: a further connection gets
    no answer, like an unreachable host's."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(0)
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(sock.getsockname())
        fillers.append(filler)
    return sock, fillers


def setup_db_error_while_list_lists(port: int) -> str:
    """``setup_db`` against a dead server on ``port`` (connect timeout 1 s): its one-line error;
    ``list`` still lists the pipelines."""
    env = {"CLICKHOUSE_HOST": "127.0.0.1", "CLICKHOUSE_PORT": str(port), "CLICKHOUSE_CONNECT_TIMEOUT": "1",
           "CLICKHOUSE_USER": "etl"}
    result = run_cli("setup_db", env=env, timeout=60)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    listing = run_cli("list", env=env, timeout=60)
    assert listing.returncode == 0, listing.stderr
    assert "daily" in listing.stdout and "hourly" in listing.stdout
    return result.stderr.strip()


def test_an_unreachable_server_fails_after_the_connect_timeout_and_list_still_lists(
        project_env, pipelines_dir: Path) -> None:
    (pipelines_dir / "test_pipeline.py").write_text(MODULE)
    hole, fillers = blackhole()
    port = hole.getsockname()[1]
    try:
        assert setup_db_error_while_list_lists(port).startswith(
            f"error: Cannot connect to ClickHouse at http://etl@127.0.0.1:{port} (connect timeout 1 s): ")
    finally:
        for filler in fillers:
            filler.close()
        hole.close()


def test_threads_share_one_store_on_a_server(on_server) -> None:
    """An extractor's thread and the loader of one run use one Store: a server refuses concurrent
    queries in one HTTP session, so the client must not use one."""
    from concurrent.futures import ThreadPoolExecutor

    from core.config import load_settings
    from core.store import Store

    store = Store(load_settings())
    try:
        with ThreadPoolExecutor(2) as pool:
            slow = pool.submit(store.query_rows, "SELECT sleep(1)")
            time.sleep(0.2)
            assert store.query_rows("SELECT 42") == [(42,)]
            assert slow.result() == [(0,)]
    finally:
        store.close()


def test_a_configured_server_that_accepts_but_never_answers_fails_after_the_connect_timeout(
        project_env, pipelines_dir: Path) -> None:
    (pipelines_dir / "test_pipeline.py").write_text(MODULE)
    mute = socket.socket()
    mute.bind(("127.0.0.1", 0))
    mute.listen(16)  # the kernel completes the handshake; nobody ever reads or answers
    port = mute.getsockname()[1]
    try:
        assert setup_db_error_while_list_lists(port) == (
            f"error: Cannot connect to ClickHouse at http://etl@127.0.0.1:{port} (connect timeout 1 s): "
            "it accepts connections but did not answer within 1 s")
    finally:
        mute.close()
