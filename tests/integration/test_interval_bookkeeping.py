"""A run's bookkeeping, cut to fewer statements per interval (issue 27, section 2), keeps its guarantees:
catalogue answers are kept only while nothing else can change the catalogue (``core.store_memo``),
statement settings go inline and still apply, framework rows go inline and keep any text, and what a
run looks up once per series (quarantined rows, dead runs) follows what happened meanwhile."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conftest import SRC, cli_env
from core.config import Settings
from core.exceptions import StoreError
from core.intervals import Interval
from core.models import RunRecord
from core.store import Store

MODULE = textwrap.dedent('''
    import os
    from datetime import timedelta
    import pyarrow as pa
    from pipelines.interfaces import Extractor
    from pipelines.pipeline_factory import create_el_pipeline
    from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader

    class Hours(Extractor):
        """3 rows an hour; with REJECT set, one more row of the hour is set aside (quarantined)."""
        interval_aware = True
        def extract(self, context):
            if os.environ.get("REJECT"):
                context.quarantine([{"source": "test", "raw": f"bad {context.start:%H}", "error": "rejected"}])
            ts = [context.start + timedelta(minutes=m) for m in (5, 25, 45)]
            yield pa.table({"ts": pa.array(ts, pa.timestamp("ms", tz="UTC")), "v": [1, 2, 3]})

    PIPELINE_REGISTRY = {
        "hours": {"pipeline": create_el_pipeline(Hours("hours"), create_clickhouse_loader("hours_t", time_column="ts"),
                                                 "hours"), "granularity": "hour"},
    }
''')

DAY = datetime(2026, 2, 3, tzinfo=UTC)
COLUMNS = {"ts": "DateTime64(3, 'UTC')", "v": "Nullable(Int64)", "_dp_run_id": "String"}


def hour(n: int) -> Interval:
    return Interval(DAY + timedelta(hours=n), DAY + timedelta(hours=n + 1))


@pytest.fixture
def run_hour(pipelines_dir: Path, settings: Settings, store: Store):
    """Run hour ``n`` of ``hours`` in this process on the test's store, as a sequential backfill does."""
    from pipelines.pipeline_registry import get_registry
    from runner.runner import run_pipeline

    (pipelines_dir / "hours_pipeline.py").write_text(MODULE)

    def run(n: int) -> RunRecord:
        spec = get_registry(settings.pipelines_dir).get("hours")
        record = run_pipeline(spec, settings, store, hour(n), trigger="backfill")
        assert record.status == "success", record.error
        return record

    return run


def elsewhere(statement: str) -> None:
    """``statement`` run by another process (as ``migrate`` or ``reset`` would), after this one let go."""
    script = ("import sys; from core.config import load_settings; from core.store import Store; "
              "s = Store(load_settings(), linger=0); s.command(sys.argv[1]); s.close()")
    done = subprocess.run([sys.executable, "-c", script, statement], env=cli_env(), cwd=SRC, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_catalogue_answers_follow_ddl_of_this_process_and_of_others(run_hour, store: Store) -> None:
    run_hour(0)
    run_hour(1)
    assert store.memo.active is store.settings.is_embedded  # a server's catalogue may change at any time
    assert store.adapter.columns("hours_t") == COLUMNS
    # This process drops the target mid-series: the next interval creates it again from its data.
    store.command("DROP TABLE hours_t")
    run_hour(2)
    assert store.query_rows("SELECT count(), toHour(min(ts)) FROM hours_t") == [(3, 2)]
    # A migration of this process adds a column: the next interval fills it by its default.
    store.command("-- migration 0002\nALTER TABLE hours_t ADD COLUMN note String DEFAULT 'm'")
    assert "note" in store.adapter.columns("hours_t")
    run_hour(3)
    assert store.query_rows("SELECT toHour(ts), note, count() FROM hours_t GROUP BY 1, 2 ORDER BY 1") == [
        (2, "m", 3), (3, "m", 3)]
    # Another process drops the table between two intervals (it took the store: this one let go first).
    store.close()
    elsewhere("DROP TABLE hours_t")
    run_hour(4)
    assert store.adapter.columns("hours_t") == COLUMNS
    assert store.query_rows("SELECT toHour(ts), count() FROM hours_t GROUP BY 1") == [(4, 3)]
    # ... or changes its structure: the next interval is staged in the new structure.
    store.close()
    elsewhere("ALTER TABLE hours_t ADD COLUMN other UInt8 DEFAULT 7")
    run_hour(5)
    assert store.query_rows("SELECT toHour(ts), other, count() FROM hours_t GROUP BY 1, 2 ORDER BY 1") == [
        (4, 7, 3), (5, 7, 3)]


def test_a_rerun_in_the_same_process_replaces_the_quarantined_rows_of_its_interval(
        run_hour, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    run_hour(0)  # none quarantined yet: known from then on, not asked per interval
    monkeypatch.setenv("REJECT", "1")
    run_hour(1)
    run_hour(2)
    monkeypatch.delenv("REJECT")
    run_hour(1)  # the re-run of hour 1 sets nothing aside: hour 1's earlier rows go
    assert store.query_rows("SELECT raw FROM _dp_quarantine WHERE pipeline = 'hours' ORDER BY raw") == [("bad 02",)]


def test_a_run_after_the_store_changed_hands_marks_dead_runs_crashed(run_hour, store: Store) -> None:
    from record.history import get_run, record_run, this_host

    run_hour(0)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    started = datetime.now(UTC) - timedelta(minutes=1)
    record_run(store, RunRecord(run_id="dead-1", pipeline="hours", interval_start=hour(9).start,
                                interval_end=hour(9).end, trigger="cron", status="running", started_at=started,
                                host=this_host(), pid=int(dead.stdout), lock_file="/nonexistent/lock"))
    store.close()  # a hand-over: another process may have started (and lost) runs meanwhile
    run_hour(1)
    dead_run = get_run(store, "dead-1")
    assert dead_run is not None and (dead_run.status, dead_run.reason) == ("crashed", "process gone")


def test_statement_settings_apply_to_the_insert_and_leave_the_session_as_it_was(store: Store) -> None:
    store.command("CREATE TABLE src (d Date, v UInt32) ENGINE = MergeTree PARTITION BY d ORDER BY v")
    store.command("CREATE TABLE dst AS src")
    store.command("INSERT INTO src VALUES ('2026-01-01', 1), ('2026-01-02', 2), ('2026-01-03', 3)")
    one = {"max_partitions_per_insert_block": 1, "insert_deduplication_token": "it's a token"}
    for statement in ("INSERT INTO dst SELECT * FROM src WHERE v >= {n:UInt32}",
                      "INSERT INTO dst SELECT * FROM src WHERE v >= {n:UInt32} -- a comment: settings go apart",
                      "INSERT INTO dst SELECT * FROM src WHERE v = {n:UInt32} UNION ALL SELECT * FROM src WHERE v > 1"):
        with pytest.raises(StoreError, match="TOO_MANY_PARTS|Too many partitions"):
            store.command(statement, {"n": 1}, settings=one)
    assert store.query_rows("SELECT count() FROM dst") == [(0,)]
    store.command("INSERT INTO dst SELECT * FROM src WHERE v >= {n:UInt32}", {"n": 1})  # no limit left behind
    assert store.query_rows("SELECT getSetting('max_partitions_per_insert_block') > 1, count() FROM dst") == [(1, 3)]


@pytest.mark.same_in_both_runs("framework rows are JSON either way; the text is the point")
def test_framework_rows_keep_any_text(store: Store) -> None:
    from record.history import get_run, record_run
    from record.tables import ensure_framework_tables

    ensure_framework_tables(store)
    error = "it's \"quoted\" {p:String} {start}\nline 2\\ tab\t ünïcödé; -- not a comment\n"
    now = datetime.now(UTC).replace(microsecond=789000)  # (older than the history's TTL: gone at insert)
    record = RunRecord(run_id="r-text", pipeline="p", interval_start=DAY, interval_end=DAY + timedelta(days=1),
                       trigger="manual", status="failed", reason="error", error=error, started_at=now,
                       finished_at=now, host="h", pid=1, lock_file="")
    record_run(store, record)
    found = get_run(store, "r-text")
    assert found is not None and found.error == error and found.started_at == now.replace(tzinfo=None)


@pytest.mark.embedded_only("the release timer exists only for the embedded store's file lock")
def test_a_burst_of_statements_arms_one_release_timer_and_the_store_is_released_after_it(settings: Settings) -> None:
    store = Store(settings, linger=0.3)
    before = threading.active_count()
    started = time.monotonic()
    while time.monotonic() - started < 0.8:  # longer than the linger: the first timer finds it in use
        store.command("SELECT 1")
        assert threading.active_count() <= before + 1  # (the old code started a thread per statement)
    assert store._client is not None
    deadline = time.monotonic() + 10
    while store._client is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store._client is None, "the store was not released after its linger"
    store.close()
