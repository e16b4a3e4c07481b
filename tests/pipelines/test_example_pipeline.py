"""Tests of the shipped example pipeline (src/pipelines/example_pipeline.py): a model for yours.

Skipped once the example pipeline has been deleted from the project.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from core.config import PROJECT_ROOT
from pipelines.testing import TestProject

EXAMPLE = PROJECT_ROOT / "src" / "pipelines" / "example_pipeline.py"
DAY = date(2026, 1, 15)


@pytest.fixture
def project(tmp_path: Path):
    if not EXAMPLE.is_file():
        pytest.skip("the example pipeline (src/pipelines/example_pipeline.py) has been deleted")
    with TestProject(tmp_path) as project:
        yield project


def test_one_day_of_orders(project: TestProject) -> None:
    result = project.run("example_pipeline", day=DAY)
    assert result.status == "success", result.error
    assert result.record.rows_extracted == 3000  # the whole sample is read ...
    assert 0 < len(result.rows) == result.record.rows_loaded < 3000  # ... and a weekday's share kept
    assert {row["event_date"] for row in result.rows} == {DAY}
    assert all(row["amount"] == round(row["quantity"] * row["unit_price"], 2) for row in result.rows)
    assert result.checks == []  # the example declares no data checks


def test_a_rerun_replaces_the_day(project: TestProject) -> None:
    first = project.run("example_pipeline", day=DAY)
    second = project.run("example_pipeline", day=DAY)
    assert first.ok and second.ok
    [counts] = project.query("SELECT count() AS n, uniqExact(event_id) AS ids, uniqExact(_dp_run_id) AS runs "
                             "FROM example_events")
    assert counts == {"n": len(first.rows), "ids": len(first.rows), "runs": 1}
