"""The status page and /metrics over real HTTP: ``./run.sh ui`` in a new process, data from real runs."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from ui_project import Project, UiServer, build_runs, day

from core.config import Settings
from core.store import Store

# Every test here reads its own temporary project on the embedded store (ui_project.Project blanks
# CLICKHOUSE_*): the server run would do exactly the same (the page's data layer on a server: test_ui_data.py).
pytestmark = [pytest.mark.slow, pytest.mark.same_in_both_runs("the page on its own embedded project")]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    # Small job logs so the oldest run of "days" rotates out of them.
    project = Project(tmp_path_factory.mktemp("ui"), LOG_MAX_BYTES="1500", LOG_BACKUP_COUNT="1",
                      UI_PASSWORD="")
    build_runs(project)
    return project


@pytest.fixture(scope="module")
def server(project: Project) -> Iterator[UiServer]:
    ui = UiServer(project)
    yield ui
    ui.stop()


def run_ids(project: Project, pipeline: str, status: str | None = None) -> list[str]:
    """Run ids of a pipeline, oldest first."""
    runs = [r for r in project.runs() if r["pipeline"] == pipeline and (status is None or r["status"] == status)]
    return [str(r["run_id"]) for r in sorted(runs, key=lambda r: str(r["started_at"]))]


def test_startup_says_where_and_that_no_password_is_needed(server: UiServer) -> None:
    text = "\n".join(server.startup)
    assert "Status page on http://127.0.0.1:" in text
    assert "reachable from this machine only" in text


def test_pipelines_page_shows_schedule_last_run_and_freshness(server: UiServer, project: Project) -> None:
    page = server.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    row = re.search(r'<tr id="pipeline-days">(.*?)</tr>', html, re.S).group(1)
    assert "<code>0 2 * * *</code>" in row and "days_t" in row
    assert '<span class="status success">success</span>' in row
    assert f"{day(1)} 00:00</span> → " in row  # the newest interval the backfill loaded
    assert '<td class="num">6</td>' in row
    assert "fresh" in row
    # user text is escaped, not interpreted
    assert "six rows a day &amp; &lt;b&gt;not bold&lt;/b&gt;" in row
    flaky = re.search(r'<tr id="pipeline-flaky">(.*?)</tr>', html, re.S).group(1)
    assert '<span class="status failed">failed</span>' in flaky
    assert '<span class="status failed">few_rows</span>' in flaky  # its last checked run's warn check
    never = re.search(r'<tr id="pipeline-never">(.*?)</tr>', html, re.S).group(1)
    assert "<td>never</td>" in never and "n/a" in never
    assert "<td>days</td>" in never  # depends on
    assert '<span class="muted">none</span>' in row and "<td>-</td>" in row  # days: no failing check, no dependency


def test_error_text_with_script_tag_shows_as_text(server: UiServer, project: Project) -> None:
    failed = run_ids(project, "flaky", "failed")[0]
    for path in ("/", f"/runs/{failed}", "/coverage", "/pipelines/flaky"):
        html = server.get(path).text
        assert "<script>alert" not in html, path
        assert "&lt;script&gt;alert(" in html, path
    for path in ("/rows?pipeline=<script>x</script>", "/runs/<script>x</script>", "/coverage?days=<script>",
                 "/pipelines/<script>x</script>", "/pipelines/days?status=<script>"):
        answer = server.get(path)
        assert answer.status_code in (400, 404), path
        assert "<script>x" not in answer.text and "<script>" not in answer.text, path


def test_coverage_grid_colours_intervals_and_links_cells_to_runs(server: UiServer, project: Project) -> None:
    page = server.get("/coverage?days=7")
    assert page.status_code == 200
    html = page.text
    days = re.search(r'<section class="grid" id="grid-days">(.*?)</section>', html, re.S).group(1)
    cells = re.findall(r'<(a|span) class="cell (\w+)"(?: href="([^"]+)")?', days)
    assert [state for _, state, _ in cells] == ["missing"] + ["done"] * 5  # 6 ended days, 5 backfilled
    done_ids = {href.rsplit("/", 1)[1] for _, state, href in cells if state == "done"}
    assert done_ids == set(run_ids(project, "days"))
    flaky = re.search(r'<section class="grid" id="grid-flaky">(.*?)</section>', html, re.S).group(1)
    states = re.findall(r'<(?:a|span) class="cell (\w+)"', flaky)
    assert states == ["missing"] * 4 + ["done", "failed"]
    assert f'href="/runs/{run_ids(project, "flaky", "failed")[0]}"' in flaky


def test_coverage_hourly_and_bad_parameters(server: UiServer) -> None:
    assert server.get("/coverage?hourly=1&days=2").status_code == 200
    for bad in ("days=abc", "days=0", "days=400", "hourly=1&days=30"):
        answer = server.get(f"/coverage?{bad}")
        assert answer.status_code == 400, bad
        assert "days must be" in answer.text


def test_rows_page_counts_table_beside_reported_rows(server: UiServer) -> None:
    page = server.get("/rows?days=7")
    assert page.status_code == 200
    html = page.text
    section = re.search(r'<section class="rows" id="rows-days">(.*?)</section>', html, re.S).group(1)
    assert "30 rows in total." in section
    assert f'<tr><td>{day(1)}</td><td class="num">6</td><td class="num">6</td><td><span class="day ok">ok</span>' \
        in section
    assert f'<tr><td>{day(6)}</td><td class="num">0</td><td class="num">-</td>' in section
    charts = json.loads(re.search(r'<script type="application/json" id="chart-data">(.*?)</script>', html,
                                  re.S).group(1))
    by_name = {c["pipeline"]: c for c in charts}
    assert by_name["days"]["table"] == [0, 6, 6, 6, 6, 6, 0]  # day(6) .. today
    assert by_name["days"]["reported"] == [None, 6, 6, 6, 6, 6, None]
    assert "never_t" in html and "Table does not exist yet" in html
    assert server.get("/rows?pipeline=nope").status_code == 404
    assert server.get("/rows?pipeline=days").status_code == 200


def test_run_page_shows_record_and_only_its_own_log_lines(server: UiServer, project: Project) -> None:
    failed, = run_ids(project, "flaky", "failed")
    succeeded, = run_ids(project, "flaky", "success")
    page = server.get(f"/runs/{failed}")
    assert page.status_code == 200
    html = page.text
    assert f"<h1>Run {failed} <span class=\"status failed\">failed</span></h1>" in html
    assert f"<tr><th>interval (UTC)</th><td>{day(1)} 00:00 → " in html
    log = re.search(r'<pre id="log" class="log">(.*?)</pre>', html, re.S).group(1)
    assert f"[flaky {failed}]" in log and "Traceback" in log  # continuation lines kept
    assert succeeded not in log
    assert "No check results recorded for this run." in html


def test_run_page_says_when_the_log_rotated_past_the_run(server: UiServer, project: Project) -> None:
    oldest = run_ids(project, "days")[0]
    newest = run_ids(project, "days")[-1]
    html = server.get(f"/runs/{oldest}").text
    assert "the log rotated past this run&#39;s lines" in html
    assert f"[days {newest}]" in server.get(f"/runs/{newest}").text


def test_unknown_run_and_methods(server: UiServer) -> None:
    missing = server.get("/runs/nope")
    assert missing.status_code == 404 and "no run &#39;nope&#39;" in missing.text
    assert httpx.post(server.url + "/", timeout=10).status_code == 405


def test_every_asset_is_served_locally(server: UiServer) -> None:
    html = server.get("/rows").text
    references = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert references and all(ref.startswith(("/", "#")) for ref in references), references
    for asset in [r for r in references if r.startswith("/static/")]:
        answer = server.get(asset)
        assert answer.status_code == 200, asset
    script = server.get("/static/vendor/uplot/uPlot.iife.min.js")
    assert "javascript" in script.headers["content-type"] and "uPlot" in script.text
    assert "MIT" in server.get("/static/vendor/uplot/LICENSE").text
    assert "default-src 'self'" in server.get("/").headers["content-security-policy"]


def test_refresh_control_sets_a_meta_refresh(server: UiServer) -> None:
    assert 'http-equiv="refresh"' not in server.get("/").text
    html = server.get("/coverage?days=7&refresh=30").text
    assert '<meta http-equiv="refresh" content="30">' in html
    assert '<input type="hidden" name="days" value="7">' in html
    assert 'http-equiv="refresh"' not in server.get("/?refresh=7").text  # not a choice: ignored


def test_metrics(server: UiServer) -> None:
    answer = server.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=")
    text = answer.text
    assert 'dp_pipeline_last_run_status{pipeline="days",status="success"} 1.0' in text
    assert 'dp_pipeline_last_run_status{pipeline="flaky",status="failed"} 1.0' in text
    assert 'dp_pipeline_last_run_rows_loaded{pipeline="days"} 6.0' in text
    # the run counters, freshness and check series: tests/integration/test_ui_metrics.py
    assert re.search(r'dp_pipeline_last_run_timestamp_seconds\{pipeline="flaky"\} 1\.\d+e\+09', text)
    assert re.search(r'dp_pipeline_last_run_duration_seconds\{pipeline="days"\} \d', text)
    assert 'last_run_status{pipeline="never"' not in text  # never ran: no last-run series


# ---- the store's turn ------------------------------------------------------------------------

@contextmanager
def holding_store(project: Project) -> Iterator[None]:
    """Keep the project's embedded store open in this process (its lock held) for the block."""
    settings = Settings(_env_file=None, clickhouse_host=None, clickhouse_url=None,  # type: ignore[call-arg]
                        data_dir=Path(project.env["DATA_DIR"]), log_dir=Path(project.env["LOG_DIR"]))
    store = Store(settings, linger=0)
    try:
        with store.session():
            yield
    finally:
        store.close()


