"""``./run.sh clickhouse_server``: the project's store served by a real ClickHouse server process.

These tests start their own servers on their own stores (no CLICKHOUSE_* variables), so they run
the same in both suite modes.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from conftest import SRC
from server_process import framework_env, start_server

pytestmark = [pytest.mark.slow, pytest.mark.same_in_both_runs(
    "starts servers of its own on stores of its own, without the suite's settings")]


def cli(data_dir: Path, *args: str, extra: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SRC / "main.py"), *args], env=framework_env(data_dir, extra),
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def http(port: int, sql: str, user: str | None = None, password: str = "") -> tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/", data=sql.encode())
    if user:
        import base64

        request.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_server_starts_answers_and_locks_out_the_default_user(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data")
    try:
        record = json.loads((tmp_path / "data" / "clickhouse-server.json").read_text())
        assert record["pid"] == server.process.pid and record["port"] == server.port
        assert record["store_path"] == str(tmp_path / "data" / "clickhouse")
        password_file = tmp_path / "data" / "clickhouse-server.password"
        assert password_file.stat().st_mode & 0o777 == 0o600
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/ping", timeout=5) as response:
            assert response.read() == b"Ok.\n"
        assert http(server.port, "SELECT version()", server.user, server.password) == (200, "26.9.2.1\n")
        # No password: the default user, which clickhouse-local's own query needs, may read no table and
        # use no table function (its scalar file() is the gap docs/deployment.md names).
        status, body = http(server.port, "SELECT * FROM file('/etc/hostname', 'LineAsString')")
        assert status != 200 and "ACCESS_DENIED" in body
        status, body = http(server.port, "SELECT * FROM default._dp_store_id")
        assert status != 200 and "ACCESS_DENIED" in body
        status, body = http(server.port, "SELECT 1", server.user, "wrong")
        assert status != 200 and "AUTHENTICATION_FAILED" in body
    finally:
        assert server.stop() == 0
    assert not (tmp_path / "data" / "clickhouse-server.json").exists()


def test_rows_survive_sigterm_and_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_server(data)
    client = server.client()
    client.command("CREATE TABLE default.kept (n UInt32) ENGINE = MergeTree ORDER BY n")
    client.command("INSERT INTO default.kept SELECT number FROM numbers(1000)")
    client.close()
    assert server.stop() == 0
    assert "Stopped." in server.output()
    again = start_server(data)
    try:
        client = again.client()
        assert client.command("SELECT count() FROM default.kept") == 1000
        client.close()
    finally:
        assert again.stop() == 0


def test_framework_commands_use_the_running_server_and_refuse_a_second_one(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_server(data)
    try:
        result = cli(data, "setup_db")
        assert result.returncode == 0, result.stderr
        assert f"local server http://data_processor@127.0.0.1:{server.port}" in result.stdout
        client = server.client()
        assert client.command("EXISTS DATABASE data_warehouse") == 1
        client.close()
        # check names the store it read: the server, not "embedded" (issue 25 §1).
        checked = {c["name"]: c["detail"] for c in json.loads(cli(data, "check", "--json").stdout)["checks"]}
        served = f"local server http://data_processor@127.0.0.1:{server.port} (serving "
        assert served in checked["store"], checked["store"]
        assert checked["status"].startswith(f"read from {served}"), checked
        # The store is held by the server: a second server names it and stops.
        second = cli(data, "clickhouse_server", "--port", "0", "--tcp-port", "0", timeout=60)
        assert second.returncode == 1
        assert f"is in use by pid {server.process.pid} (clickhouse_server)" in second.stderr
    finally:
        assert server.stop() == 0
    # Server gone: the same command opens the store in-process again.
    result = cli(data, "setup_db")
    assert result.returncode == 0, result.stderr
    assert "Database already exists: 'data_warehouse' in embedded chdb://" in result.stdout


def test_port_taken_is_said_clearly(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli(tmp_path / "data", "clickhouse_server", "--port", str(port), "--tcp-port", "0", timeout=60)
    assert result.returncode == 1
    assert f"error: Port {port} on 127.0.0.1 is already in use; choose another with --port" in result.stderr


def test_another_address_requires_a_password(tmp_path: Path) -> None:
    result = cli(tmp_path / "data", "clickhouse_server", "--host", "0.0.0.0", "--port", "0", "--tcp-port", "0",
                 timeout=60)
    assert result.returncode == 1
    assert "Binding 0.0.0.0 (not loopback) requires CLICKHOUSE_PASSWORD to be set" in result.stderr


def test_stale_record_is_ignored_and_a_foreign_port_is_refused(tmp_path: Path) -> None:
    ours, theirs = tmp_path / "ours" / "data", tmp_path / "theirs" / "data"
    ours.mkdir(parents=True)
    record = {"pid": 999999, "host": "127.0.0.1", "port": 9, "store_path": str(ours / "clickhouse"),
              "store_id": "x", "user": "data_processor"}
    (ours / "clickhouse-server.json").write_text(json.dumps(record))
    # A stale record (its pid does not hold the store): the store is opened in-process.
    result = cli(ours, "setup_db")
    assert result.returncode == 0, result.stderr
    assert "embedded chdb://" in result.stdout
    server = start_server(ours)
    other = start_server(theirs)
    try:
        # Our server's record now points at another project's server (a reused port): refused.
        live = json.loads((ours / "clickhouse-server.json").read_text())
        (ours / "clickhouse-server.json").write_text(json.dumps({**live, "port": other.port}))
        (ours / "clickhouse-server.password").write_text(other.password + "\n")
        result = cli(ours, "setup_db")
        (ours / "clickhouse-server.password").write_text(server.password + "\n")
        assert result.returncode == 1
        assert f"http://127.0.0.1:{other.port} answers, but not for the store {ours / 'clickhouse'}" in result.stderr
        # Another project's record copied into ours names a pid that does not hold our store.
        (ours / "clickhouse-server.json").write_text((theirs / "clickhouse-server.json").read_text())
        result = cli(ours, "setup_db", extra={"STORE_LOCK_TIMEOUT": "1"})
        assert result.returncode == 1
        assert f"still in use by pid {server.process.pid} (clickhouse_server)" in result.stderr
    finally:
        server.stop()
        other.stop()


def test_binding_loopback_by_name_is_allowed_without_password(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", extra_env={"CLICKHOUSE_PASSWORD": "configured-pw"})
    try:
        assert not (tmp_path / "data" / "clickhouse-server.password").exists()
        assert http(server.port, "SELECT 1", "data_processor", "configured-pw") == (200, "1\n")
    finally:
        server.stop()
    assert os.path.exists(tmp_path / "data" / "clickhouse")


def test_a_server_that_holds_the_store_but_does_not_answer_is_an_error(tmp_path: Path) -> None:
    """Alive (its pid holds the store lock) but not answering: an error, never the embedded store."""
    import signal

    data = tmp_path / "data"
    server = start_server(data)
    try:
        os.kill(server.process.pid, signal.SIGSTOP)  # the kernel still accepts connections on its port
        try:
            result = cli(data, "setup_db", extra={"CLICKHOUSE_CONNECT_TIMEOUT": "1"}, timeout=60)
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        assert result.returncode == 1
        assert result.stderr.strip() == (
            f"error: Cannot connect to ClickHouse at local server http://data_processor@127.0.0.1:{server.port} "
            f"(serving {data / 'clickhouse'}, pid {server.process.pid}) (connect timeout 1 s): "
            "it accepts connections but did not answer within 1 s")
        assert "embedded" not in result.stdout + result.stderr
    finally:
        assert server.stop() == 0


FILE_PIPELINE = '''
from pipelines.pipeline_factory import create_el_pipeline
from pipelines.tools.extractors.file_extractor import create_file_extractor
from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader

PIPELINE_REGISTRY = {
    "csv_in": {"pipeline": create_el_pipeline(create_file_extractor({csv!r}),
                                              create_clickhouse_loader("csv_in", mode="replace"), "csv_in")},
}
'''


def test_local_files_are_pushed_down_through_the_projects_own_server(tmp_path: Path) -> None:
    """Same machine: the project's server reads the CSV itself, as the embedded engine does."""
    data, pipelines, migrations = tmp_path / "data", tmp_path / "pipelines", tmp_path / "migrations"
    pipelines.mkdir()
    migrations.mkdir()
    csv = tmp_path / "in.csv"
    csv.write_text("id,name,amount\n" + "".join(f"{i},n{i},{i / 4}\n" for i in range(1, 2001)) + "3001,,\n")
    (pipelines / "csv_pipeline.py").write_text(FILE_PIPELINE.replace("{csv!r}", repr(str(csv))))
    dirs = {"PIPELINES_DIR": str(pipelines), "MIGRATIONS_DIR": str(migrations)}
    server = start_server(data)
    try:
        assert cli(data, "setup_db", extra=dirs).returncode == 0
        result = cli(data, "cron_run", "csv_in", extra=dirs)
        assert result.returncode == 0, result.stderr
        log = next((tmp_path / "logs").rglob("*.log")).read_text()
        assert "ClickHouse read in.csv itself: 2001 rows, no Python in the data path" in log
        client = server.client("data_warehouse")
        # An empty field is NULL in every column (null_values' default), as on the Python path.
        assert client.query("SELECT count(), sum(id), countIf(name IS NULL), countIf(amount IS NULL) "
                            "FROM csv_in").result_rows == [(2001, 2004001, 1, 1)]
        client.close()
    finally:
        assert server.stop() == 0
