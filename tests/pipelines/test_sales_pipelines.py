"""Tests of the shipped SQL pipelines (src/pipelines/daily_sales_pipeline.py and
monthly_sales_pipeline.py) over the example pipeline: a model for testing a dependency chain.

They run the real CLI against the project's own pipelines and migrations; skipped once the
example or the sales pipelines have been deleted from the project.
"""

from __future__ import annotations

from datetime import date

import pytest

from conftest import ROOT, run_cli
from core.config import load_settings
from core.store import Store

PIPELINES = ROOT / "src" / "pipelines"
NEEDED = ("example_pipeline.py", "daily_sales_pipeline.py", "monthly_sales_pipeline.py")


@pytest.fixture
def project_pipelines(project_env, monkeypatch):
    missing = [name for name in NEEDED if not (PIPELINES / name).is_file()]
    if missing:
        pytest.skip(f"the shipped example chain has been deleted ({', '.join(missing)})")
    for key, value in (("PIPELINES_DIR", str(PIPELINES)), ("MIGRATIONS_DIR", str(ROOT / "migrations" / "sql"))):
        monkeypatch.setenv(key, value)
        project_env[key] = value
    return project_env


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


def test_the_shipped_sql_pipelines_summarize_the_example_by_day_and_month(project_pipelines) -> None:
    days = (date(2026, 1, 15), date(2026, 1, 16))
    for day in days:
        result = run_cli("cron_run", "example_pipeline", "--date", day.isoformat())
        assert result.returncode == 0, result.stderr
        # The model users copy runs without a warning about itself (its layout costs nothing real).
        assert "WARNING" not in result.stdout + result.stderr, result.stderr
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
