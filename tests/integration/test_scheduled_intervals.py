"""Which intervals a run is responsible for (issue 10), end to end through the real CLI.

Scheduled runs process every complete interval that ended in (previous fire, this fire]; a
person's ``cron_run`` takes the last complete interval; a success that started before its
interval ended is *incomplete* and never counts as done; ``lookback`` re-loads late data; an
empty extract never silently wipes rows. Everything runs on the embedded engine in new processes.
"""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conftest import rows, run_cli
from core.store import Store

MODULE = textwrap.dedent('''
    import json, os
    from datetime import datetime, timedelta
    import pyarrow as pa
    from pipelines.interfaces import Extractor
    from pipelines.pipeline_factory import create_el_pipeline
    from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader
    from pipelines.tools.loaders.console_loader import create_console_loader

    class Every(Extractor):
        """One row every STEP minutes of the run's interval (none with EMPTY=1)."""
        interval_aware = True
        def extract(self, context):
            if os.environ.get("EMPTY"):
                return
            step = timedelta(minutes=int(os.environ.get("STEP", "60")))
            ts, t = [], context.start
            while t < context.end:
                ts.append(t)
                t += step
            yield pa.table({"ts": pa.array(ts, pa.timestamp("ms", tz="UTC")), "v": list(range(len(ts)))})

    class Source(Extractor):
        """Rows of a JSON file (a list of ISO times) inside the run's interval: late rows can be added."""
        interval_aware = True
        def extract(self, context):
            times = [datetime.fromisoformat(t) for t in json.loads(open(os.environ["SOURCE"]).read())]
            ts = [t for t in times if context.start <= t < context.end]
            yield pa.table({"ts": pa.array(ts, pa.timestamp("ms", tz="UTC"))})

    class Now(Extractor):
        """Not interval-aware: whatever the source has now."""
        def extract(self, context):
            yield pa.table({"n": [1, 2, 3]})

    def interval(table, extractor=None):
        return create_el_pipeline(extractor or Every("every"), create_clickhouse_loader(table, time_column="ts"), table)

    PIPELINE_REGISTRY = {
        "daily": {"pipeline": interval("daily_t"), "schedule": "0 3 * * *", "timezone": "UTC"},
        "hourly_fires": {"pipeline": interval("hourly_fires_t"), "schedule": "0 * * * *", "timezone": "UTC"},
        "hours": {"pipeline": interval("hours_t"), "schedule": "5 0 * * *", "timezone": "UTC",
                  "granularity": "hour"},
        "auckland": {"pipeline": interval("auckland_t"), "schedule": "0 1 * * *",
                     "timezone": "Pacific/Auckland"},
        "console": {"pipeline": create_el_pipeline(Now("now"), create_console_loader("out"), "console"),
                    "schedule": "0 3 * * *", "timezone": "UTC"},
        "late": {"pipeline": interval("late_t", Source("source")), "schedule": "0 3 * * *", "timezone": "UTC",
                 "lookback": 2},
        "refresher": {"pipeline": interval("refresher_t"), "schedule": "*/10 * * * *", "timezone": "UTC",
                      "refresh_current": True},
        "guarded": {"pipeline": interval("guarded_t")},
        "empty_ok": {"pipeline": interval("empty_ok_t"), "allow_empty": True},
        "snapshot": {"pipeline": create_el_pipeline(Every("every"), create_clickhouse_loader("snapshot_t",
                                                                                                mode="replace"),
                                                    "snapshot")},
    }
    if os.environ.get("ONLY"):  # the scheduler fires only the pipeline a test is about
        PIPELINE_REGISTRY = {k: v for k, v in PIPELINE_REGISTRY.items() if k == os.environ["ONLY"]}
''')


@pytest.fixture
def module(pipelines_dir: Path) -> Path:
    (pipelines_dir / "test_pipeline.py").write_text(MODULE)
    return pipelines_dir


