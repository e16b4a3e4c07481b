"""Status on the data (issue 25 §1, §2, §5): freshness, open failures, waivers, check's exit codes
and per-interval alerts, through the real CLI against the real store."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from conftest import run_cli
from integration.test_alerts import kinds, webhook

MODULE = textwrap.dedent('''
    import os
    from datetime import timedelta
    import pyarrow as pa
    from audit import in_range
    from pipelines.interfaces import Extractor
    from pipelines.pipeline_factory import create_el_pipeline
    from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader

    class Feed(Extractor):
        interval_aware = True
        def extract(self, context):
            if os.environ.get("FAIL"):
                raise RuntimeError("source is down")
            ids = [1, 1000] if os.environ.get("BAD_ID") else [1, 2]
            ts = [context.start + timedelta(hours=h) for h in range(len(ids))]
            yield pa.table({"ts": pa.array(ts, pa.timestamp("ms", tz="UTC")), "id": pa.array(ids, pa.int64())})

    class Snapshot(Extractor):
        def extract(self, context):
            if os.environ.get("FAIL"):
                raise RuntimeError("api is down")
            yield pa.table({"n": pa.array([1], pa.int64())})

    def feed(table, **checks):
        return create_el_pipeline(Feed(), create_clickhouse_loader(table, time_column="ts"), table)

    PIPELINE_REGISTRY = {
        "ohlc": {"pipeline": feed("ohlc_t"), "schedule": "0 2 * * *"},
        "weather": {"pipeline": feed("weather_t"), "schedule": "0 * * * *",
                    "checks": [in_range("id", max=100)]},
        "snap": {"pipeline": create_el_pipeline(Snapshot(), create_clickhouse_loader("snap_t"), "snap_t"),
                 "schedule": "*/5 * * * *"},
    }
''')
NO_CRON = "/nonexistent/crontab"


@pytest.fixture
def project(pipelines_dir: Path, project_env: dict[str, str]) -> dict[str, str]:
    (pipelines_dir / "status_pipeline.py").write_text(MODULE)
    return project_env


def check(*args: str, **env: str) -> tuple[int, dict[str, dict]]:
    result = run_cli("check", "--json", *args, env={"CRONTAB_COMMAND": NO_CRON, **env})
    return result.returncode, {c["name"]: c for c in json.loads(result.stdout)["checks"]}


def test_an_old_manual_run_never_makes_a_pipeline_fresh(project) -> None:
    """Issue 25: ``cron_run ohlc --date 2009-06-02`` made check say ``fresh:ohlc OK last success``."""
    assert run_cli("cron_run", "ohlc", "--date", "2009-06-02").returncode == 0
    _, checks = check()
    assert checks["fresh:ohlc"]["status"] == "fail", checks["fresh:ohlc"]
    assert checks["fresh:ohlc"]["detail"].startswith("stale: data loaded up to 2009-06-03 00:00 UTC")


def test_a_later_day_does_not_heal_a_failed_one(project) -> None:
    """Issue 25: a day failed a data check, a later day succeeded: the webhook said ``recovered``
    and check's failing checks said none, while the failed day is still unpublished."""
    with webhook() as (receiver, url):
        env = {"ALERT_WEBHOOK_URL": url}
        assert run_cli("cron_run", "weather", "--date", "2026-03-10", env={**env, "BAD_ID": "1"}).returncode == 1
        assert run_cli("cron_run", "weather", "--date", "2026-03-11", env=env).returncode == 0
        assert kinds(receiver) == ["check_failed"], receiver.posts
        code, checks = check()
        assert checks["open:weather"]["status"] == "fail"
        assert "2026-03-10 (check_failed, run " in checks["open:weather"]["detail"]
        assert "./run.sh backfill weather --start 2026-03-10 --end 2026-03-10 --rerun failed" in \
            checks["open:weather"]["detail"]
        assert "range(id)" in checks["checks:weather"]["detail"]
        assert code == 3
