"""Parallel backfill workers (``backfill_worker`` processes) and their line protocol, on real processes.

The CLI runs ``--parallel`` sequentially on the embedded store, so here ``execute`` is called
directly: the workers take turns on the test's embedded store, which is all this needs.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import pytest

from core.config import Settings
from core.models import RunRecord
from core.store import Store
from ops.discovery import discover
from runner import backfill as bf

MODULE = textwrap.dedent('''
    import os
    from datetime import timedelta
    import pyarrow as pa
    from pipelines.interfaces import Extractor
    from pipelines.pipeline_factory import create_el_pipeline
    from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader

    class Days(Extractor):
        """6 rows per day; the day in FAIL_DAY fails."""
        interval_aware = True
        def extract(self, context):
            if context.start_date == os.environ.get("FAIL_DAY"):
                raise ValueError(f"source has no file for {context.start_date}")
            ts = [context.start + timedelta(hours=4 * i) for i in range(6)]
            yield pa.table({"ts": pa.array(ts, pa.timestamp("ms", tz="UTC")), "v": list(range(6))})

    PIPELINE_REGISTRY = {
        "days": {"pipeline": create_el_pipeline(Days("days"), create_clickhouse_loader("days_t", time_column="ts"))},
    }
''')


class Outcomes(bf.Listener):
    def __init__(self) -> None:
        self.seen: list[tuple[str, RunRecord]] = []

    def finished(self, step: bf.Step, outcome: RunRecord) -> None:
        self.seen.append((step.interval.label, outcome))

    def running(self, steps: Sequence[bf.Step]) -> None: ...


def test_parallel_workers_answer_each_interval_with_its_run_record(pipelines_dir: Path, settings: Settings,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    (pipelines_dir / "days_pipeline.py").write_text(MODULE)
    monkeypatch.setenv("FAIL_DAY", "2025-03-02")  # the workers inherit the environment
    registry = discover(pipelines_dir)
    store = Store(settings)
    try:
        store.create_database()
        steps = bf.plan(store, [registry.get("days")], date(2025, 3, 1), date(2025, 3, 3))
        listener = Outcomes()
        report = bf.execute(steps, settings, store, parallel=2, continue_on_error=True, listener=listener)
        outcomes = dict(listener.seen)
        assert sorted(outcomes) == ["2025-03-01", "2025-03-02", "2025-03-03"]
        assert all(isinstance(o, RunRecord) for o in outcomes.values())
        tally = report.tallies["days"]
        assert (tally.planned, tally.done, len(tally.failed), tally.rows, report.exit_code) == (3, 2, 1, 12, 1)
        failed = outcomes["2025-03-02"]
        assert (failed.status, failed.reason, failed.trigger) == ("failed", "error", "backfill")
        assert failed.error == "ValueError: source has no file for 2025-03-02"
        recorded = {run_id: (status, rows) for run_id, status, rows in store.query_rows(
            f"SELECT run_id, status, rows_loaded FROM {store.table('_dp_runs')} FINAL")}
        assert recorded == {o.run_id: (o.status, o.rows_loaded) for o in outcomes.values()}
        assert sorted(recorded.values()) == [("failed", 0), ("success", 6), ("success", 6)]
        assert store.query_rows(f"SELECT count() FROM {store.table('days_t')}") == [(12,)]
    finally:
        store.close()
