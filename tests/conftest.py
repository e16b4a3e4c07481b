"""Shared test fixtures: isolated settings, a real embedded store, the real CLI in a subprocess."""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

from core.config import Settings, load_settings  # noqa: E402
from core.store import Store  # noqa: E402
from pipelines.interfaces import Extractor  # noqa: E402

if TYPE_CHECKING:
    import pyarrow as pa


class Rows(Extractor):
    """An interval-aware extractor yielding one Arrow table (for calling pipelines directly)."""

    interval_aware = True

    def __init__(self, table: pa.Table) -> None:
        super().__init__("rows")
        self.table = table

    def extract(self, context):
        yield self.table

# Variables a developer's shell or .env could set that must not leak into tests.
_FRAMEWORK_VARS = [name.upper() for name in Settings.model_fields] + ["ENV_FILE"]


# ---- framework fixtures and the private crontab (issue 19) ------------------------------------
# Framework tests never read the user's project: PIPELINES_DIR and MIGRATIONS_DIR point at
# tests/fixtures/ (a user's migration or a broken module of theirs must not fail these tests),
# and every test gets a private crontab (a file behind CRONTAB_COMMAND), so a test -- even a
# killed one -- can never leave entries in the crontab of whoever runs the suite.

FIXTURES = ROOT / "tests" / "fixtures"
FIXTURE_PIPELINES = FIXTURES / "pipelines"
FIXTURE_MIGRATIONS = FIXTURES / "migrations"

PRIVATE_CRONTAB = """#!/bin/sh
# A private crontab for tests: the table is the file {table}; calls are logged to {calls}.
echo "$@" >> '{calls}'
case "$*" in
    -l) [ -f '{table}' ] && exec cat '{table}'; echo "no crontab for $(id -un)" >&2; exit 1 ;;
    -r) [ -f '{table}' ] && exec rm -f '{table}'; echo "no crontab for $(id -un)" >&2; exit 1 ;;
    -) cat > '{table}.new' && exec mv '{table}.new' '{table}' ;;
    *) echo "private crontab: unsupported arguments: $*" >&2; exit 2 ;;
esac
"""


def private_crontab(directory: Path) -> Path:
    """Write an executable ``crontab`` stand-in in ``directory``; its table is ``directory/table``."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "crontab"
    script.write_text(PRIVATE_CRONTAB.format(table=directory / "table", calls=directory / "calls"))
    script.chmod(0o755)
    return script


@pytest.fixture(autouse=True)
def _private_crontab(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test's CRONTAB_COMMAND is a private crontab (the one real-crontab test overrides it),
    in a directory of its own (a test's tmp_path stays as the test made it)."""
    script = private_crontab(tmp_path_factory.mktemp("private-crontab"))
    monkeypatch.setenv("CRONTAB_COMMAND", str(script))
    return script


def project_copy(target: Path, bare: bool = False) -> Path:
    """A clean copy of the project as git sees it (tracked and new files, nothing ignored) in ``target``.

    ``bare``: without the user's own work (``src/pipelines/*_pipeline.py``, ``migrations/sql/``,
    ``tests/pipelines/test_*.py``), for framework tests that run project commands in the copy.
    """
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, text=True)
    if listed.returncode != 0:  # not a git checkout (an unpacked release): copy minus local state
        shutil.copytree(ROOT, target, symlinks=True, ignore=shutil.ignore_patterns(
            ".git", ".venv", ".env", "logs", "run", "results", "__pycache__", "*.pyc", ".*_cache"))
        listed.stdout = ""
    for name in filter(None, listed.stdout.split("\0")):
        src = ROOT / name
        if not src.is_file():  # deleted in the worktree but not yet in the index
            continue
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target / name)
    # Only the shipped samples: a developer's local store under data/ is no part of a checkout.
    for entry in (target / "data").iterdir() if (target / "data").is_dir() else []:
        if entry.name != "samples":
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    if bare:
        for pattern in ("src/pipelines/**/*_pipeline.py", "migrations/sql/*.sql", "tests/pipelines/test_*.py"):
            for path in target.glob(pattern):
                path.unlink()
    return target

def python310() -> str | None:
    """A working Python 3.10 interpreter (pyenv's, or python3.10 on PATH) to test the 3.11 minimum."""
    candidates = []
    pyenv = shutil.which("pyenv")
    if pyenv:
        root = subprocess.run([pyenv, "root"], capture_output=True, text=True).stdout.strip()
        listed = subprocess.run([pyenv, "versions", "--bare"], capture_output=True, text=True).stdout.split()
        candidates += [str(Path(root) / "versions" / v / "bin" / "python3.10") for v in listed if v.startswith("3.10.")]
    candidates += [p for p in [shutil.which("python3.10")] if p]
    for candidate in candidates:
        probe = [candidate, "-c", "import sys; sys.exit(0 if sys.version_info[:2] == (3, 10) else 1)"]
        if os.access(candidate, os.X_OK) and subprocess.run(probe, capture_output=True).returncode == 0:
            return candidate
    return None