@pytest.mark.embedded_only("the busy store is the embedded engine's lock")
def test_busy_store_shows_the_last_snapshot_within_the_bound(project: Project) -> None:
    ui = UiServer(project)
    try:
        assert ui.get("/").status_code == 200  # a snapshot to fall back on
        assert ui.get("/pipelines/days").status_code == 200
        oldest = run_ids(project, "days")[0]
        with holding_store(project):
            other = ui.get("/pipelines/days")  # a pipeline page too: its last snapshot, marked
            assert other.status_code == 200 and "store busy" in other.text and 'id="runs"' in other.text
            started = time.monotonic()
            page = ui.get("/")
            waited = time.monotonic() - started
            assert page.status_code == 200
            assert waited < 3.0, f"the page waited {waited:.1f} s for the store"
            assert re.search(r"as of \d\d:\d\d UTC, store busy \(in use by pid \d+", page.text)
            assert '<tr id="pipeline-days">' in page.text  # the snapshot's data
            # never read before: nothing to show, say so
            first = ui.get("/runs/" + oldest)
            assert first.status_code == 503 and first.headers["retry-after"] == "5"
            assert "store busy" in first.text
            # another process waiting for the store goes first: no wait at all
            marker = Path(project.env["DATA_DIR"]) / "clickhouse.lock.waiting"
            stop = threading.Event()

            def waiter() -> None:
                while not stop.is_set():
                    marker.touch()
                    time.sleep(0.05)

            thread = threading.Thread(target=waiter, daemon=True)
            thread.start()
            try:
                started = time.monotonic()
                page = ui.get("/")
                assert time.monotonic() - started < 1.0
                assert "another process is waiting for it" in page.text
            finally:
                stop.set()
                thread.join()
        fresh = ui.get("/")
        assert fresh.status_code == 200 and "store busy" not in fresh.text
    finally:
        ui.stop()


