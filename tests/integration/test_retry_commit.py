"""Retrying a run after a lost server connection: before the commit starts a retry is safe; once
it started, only a loader whose commit can be repeated is retried (a second ATTACH of the same
rows would double them; the ClickHouse loader's commits all can be, a user's loader says so with
``idempotent_commit``). Against the session's real server, through a proxy that drops the
response to the first request naming ATTACH (the statement did run on the server)."""

from __future__ import annotations

import json
import textwrap
from datetime import date
from pathlib import Path

import pytest
import test_server_paths as server_paths

from conftest import run_cli

pytestmark = pytest.mark.same_in_both_runs("runs against a real ClickHouse server in either run")

on_server = server_paths.on_server  # the fixture: project_env on the session's server, in its own database

MODULE = textwrap.dedent('''
    from datetime import timedelta
    import pyarrow as pa
    from pipelines.interfaces import Extractor, Loader
    from pipelines.pipeline_factory import create_el_pipeline
    from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader

    class Day(Extractor):
        """24 rows for the run's day; read_first: prepares a scratch table first, a statement the
        driver does not replay by itself (a SELECT it would), named so that the proxy drops its
        answer: the connection is lost before any commit."""
        def __init__(self, read_first):
            super().__init__("day")
            self.read_first = read_first
        def extract(self, context):
            if self.read_first:
                context.store.command("CREATE TABLE IF NOT EXISTS before_ATTACH (n UInt8) ENGINE = Memory")
            ts = [context.start + timedelta(hours=h) for h in range(24)]
            yield pa.table({"ts": pa.array(ts, pa.timestamp("ms", tz="UTC")), "v": list(range(24))})

    def appender(table):
        # No run id column: the attached partitions are recorded in _dp_attached instead.
        return create_clickhouse_loader(table, run_id_column=None)

    class Inserter(Loader):
        """A user's loader that inserts the run's day at commit and declares nothing, so its
        commit is not idempotent (the default): once it started, a lost connection is final.
        The comment names ATTACH so that the proxy drops the statement's answer (it did run)."""
        def write(self, batch, context):
            return batch.num_rows
        def commit(self, context):
            context.store.command("CREATE TABLE IF NOT EXISTS unmarked_t (ts DateTime64(3, 'UTC'), v Int64) "
                                  "ENGINE = MergeTree ORDER BY ts")
            context.store.command("INSERT INTO unmarked_t /* ATTACH */ SELECT toDateTime64({s:String}, 3, 'UTC') "
                                  "+ toIntervalHour(number), number FROM numbers(24)",
                                  {"s": context.start.strftime("%Y-%m-%d %H:%M:%S")})

    PIPELINE_REGISTRY = {
        "reads_first": {"pipeline": create_el_pipeline(Day(True), appender("reads_first_t"), "r"),
                        "retries": 2, "retry_delay": 0.05},
        "unmarked": {"pipeline": create_el_pipeline(Day(False), Inserter("inserter"), "u"),
                     "retries": 2, "retry_delay": 0.05},
    }
''')


@pytest.fixture
def retry_module(on_server: dict[str, str], pipelines_dir: Path) -> dict[str, str]:
    (pipelines_dir / "retry_pipeline.py").write_text(MODULE)
    return on_server


def through_dropping_proxy(server, pipeline: str, day: str):
    proxy = server_paths.DropAttachResponse(server.port)
    try:
        result = run_cli("cron_run", pipeline, "--date", day, env={"CLICKHOUSE_PORT": str(proxy.port)})
    finally:
        proxy.close()
    assert proxy.dropped == 1, result.stderr
    return result


def day_counts(server, env: dict[str, str], table: str) -> list[tuple[date, int]]:
    return server_paths.query(server, env["CLICKHOUSE_DATABASE"],
                              f"SELECT toDate(ts), count() FROM {table} GROUP BY 1 ORDER BY 1")


def newest_run(pipeline: str) -> tuple[str, int, int]:
    run = json.loads(run_cli("runs", "--json", pipeline).stdout)[0]
    return run["status"], run["attempt"], run["rows_loaded"]


def test_a_connection_lost_before_the_commit_is_retried(retry_module, clickhouse_server) -> None:
    result = through_dropping_proxy(clickhouse_server, "reads_first", "2026-01-15")
    assert result.returncode == 0, result.stderr
    assert day_counts(clickhouse_server, retry_module, "reads_first_t") == [(date(2026, 1, 15), 24)]
    assert newest_run("reads_first") == ("success", 2, 24)


def test_a_connection_lost_once_a_commit_that_cannot_be_repeated_started_is_not_retried(
        retry_module, clickhouse_server) -> None:
    assert run_cli("cron_run", "unmarked", "--date", "2026-01-15").returncode == 0  # the table exists now
    result = through_dropping_proxy(clickhouse_server, "unmarked", "2026-01-16")
    assert result.returncode == 1
    assert "Lost the connection to ClickHouse" in result.stderr and "INSERT INTO unmarked_t" in result.stderr
    # The INSERT did run: its rows are there once, not twice (a retry would have inserted them again).
    assert day_counts(clickhouse_server, retry_module, "unmarked_t") == [(date(2026, 1, 15), 24),
                                                                         (date(2026, 1, 16), 24)]
    assert newest_run("unmarked")[:2] == ("failed", 1)


def test_the_proxy_passes_on_a_connection_the_server_closed() -> None:
    """The proxy's race (test_retry_commit hung 120 s on a loaded machine): the server closes an
    idle keep-alive connection (keep_alive_timeout is 1 s), the proxy kept its client side open,
    the client reused it and waited for an answer that could not come (send_receive_timeout is
    300 s). The client must see the close, as it would without the proxy, and then reconnect."""
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", 0))
    closed = threading.Event()

    def answer_once_then_close() -> None:
        connection, _ = server.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        closed.set()  # as ClickHouse does with a keep-alive connection idle for keep_alive_timeout

    threading.Thread(target=answer_once_then_close, daemon=True).start()
    proxy = server_paths.DropAttachResponse(server.getsockname()[1])
    try:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as client:
            client.sendall(b"POST / HTTP/1.1\r\nContent-Length: 8\r\n\r\nSELECT 1")
            assert client.recv(65536).endswith(b"ok")
            assert closed.wait(30)
            assert client.recv(65536) == b""  # (the old proxy: blocked until the 30 s timeout)
    finally:
        proxy.close()
        server.close()
