"""The seed's Quick Start module, verbatim, and the shipped example pipeline, end to end."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, JsonHandler, run_cli, serve
from core.config import load_settings
from core.store import Store

SEED_MODULE = (Path(__file__).parents[1] / "fixtures" / "seed_quick_start_pipeline.py.txt").read_text()


class _Api(JsonHandler):
    requests: list[str] = []

    def do_GET(self) -> None:  # noqa: N802
        type(self).requests.append(self.path)
        self.send_json([{"id": 1, "name": "alpha", "score": 9.5}, {"id": 2, "name": "beta", "score": 7.0}])


@pytest.fixture
def api():
    _Api.requests = []
    with serve(_Api) as base:
        yield base, _Api


def test_the_seed_quick_start_module_runs_as_written(pipelines_dir: Path, api) -> None:
    base, handler = api
    assert "https://api.example.com/data" in SEED_MODULE
    (pipelines_dir / "my_pipeline.py").write_text(SEED_MODULE.replace("https://api.example.com", base))
    listed = run_cli("list")
    assert listed.returncode == 0, listed.stderr
    assert "my_pipeline" in listed.stdout and "My custom data pipeline" in listed.stdout
    assert "0 * * * *" in listed.stdout and "my_data" in listed.stdout
    assert handler.requests == []  # discovering (importing) the module touched no network
    result = run_cli("cron_run", "my_pipeline")
    assert result.returncode == 0, result.stderr
    assert handler.requests == ["/data"]
    assert "My Console Loader schema: id int64, name large_string, score double, processed_at timestamp" in result.stdout
    assert "alpha" in result.stdout and "beta" in result.stdout
    assert "My Console Loader: 2 rows" in result.stdout
    assert "success my_pipeline" in result.stdout and "2 rows loaded (2 extracted)" in result.stdout


def _expected_rows(day: date) -> int:
    from pipelines.example_pipeline import kept

    return int(kept(np.arange(3000), day).sum())


def test_the_example_pipeline_bootstraps_a_fresh_store(project_env, monkeypatch) -> None:
    monkeypatch.delenv("PIPELINES_DIR", raising=False)
    day = date(2026, 1, 15)
    for _ in range(2):  # the second run replaces the day: same rows, no duplicates
        result = run_cli("cron_run", "example_pipeline", "--date", day.isoformat())
        assert result.returncode == 0, result.stderr
        assert f"success example_pipeline 2026-01-15: {_expected_rows(day):,} rows loaded (3,000 extracted)" \
            in result.stdout
    assert run_cli("cron_run", "example_pipeline", "--date", "2026-01-16").returncode == 0
    store = Store(load_settings())
    try:
        assert store.query_rows("SELECT event_date, count(), uniqExact(event_id), uniqExact(_dp_run_id) "
                                "FROM example_events GROUP BY 1 ORDER BY 1") == [
            (day, _expected_rows(day), _expected_rows(day), 1),
            (date(2026, 1, 16), _expected_rows(date(2026, 1, 16)), _expected_rows(date(2026, 1, 16)), 1)]
        ddl = store.command("SELECT create_table_query FROM system.tables WHERE name = 'example_events' "
                            "AND database = currentDatabase()")
        assert "PARTITION BY event_date" in ddl  # defined by the shipped migration, not guessed
        [(total, minimum, maximum)] = store.query_rows(
            "SELECT round(sum(amount), 2), min(event_time), max(event_time) FROM example_events "
            "WHERE event_date = '2026-01-15'")
        assert total > 0 and minimum.date() == maximum.date() == day
    finally:
        store.close()
    runs = json.loads(run_cli("runs", "example_pipeline", "--json").stdout)
    assert [r["status"] for r in runs] == ["success"] * 3
    log = (Path(project_env["LOG_DIR"]) / "jobs" / "example_pipeline.log").read_text()
    assert ("New store: applied 2 migration(s): 0001_create_example_events.sql, "
            "0002_create_sales_summaries.sql") in log
    assert log.count("succeeded in") == 3
    status = run_cli("migrate_status")
    assert status.returncode == 0, status.stdout
    assert (ROOT / "data" / "samples" / "orders_day.csv").is_file()


def _expected_sales(day: date) -> dict[str, tuple[int, int, float]]:
    """Completed orders, items and revenue per country of the example's ``day``, from the sample."""
    import pandas as pd

    from pipelines.example_pipeline import kept

    sample = pd.read_csv(ROOT / "data" / "samples" / "orders_day.csv")
    day_rows = sample[kept(sample.index.to_numpy(), day)]
    day_rows = day_rows[day_rows["status"] == "completed"]
    amount = (day_rows["quantity"] * day_rows["unit_price"]).round(2)
    grouped = day_rows.assign(amount=amount).groupby("country")
    return {country: (len(g), int(g["quantity"].sum()), round(float(g["amount"].sum()), 2))
            for country, g in grouped}


def test_the_shipped_sql_pipelines_summarize_the_example_by_day_and_month(project_env, monkeypatch) -> None:
    monkeypatch.delenv("PIPELINES_DIR", raising=False)
    days = (date(2026, 1, 15), date(2026, 1, 16))
    for day in days:
        result = run_cli("cron_run", "example_pipeline", "--date", day.isoformat())
        assert result.returncode == 0, result.stderr
        assert f"success daily_sales {day}: {len(_expected_sales(day))} rows loaded" in result.stdout
        assert f"success monthly_sales {day}:" in result.stdout
    store = Store(load_settings())
    try:
        daily = store.query_rows("SELECT day, country, orders, items, revenue FROM daily_sales ORDER BY day, country")
        monthly = store.query_rows("SELECT month, country, days, orders, items, revenue FROM monthly_sales "
                                   "ORDER BY country")
    finally:
        store.close()
    expected = [(day, country, *values) for day in days for country, values in sorted(_expected_sales(day).items())]
    assert [row[:4] for row in daily] == [row[:4] for row in expected]
    assert [row[4] for row in daily] == pytest.approx([row[4] for row in expected], abs=0.011)
    by_country: dict[str, list] = {}
    for _, country, orders, items, revenue in expected:
        total = by_country.setdefault(country, [0, 0, 0, 0.0])
        total[0] += 1
        total[1] += orders
        total[2] += items
        total[3] += revenue
    assert [row[:5] for row in monthly] == [(date(2026, 1, 1), c, *v[:3]) for c, v in sorted(by_country.items())]
    assert [row[5] for row in monthly] == pytest.approx([v[3] for _, v in sorted(by_country.items())], abs=0.03)
