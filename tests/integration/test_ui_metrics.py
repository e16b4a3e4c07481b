"""``/metrics`` as Prometheus reads it (issue 25 §3): real runs, a real page over HTTP, ``promtool``.

The alert rules are the ones docs/ui.md documents (read from it), evaluated by ``promtool test
rules`` on series scraped from the page. In server mode the project uses the session's
ClickHouse server (a database of its own).
"""

from __future__ import annotations

import re
import subprocess
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from ui_project import Project, UiServer, build_runs, day

from conftest import ROOT, SERVER_MODE, require_tool

pytestmark = pytest.mark.slow

LATE = textwrap.dedent('''
    PIPELINE_REGISTRY["late"] = {"pipeline": create_el_pipeline(Days(), loader("late_t"), "late"),
                                 "schedule": "0 2 * * *"}
''')


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Project]:
    """``days`` loaded up to today, ``flaky`` with an open failure and a failing check, ``late``
    loaded up to 3 days ago, ``never`` never run."""
    extra: dict[str, str] = {}
    if SERVER_MODE:
        server = request.getfixturevalue("clickhouse_server")
        extra = server.client_env("t_ui_metrics")
    project = Project(tmp_path_factory.mktemp("ui-metrics"), UI_PASSWORD="", **extra)
    module = project.root / "pipelines" / "ui_test_pipeline.py"
    module.write_text(module.read_text() + LATE)
    build_runs(project)
    late = project.cli("cron_run", "late", "--date", day(4))
    assert late.returncode == 0, late.stdout + late.stderr
    yield project
    if SERVER_MODE:
        client = server.client()
        client.command("DROP DATABASE IF EXISTS t_ui_metrics SYNC")
        client.close()


@pytest.fixture(scope="module")
def server(project: Project) -> Iterator[UiServer]:
    ui = UiServer(project)
    yield ui
    ui.stop()


def value(text: str, series: str) -> float:
    found = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    assert found, f"{series} not in the scrape"
    return float(found.group(1))


def sql(project: Project, statement: str) -> None:
    done = project.cli("sql", "--write", statement)
    assert done.returncode == 0, done.stderr


def test_status_and_check_series(server: UiServer) -> None:
    text = server.get("/metrics").text
    today = datetime.fromisoformat(day(0)).replace(tzinfo=UTC).timestamp()
    assert value(text, 'dp_pipeline_data_until_timestamp_seconds{pipeline="days"}') == today
    assert value(text, 'dp_pipeline_data_until_timestamp_seconds{pipeline="late"}') == today - 3 * 86400
    assert 'dp_pipeline_data_until_timestamp_seconds{pipeline="never"}' not in text
    assert value(text, 'dp_pipeline_last_success_timestamp_seconds{pipeline="flaky"}') > today
    assert value(text, 'dp_pipeline_open_failures{pipeline="flaky"}') == 1.0
    assert value(text, 'dp_pipeline_open_failures{pipeline="days"}') == 0.0
    assert value(text, 'dp_check_passing{check="few_rows",pipeline="flaky",severity="warn"}') == 0.0
    assert value(text, 'dp_check_failing_rows{check="few_rows",pipeline="flaky"}') == 1.0


def alert_rules() -> dict[str, object]:
    """The rules block of docs/ui.md."""
    doc = (ROOT / "docs" / "ui.md").read_text()
    block = re.search(r"```yaml\n(groups:.*?)```", doc, re.S)
    assert block, "docs/ui.md has no rules block"
    return yaml.safe_load(block.group(1))


def test_documented_alert_rules_fire_where_they_should(server: UiServer, tmp_path: Path) -> None:
    """Each rule of docs/ui.md, on this store's scrape at today 00:00 UTC: ``late`` (data 3 days
    old) is not fresh, ``flaky`` has an open failure and a failing check, ``days`` fires nothing."""
    from prometheus_client.parser import text_string_to_metric_families

    promtool = require_tool("promtool")
    text = server.get("/metrics").text
    today = int(datetime.fromisoformat(day(0)).replace(tzinfo=UTC).timestamp() // 86400)
    series = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            series.append({"series": f"{sample.name}{{{labels}}}", "values": f"_x{today} {sample.value}"})
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(alert_rules()))
    expected = {
        "PipelineNotFresh": [{"exp_labels": {"pipeline": "late"}}],
        "PipelineOpenFailures": [{"exp_labels": {"pipeline": "flaky"}}],
        "PipelineCheckFailing": [{"exp_labels": {"pipeline": "flaky", "check": "few_rows", "severity": "warn"}}],
    }
    names = {rule["alert"] for group in alert_rules()["groups"] for rule in group["rules"]}  # type: ignore[index]
    assert names == set(expected)
    tests = {"rule_files": ["rules.yml"], "evaluation_interval": "1d", "tests": [{
        "interval": "1d", "input_series": series,
        "alert_rule_test": [{"eval_time": f"{today}d", "alertname": name, "exp_alerts": alerts}
                            for name, alerts in expected.items()]}]}
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(tests))
    result = subprocess.run([promtool, "test", "rules", "tests.yml"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# last: it expires history (the other tests read the open failure from it)
def test_counters_pass_promtool_and_never_go_down(project: Project, server: UiServer) -> None:
    """History expiry and a page restart leave the run counters as they were; a store without the
    totals table (older code) gets it, filled from the history it still has."""
    promtool = require_tool("promtool")
    ui = server  # stopped below: a new page must count the same
    try:
        text = ui.get("/metrics").text
        checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        failed = 'dp_pipeline_runs_total{pipeline="flaky",status="failed"}'
        days_ok = 'dp_pipeline_runs_total{pipeline="days",status="success"}'
        assert (value(text, failed), value(text, days_ok)) == (1.0, 5.0)
        assert value(text, 'dp_pipeline_rows_loaded_total{pipeline="days"}') == 30.0
        assert value(text, 'dp_pipeline_run_duration_seconds_count{pipeline="days"}') == 5.0
        assert value(text, 'dp_pipeline_run_duration_seconds_bucket{le="+Inf",pipeline="flaky"}') == 2.0
        assert value(text, 'dp_pipeline_runs_total{pipeline="never",status="success"}') == 0.0
        # a store from before the totals table: set up again, it counts the history it has
        sql(project, "DROP TABLE _dp_run_totals")
        assert project.cli("runs").returncode == 0
        assert value(ui.get("/metrics").text, failed) == 1.0
        # the history of flaky's failure and of every run of days expires (what the TTL does)
        sql(project, "ALTER TABLE _dp_runs DELETE WHERE pipeline = 'days' OR status = 'failed' "
                     "SETTINGS mutations_sync = 2")
        assert not [r for r in project.runs() if r["pipeline"] == "days"]
        after = ui.get("/metrics").text
    finally:
        ui.stop()
    restarted = UiServer(project)
    try:
        again = restarted.get("/metrics").text
    finally:
        restarted.stop()
    for scrape in (after, again):
        assert (value(scrape, failed), value(scrape, days_ok)) == (1.0, 5.0)
        assert value(scrape, 'dp_pipeline_rows_loaded_total{pipeline="days"}') == 30.0
