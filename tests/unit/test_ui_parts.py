"""Parts of the status page on their own: a run's job log lines, addresses, coverage states, metrics."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from cli.ui import is_loopback
from core.config import load_settings
from core.logging import attach_job_log, detach, get_logger, run_context, setup_logging
from core.models import RunRecord
from publish.ui import data, metrics
from publish.ui.joblog import run_log
from runner import backfill as bf


@pytest.fixture(autouse=True)
def _reset_logging():
    yield
    for handler in list(logging.getLogger("dp").handlers):
        logging.getLogger("dp").removeHandler(handler)
        handler.close()


def write_runs(settings, pipeline: str, run_ids: list[str]) -> None:
    """Real job log records (through the framework's handlers), a traceback in each run."""
    setup_logging(settings, console=False)
    handler = attach_job_log(settings, pipeline)
    log = get_logger(f"job.{pipeline}")
    for run_id in run_ids:
        with run_context(pipeline, run_id):
            log.info("run %s started", run_id)
            try:
                raise ValueError(f"broken in {run_id}")
            except ValueError:
                log.exception("run %s failed", run_id)
    with run_context("other", "x"):
        log.info("a record of another job")  # not in this job's log
    detach(handler)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_run_log_keeps_only_that_runs_records_with_their_continuation_lines(project_env, monkeypatch,
                                                                             log_format) -> None:
    monkeypatch.setenv("LOG_FORMAT", log_format)
    settings = load_settings()
    write_runs(settings, "orders", ["run-a", "run-b", "run-c"])
    tail = run_log(settings, "orders", "run-b", datetime.now(UTC))
    text = "\n".join(tail.lines)
    assert "run run-b started" in text and "broken in run-b" in text
    assert "run-a" not in text and "run-c" not in text
    if log_format == "text":
        assert any(line.startswith("Traceback") for line in tail.lines)  # continuation line kept
    else:
        assert len(tail.lines) == 2  # one JSON object per record, traceback inside
    assert tail.note == ""


def test_run_log_says_when_rotation_dropped_the_run(project_env, monkeypatch) -> None:
    monkeypatch.setenv("LOG_MAX_BYTES", "1024")
    monkeypatch.setenv("LOG_BACKUP_COUNT", "1")
    settings = load_settings()
    started = datetime.now(UTC) - timedelta(seconds=1)
    write_runs(settings, "orders", [f"run-{n}" for n in range(12)])
    gone = run_log(settings, "orders", "run-0", started)
    assert gone.lines == []
    assert gone.note.startswith("the log rotated past this run's lines (oldest kept record: ")
    kept = run_log(settings, "orders", "run-11", datetime.now(UTC))
    assert kept.lines and kept.note == ""
    # a run that began before everything kept: its lines found, but its first ones may be gone
    early = run_log(settings, "orders", "run-11", datetime.now(UTC) - timedelta(hours=1))
    assert early.lines and early.note.startswith("the first lines of this run may have rotated away")


def test_run_log_without_a_job_log(project_env) -> None:
    settings = load_settings()
    tail = run_log(settings, "nothing", "run-1", datetime.now(UTC))
    assert tail.lines == [] and tail.note.startswith("no job log at ")


def test_run_log_of_a_run_that_wrote_nothing_is_not_called_rotated(project_env) -> None:
    settings = load_settings()
    write_runs(settings, "orders", ["run-a"])
    # a run that started after every kept record, yet has no lines: not rotated away
    tail = run_log(settings, "orders", "run-zzz", datetime.now(UTC) + timedelta(minutes=5))
    assert tail.note.startswith("no lines of this run in ")


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.0.0.2", True), ("localhost", True), ("::1", True), ("[::1]", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.5", False), ("example.org", False),
])
def test_which_addresses_need_a_password(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def run(status: str, start: datetime, hours: int = 24, run_id: str = "r", early: bool = False) -> RunRecord:
    """A run of ``hours`` from ``start``, started once they ended (``early``: before, an incomplete run)."""
    end = start + timedelta(hours=hours)
    return RunRecord(run_id=run_id, pipeline="p", interval_start=start, interval_end=end, trigger="backfill",
                     status=status, started_at=start if early else end, host="elsewhere")


def test_cell_states_name_crashes_and_partial_loads() -> None:
    day = datetime(2026, 3, 1, tzinfo=UTC)
    interval = bf.Interval(day, day + timedelta(days=1))
    assert data.cell_state(bf.History([run("success", day)]).coverage(interval)) == "done"
    assert data.cell_state(bf.History([run("failed", day)]).coverage(interval)) == "failed"
    assert data.cell_state(bf.History([run("crashed", day)]).coverage(interval)) == "crashed"
    assert data.cell_state(bf.History([run("success", day, hours=6)]).coverage(interval)) == "incomplete"
    assert data.cell_state(bf.History([run("success", day, early=True)]).coverage(interval)) == "incomplete"
    assert data.cell_state(bf.History([run("running", day)]).coverage(interval)) == "running"  # other host
    assert data.cell_state(bf.History([]).coverage(interval)) == "missing"


def test_metrics_text_for_a_failed_and_a_never_run_pipeline() -> None:
    from core.models import PipelineEntry
    from pipelines.pipeline_registry import PipelineSpec

    spec = PipelineSpec("orders", PipelineEntry(pipeline=object()), "x.py")
    failed = run("failed", datetime(2026, 3, 1, tzinfo=UTC)).model_copy(update={"rows_loaded": 0,
                                                                                 "duration_seconds": 1.5})
    from record.totals import Totals

    totals = Totals(runs={"failed": 3}, duration_sum=4.5, duration_buckets=[0, 3, 3, 3, 3, 3, 3, 3])
    rows = [data.PipelineRow(spec, None, failed, data.Freshness("never"), totals=totals),
            data.PipelineRow(PipelineSpec("idle", PipelineEntry(pipeline=object()), "x.py"), None, None,
                             data.Freshness("n/a"))]
    text = metrics.render(rows, datetime.now(UTC), store_busy=False).decode()
    assert 'dp_pipeline_last_run_status{pipeline="orders",status="failed"} 1.0' in text
    assert 'dp_pipeline_last_run_status{pipeline="orders",status="success"} 0.0' in text
    assert 'dp_pipeline_last_run_duration_seconds{pipeline="orders"} 1.5' in text
    assert 'dp_pipeline_runs_total{pipeline="orders",status="failed"} 3.0' in text
    assert 'dp_pipeline_runs_total{pipeline="idle",status="failed"} 0.0' in text
    assert 'dp_pipeline_run_duration_seconds_bucket{le="1",pipeline="orders"} 0.0' in text
    assert 'dp_pipeline_run_duration_seconds_bucket{le="5",pipeline="orders"} 3.0' in text
    assert 'dp_pipeline_run_duration_seconds_sum{pipeline="orders"} 4.5' in text
    assert 'last_run_status{pipeline="idle"' not in text
    assert "dp_ui_snapshot_age_seconds 0.0" in text


def test_a_check_failing_on_an_open_failure_is_not_hidden_by_a_later_pass() -> None:
    from audit.results import CheckResult
    from core.models import PipelineEntry
    from pipelines.pipeline_registry import PipelineSpec
    from runner.status import PipelineStatus

    day = datetime(2026, 3, 1, tzinfo=UTC)

    def result(run_id: str, status: str, failing: int) -> CheckResult:
        return CheckResult(run_id, "orders", day, day, "not_null(id)", "not_null", "error", status, failing, [], "",
                           0.1, "", day)

    status = PipelineStatus("orders", "data", day, day, day, True, "rule",
                            failing_checks=(result("r1", "fail", 4),))
    spec = PipelineSpec("orders", PipelineEntry(pipeline=object()), "x.py")
    row = data.PipelineRow(spec, None, None, data.Freshness("fresh"), status=status,
                           checks=[result("r2", "pass", 0)])  # the newest checked run passed
    text = metrics.render([row], datetime.now(UTC), store_busy=False).decode()
    assert 'dp_check_passing{check="not_null(id)",pipeline="orders",severity="error"} 0.0' in text
    assert 'dp_check_failing_rows{check="not_null(id)",pipeline="orders"} 4.0' in text
    assert "dp_pipeline_open_failures{pipeline=\"orders\"} 0.0" in text