def runs_of(pipeline: str) -> list[dict]:
    result = run_cli("runs", pipeline, "--json", "--limit", "1000")
    assert result.returncode == 0, result.stderr
    return sorted(json.loads(result.stdout), key=lambda r: (r["interval_start"], r["started_at"]))


def intervals(pipeline: str) -> list[tuple[str, str]]:
    return [(r["interval_start"][:16], r["interval_end"][:16]) for r in runs_of(pipeline)]


def once(pipeline: str, now: str, **env: str) -> str:
    result = run_cli("scheduler", "--once", "--now", now, env={"ONLY": pipeline, **env})
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_daily_schedule_daily_intervals_loads_yesterday_whole(module: Path, db: Store) -> None:
    once("daily", "2026-03-02T03:00:20Z")
    assert intervals("daily") == [("2026-03-01T00:00", "2026-03-02T00:00")]
    run = runs_of("daily")[0]
    assert run["status"] == "success" and run["trigger"] == "scheduler" and run["rows_loaded"] == 24
    assert run["incomplete"] is False
    assert rows(db, "SELECT count(), min(ts), max(ts) FROM daily_t")[0][0] == 24


def test_hourly_schedule_daily_intervals_loads_yesterday_once_after_midnight(module: Path) -> None:
    once("hourly_fires", "2026-03-02T00:00Z")
    assert intervals("hourly_fires") == [("2026-03-01T00:00", "2026-03-02T00:00")]
    output = once("hourly_fires", "2026-03-02T01:00Z")
    assert "hourly_fires: exit 0" in output
    assert len(runs_of("hourly_fires")) == 1  # the other fires of the day have nothing to do
    quiet = run_cli("cron_run", "hourly_fires", "--trigger", "scheduler", "--fired-at", "2026-03-02T13:00Z")
    assert quiet.returncode == 0, quiet.stderr
    assert "hourly_fires: no complete interval ended in (2026-03-02 12:00, 2026-03-02 13:00] UTC; nothing to do" \
        in quiet.stdout


def test_daily_schedule_hourly_intervals_loads_the_24_hours_each_as_its_own_run(module: Path, db: Store) -> None:
    once("hours", "2026-03-02T00:05Z")
    runs = runs_of("hours")
    assert [r["interval_start"][:16] for r in runs] == [f"2026-03-01T{h:02d}:00" for h in range(24)]
    assert len({r["run_id"] for r in runs}) == 24 and all(r["status"] == "success" for r in runs)
    assert all(r["interval_end"][:16] == (datetime.fromisoformat(r["interval_start"]) + timedelta(hours=1))
               .strftime("%Y-%m-%dT%H:%M") for r in runs)
    assert rows(db, "SELECT count() FROM hours_t")[0][0] == 24


def test_time_zone_moves_the_fire_time_not_the_utc_interval(module: Path) -> None:
    # 01:00 on 2 March in Auckland (NZDT, UTC+13) is 12:00 UTC on 1 March: the UTC day 28 Feb has ended.
    once("auckland", "2026-03-02T01:00+13:00")
    assert intervals("auckland") == [("2026-02-28T00:00", "2026-03-01T00:00")]


def test_the_fire_time_is_the_one_passed_not_the_clock(module: Path) -> None:
    result = run_cli("cron_run", "daily", "--trigger", "scheduler", "--fired-at", "2026-03-05T03:00Z")
    assert result.returncode == 0, result.stderr
    assert intervals("daily") == [("2026-03-04T00:00", "2026-03-05T00:00")]
    bad = run_cli("cron_run", "daily", "--trigger", "scheduler", "--fired-at", "soon")
    assert bad.returncode == 2 and "--fired-at must be" in bad.stderr
    both = run_cli("cron_run", "daily", "--fired-at", "2026-03-05T03:00Z", "--date", "2026-03-01")
    assert both.returncode == 2 and "--fired-at" in both.stderr