# ---- end of the issue-19 block -----------------------------------------------------------------


def require_tool(name: str) -> str:
    """Path of a system tool; skip when absent, but fail under CI where it must be installed."""
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.access(p, os.X_OK)), None
    )
    if path:
        return path
    message = f"system tool '{name}' is not installed"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (required under CI: .ci/run must install it)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """moto's standalone S3 server on a free 127.0.0.1 port for the session (tests/s3_server.py);
    skipped when moto is missing, except under CI (it is in requirements.txt)."""
    try:
        import moto.server  # noqa: F401
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("moto[server] is not installed (required under CI: it is in requirements.txt)")
        pytest.skip("moto[server] is not installed (pip install -r requirements.txt)")
    from s3_server import start_s3_server

    server = start_s3_server(tmp_path_factory.mktemp("s3-server") / "moto.log")
    yield server
    server.stop()


# ---- server mode (issue 12) -------------------------------------------------------------------
# ``./run.sh test --server`` (DP_TEST_SERVER=1): one real ClickHouse server process for the session
# (tests/server_process.py), each test in its own database. Tests of embedded-only behaviour are
# marked ``@pytest.mark.embedded_only("why")`` and skipped there. Tests that would do exactly the
# same in both runs (an SSH deployment to a target with its own settings, the suite run nested as a
# user runs it, tests that start or use a real server in either run) are marked
# ``@pytest.mark.same_in_both_runs("why")``: they run once, in the embedded run.
SERVER_MODE = os.environ.get("DP_TEST_SERVER") == "1"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "embedded_only(reason): about the embedded engine only; "
                                       "skipped when the suite runs against a server (--server)")
    config.addinivalue_line("markers", "same_in_both_runs(reason): does the same in both suite runs (no "
                                       "database of the suite's engine, or a real server either way); "
                                       "runs in the embedded run only")


# CI runs the two suite runs side by side (.ci/run): DP_SAME_IN_SERVER_RUN names test modules
# (file names without .py, shell patterns) whose same_in_both_runs tests run in the server run
# instead of the embedded one, to even out the two runs' wall times. They run there exactly as in
# the embedded run: no server variables, no DP_TEST_SERVER in their processes.
def runs_in_server_run(item: pytest.Item) -> bool:
    """True for a same_in_both_runs test that DP_SAME_IN_SERVER_RUN moves to the server run."""
    from fnmatch import fnmatch

    patterns = os.environ.get("DP_SAME_IN_SERVER_RUN", "").split()
    return (item.get_closest_marker("same_in_both_runs") is not None
            and any(fnmatch(item.path.stem, pattern) for pattern in patterns))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        moved = runs_in_server_run(item)
        if not SERVER_MODE:
            if moved:
                item.add_marker(pytest.mark.skip(reason="runs in the server run (DP_SAME_IN_SERVER_RUN)"))
            continue
        for name, default in (("embedded_only", "embedded engine only"),
                              ("same_in_both_runs", "does the same in the embedded run")):
            marker = item.get_closest_marker(name)
            if marker is not None and not moved:
                reason = marker.args[0] if marker.args else default
                item.add_marker(pytest.mark.skip(reason=f"server mode: {reason}"))


@pytest.fixture(autouse=True)
def _moved_tests_run_as_embedded(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A test moved to the server run starts its processes as the embedded run would."""
    if SERVER_MODE and runs_in_server_run(request.node):
        monkeypatch.delenv("DP_TEST_SERVER", raising=False)


@pytest.fixture(scope="session")
def clickhouse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A real ClickHouse server (``clickhouse_server`` on a free 127.0.0.1 port) for the session."""
    from server_process import start_server

    server = start_server(tmp_path_factory.mktemp("clickhouse-server") / "data")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def local_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """ZooKeeper and two ClickHouse nodes with a 2-shard cluster, once per session (tests/cluster.py);
    skipped without java/ZooKeeper, except under CI (.ci/run installs zookeeper)."""
    from cluster import missing_tool, start_cluster

    missing = missing_tool()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing} (required under CI: .ci/run must install it)")
        pytest.skip(missing)
    cluster = start_cluster(tmp_path_factory.mktemp("local-cluster"))
    yield cluster
    cluster.stop()


def database() -> str:
    """The database the current test's framework processes use (its own one in server mode)."""
    return os.environ.get("CLICKHOUSE_DATABASE", "data_warehouse")


def server_database(request: pytest.FixtureRequest) -> str:
    """A database name of its own for the current test (on the shared server)."""
    import hashlib

    return "t_" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:16]


@pytest.fixture
def _server_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """In server mode: the variables pointing the test at the session's server, in its own database."""
    if not SERVER_MODE or runs_in_server_run(request.node):
        yield {}
        return
    server = request.getfixturevalue("clickhouse_server")
    database = server_database(request)
    yield server.client_env(database)
    client = server.client()
    try:
        client.command(f"DROP DATABASE IF EXISTS `{database}` SYNC")
    finally:
        client.close()