def test_a_run_completes_while_the_page_reloads_in_a_loop(project: Project) -> None:
    ui = UiServer(project)
    for path in ("/", "/coverage?days=7", "/metrics"):  # snapshots to fall back on, as in use
        assert ui.get(path).status_code == 200
    timings: list[tuple[float, int]] = []
    busy: list[str] = []  # who held the store when a page showed its snapshot
    stop = threading.Event()

    def reload() -> None:
        while not stop.is_set() and len(timings) < 2000:
            for path in ("/", "/coverage?days=7", "/metrics"):
                started = time.monotonic()
                answer = httpx.get(ui.url + path, timeout=30)
                timings.append((time.monotonic() - started, answer.status_code))
                if "store busy" in answer.text:
                    busy.append(re.search(r"as of \d\d:\d\d UTC, store busy \(([^)]*)\)", answer.text).group(1))

    thread = threading.Thread(target=reload, daemon=True)
    thread.start()
    try:
        # STORE_LOCK_TIMEOUT=5: had the page kept the store from the run for 5 s, the run would fail.
        started = time.monotonic()
        run = project.cli("cron_run", "days", "--date", day(0), STORE_LOCK_TIMEOUT="5", SLOW_SECONDS="1")
        run_seconds = time.monotonic() - started
    finally:
        stop.set()
        thread.join(timeout=60)
        ui.stop()
    assert run.returncode == 0, run.stdout + run.stderr
    assert "success days" in run.stdout
    assert run_seconds < 30
    assert len(timings) >= 6, timings
    assert {status for _, status in timings} == {200}
    # a snapshot names the run holding the store (or the holder's pid when it is not a known run)
    odd = [text for text in busy if not re.fullmatch(r"run \S+ of days|in use by pid \d+ \(.*", text)]
    assert not odd, odd
    slowest = max(seconds for seconds, _ in timings)
    assert slowest < 3.5, f"a page took {slowest:.1f} s (bound: 1.5 s wait + the read)"


