"""A NULL time column (issue 23, section 1): a row already in the table with a NULL time column
belongs to no interval and every rebuild keeps it; an incoming row with one fails the run on every
path (Python batches, a SQL pipeline, CSV push-down) with the same one-line error. Through the real
CLI, on a table made by a migration, in both engine modes."""

from __future__ import annotations

import json
import re
import textwrap
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import pytest
from ui_project import UiServer

from conftest import rows, run_cli
from core.store import Store

MIGRATION = """\
CREATE TABLE IF NOT EXISTS {database}.nt{cluster}
(
    id         Nullable(Int64),
    ts         Nullable(DateTime64(6, 'UTC')),
    _dp_run_id String DEFAULT ''
)
ENGINE = MergeTree
ORDER BY tuple();

INSERT INTO {database}.nt (id, ts) VALUES (100, NULL), (101, '2026-10-15 00:00:00'), (102, NULL);
"""

MODULE = textwrap.dedent('''
    import os
    from datetime import timedelta
    import pyarrow as pa
    from audit.builtins import unique
    from pipelines.interfaces import Extractor
    from pipelines.pipeline_factory import create_el_pipeline
    from pipelines.tools.extractors.file_extractor import create_file_extractor
    from pipelines.tools.extractors.sql_source import create_sql_pipeline
    from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader

    class Day(Extractor):
        """Rows of the run's day; with_null adds a row whose ts is NULL."""
        interval_aware = True
        def __init__(self, ids, with_null=False):
            super().__init__("day")
            self.ids, self.with_null = ids, with_null
        def extract(self, context):
            ts = [context.start + timedelta(hours=1 + n) for n in range(len(self.ids))]
            ids = list(self.ids) + ([201] if self.with_null else [])
            ts += [None] if self.with_null else []
            yield pa.table({"id": pa.array(ids, pa.int64()), "ts": pa.array(ts, pa.timestamp("us", tz="UTC"))})

    def nt():
        return create_clickhouse_loader("nt", time_column="ts")

    SQL = ("SELECT toInt64(arrayJoin([300, 301])) AS id, "
           "if(id = 300, {start} + INTERVAL 1 HOUR, NULL) AS ts")
    CSV = create_file_extractor(os.environ.get("TEST_DATA", "/nonexistent") + "/{start_date}.csv")

    PIPELINE_REGISTRY = {
        "nt_rows": {"pipeline": create_el_pipeline(Day([200]), nt(), "nt_rows")},
        "nt_null": {"pipeline": create_el_pipeline(Day([200], with_null=True), nt(), "nt_null")},
        "nt_sql": {"pipeline": create_sql_pipeline(SQL, loader=nt(), name="nt_sql")},
        "nt_csv": {"pipeline": create_el_pipeline(CSV, nt(), "nt_csv")},
        "nt_unique": {"pipeline": create_el_pipeline(Day([100]), nt(), "nt_unique"), "checks": [unique("id")]},
    }
''')

NULL_TS_ERROR = ("Loader for 'nt': 1 row(s) have a NULL time column 'ts', which places no row in an interval; "
                 "an interval run may only write rows of its own slice: fill or filter them")


@pytest.fixture
def nt(pipelines_dir: Path, tmp_path: Path, project_env, monkeypatch: pytest.MonkeyPatch, db: Store) -> Store:
    """The issue's table from a migration, two of its rows with a NULL ts, and the pipelines above."""
    (pipelines_dir / "nt_pipeline.py").write_text(MODULE)
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "0001_create_nt.sql").write_text(MIGRATION)
    monkeypatch.setenv("MIGRATIONS_DIR", str(migrations))
    data = tmp_path / "input"
    data.mkdir()
    (data / "2026-11-01.csv").write_text("id,ts\n400,2026-11-01 10:00:00\n401,\n")
    monkeypatch.setenv("TEST_DATA", str(data))
    assert run_cli("setup_db").returncode == 0
    migrated = run_cli("migrate")
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    return db


def test_an_interval_run_keeps_rows_whose_time_column_is_null(nt: Store) -> None:
    for _ in range(2):  # the rebuild is idempotent: a re-run gives exactly the same rows
        result = run_cli("cron_run", "nt_rows", "--date", "2026-11-01")
        assert result.returncode == 0, result.stdout + result.stderr
        assert rows(nt, "SELECT id, ts IS NULL, toDate(ts) FROM nt ORDER BY id") == [
            (100, 1, None), (101, 0, date(2026, 10, 15)), (102, 1, None),
            (200, 0, date(2026, 11, 1))]
    # Counts agree: the NULL-time rows are in the total and in no day.
    counts = run_cli("backfill_counts", "nt_rows", "--start", "2026-10-31", "--end", "2026-11-01", "--json")
    assert counts.returncode == 0, counts.stderr
    [item] = json.loads(counts.stdout)["pipelines"]
    assert item["total_rows"] == 4 and item["rows_without_time"] == 2
    assert [(d["date"], d["rows"], d["status"]) for d in item["days"]] == [
        ("2026-10-31", 0, "no data"), ("2026-11-01", 1, "ok")]
    shown = run_cli("backfill_counts", "nt_rows", "--start", "2026-10-31", "--end", "2026-11-01")
    assert "2 rows have no ts (NULL): they belong to no day" in " ".join(shown.stdout.split())
    ui = UiServer(SimpleNamespace(env={}))  # the status page's rows page says the same
    try:
        page = ui.get("/rows?days=7")
    finally:
        ui.stop()
    assert page.status_code == 200
    section = re.search(r'<section class="rows" id="rows-nt_rows">(.*?)</section>', page.text, re.S).group(1)
    assert "4 rows in total. 2 of them have no ts (NULL): they are in no day." in section


@pytest.mark.parametrize("pipeline", ["nt_null", "nt_sql", "nt_csv"])
def test_an_incoming_null_time_column_fails_the_run_on_every_path(nt: Store, pipeline: str) -> None:
    result = run_cli("cron_run", pipeline, "--date", "2026-11-01")
    assert result.returncode == 1, result.stdout + result.stderr
    assert NULL_TS_ERROR in " ".join((result.stdout + result.stderr).split())
    assert rows(nt, "SELECT id, ts IS NULL FROM nt ORDER BY id") == [(100, 1), (101, 0), (102, 1)]


def test_a_unique_check_sees_the_null_time_rows_the_rebuild_keeps(nt: Store) -> None:
    # Row 100 (ts NULL) stays in the table: a new row 100 inside the slice duplicates it.
    result = run_cli("cron_run", "nt_unique", "--date", "2026-11-01")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Check unique(id) (error) failed: 1 failing row(s)" in " ".join((result.stdout + result.stderr).split())
    assert rows(nt, "SELECT id FROM nt ORDER BY id") == [(100,), (101,), (102,)]
