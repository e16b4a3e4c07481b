"""Status on the data (issue 25 §1, §2, §5): freshness, open failures, waivers, check's exit codes
and per-interval alerts, through the real CLI against the real store."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conftest import rows, run_cli
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


def test_a_later_day_does_not_heal_a_failed_one(project, db) -> None:
    """Issue 25: a day failed a data check, a later day succeeded: the webhook said ``recovered``
    and check's failing checks said none, while the failed day is still unpublished. Now the day
    stays an open failure (check names it with the command that heals it, exit 3), until that day
    is loaded; check --alert reminds of it, in one message listing every open interval."""
    with webhook() as (receiver, url):
        env = {"ALERT_WEBHOOK_URL": url}
        assert run_cli("cron_run", "weather", "--date", "2026-03-10", env={**env, "BAD_ID": "1"}).returncode == 1
        assert run_cli("cron_run", "weather", "--date", "2026-03-11", env=env).returncode == 0
        code, checks = check()
        assert checks["open:weather"]["status"] == "fail"
        assert "2026-03-10 (check_failed, run " in checks["open:weather"]["detail"]
        assert "./run.sh backfill weather --start 2026-03-10 --end 2026-03-10 --rerun failed" in \
            checks["open:weather"]["detail"]
        assert "range(id) failed (error)" in checks["checks:weather"]["detail"]
        assert code == 3 and checks["status"]["detail"].startswith(("read from embedded chdb://", "read from http"))
        assert kinds(receiver) == ["check_failed"], receiver.posts
        assert len(rows(db, "SELECT run_id FROM _dp_runs FINAL WHERE reason = 'check_failed'")) == 1
        # Two more days fail: check --alert reminds once, one message with the three open intervals.
        for day in ("2026-03-12", "2026-03-13"):
            assert run_cli("cron_run", "weather", "--date", day, env={**env, "FAIL": "1"}).returncode == 1
        assert kinds(receiver) == ["check_failed"]
        reminded = run_cli("check", "--alert", "--quiet", env={**env, "ALERT_REMIND_HOURS": "0.0001",
                                                                "CRONTAB_COMMAND": NO_CRON})
        assert reminded.returncode == 3
        failing = [p for p in receiver.posts if p["kind"] == "run_failed"]
        assert len(failing) == 1 and failing[0]["summary"].startswith("still failing: 3 open failure(s): 2026-03-10 ")
        assert [f["interval"] for f in failing[0]["details"]["open_failures"]] == [
            "2026-03-10", "2026-03-12", "2026-03-13"]
        # Loading the failed days (the command check gave) heals them: only then "recovered".
        healed = run_cli("backfill", "weather", "--start", "2026-03-10", "--end", "2026-03-12", "--rerun", "failed",
                         env=env)
        assert healed.returncode == 0, healed.stderr
        assert run_cli("cron_run", "weather", "--date", "2026-03-13", env=env).returncode == 0
        assert kinds(receiver)[-1] == "recovered" and receiver.posts[-1]["interval"] == "2026-03-13"
        code, checks = check()
        assert "open:weather" not in checks and "checks:weather" not in checks


def test_waive_closes_an_open_failure_and_old_stores_get_the_table(project, db) -> None:
    """waive records who and why; a store made before _dp_waivers existed gets it in place."""
    assert run_cli("cron_run", "snap", env={"FAIL": "1"}).returncode == 1
    assert run_cli("cron_run", "weather", "--date", "2026-03-10", env={"FAIL": "1"}).returncode == 1
    rows(db, "DROP TABLE _dp_waivers")  # the store as older code made it
    refused = run_cli("waive", "weather", "--date", "2026-03-11", "--reason", "gone")
    assert refused.returncode == 2
    assert "No open failure of 'weather' in 2026-03-11..2026-03-11 to waive (open failures: 2026-03-10)" in \
        refused.stderr
    for bad, message in ((["--reason", " "], "--reason must say why"),
                         (["--reason", "x"], "Which interval of 'weather'?"),
                         (["--date", "2026-03-10", "--start", "2026-03-10", "--reason", "x"], "not both"),
                         (["--start", "2026-03-10", "--end", "2026-03-09", "--reason", "x"], "is before --start")):
        result = run_cli("waive", "weather", *bad)
        assert result.returncode == 2 and message in result.stderr, (bad, result.stderr)
    assert "is not interval-aware" in run_cli("waive", "snap", "--date", "2026-03-10", "--reason", "x").stderr
    waived = run_cli("waive", "weather", "--date", "2026-03-10", "--reason", "the source lost that day")
    assert waived.returncode == 0, waived.stderr
    assert "waived weather 2026-03-10 (error, run " in waived.stdout and "none left" in waived.stdout
    assert run_cli("waive", "snap", "--reason", "api retired").returncode == 0
    assert rows(db, "SELECT pipeline, reason FROM _dp_waivers ORDER BY pipeline") == [
        ("snap", "api retired"), ("weather", "the source lost that day")]
    _, checks = check()
    assert "open:weather" not in checks and "open:snap" not in checks
    # A new failure of the waived day opens it again.
    assert run_cli("cron_run", "weather", "--date", "2026-03-10", env={"FAIL": "1"}).returncode == 1
    _, checks = check()
    assert checks["open:weather"]["detail"].startswith("1 open failure(s): 2026-03-10 (error, run ")


def _spec(name: str, schedule: str | None, aware: bool = True, **entry):
    from types import SimpleNamespace

    from core.models import PipelineEntry
    from pipelines.pipeline_registry import PipelineSpec

    return PipelineSpec(name, PipelineEntry(pipeline=SimpleNamespace(interval_aware=aware), schedule=schedule,
                                            timezone="UTC", **entry), "test")


def _run(store, pipeline: str, day: str, status: str = "success", started: datetime | None = None,
         reason: str = "", error: str = "", hours: int = 24) -> str:
    from core.models import RunRecord
    from record.coverage import record_coverage
    from record.history import record_run

    start = datetime.fromisoformat(day).replace(tzinfo=UTC)
    started = started or start + timedelta(hours=hours, minutes=5)
    run_id = f"{pipeline}-{day}-{status}-{started:%H%M%S%f}"
    end = start + timedelta(hours=hours)
    record = RunRecord(run_id=run_id, pipeline=pipeline, interval_start=start, interval_end=end,
                       trigger="cron", status=status, reason=reason, error=error, started_at=started,
                       finished_at=started + timedelta(seconds=3), rows_loaded=2 if status == "success" else 0)
    record_run(store, record)
    record_coverage(store, record)
    return run_id


def test_pipeline_statuses_from_the_store(store) -> None:
    """Freshness on data, open failures (healed, re-failed, waived), upstream and failing checks, as
    one read of the store: the module every surface uses. Days relative to today (the run history
    has a TTL); ``today`` plays 2026-03-11, 05:00 the moment asked about."""
    from audit.results import CheckResult, write_results
    from record.tables import ensure_framework_tables
    from record.waivers import record_waiver
    from runner.status import pipeline_statuses

    ensure_framework_tables(store)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)

    def day(n: int) -> str:
        return f"{today - timedelta(days=n):%Y-%m-%d}"

    def at(n: int, hour: int, minute: int = 0) -> datetime:
        return today - timedelta(days=n) + timedelta(hours=hour, minutes=minute)

    now = at(0, 5)
    for n in (3, 2):
        _run(store, "d", day(n))
    _run(store, "d", day(4), "failed", reason="error", error="RuntimeError: down\ntraceback")
    _run(store, "d", day(4), started=at(2, 9))   # healed by a later success
    _run(store, "d", day(5), "crashed", reason="process gone")
    record_waiver(store, "d", at(5, 0), at(4, 0), "gone for good")
    failed = _run(store, "d", day(1), "failed", reason="check_failed", error="CheckFailed: range(id)")
    refailed = _run(store, "d", day(1), "failed", reason="check_failed", error="CheckFailed: range(id) again",
                    started=at(0, 2))
    _run(store, "d", day(0), started=at(0, 4))  # the day in progress: incomplete
    _run(store, "d", "2009-06-02", started=at(0, 4, 30))  # an old manual run
    write_results(store, [CheckResult(refailed, "d", at(1, 0), at(0, 0), "range(id)", "range", "error", "fail", 1,
                                      [], "1 failing row(s)", 0.1, "", at(0, 2))])
    _run(store, "u", day(2))
    _run(store, "n", day(0), started=now - timedelta(hours=1), hours=1)
    for minutes in (30, 20):
        _run(store, "n", day(0), "failed", reason="timeout", started=now - timedelta(minutes=minutes), hours=1)
    specs = [_spec("d", "0 * * * *"), _spec("u", "0 * * * *", depends_on=["d"]),
             _spec("n", "*/5 * * * *", aware=False), _spec("idle", None)]
    statuses = pipeline_statuses(store, specs, now)

    d = statuses["d"]
    assert (d.freshness_basis, d.data_until, d.expected_until, d.fresh) == ("data", at(1, 0), at(0, 0), False)
    assert d.last_success == at(0, 4, 30)  # the 2009 run: a success, not fresh data
    assert [(f.label, f.kind, f.run_id, f.runs, f.message) for f in d.open_failures] == [
        (day(1), "check_failed", refailed, 2, "CheckFailed: range(id) again")]
    assert failed != refailed and [c.check_name for c in d.failing_checks] == ["range(id)"]
    u = statuses["u"]
    assert (u.fresh, u.behind_upstream, u.open_failures) == (False, ("d",), ())
    n = statuses["n"]
    assert (n.freshness_basis, n.fresh, n.last_success) == ("last_success", False, now - timedelta(hours=1))
    assert [(f.kind, f.runs, f.interval_aware) for f in n.open_failures] == [("timeout", 2, False)]
    idle = statuses["idle"]
    assert (idle.fresh, idle.expected_until, idle.data_until, idle.open_failures) == (True, None, None, ())

    # Loading day(1) heals it and makes d fresh; a waiver made before a failure does not close it.
    _run(store, "d", day(1), started=at(0, 4, 45))
    _run(store, "d", day(5), "failed", started=datetime.now(UTC))  # after the waiver
    d = pipeline_statuses(store, specs, now)["d"]
    assert d.fresh and d.data_until == at(0, 0)
    assert [f.label for f in d.open_failures] == [day(5)]


CHAIN = textwrap.dedent('''
    import pyarrow as pa
    from pipelines.interfaces import Extractor
    from pipelines.pipeline_factory import create_el_pipeline
    from pipelines.tools.extractors.sql_source import create_sql_pipeline
    from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader

    class Raw(Extractor):
        interval_aware = True
        def extract(self, context):
            yield pa.table({"ts": pa.array([context.start], pa.timestamp("ms", tz="UTC")), "v": [1]})

    DAILY = "SELECT toDate(ts) AS day, count() AS n FROM raw_t WHERE ts >= {start} AND ts < {end} GROUP BY day"

    PIPELINE_REGISTRY = {
        "raw": {"pipeline": create_el_pipeline(Raw(), create_clickhouse_loader("raw_t", time_column="ts"), "raw"),
                "schedule": "0 * * * *"},
        "daily": {"pipeline": create_sql_pipeline(DAILY, create_clickhouse_loader("daily_t", mode="interval",
                                                                                   time_column="day"), name="daily"),
                  "depends_on": ["raw"], "schedule": "0 * * * *"},
    }
''')


def test_a_sql_pipeline_behind_because_of_its_upstream_says_so(pipelines_dir: Path) -> None:
    (pipelines_dir / "chain_pipeline.py").write_text(CHAIN)
    today = datetime.now(UTC).date()
    if datetime.now(UTC).hour < 2:
        pytest.skip("before 02:00 UTC the day before yesterday is what an hourly-fired daily pipeline owes")
    old = f"{today - timedelta(days=3)}"
    assert run_cli("cron_run", "raw", "--date", old).returncode == 0  # runs daily after it (depends_on)
    _, checks = check()
    assert checks["fresh:raw"]["detail"].startswith("stale: data loaded up to ")
    assert "behind because upstream" not in checks["fresh:raw"]["detail"]
    assert "; behind because upstream raw is behind; see ./run.sh backfill_list daily" in \
        checks["fresh:daily"]["detail"]
    yesterday = f"{today - timedelta(days=1)}"
    assert run_cli("cron_run", "raw", "--date", yesterday).returncode == 0
    code, checks = check()
    assert checks["fresh:raw"]["status"] == checks["fresh:daily"]["status"] == "ok", checks
    assert checks["fresh:daily"]["detail"] == f"data loaded up to {today} 00:00 UTC"