# ---- another address needs a password --------------------------------------------------------

def test_another_address_without_ui_password_is_refused(project: Project) -> None:
    result = project.cli("ui", "--host", "0.0.0.0", "--port", "0", timeout=60)
    assert result.returncode == 2
    assert "error: --host 0.0.0.0 makes the status page reachable from other machines: set UI_PASSWORD" \
        in result.stderr


def test_ui_password_requires_basic_auth_everywhere_and_never_shows(project: Project) -> None:
    secret = "s3cret-pw-for-ui"
    ui = UiServer(project, "--host", "0.0.0.0", UI_PASSWORD=secret)
    try:
        assert "HTTP basic auth required (UI_PASSWORD, any user name), also for /metrics" in "\n".join(ui.startup)
        for path in ("/", "/metrics", "/coverage", "/static/style.css"):
            refused = ui.get(path)
            assert refused.status_code == 401, path
            assert refused.headers["www-authenticate"].startswith("Basic ")
            assert ui.get(path, auth=("anyone", "wrong")).status_code == 401, path
        for path in ("/", "/metrics", "/coverage", "/rows", "/runs/" + run_ids(project, "flaky")[0]):
            page = ui.get(path, auth=("anyone", secret))
            assert page.status_code == 200, path
            assert secret not in page.text, path
    finally:
        err = ui.stop()
    assert secret not in err


def test_a_server_that_does_not_answer_gives_503_not_a_traceback(project: Project) -> None:
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ui = UiServer(project, CLICKHOUSE_HOST="127.0.0.1", CLICKHOUSE_PORT=str(port), CLICKHOUSE_PASSWORD="pw-not-shown")
    try:
        page = ui.get("/")
        assert page.status_code == 503
        assert f"unavailable: Cannot connect to ClickHouse at http://default@127.0.0.1:{port}" in page.text
        assert "pw-not-shown" not in page.text and "Traceback" not in page.text
        assert ui.get("/metrics").status_code == 503
    finally:
        ui.stop()


# ---- issue 25 §4: any date range, a page per pipeline, the dependency graph -----------------------