# ---- end of server mode ------------------------------------------------------------------------

# Private PostgreSQL and MariaDB sources, one each per session (issue 24): see tests/sources.py.
from sources import mariadb_source, postgres_source  # noqa: E402, F401


@pytest.fixture
def project_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _server_env: dict[str, str]) -> dict[str, str]:
    """Environment for one test: its own data, logs, run dir and an empty .env file (in server
    mode also CLICKHOUSE_HOST/PORT/USER/PASSWORD/DATABASE: see ``_server_env``)."""
    for name in _FRAMEWORK_VARS:
        monkeypatch.delenv(name, raising=False)
    env_file = tmp_path / ".env"
    env_file.write_text("")
    values = {
        "ENV_FILE": str(env_file),
        "DATA_DIR": str(tmp_path / "data"),
        "LOG_DIR": str(tmp_path / "logs"),
        "RUN_DIR": str(tmp_path / "run"),
        "STORE_LOCK_TIMEOUT": "60",
        # The framework's own fixtures, never the user's project (see FIXTURES below).
        "PIPELINES_DIR": str(FIXTURE_PIPELINES),
        "MIGRATIONS_DIR": str(FIXTURE_MIGRATIONS),
        **_server_env,
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


@pytest.fixture
def settings(project_env: dict[str, str]) -> Settings:
    return load_settings()


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    """The real embedded engine on a fresh directory, database created, released after the test.

    Call ``store.close()`` before starting a process that needs the store: it is kept open
    briefly after each use (as in production) so that a test's statements don't reopen it.
    """
    s = Store(settings)
    s.create_database()
    yield s
    s.close()


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    env.setdefault("COLUMNS", "400")  # wide tables: assertions look for whole cells
    env.update(extra or {})
    return env


class StoreTaker:
    """A second process that really takes the embedded store (engine opened in-process, one read,
    released) each time :meth:`take` is called: what a cron run's turn does to a process holding
    the store, without a CLI start-up per turn. Waits for the store like any framework process."""

    SCRIPT = ("import sys\nfrom core.config import load_settings\nfrom core.store import Store\n"
              "store = Store(load_settings(), linger=0)\nfor line in sys.stdin:\n"
              "    store.query_rows('SELECT 1')\n    store.close()\n    print('took', flush=True)\n")

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", self.SCRIPT], env=cli_env(env), cwd=ROOT, text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def take(self) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("take\n")
        self.process.stdin.flush()
        assert self.process.stdout.readline().strip() == "took", "the second process could not take the store"

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(60)


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``./run.sh``'s Python CLI in a new process (never a fork of this one)."""
    return subprocess.run(
        [sys.executable, str(SRC / "main.py"), *args],
        env=cli_env(env), cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        input=input, stdin=None if input is not None else subprocess.DEVNULL,
    )


@pytest.fixture
def make_context(store: Store):
    """Build a RunContext for calling components directly, with the runner's own wiring (new_context)."""
    from datetime import UTC, datetime, timedelta

    from core.logging import get_logger
    from pipelines.interfaces import RunContext
    from record.tables import ensure_framework_tables
    from runner.runner import new_context

    ensure_framework_tables(store)

    def build(pipeline: str = "test_pipeline", start: datetime | None = None, end: datetime | None = None,
              run_id: str = "run-test-1", table_name: str | None = None) -> RunContext:
        start = start or datetime(2026, 1, 15, tzinfo=UTC)
        end = end or start + timedelta(days=1)
        return new_context(store, run_id, pipeline, start, end, logger=get_logger(f"job.{pipeline}"),
                           table_name=table_name)

    return build


@pytest.fixture
def pipelines_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, project_env: dict[str, str]) -> Path:
    """An empty PIPELINES_DIR for this test (write *_pipeline.py files into it)."""
    directory = tmp_path / "pipelines"
    directory.mkdir()
    monkeypatch.setenv("PIPELINES_DIR", str(directory))
    project_env["PIPELINES_DIR"] = str(directory)
    return directory


def wait_for(predicate, timeout: float = 60, interval: float = 0.05, what: str = "condition"):
    """Poll until ``predicate()`` is truthy; fail the test after ``timeout`` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


@contextmanager
def serve(handler: type) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 (ephemeral port) in a thread; yields its base URL."""
    import threading
    from http.server import ThreadingHTTPServer

    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def db(project_env: dict[str, str]) -> Iterator[Store]:
    """The test's embedded store for checking what CLI processes wrote (see :func:`rows`)."""
    store = Store(load_settings(), linger=0)
    yield store
    store.close()


def rows(store: Store, sql: str) -> list[tuple]:
    """Query, then release the embedded store at once so the next CLI process can open it."""
    try:
        return store.query_rows(sql)
    finally:
        store.close()


class JsonHandler(http.server.BaseHTTPRequestHandler):
    """Base for test HTTP handlers: ``send_json(data, status)`` and no request logging."""

    def send_json(self, data: object, status: int = 200) -> None:
        import json

        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass
