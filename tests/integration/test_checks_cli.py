"""Write-audit-publish end to end through the CLI in new processes: runs, checks, check, clean."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from conftest import rows, run_cli
from core.store import Store

DAY = "2026-03-10"

MODULE = textwrap.dedent('''
    import os
    from datetime import timedelta
    import pyarrow as pa
    from audit import data_check, not_null, unique
    from pipelines.interfaces import Extractor
    from pipelines.pipeline_factory import create_el_pipeline
    from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader
    from pipelines.tools.loaders.console_loader import create_console_loader

    DATA = {
        "good": ([1, 2, 3], [1.0, 2.0, 3.0]),
        "null_id": ([1, None, 3], [1.0, 2.0, 3.0]),
        "duplicate": ([1, 1, 3], [1.0, 2.0, 3.0]),
        "negative": ([1, 2, 3], [1.0, -2.0, 3.0]),
    }

    class Orders(Extractor):
        interval_aware = True
        def extract(self, context):
            ids, amounts = DATA[os.environ.get("ORDERS", "good")]
            ts = [context.start + timedelta(hours=h) for h in range(len(ids))]
            yield pa.table({"ts": pa.array(ts, pa.timestamp("ms", tz="UTC")), "id": pa.array(ids, pa.int64()),
                            "amount": amounts})

    @data_check
    def positive(audit, column):
        return f"SELECT * FROM {audit.staging} WHERE {audit.q(column)} <= 0"

    PIPELINE_REGISTRY = {
        "orders": {"pipeline": create_el_pipeline(Orders(), create_clickhouse_loader("orders_t", time_column="ts"),
                                                  "o"),
                   "checks": [not_null("id"), unique("id", severity="warn"), positive("amount")]},
        "typo": {"pipeline": create_el_pipeline(Orders(), create_clickhouse_loader("typo_t", time_column="ts"), "t"),
                 "checks": [not_null("idd")]},
        "preview": {"pipeline": create_el_pipeline(Orders(), create_console_loader(), "p"),
                    "checks": [not_null("id")]},
    }
''')


@pytest.fixture
def project(pipelines_dir: Path, db: Store) -> Store:
    (pipelines_dir / "orders_pipeline.py").write_text(MODULE)
    db.create_database()
    # Nullable id: a NULL must reach the staged rows as NULL for not_null to see it.
    db.command("CREATE TABLE orders_t (ts DateTime64(3, 'UTC'), id Nullable(Int64), amount Float64, "
               "_dp_run_id String) ENGINE = MergeTree PARTITION BY toDate(ts) ORDER BY ts")
    db.close()
    return db


def fingerprint(store: Store) -> list[tuple]:
    """The target's content checksum and its active parts: equal means nothing was published."""
    return rows(store, "SELECT (SELECT (groupBitXor(cityHash64(*)), count()) FROM orders_t), "
                       "(SELECT groupArraySorted(100)(name) FROM system.parts WHERE database = currentDatabase() "
                       "AND table = 'orders_t' AND active)")


def test_a_failing_error_check_leaves_the_target_byte_identical(project: Store) -> None:
    assert run_cli("cron_run", "orders", "--date", DAY).returncode == 0
    before = fingerprint(project)
    failed = run_cli("cron_run", "orders", "--date", DAY, env={"ORDERS": "null_id"})
    assert failed.returncode == 1, failed.stderr
    assert "data check failed, nothing published; staged rows kept in _dp_stage_kept_orders_t_" in failed.stderr
    assert fingerprint(project) == before
    [last, *_] = json.loads(run_cli("runs", "orders", "--json").stdout)
    assert last["status"] == "failed" and "_dp_stage_kept_orders_t_" in last["error"]
    assert last["checks"] == "not_null(id) failed (error); 2 passed"
    kept = last["error"].split("staged rows kept in ")[1].split()[0]
    assert rows(project, f"SELECT id FROM {kept} ORDER BY id") == [(1,), (3,), (None,)]
    results = json.loads(run_cli("checks", "orders", "--json").stdout)
    latest = {r["check_name"]: r for r in results if r["run_id"] == last["run_id"]}
    assert (latest["not_null(id)"]["status"], latest["not_null(id)"]["failing"]) == ("fail", 1)
    assert latest["not_null(id)"]["sample"][0]["id"] is None and latest["not_null(id)"]["kept_table"] == kept
    table = run_cli("checks", "orders", "--failed")
    assert table.returncode == 0 and "not_null(id)" in table.stdout and "unique(id)" not in table.stdout
    # Crash clean-up (run by runs) spares it; clean would remove it; the next run of the interval does.
    assert rows(project, f"EXISTS TABLE {kept}") == [(1,)]
    assert f"would remove staging table: {kept}" in run_cli("clean", "--dry-run").stdout
    assert run_cli("cron_run", "orders", "--date", DAY).returncode == 0
    assert rows(project, f"EXISTS TABLE {kept}") == [(0,)]


def test_a_warn_check_publishes_and_shows_in_runs_and_check(project: Store) -> None:
    done = run_cli("cron_run", "orders", "--date", DAY, env={"ORDERS": "duplicate"})
    assert done.returncode == 0, done.stderr
    assert rows(project, "SELECT id FROM orders_t ORDER BY id") == [(1,), (1,), (3,)]
    listing = run_cli("runs", "orders")
    assert "unique(id) failed (warn); 2 passed" in listing.stdout
    health = run_cli("check", "--json")
    lines = {c["name"]: c for c in json.loads(health.stdout)["checks"]}
    assert lines["checks:orders"]["status"] == "warn" and "unique(id) failed (warn)" in lines["checks:orders"]["detail"]


def test_a_users_check_blocks_like_a_builtin(project: Store) -> None:
    failed = run_cli("cron_run", "orders", "--date", DAY, env={"ORDERS": "negative"})
    assert failed.returncode == 1 and "positive(amount): 1 failing row(s)" in failed.stderr
    assert rows(project, "SELECT count() FROM orders_t") == [(0,)]


def test_bad_definitions_name_pipeline_check_and_column(project: Store) -> None:
    listing = json.loads(run_cli("list", "--json").stdout)
    broken = {b["name"]: b["error"] for b in listing["broken"]}
    assert "pipeline 'preview', check 'not_null(id)': the loader 'Console' (ConsoleLoader) writes batches" \
        in broken["preview"]
    failed = run_cli("cron_run", "typo", "--date", DAY)
    assert failed.returncode == 1
    assert "pipeline 'typo', check 'not_null(idd)': table 'typo_t' has no column 'idd'" in failed.stderr
    assert rows(project, "EXISTS TABLE typo_t") == [(0,)]  # a failed first run never creates the target
