"""The status page as a long-running process: flat over store turns, following the store's owner.

Real ``./run.sh ui`` processes over real HTTP; threads and descriptors read from ``/proc/<pid>``.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from ui_project import Project, UiServer, build_runs, day

from conftest import StoreTaker
from server_process import start_server

pytestmark = [pytest.mark.slow, pytest.mark.embedded_only("store turns and clickhouse_server are the embedded store's")]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    project = Project(tmp_path_factory.mktemp("ui_long"), UI_PASSWORD="")
    build_runs(project)
    return project


# Seconds after which an idle page has handed the store back (core.store.MAX_IDLE) and its turn's
# child has exited: the process is measured at rest.
IDLE = 7.0


def usage(pid: int) -> tuple[int, int]:
    """(threads, open descriptors) of process ``pid``."""
    return len(os.listdir(f"/proc/{pid}/task")), len(os.listdir(f"/proc/{pid}/fd"))


def metrics(ui: UiServer) -> str:
    response = ui.get("/metrics")
    assert response.status_code == 200, response.text
    assert "dp_pipeline_last_run_status" in response.text
    return response.text


def turn(ui: UiServer, taker: StoreTaker) -> None:
    """A request, then another process really takes the store (the page hands it over)."""
    metrics(ui)
    taker.take()


def test_metrics_requests_leave_threads_and_descriptors_flat(project: Project) -> None:
    """Each request is a turn at the embedded store (a run takes it in between): the process must
    not grow with them (chdb leaves ~5 threads behind per engine open)."""
    ui = UiServer(project)
    taker = StoreTaker(project.env)
    try:
        for _ in range(4):  # warm-up: the waitress threads, the first imports and connections
            turn(ui, taker)
        time.sleep(IDLE)
        warm = usage(ui.process.pid)
        for _ in range(12):
            turn(ui, taker)
        time.sleep(IDLE)
        after = usage(ui.process.pid)
        assert after[0] == warm[0], f"threads grew from {warm[0]} to {after[0]} over 12 requests"
        assert after[1] == warm[1], f"descriptors grew from {warm[1]} to {after[1]} over 12 requests"
    finally:
        taker.close()
        ui.stop()


def test_the_page_follows_a_clickhouse_server_started_after_it_and_back(project: Project) -> None:
    ui = UiServer(project)
    server = None
    try:
        assert ui.get("/").status_code == 200  # read from the embedded store
        server = start_server(Path(project.env["DATA_DIR"]), extra_env=project.env)
        # A run through the server (the CLI finds it), then the page must show it, read fresh.
        ran = project.cli("cron_run", "flaky", "--date", day(3))
        assert ran.returncode == 0, ran.stdout + ran.stderr
        page = ui.get("/")
        assert page.status_code == 200
        assert "store busy" not in page.text, re.findall(r"store busy[^<]*", page.text)
        runs_page = ui.get("/runs/" + _last_run(project, "flaky"))
        assert runs_page.status_code == 200 and "store busy" not in runs_page.text
        assert server.stop() == 0
        server = None
        # Server gone: back to the embedded store, fresh again.
        again = project.cli("cron_run", "flaky", "--date", day(4))
        assert again.returncode == 0, again.stdout + again.stderr
        page = ui.get("/runs/" + _last_run(project, "flaky"))
        assert page.status_code == 200 and "store busy" not in page.text
    finally:
        if server is not None:
            server.stop()
        ui.stop()


def _last_run(project: Project, pipeline: str) -> str:
    runs = [r for r in project.runs() if r["pipeline"] == pipeline]
    return str(max(runs, key=lambda r: str(r["started_at"]))["run_id"])


def test_a_page_killed_mid_turn_leaves_no_process_on_the_store(project: Project) -> None:
    """The page's turn is its child's: with the page gone (kill -9 while it keeps its turn), the
    child notices and frees the store at once; nothing sits on it."""
    from core.locks import FileLock

    ui = UiServer(project)
    metrics(ui)  # the page now keeps its turn (up to 5 s without requests)
    lock = FileLock(Path(project.env["DATA_DIR"]) / "clickhouse.lock")
    assert not lock.is_free() and "store turn of pid" in lock.holder()
    ui.process.kill()
    ui.process.wait()
    deadline = time.monotonic() + 3.0
    while not lock.is_free():
        assert time.monotonic() < deadline, f"the store is still held by {lock.holder()}"
        time.sleep(0.05)
    taken = project.cli("runs", "--limit", "1", STORE_LOCK_TIMEOUT="5")
    assert taken.returncode == 0, taken.stderr
