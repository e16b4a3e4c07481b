"""``check``: broken pipeline modules and data freshness, against the real run history."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conftest import run_cli
from core.models import RunRecord
from core.store import Store

MODULE = textwrap.dedent('''
    import pyarrow as pa
    from pipelines.interfaces import Extractor
    from pipelines.pipeline_factory import create_el_pipeline
    from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader

    class Rows(Extractor):
        def extract(self, context):
            yield pa.table({"n": [1]})

    def pipe(table):
        return create_el_pipeline(Rows(table), create_clickhouse_loader(table), table)

    PIPELINE_REGISTRY = {
        "daily": {"pipeline": pipe("daily_t"), "schedule": "0 2 * * *"},
        "hourly": {"pipeline": pipe("hourly_t"), "schedule": "0 * * * *", "freshness_hours": 2},
        "never": {"pipeline": pipe("never_t"), "schedule": "0 3 * * *"},
        "manual": {"pipeline": pipe("manual_t")},
        "paused": {"pipeline": pipe("paused_t"), "schedule": "0 4 * * *", "enabled": False},
    }
''')


def _success(store: Store, pipeline: str, started: datetime, status: str = "success") -> None:
    from record.history import record_run

    record_run(store, RunRecord(run_id=f"{started:%Y%m%dT%H%M%S}-{pipeline}", pipeline=pipeline, trigger="cron",
                                status=status, interval_start=started, interval_end=started + timedelta(days=1),
                                started_at=started, finished_at=started + timedelta(seconds=5), rows_loaded=7))


def _checks(**env: str) -> tuple[int, dict[str, dict]]:
    result = run_cli("check", "--json", env=env or None)
    report = json.loads(result.stdout)
    return result.returncode, {c["name"]: c for c in report["checks"]}


@pytest.fixture
def module(pipelines_dir: Path, tmp_path: Path) -> Path:
    (pipelines_dir / "test_pipeline.py").write_text(MODULE)
    return pipelines_dir


def test_freshness_per_schedule_and_override(module: Path, store: Store, tmp_path: Path) -> None:
    from record.tables import ensure_framework_tables

    ensure_framework_tables(store)
    now = datetime.now(UTC)
    _success(store, "daily", now - timedelta(hours=47))     # within two daily periods
    _success(store, "hourly", now - timedelta(hours=3))     # freshness_hours 2: stale
    _success(store, "hourly", now - timedelta(minutes=10), status="failed")  # failures do not count
    _success(store, "paused", now - timedelta(days=30))
    store.close()
    no_cron = {"CRONTAB_COMMAND": str(tmp_path / "none")}
    code, checks = _checks(**no_cron)
    assert code == 3  # only the data needs attention (1 is a broken set-up)
    assert checks["fresh:daily"]["status"] == "ok"
    assert checks["fresh:daily"]["detail"].startswith("last success 47.0 h ago")
    assert checks["fresh:hourly"]["status"] == "fail"
    assert checks["fresh:hourly"]["detail"].startswith("stale: last success ")
    assert checks["fresh:hourly"]["detail"].startswith("stale: last success 3.0 h ago (")
    assert "not interval-aware, so freshness is the last success" in checks["fresh:hourly"]["detail"]
    # The failed run after the last success is an open failure until a run succeeds.
    assert checks["open:hourly"]["detail"].startswith("1 open failure(s): failed runs up to ")
    assert "-> ./run.sh cron_run hourly" in checks["open:hourly"]["detail"]
    assert "(freshness: freshness_hours 2); see ./run.sh runs hourly" in checks["fresh:hourly"]["detail"]
    assert checks["fresh:never"] == {"name": "fresh:never", "status": "warn",
                                     "detail": "never ran successfully "
                                               "(freshness: two periods of '0 3 * * *' = 2.0 days)"}
    assert "fresh:manual" not in checks and "fresh:paused" not in checks
    assert checks["pipelines"] == {"name": "pipelines", "status": "ok",
                                   "detail": "5 pipeline(s) import, 3 scheduled"}
    human = run_cli("check", env=no_cron)
    # Piped: the checks as TSV on stdout, the verdict on stderr.
    assert human.returncode == 3 and "fresh:hourly" in human.stdout and "data needs attention" in human.stderr

    fresh = Store(store.settings, linger=0)
    _success(fresh, "hourly", now - timedelta(minutes=5))
    fresh.close()
    code, checks = _checks(**no_cron)
    assert code == 0 and checks["fresh:hourly"]["status"] == "ok" and "open:hourly" not in checks


def test_two_periods_follow_irregular_schedules() -> None:
    from pipelines.pipeline_registry import PipelineSpec
    from runner.status import tolerance

    class Entry:
        schedule, timezone, freshness_hours = "0 9 * * 1-5", "UTC", None

    spec = PipelineSpec.__new__(PipelineSpec)
    spec.entry = Entry()  # type: ignore[assignment]
    monday = datetime(2026, 1, 19, 10, 0, tzinfo=UTC)
    allowed, rule = tolerance(spec, monday)
    # Fired Monday 09:00 and, before that, Friday 09:00: a period of 72 h, so 144 h are fine.
    assert monday - allowed == datetime(2026, 1, 13, 10, 0, tzinfo=UTC)
    assert rule == "two periods of '0 9 * * 1-5' = 6.0 days"
    allowed, _ = tolerance(spec, monday + timedelta(days=1))  # Tuesday: a 24 h period
    assert monday + timedelta(days=1) - allowed == datetime(2026, 1, 18, 10, 0, tzinfo=UTC)


def test_broken_module_and_no_database(module: Path, tmp_path: Path) -> None:
    (module / "bad_pipeline.py").write_text("def broken(:\n")
    code, checks = _checks(CRONTAB_COMMAND=str(tmp_path / "none"))
    assert code == 1
    assert checks["pipelines"]["status"] == "fail"
    assert checks["pipelines"]["detail"].startswith("1 broken: ")
    assert "bad_pipeline.py:1: SyntaxError" in checks["pipelines"]["detail"]
    assert checks["freshness"] == {"name": "freshness", "status": "warn",
                                   "detail": "no database yet, so no runs: run ./run.sh setup_db"}