def test_a_person_gets_the_last_complete_interval_and_is_told_which(module: Path) -> None:
    now = datetime.now(UTC)
    result = run_cli("cron_run", "guarded")
    assert result.returncode == 0, result.stderr
    yesterday = (now - timedelta(days=1)).date().isoformat()
    assert f"interval {yesterday} (the last complete day); use --date to choose" in result.stdout
    assert intervals("guarded") == [(f"{yesterday}T00:00", f"{now.date().isoformat()}T00:00")]
    assert runs_of("guarded")[0]["incomplete"] is False


def test_a_non_interval_pipeline_runs_now_and_records_the_fire_period(module: Path) -> None:
    once("console", "2026-03-02T03:00Z")
    assert intervals("console") == [("2026-03-01T03:00", "2026-03-02T03:00")]
    listing = json.loads(run_cli("backfill_list", "--json").stdout)
    assert "console" in [p["name"] for p in listing["not_backfillable"]]


def test_lookback_on_a_non_interval_pipeline_is_refused_at_discovery(pipelines_dir: Path) -> None:
    (pipelines_dir / "bad_pipeline.py").write_text(textwrap.dedent('''
        import pyarrow as pa
        from pipelines.interfaces import Extractor
        from pipelines.pipeline_factory import create_el_pipeline
        from pipelines.tools.loaders.console_loader import create_console_loader
        class Now(Extractor):
            def extract(self, context):
                yield pa.table({"n": [1]})
        PIPELINE_REGISTRY = {
            "looks_back": {"pipeline": create_el_pipeline(Now("n"), create_console_loader("c")), "lookback": 3},
            "refreshes": {"pipeline": create_el_pipeline(Now("n"), create_console_loader("c")),
                          "refresh_current": True},
        }
    '''))
    listing = json.loads(run_cli("list", "--json").stdout)
    errors = {b["name"]: b["error"] for b in listing["broken"]}
    assert "lookback needs an interval-aware pipeline" in errors["looks_back"]
    assert "refresh_current needs an interval-aware pipeline" in errors["refreshes"]


def test_an_incomplete_success_is_shown_as_such_and_backfill_reloads_it(module: Path, db: Store) -> None:
    """History written before the fix: a 'success' that started at 03:00 of the day it loaded."""
    from core.models import RunRecord
    from record.history import record_run
    from record.tables import ensure_framework_tables

    day = datetime.combine(datetime.now(UTC).date() - timedelta(days=20), datetime.min.time(), UTC)
    label = f"{day:%Y-%m-%d}"
    window = ("--start", label, "--end", label)
    ensure_framework_tables(db)
    record_run(db, RunRecord(run_id=f"{day:%Y%m%d}T030000-old", pipeline="guarded", interval_start=day,
                             interval_end=day + timedelta(days=1), trigger="cron", status="success",
                             started_at=day + timedelta(hours=3), finished_at=day + timedelta(hours=3, seconds=2),
                             rows_loaded=3))
    db.close()
    assert runs_of("guarded")[0]["incomplete"] is True
    shown = run_cli("runs", "guarded")
    assert "success (incomplete)" in shown.stdout
    listing = json.loads(run_cli("backfill_list", *window, "--json").stdout)
    guarded = next(p for p in listing["pipelines"] if p["name"] == "guarded")
    assert (guarded["done"], guarded["incomplete"]) == (0, 1)
    counts = json.loads(run_cli("backfill_counts", "guarded", *window,
                                "--json").stdout)
    assert counts["pipelines"][0]["days"][0]["status"] == "incomplete"
    plan = run_cli("backfill", "guarded", *window, "--dry-run")
    assert f"incomplete: run {day:%Y%m%d}T030000-old started before the interval ended" in plan.stdout
    result = run_cli("backfill", "guarded", *window)
    assert result.returncode == 0, result.stderr
    assert rows(db, "SELECT count() FROM guarded_t")[0][0] == 24
    again = run_cli("backfill", "guarded", *window, "--dry-run")
    assert "0 interval(s) would run, 1 would be skipped" in again.stdout