def test_coverage_of_any_year_with_axis_and_navigation(server: UiServer) -> None:
    html = server.get("/coverage?start=2015-01-01&end=2015-12-31").text
    assert "<h1>Coverage 2015-01-01 .. 2015-12-31" in html
    days = re.search(r'<section class="grid" id="grid-days">(.*?)</section>', html, re.S).group(1)
    assert re.findall(r'<span class="axis">([^<]+)</span>', days) == [f"2015-{m:02d}" for m in range(1, 13)]
    assert days.count('class="cell missing"') == 365 and "(365 days: 365 missing)" in days
    assert 'href="/coverage?start=2014-01-01&amp;end=2014-12-31" id="previous"' in html
    assert 'href="/coverage?start=2016-01-01&amp;end=2016-12-30" id="next"' in html  # the same 365 days (2016 has 366)
    snap = re.search(r'<section class="grid" id="grid-snap">(.*?)</section>', html, re.S).group(1)
    assert "runs load no interval" in snap and "class=\"cell" not in snap and "missing" not in snap
    recent = server.get("/coverage").text  # still the last 30 days, the backfilled 5 done
    assert f'<h1>Coverage {day(29)} .. {day(0)}' in recent
    assert "(30 days: 5 done, 25 missing)" in recent or "(29 days: 5 done, 24 missing)" in recent
    assert server.get("/rows?start=2015-03-01&end=2015-03-31").status_code == 200
    for bad, says in (("start=2015-13-01", "start must be a date"), ("start=2015-02-01&end=2015-01-01", "is before"),
                      ("start=2014-01-01&end=2015-12-31", "at most 366 days"), ("end=<script>", "end must be")):
        answer = server.get(f"/coverage?{bad}")
        assert answer.status_code == 400 and says in answer.text, bad
        assert "<script>" not in answer.text


def test_pipeline_page_settings_runs_paged_and_filtered(server: UiServer, project: Project) -> None:
    html = server.get("/pipelines/flaky").text
    settings = re.search(r'<table id="settings".*?</table>', html, re.S).group(0)
    for text in ("<code>0 3 * * *</code>", "flaky_t", "interval", "<code>few_rows</code>"):
        assert text in settings, text
    runs = re.findall(r'<tr id="run-([^"]+)">', html)
    assert runs == run_ids(project, "flaky")[::-1]  # newest first
    assert f'<a href="/runs/{runs[0]}">' in html
    failed = re.findall(r'<tr id="run-([^"]+)">', server.get("/pipelines/flaky?status=failed").text)
    assert failed == run_ids(project, "flaky", "failed")
    everything = run_ids(project, "days")[::-1]
    pages = [re.findall(r'<tr id="run-([^"]+)">', server.get(f"/pipelines/days?per_page=2&page={n}").text)
             for n in (1, 2, 3)]
    assert pages == [everything[:2], everything[2:4], everything[4:]]
    first = server.get("/pipelines/days?per_page=2").text
    assert 'id="older"' in first and 'id="newer"' not in first
    assert 'id="older"' not in server.get("/pipelines/days?per_page=2&page=3").text
    snap = server.get("/pipelines/snap").text
    assert "replace" in snap and "runs load no interval" in snap
    assert server.get("/pipelines/nope").status_code == 404
    assert server.get("/pipelines/days?status=bogus").status_code == 400


def test_dependency_graph_is_an_svg_on_the_pipelines_page(server: UiServer) -> None:
    html = server.get("/").text
    svg = re.search(r'<svg [^>]*id="graph".*?</svg>', html, re.S).group(0)
    assert 'id="node-days"' in svg and 'id="node-never"' in svg and "node-snap" not in svg  # snap: no relation
    assert '<a href="/pipelines/never">' in svg and svg.count('class="edge"') == 1
    assert re.search(r'<g class="node fresh" id="node-days">.*?data until ' + day(0) + ' 00:00', svg)
    assert re.search(r'<g class="node [a-z]+" id="node-never">.*?no data loaded', svg)
