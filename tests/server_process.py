"""A real ClickHouse server process from the chdb wheel (``./run.sh clickhouse_server``) for tests.

Started as a new process (never a fork of the test process, which may have loaded chdb), on a
free 127.0.0.1 port, ready once ``/ping`` answers; stopped with SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
READY_TIMEOUT = 90.0


@dataclass
class ServerProcess:
    """A running ``clickhouse_server`` serving ``data_dir/clickhouse``."""

    data_dir: Path
    process: subprocess.Popen[str]
    port: int
    user: str = "data_processor"
    password: str = ""
    log: Path = field(default_factory=Path)

    def client_env(self, database: str) -> dict[str, str]:
        """Variables that point the framework at this server, in ``database``."""
        return {"CLICKHOUSE_HOST": "127.0.0.1", "CLICKHOUSE_PORT": str(self.port),
                "CLICKHOUSE_USER": self.user, "CLICKHOUSE_PASSWORD": self.password,
                "CLICKHOUSE_DATABASE": database}

    def client(self, database: str = "default"):
        import clickhouse_connect

        return clickhouse_connect.get_client(host="127.0.0.1", port=self.port, username=self.user,
                                             password=self.password, database=database)

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, wait; kill -9 only if it does not stop in time. Returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def output(self) -> str:
        return self.log.read_text() if self.log.is_file() else ""


def framework_env(data_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """A clean environment for a framework process on ``data_dir`` (no ClickHouse settings)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLICKHOUSE_")}
    env_file = data_dir.parent / f"{data_dir.name}.env"
    env_file.parent.mkdir(parents=True, exist_ok=True)
    if not env_file.exists():
        env_file.write_text("")
    env.update({"ENV_FILE": str(env_file), "DATA_DIR": str(data_dir), "LOG_DIR": str(data_dir.parent / "logs"),
                "RUN_DIR": str(data_dir.parent / "run"), "PYTHONPATH": str(SRC)})
    env.update(extra or {})
    return env


def start_server(data_dir: Path, port: int = 0, extra_env: dict[str, str] | None = None,
                 wait: bool = True, tcp_port: int = 0) -> ServerProcess:
    """Start ``clickhouse_server`` on ``data_dir``; with ``wait``, return once it is ready.
    ``tcp_port`` 0: any free native port."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir.parent / f"{data_dir.name}-server.log"
    handle = open(log, "w")  # noqa: SIM115  (owned by the process for its lifetime)
    process = subprocess.Popen(
        [sys.executable, str(SRC / "main.py"), "clickhouse_server", "--port", str(port), "--tcp-port", str(tcp_port)],
        env=framework_env(data_dir, extra_env), stdout=handle, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, text=True, cwd=str(data_dir.parent),
    )
    server = ServerProcess(data_dir=data_dir, process=process, port=port, log=log,
                           password=(extra_env or {}).get("CLICKHOUSE_PASSWORD", ""))
    if wait:
        wait_ready(server)
    return server


def wait_ready(server: ServerProcess) -> None:
    """Wait for the ``ready http://host:port`` line (printed after ``/ping`` answered)."""
    from core.local_server import ping

    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        for line in server.output().splitlines():
            if line.startswith("ready http://"):
                server.port = int(line.rsplit(":", 1)[1])
                password_file = server.data_dir / "clickhouse-server.password"
                if not server.password and password_file.is_file():
                    server.password = password_file.read_text().strip()
                if ping("127.0.0.1", server.port):
                    return
        if server.process.poll() is not None:
            raise RuntimeError(f"clickhouse_server exited with {server.process.returncode}: {server.output()}")
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"clickhouse_server not ready after {READY_TIMEOUT:.0f} s: {server.output()}")