def test_refresh_current_loads_the_interval_in_progress_as_incomplete(module: Path) -> None:
    fired = datetime.now(UTC).replace(second=0, microsecond=0)
    result = run_cli("cron_run", "refresher", "--trigger", "scheduler", "--fired-at", fired.isoformat())
    assert result.returncode == 0, result.stderr
    today = [r for r in runs_of("refresher") if r["interval_start"][:10] == fired.date().isoformat()]
    assert len(today) == 1 and today[0]["status"] == "success" and today[0]["incomplete"] is True


def test_lookback_reloads_late_rows_and_skips_an_interval_held_by_a_backfill(module: Path, db: Store,
                                                                             tmp_path: Path) -> None:
    source = tmp_path / "source.json"
    times = [f"2026-03-0{d}T{h:02d}:00:00+00:00" for d in (1, 2) for h in (1, 9, 17)]
    source.write_text(json.dumps(times[:3]))
    env = {"SOURCE": str(source)}
    once("late", "2026-03-02T03:00Z", **env)  # owns 1 March, looks back at 27 and 28 Feb
    assert intervals("late") == [("2026-02-27T00:00", "2026-02-28T00:00"), ("2026-02-28T00:00", "2026-03-01T00:00"),
                                 ("2026-03-01T00:00", "2026-03-02T00:00")]
    source.write_text(json.dumps(times + ["2026-03-01T23:30:00+00:00"]))  # a row of 1 March arrives late
    once("late", "2026-03-03T03:00Z", **env)
    assert rows(db, "SELECT toDate(ts) d, count() FROM late_t GROUP BY d ORDER BY d") == [
        (datetime(2026, 3, 1).date(), 4), (datetime(2026, 3, 2).date(), 3)]
    from core.locks import FileLock

    held = FileLock(Path(db.settings.run_dir) / "locks" / "late@20260302T000000.lock")
    assert held.try_acquire("a backfill")
    try:
        result = run_cli("cron_run", "late", "--trigger", "scheduler", "--fired-at", "2026-03-04T03:00Z", env=env)
    finally:
        held.release()
    assert result.returncode == 0, result.stderr
    assert "lookback 2026-03-02 skipped: it is running elsewhere" in result.stdout + result.stderr
    assert [i for i in intervals("late") if i[0].startswith("2026-03-03")] == [("2026-03-03T00:00",
                                                                                "2026-03-04T00:00")]


def test_an_empty_extract_never_wipes_an_interval_unless_allowed(module: Path, db: Store) -> None:
    for name in ("guarded", "empty_ok"):
        assert run_cli("cron_run", name, "--date", "2026-03-01").returncode == 0
    refused = run_cli("cron_run", "guarded", "--date", "2026-03-01", env={"EMPTY": "1"})
    assert refused.returncode == 1
    assert ("source returned 0 rows for 2026-03-01, which holds 24 rows; set allow_empty=True if an empty "
            "interval is real") in refused.stderr
    assert rows(db, "SELECT count() FROM guarded_t")[0][0] == 24
    allowed = run_cli("cron_run", "empty_ok", "--date", "2026-03-01", env={"EMPTY": "1"})
    assert allowed.returncode == 0, allowed.stderr
    assert rows(db, "SELECT count() FROM empty_ok_t")[0][0] == 0
    nothing_there = run_cli("cron_run", "guarded", "--date", "2026-03-05", env={"EMPTY": "1"})
    assert nothing_there.returncode == 0, nothing_there.stderr  # nothing to wipe: an empty day is fine


def test_an_empty_extract_never_wipes_a_replaced_table(module: Path, db: Store) -> None:
    assert run_cli("cron_run", "snapshot", "--date", "2026-03-01").returncode == 0
    refused = run_cli("cron_run", "snapshot", "--date", "2026-03-02", env={"EMPTY": "1"})
    assert refused.returncode == 1
    assert "source returned 0 rows for 2026-03-02, which would replace all 24 rows of snapshot_t" in refused.stderr
    assert rows(db, "SELECT count() FROM snapshot_t")[0][0] == 24
