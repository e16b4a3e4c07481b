"""``clickhouse_server``'s users and ports (issues 23 §2 and §7, 29): BI tools get a read-only user
without table functions, ``default`` is bounded without ending the listener's own query, the
native TCP port has the same users, and a restart after ``kill -9`` gets the same port at once.
"""

from __future__ import annotations

import signal
import socket
import struct
import threading
import time
from pathlib import Path

import pytest
from test_local_server import http

from server_process import start_server

pytestmark = [pytest.mark.slow, pytest.mark.same_in_both_runs(
    "starts servers of its own on stores of its own, without the suite's settings")]


def _varint(n: int) -> bytes:
    out = b""
    while True:
        byte, n = n & 0x7F, n >> 7
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out


def _string(text: str) -> bytes:
    data = text.encode()
    return _varint(len(data)) + data


class _Reader:
    def __init__(self, sock: socket.socket) -> None:
        self.file = sock.makefile("rb")

    def varint(self) -> int:
        value, shift = 0, 0
        while True:
            byte = self.file.read(1)[0]
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    def string(self) -> str:
        return self.file.read(self.varint()).decode()


def native_hello(port: int, user: str, password: str) -> tuple[str, str]:
    """ClickHouse's native protocol handshake: ("hello", server name) or ("exception", message)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(_varint(0) + _string("dp-test") + _varint(26) + _varint(9) + _varint(54429)
                     + _string("default") + _string(user) + _string(password))
        reader = _Reader(sock)
        packet = reader.varint()
        if packet == 0:  # Hello
            return "hello", reader.string()
        assert packet == 2, f"unexpected packet {packet}"  # Exception: code, name, message
        struct.unpack("<i", reader.file.read(4))
        reader.string()
        return "exception", reader.string()


def test_bi_user_reads_tables_only_and_the_framework_keeps_push_down(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_server(data)
    try:
        bi_file = data / "clickhouse-server.bi-password"
        assert bi_file.stat().st_mode & 0o777 == 0o600
        bi = bi_file.read_text().strip()
        assert len(bi) >= 24 and bi != server.password
        secret = tmp_path / "secret.txt"
        secret.write_text("hunter2\n")
        framework = server.client()
        framework.command("CREATE TABLE default.sales (n UInt32) ENGINE = MergeTree ORDER BY n")
        framework.command("INSERT INTO default.sales SELECT number FROM numbers(7)")
        # The framework's own user keeps file() (push-down reads local files through it).
        assert framework.command(f"SELECT * FROM file('{secret}', 'LineAsString')") == "hunter2"
        framework.close()
        assert http(server.port, "SELECT count(), sum(n) FROM default.sales", "bi_reader", bi) == (200, "7\t21\n")
        assert http(server.port, "SELECT count() FROM default.sales", "bi_reader", "wrong")[0] != 200
        for statement, expected in (
            (f"SELECT * FROM file('{secret}', 'LineAsString')", "READ ON FILE"),
            (f"INSERT INTO FUNCTION file('{tmp_path}/w.txt', 'LineAsString') SELECT 'x'", "WRITE ON FILE"),
            ("SELECT * FROM url('http://127.0.0.1:9/x', 'CSV', 'a String')", "READ ON URL"),
            ("SELECT * FROM remote('127.0.0.1:9', system.one)", "REMOTE"),
            ("INSERT INTO default.sales VALUES (100)", "INSERT(n) ON default.sales"),
            ("CREATE TABLE default.mine (n UInt8) ENGINE = Memory", "ACCESS_DENIED"),
            ("DROP TABLE default.sales", "ACCESS_DENIED"),
            ("CREATE TEMPORARY TABLE tmp (n UInt8)", "CREATE TEMPORARY TABLE"),
            ("SELECT 1 SETTINGS readonly = 0", "READONLY"),
            ("SELECT 1 SETTINGS max_execution_time = 0", "SETTING_CONSTRAINT_VIOLATION"),
            ("SYSTEM STOP LISTEN HTTP", "ACCESS_DENIED"),
        ):
            status, body = http(server.port, statement, "bi_reader", bi)
            assert status != 200 and expected in body, (statement, body)
        assert not (tmp_path / "w.txt").exists()
        assert http(server.port, "SELECT count() FROM default.sales", "bi_reader", bi) == (200, "7\n")
        # The native TCP port: same users, same passwords.
        record = __import__("json").loads((data / "clickhouse-server.json").read_text())
        assert record["tcp_port"] not in (0, server.port)
        assert native_hello(record["tcp_port"], "bi_reader", bi) == ("hello", "ClickHouse")
        assert native_hello(record["tcp_port"], "data_processor", server.password) == ("hello", "ClickHouse")
        kind, message = native_hello(record["tcp_port"], "bi_reader", "wrong")
        assert kind == "exception" and "password is incorrect" in message
    finally:
        assert server.stop() == 0


def test_default_user_is_bounded_and_the_listener_outlives_the_bound(tmp_path: Path) -> None:
    from core.local_server_config import DEFAULT_USER_MAX_SECONDS

    server = start_server(tmp_path / "data")
    try:
        answers: list[tuple[int, str]] = []
        started = time.monotonic()
        endless = threading.Thread(target=lambda: answers.append(http(
            server.port, "SELECT count() FROM system.numbers SETTINGS max_execution_time = 0")))
        endless.start()
        endless.join(DEFAULT_USER_MAX_SECONDS + 20)
        assert not endless.is_alive(), "default's endless query was not stopped"
        took = time.monotonic() - started
        [(status, body)] = answers
        assert status != 200 and "QUERY_WAS_CANCELLED" in body, body
        assert DEFAULT_USER_MAX_SECONDS <= took < DEFAULT_USER_MAX_SECONDS + 15
        # The listener's own endless query runs under default's profile too: still serving.
        assert http(server.port, "SELECT 1", server.user, server.password) == (200, "1\n")
        assert http(server.port, "SELECT count() FROM system.processes WHERE user = 'default'",
                    server.user, server.password) == (200, "0\n")
    finally:
        assert server.stop() == 0


def test_restart_on_the_same_port_right_after_kill_9(tmp_path: Path) -> None:
    from core.local_server import free_port

    data = tmp_path / "data"
    port = free_port()
    server = start_server(data, port=port)
    try:
        client = socket.create_connection(("127.0.0.1", port))  # an open client connection
        client.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")
        client.settimeout(10)
        answer = b""
        while b"Ok." not in answer:  # the response may come in several pieces
            piece = client.recv(4096)
            assert piece, answer
            answer += piece
    finally:
        server.process.send_signal(signal.SIGKILL)
        server.process.wait()
    client.close()
    again = start_server(data, port=port)
    try:
        assert again.port == port
        assert http(port, "SELECT 1", again.user, again.password) == (200, "1\n")
    finally:
        assert again.stop() == 0
